"""Helpers for the e2e tests: the stack on ephemeral ports, a signed httpx client."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from edge.auth import KeyStore, rest_payload, sign
from pipeline import config
from pipeline.supervisor import Supervisor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    """A signed REST client for one API key (httpx, not the project's own HTTP code)."""

    def __init__(self, base: str, key_id: str, secret: str) -> None:
        self.base, self.key_id, self.secret = base, key_id, secret
        self.http = httpx.Client(base_url=base, timeout=10)

    def call(self, method: str, target: str, body: Any = None, *, ts: int | None = None,
             sig: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        ts = ts if ts is not None else int(time.time() * 1000)
        h = {"X-API-KEY": self.key_id, "X-TIMESTAMP": str(ts),
             "X-SIGNATURE": sig or sign(self.secret, rest_payload(ts, method, target, raw))}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        return self.http.request(method, target, content=raw if body is not None else None, headers=h)


class Stack:
    def __init__(self, tmp: Path, extra: dict[str, str] | None = None) -> None:
        env = {
            "SPOTX_DATA_DIR": str(tmp / "data"),
            "SPOTX_INSTANCE": f"t{uuid.uuid4().hex[:8]}",
            "SPOTX_EDGE_REST_PORT": str(free_port()),
            "SPOTX_EDGE_WS_TRADE_PORT": str(free_port()),
            "SPOTX_MARKET_PORT": str(free_port()),
            "SPOTX_METRICS_PORT": str(free_port()),
            "SPOTX_ENGINE_WAIT": "park",
            "SPOTX_ENGINE_MAX_ORDERS": "65536",
            "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(8 << 20),
            "SPOTX_ENGINE_RING_CAPACITY": "4096",
            "SPOTX_SETTLE_ENABLED": "false",
            **(extra or {}),
        }
        self.env = env  # the stack's SPOTX_* overrides (for CLI commands run against it)
        self.cfg = config.load(env=env)
        self.sup = Supervisor(self.cfg)
        self.store = KeyStore(Path(self.cfg.data_dir) / "keys.json")
        self.base = f"http://127.0.0.1:{self.cfg.edge.rest_port}"
        self.ws_url = f"ws://127.0.0.1:{self.cfg.edge.ws_trade_port}{self.cfg.edge.ws_trade_path}"
        self.metrics_url = f"http://127.0.0.1:{self.cfg.metrics.port}/metrics"

    def start(self) -> None:
        Path(self.cfg.data_dir).mkdir(parents=True, exist_ok=True)
        self.admin_key = self.store.create(1000, "admin")
        self.sup.start()

    def client(self, account: int, role: str = "trade") -> Client:
        k = self.store.create(account, role)
        time.sleep(0.06)  # the edge re-reads the key store on a miss at most every 50 ms
        return Client(self.base, k.key_id, k.secret)

    def admin(self) -> Client:
        return Client(self.base, self.admin_key.key_id, self.admin_key.secret)

    def fund(self, account: int, asset: str, amount: str) -> None:
        r = self.admin().call("POST", "/v1/admin/deposits", {"account": account, "asset": asset,
                                                             "amount": amount, "reason": "test",
                                                             "ticket": "T-1"})
        assert r.status_code == 200, r.text


