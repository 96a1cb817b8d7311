"""API keys, HMAC request signing, timestamp window and replay guard (API.md "Authentication").

Key store. One JSON file (``[edge] key_store``, default ``<data_dir>/keys.json``), mode 0600,
``{"version": 1, "keys": [{"apiKey", "secret", "account", "role", "createdMs"}]}``. Secrets are
stored (HMAC needs them). Writes are atomic: temp file in the same directory (created 0600), fsync,
rename, fsync of the directory. Edge processes re-read the file when its mtime/size changes
(checked at most once per ``reload_interval_s``), so ``spotx keys create`` takes effect on a
running stack without a restart.

Roles (decided here, like the big venues' per-key permissions, least privilege):
``read`` reads the key's account; ``trade`` reads and trades it; ``admin`` may call the admin API
only — an operator key cannot trade or read an account's private data, and a trading key can never
change modes. So ``admin`` does NOT imply trade/read.

Signature. ``hex(HMAC-SHA256(secret, timestamp + METHOD + path_with_query + body))``, lowercase,
over the exact bytes of the request line's target and of the body; WS ``session.logon`` signs
``timestamp + "session.logon"``. Compared in constant time (``hmac.compare_digest``).

Checks, in order (the first failure answers, and counts in ``auth_fail_total{reason}``):
headers present (AUTH_MISSING) -> well-formed timestamp / recv window (AUTH_TIMESTAMP) -> known key
(AUTH_BAD_SIGNATURE, reason ``unknown_key``) -> window: ``ts > now + 1000`` or ``now - ts >
window`` (AUTH_TIMESTAMP) -> signature (AUTH_BAD_SIGNATURE) -> replay (AUTH_REPLAY, also counts
``replay_detect_total``) -> role (FORBIDDEN).

Replay cache. A dict (signature -> expiry) plus a FIFO of insertions: O(1) amortised per check,
bounded by ``max_entries``. An entry lives until ``ts + recv_window_max`` (after that the timestamp
check refuses the request whatever window it claims; the window header is not signed, so the
request's own window cannot bound the entry). If the cache is full, the oldest insertion is evicted; if it had not
yet expired, ``floor_ms`` rises to its timestamp and every later request signed at or before the
floor is refused with AUTH_TIMESTAMP (it could be a replay we no longer remember): under overload we
refuse stale-signed requests rather than ever accept a replay. Clients signing with a fresh
timestamp are not affected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from edge.errors import ApiError, EdgeError

ROLES = ("trade", "read", "admin")
GRANTS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "trade": frozenset({"trade", "read"}),
    "admin": frozenset({"admin"}),
}
FUTURE_TOLERANCE_MS = 1000
LOGON_METHOD = b"session.logon"


class KeyStoreError(EdgeError, ValueError):
    """The key store file is unreadable or a key request is invalid."""


@dataclasses.dataclass(frozen=True)
class ApiKey:
    key_id: str
    secret: str = dataclasses.field(repr=False)
    account: int
    role: str
    created_ms: int = 0

    def allows(self, need: str) -> bool:
        return need in GRANTS[self.role]


class KeyStore:
    """The JSON key store. ``create`` is the CLI's entry (``spotx keys create``)."""

    def __init__(self, path: str | os.PathLike[str], reload_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.reload_interval_s = reload_interval_s
        self._keys: dict[str, ApiKey] = {}
        self._macs: dict[str, Any] = {}
        self._stamp: tuple[int, int] | None = None
        self._next_check = 0.0
        self._next_miss_check = 0.0
        self._load()

    # -- reading ------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._macs, self._stamp = {}, {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self.path.read_text())
            keys = {}
            for row in raw["keys"]:
                k = ApiKey(str(row["apiKey"]), str(row["secret"]), int(row["account"]),
                           str(row["role"]), int(row.get("createdMs", 0)))
                if k.role not in ROLES:
                    raise KeyStoreError(f"{self.path}: key {k.key_id} has unknown role {k.role!r}")
                keys[k.key_id] = k
        except (OSError, ValueError, KeyError, TypeError) as e:
            if isinstance(e, KeyStoreError):
                raise
            raise KeyStoreError(f"{self.path}: unreadable key store: {e}") from e
        self._keys = keys
        self._macs = {k.key_id: hmac.new(k.secret.encode(), digestmod=hashlib.sha256)
                      for k in keys.values()}
        self._stamp = stamp

    def maybe_reload(self) -> None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.reload_interval_s
            self._load()

    def get(self, key_id: str) -> ApiKey | None:
        k = self._keys.get(key_id)
        if k is None:
            # a key created a moment ago (``spotx keys create``) should work at once; re-read the
            # store on a miss, at most every 50 ms so unknown-key floods cost one stat per 50 ms
            now = time.monotonic()
            if now >= self._next_miss_check:
                self._next_miss_check = now + 0.05
                self._load()
                k = self._keys.get(key_id)
        return k

    def mac(self, key_id: str) -> Any:
        """A fresh HMAC-SHA256 object keyed with the key's secret (a copy of a cached one)."""
        return self._macs[key_id].copy()

    def keys(self) -> list[ApiKey]:
        return list(self._keys.values())

    # -- writing ------------------------------------------------------------------------------
    def create(self, account: int, role: str) -> ApiKey:
        if role not in ROLES:
            raise KeyStoreError(f"role must be one of {ROLES}, got {role!r}")
        if not 0 < int(account) < 2**32:
            raise KeyStoreError(f"account must be 1..2^32-1, got {account}")
        self._stamp = None
        self._load()
        key = ApiKey(secrets.token_hex(16), secrets.token_hex(32), int(account), role,
                     time.time_ns() // 1_000_000)
        self._write([*self._keys.values(), key])
        self._stamp = None
        self._load()
        return key

    def revoke(self, key_id: str) -> bool:
        self._stamp = None
        self._load()
        if key_id not in self._keys:
            return False
        self._write([k for k in self._keys.values() if k.key_id != key_id])
        self._stamp = None
        self._load()
        return True

    def _write(self, keys: list[ApiKey]) -> None:
        doc = {"version": 1, "keys": [
            {"apiKey": k.key_id, "secret": k.secret, "account": k.account, "role": k.role,
             "createdMs": k.created_ms} for k in keys]}
        d = self.path.parent
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=d)  # mkstemp creates the file 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class ReplayCache:
    """Bounded set of recently seen signatures; see the module header."""

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._exp: dict[str, int] = {}
        self._fifo: deque[tuple[str, int, int]] = deque()
        self.floor_ms = 0
        self.evicted_live = 0

    def __len__(self) -> int:
        return len(self._exp)

    def check_and_add(self, sig: str, ts_ms: int, expires_ms: int, now_ms: int) -> str | None:
        """None if fresh (and now remembered); ``"replay"`` or ``"floor"`` if refused."""
        fifo, exp = self._fifo, self._exp
        while fifo and fifo[0][2] <= now_ms:
            s, _, e = fifo.popleft()
            if exp.get(s) == e:
                del exp[s]
        if sig in exp:
            return "replay"
        if ts_ms <= self.floor_ms:
            return "floor"
        if len(exp) >= self.max_entries:
            s, t, e = fifo.popleft()
            if exp.get(s) == e:
                del exp[s]
            if e > now_ms:
                self.evicted_live += 1
                if t > self.floor_ms:
                    self.floor_ms = t
        exp[sig] = expires_ms
        fifo.append((sig, ts_ms, expires_ms))
        return None

    def statistics(self) -> dict[str, int]:
        return {"entries": len(self._exp), "max_entries": self.max_entries,
                "floor_ms": self.floor_ms, "evicted_live": self.evicted_live}


class AuthObserver(Protocol):
    def auth_fail(self, reason: str) -> None: ...
    def replay_detected(self) -> None: ...


@dataclasses.dataclass
class AuthStats:
    """Plain counters (the exporter-facing metrics live in edge.metrics)."""

    ok: int = 0
    fail: dict[str, int] = dataclasses.field(default_factory=dict)
    replay_detect_total: int = 0


class Authenticator:
    def __init__(self, store: KeyStore, recv_window_default_ms: int = 5000,
                 recv_window_max_ms: int = 60000, replay: ReplayCache | None = None,
                 clock_ms: Callable[[], int] | None = None,
                 observer: AuthObserver | None = None) -> None:
        self.store = store
        self.window_default = recv_window_default_ms
        self.window_max = recv_window_max_ms
        self.replay = replay or ReplayCache()
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.observer = observer
        self.stats = AuthStats()

    def _fail(self, reason: str, name: str, message: str | None = None) -> ApiError:
        self.stats.fail[reason] = self.stats.fail.get(reason, 0) + 1
        if self.observer is not None:
            self.observer.auth_fail(reason)
        return ApiError(name, message)

    def verify_rest(self, method: str, target: bytes, body: bytes,
                    headers: Mapping[str, str]) -> ApiKey:
        """Authenticate a signed REST request; ``headers`` has lower-case names."""
        key_id = headers.get("x-api-key")
        ts = headers.get("x-timestamp")
        sig = headers.get("x-signature")
        if not key_id or not ts or not sig:
            missing = [h for h, v in (("X-API-KEY", key_id), ("X-TIMESTAMP", ts),
                                      ("X-SIGNATURE", sig)) if not v]
            raise self._fail("missing", "AUTH_MISSING", "missing header " + ", ".join(missing))
        return self._verify(key_id, ts, headers.get("x-recv-window"), sig,
                            ts.encode() + method.encode() + target, body)

    def verify_logon(self, key_id: Any, ts: Any, sig: Any, recv_window: Any = None) -> ApiKey:
        """Authenticate a WS ``session.logon`` (signature over ``timestamp + "session.logon"``)."""
        if isinstance(ts, int) and not isinstance(ts, bool):
            ts = str(ts)
        if isinstance(recv_window, int) and not isinstance(recv_window, bool):
            recv_window = str(recv_window)
        if not key_id or not ts or not sig:
            raise self._fail("missing", "AUTH_MISSING", "session.logon needs apiKey, timestamp, signature")
        if not (isinstance(key_id, str) and isinstance(ts, str) and isinstance(sig, str)
                and (recv_window is None or isinstance(recv_window, str))):
            raise self._fail("missing", "AUTH_MISSING", "apiKey, timestamp, signature must be strings")
        return self._verify(key_id, ts, recv_window, sig, ts.encode() + LOGON_METHOD, b"")

    def _verify(self, key_id: str, ts: str, window_s: str | None, sig: str, head: bytes,
                body: bytes) -> ApiKey:
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 16):
            raise self._fail("timestamp", "AUTH_TIMESTAMP", "X-TIMESTAMP must be integer milliseconds")
        window = self.window_default
        if window_s is not None:
            if not (window_s.isascii() and window_s.isdigit() and len(window_s) <= 9):
                raise self._fail("timestamp", "AUTH_TIMESTAMP", "X-RECV-WINDOW must be integer ms")
            window = int(window_s)
            if not 1 <= window <= self.window_max:
                raise self._fail("timestamp", "AUTH_TIMESTAMP",
                                 f"X-RECV-WINDOW must be 1..{self.window_max} ms")
        self.store.maybe_reload()
        key = self.store.get(key_id)
        if key is None:
            raise self._fail("unknown_key", "AUTH_BAD_SIGNATURE", "unknown API key")
        ts_ms = int(ts)
        now = self.clock_ms()
        if ts_ms > now + FUTURE_TOLERANCE_MS:
            raise self._fail("timestamp", "AUTH_TIMESTAMP",
                             f"timestamp {ts_ms} is ahead of server time {now} by more than 1000 ms")
        if now - ts_ms > window:
            raise self._fail("timestamp", "AUTH_TIMESTAMP",
                             f"timestamp {ts_ms} is older than the {window} ms window (server time {now})")
        mac = self.store.mac(key_id)
        mac.update(head)
        if body:
            mac.update(body)
        expect = mac.hexdigest().encode()
        try:
            got = sig.encode("ascii")
        except UnicodeEncodeError:
            got = b""
        if not hmac.compare_digest(expect, got):
            raise self._fail("signature", "AUTH_BAD_SIGNATURE", "signature does not match")
        # remembered for the *largest* window: X-RECV-WINDOW is not signed, so a replay could
        # otherwise widen its own window past the entry's expiry
        verdict = self.replay.check_and_add(sig, ts_ms, ts_ms + self.window_max + 1, now)
        if verdict == "replay":
            self.stats.replay_detect_total += 1
            if self.observer is not None:
                self.observer.replay_detected()
            raise self._fail("replay", "AUTH_REPLAY", "this signature was already used")
        if verdict == "floor":
            raise self._fail("timestamp", "AUTH_TIMESTAMP",
                             "timestamp too old for the replay guard under load; sign with a fresh timestamp")
        self.stats.ok += 1
        return key

    def require(self, key: ApiKey, need: str) -> None:
        if need not in GRANTS[key.role]:
            raise self._fail("forbidden", "FORBIDDEN",
                             f"API key role {key.role!r} may not call a {need!r} endpoint")


def sign(secret: str, payload: bytes) -> str:
    """Client-side helper (tests, docs, CLI): the lowercase hex signature of ``payload``."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def rest_payload(timestamp: int | str, method: str, target: str, body: bytes = b"") -> bytes:
    return f"{timestamp}{method.upper()}{target}".encode() + body
