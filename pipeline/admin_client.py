"""The operator's client for the admin API (``spotx admin ...``, ``spotx deposit``).

Every call is a signed REST request with an ``admin`` key, so it goes through exactly the path an
external tool would take: authentication, the audit note (actor = key id, reason, ticket) carried
into the engine as an ADMIN record, journaled in the WAL before it takes effect.

Key selection: ``--api-key``/``--secret`` or ``SPOTX_ADMIN_KEY``/``SPOTX_ADMIN_SECRET``; otherwise the
first ``admin`` key in the configured key store (the operator on the host can read it anyway).
Standard library HTTP only: this must work from a bare shell during an incident.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.config import Config


class AdminClientError(RuntimeError):
    """The admin call failed; ``status`` and ``body`` hold the server's answer (0: no answer)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def admin_key(cfg: Config, api_key: str | None = None, secret: str | None = None) -> tuple[str, str]:
    api_key = api_key or os.environ.get("SPOTX_ADMIN_KEY")
    secret = secret or os.environ.get("SPOTX_ADMIN_SECRET")
    if api_key and secret:
        return api_key, secret
    from edge.auth import KeyStore

    store = KeyStore(cfg.edge.key_store or str(Path(cfg.data_dir) / "keys.json"))
    for k in store.keys():
        if k.role == "admin" and (api_key is None or k.key_id == api_key):
            return k.key_id, k.secret
    raise AdminClientError(0, "no admin key: create one with `spotx keys create --account N --role admin`")


def call(cfg: Config, method: str, path: str, body: dict[str, Any] | None = None,
         api_key: str | None = None, secret: str | None = None, timeout_s: float = 10.0) -> Any:
    from edge.auth import rest_payload, sign

    key, sec = admin_key(cfg, api_key, secret)
    raw = json.dumps(body).encode() if body is not None else b""
    ts = int(time.time() * 1000)
    headers = {"X-API-KEY": key, "X-TIMESTAMP": str(ts),
               "X-SIGNATURE": sign(sec, rest_payload(ts, method, path, raw))}
    if body is not None:
        headers["Content-Type"] = "application/json"
    url = f"http://{cfg.edge.host}:{cfg.edge.rest_port}{path}"
    req = urllib.request.Request(url, data=raw if body is not None else None, headers=headers,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            text = resp.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            detail = json.loads(payload)
        except ValueError:
            detail = payload.decode(errors="replace")
        raise AdminClientError(e.code, detail) from None
    except urllib.error.URLError as e:
        raise AdminClientError(0, f"edge not reachable at {url}: {e.reason}") from None
