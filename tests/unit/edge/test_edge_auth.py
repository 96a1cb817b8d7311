import json
import os
import stat
from pathlib import Path

import pytest

from edge.auth import (
    ApiKey,
    Authenticator,
    KeyStore,
    KeyStoreError,
    ReplayCache,
    rest_payload,
    sign,
)
from edge.errors import ApiError

# Worked example published in docs/API.md ("Signing, worked example"); keep them in sync.
DOC_SECRET = "7f3c0a9d5e2b4c6a8f1d3e5b7a9c0e2f4a6b8d0c2e4f6a8b0d2c4e6f8a0b2c4d"
DOC_TS = 1767225600000
DOC_TARGET = "/v1/orders"
DOC_BODY = (b'{"symbol":"BTC-USDT","side":"BUY","type":"LIMIT","timeInForce":"GTC",'
            b'"price":"65000.00","quantity":"0.0100","clientOrderId":"mm-1"}')
DOC_SIGNATURE = "e3489a4c13eb7b4dc484f3d21a446f7d36cd3e055cf599aaabe49d108188695c"
DOC_LOGON_SIGNATURE = "6528be08b47d0b7fda6cb36a2e9c6da259c0cd0ba12298114b8d3e5666369ec9"


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.json")


def headers(key: ApiKey, ts: int, method: str, target: str, body: bytes = b"",
            window: int | None = None) -> dict[str, str]:
    h = {"x-api-key": key.key_id, "x-timestamp": str(ts),
         "x-signature": sign(key.secret, rest_payload(ts, method, target, body))}
    if window is not None:
        h["x-recv-window"] = str(window)
    return h


def test_doc_signing_vector() -> None:
    payload = rest_payload(DOC_TS, "POST", DOC_TARGET, DOC_BODY)
    assert payload.startswith(b"1767225600000POST/v1/orders{")
    assert sign(DOC_SECRET, payload) == DOC_SIGNATURE
    assert sign(DOC_SECRET, b"1767225600000session.logon") == DOC_LOGON_SIGNATURE


def test_doc_vector_is_in_docs() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "API.md").read_text()
    for s in (DOC_SECRET, str(DOC_TS), DOC_SIGNATURE, DOC_LOGON_SIGNATURE, DOC_BODY.decode()):
        assert s in doc


def test_keystore_create_is_atomic_0600_and_reloads(tmp_path: Path, store: KeyStore) -> None:
    k = store.create(account=7, role="trade")
    assert store.get(k.key_id) == k and "secret" not in repr(k).lower().replace("secret=", "")
    assert k.secret not in repr(k)
    p = tmp_path / "keys.json"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert [f.name for f in tmp_path.iterdir()] == ["keys.json"]  # no temp file left
    doc = json.loads(p.read_text())
    assert doc["keys"][0]["apiKey"] == k.key_id and doc["keys"][0]["account"] == 7
    other = KeyStore(p, reload_interval_s=0.0)
    k2 = KeyStore(p).create(account=8, role="read")  # another process adds a key
    other.maybe_reload()
    assert other.get(k2.key_id) is not None and other.get(k.key_id) is not None
    assert store.revoke(k.key_id) and not store.revoke(k.key_id)
    assert store.get(k.key_id) is None


def test_keystore_rejects_bad_input(tmp_path: Path, store: KeyStore) -> None:
    with pytest.raises(KeyStoreError):
        store.create(account=1, role="god")
    with pytest.raises(KeyStoreError):
        store.create(account=0, role="read")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyStoreError):
        KeyStore(tmp_path / "bad.json")


def test_roles() -> None:
    mk = lambda r: ApiKey("k", "s", 1, r)  # noqa: E731
    assert mk("trade").allows("trade") and mk("trade").allows("read")
    assert mk("read").allows("read") and not mk("read").allows("trade")
    assert mk("admin").allows("admin") and not mk("admin").allows("trade")
    assert not mk("admin").allows("read") and not mk("trade").allows("admin")


def fail(fn, *a):  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as ei:
        fn(*a)
    return ei.value.name


def test_verify_rest_success_and_every_failure_kind(store: KeyStore) -> None:
    k = store.create(account=3, role="trade")
    clock = Clock(1_000_000)
    auth = Authenticator(store, clock_ms=clock)
    body = b'{"a":1}'
    h = headers(k, clock.ms, "POST", "/v1/orders?x=1", body)
    assert auth.verify_rest("POST", b"/v1/orders?x=1", body, h) == k
    assert fail(auth.verify_rest, "POST", b"/v1/orders?x=1", body, h) == "AUTH_REPLAY"
    assert auth.stats.replay_detect_total == 1
    for drop in ("x-api-key", "x-timestamp", "x-signature"):
        h2 = headers(k, clock.ms + 1, "GET", "/v1/balances")
        del h2[drop]
        assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", h2) == "AUTH_MISSING"
    h2 = headers(k, clock.ms + 2, "GET", "/v1/balances")
    assert fail(auth.verify_rest, "GET", b"/v1/balances?", b"", h2) == "AUTH_BAD_SIGNATURE"
    assert fail(auth.verify_rest, "POST", b"/v1/balances", b"", h2) == "AUTH_BAD_SIGNATURE"
    h2["x-api-key"] = "nope"
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", h2) == "AUTH_BAD_SIGNATURE"
    h3 = headers(k, clock.ms + 3, "GET", "/v1/balances")
    h3["x-signature"] = h3["x-signature"].upper()  # lowercase hex only
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", h3) == "AUTH_BAD_SIGNATURE"
    h3["x-signature"] = "é" * 64
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", h3) == "AUTH_BAD_SIGNATURE"
    # timestamp window: 1 s into the future is fine, more is not; older than the window is not
    ok_future = headers(k, clock.ms + 1000, "GET", "/v1/balances")
    assert auth.verify_rest("GET", b"/v1/balances", b"", ok_future) == k
    future = headers(k, clock.ms + 1001, "GET", "/v1/balances")
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", future) == "AUTH_TIMESTAMP"
    old = headers(k, clock.ms - 5001, "GET", "/v1/balances")
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", old) == "AUTH_TIMESTAMP"
    old_wide = headers(k, clock.ms - 5001, "GET", "/v1/balances", window=6000)
    assert auth.verify_rest("GET", b"/v1/balances", b"", old_wide) == k
    for w in ("0", "60001", "abc", "-1"):
        hw = headers(k, clock.ms, "GET", "/v1/balances")
        hw["x-recv-window"] = w
        assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", hw) == "AUTH_TIMESTAMP"
    hx = headers(k, clock.ms, "GET", "/v1/balances")
    hx["x-timestamp"] = "12.5"
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", hx) == "AUTH_TIMESTAMP"
    assert fail(auth.require, ApiKey("a", "b", 1, "read"), "trade") == "FORBIDDEN"
    assert set(auth.stats.fail) == {"replay", "missing", "signature", "unknown_key", "timestamp",
                                    "forbidden"}


def test_replay_with_a_widened_window_is_still_a_replay(store: KeyStore) -> None:
    k = store.create(account=3, role="trade")
    clock = Clock(1_000_000)
    auth = Authenticator(store, clock_ms=clock)
    h = headers(k, clock.ms, "GET", "/v1/balances")
    assert auth.verify_rest("GET", b"/v1/balances", b"", h) == k
    clock.ms += 30_000  # the original 5 s window is long gone; the attacker claims 60 s
    h["x-recv-window"] = "60000"
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", h) == "AUTH_REPLAY"
    clock.ms += 30_001
    assert fail(auth.verify_rest, "GET", b"/v1/balances", b"", h) == "AUTH_TIMESTAMP"


def test_logon(store: KeyStore) -> None:
    k = store.create(account=5, role="read")
    clock = Clock(2_000_000)
    auth = Authenticator(store, clock_ms=clock)
    sig = sign(k.secret, f"{clock.ms}session.logon".encode())
    assert auth.verify_logon(k.key_id, clock.ms, sig) == k
    assert fail(auth.verify_logon, k.key_id, clock.ms, sig) == "AUTH_REPLAY"
    assert fail(auth.verify_logon, k.key_id, str(clock.ms + 1), sig) == "AUTH_BAD_SIGNATURE"
    assert fail(auth.verify_logon, k.key_id, None, sig) == "AUTH_MISSING"
    assert fail(auth.verify_logon, 5, clock.ms, sig) == "AUTH_MISSING"


def test_replay_cache_expires_and_stays_bounded() -> None:
    c = ReplayCache(max_entries=3)
    assert c.check_and_add("a", 100, 200, 100) is None
    assert c.check_and_add("a", 100, 200, 150) == "replay"
    assert c.check_and_add("a", 100, 200, 200) is None  # expired: forgotten (timestamp check rejects it anyway)
    for i, s in enumerate("bcde"):
        assert c.check_and_add(s, 300 + i, 10_000, 300) is None
    assert len(c) == 3 and c.evicted_live >= 1
    # evicted before expiry: anything signed at or before the evicted timestamp is refused
    assert c.floor_ms >= 300
    assert c.check_and_add("zz", c.floor_ms, 10_000, 301) == "floor"
    assert c.check_and_add("yy", c.floor_ms + 1, 10_000, 301) is None
    assert c.statistics()["entries"] == 3


def test_replay_cache_never_accepts_a_replay_under_pressure() -> None:
    c = ReplayCache(max_entries=50)
    seen: list[tuple[str, int]] = []
    now = 0
    for i in range(2000):
        now += 1
        sig = f"s{i}"
        assert c.check_and_add(sig, now, now + 500, now) is None
        seen.append((sig, now))
        old_sig, old_ts = seen[i // 2]
        if now - old_ts <= 500:  # still inside its window: must be refused
            assert c.check_and_add(old_sig, old_ts, old_ts + 500, now) in ("replay", "floor")
        assert len(c) <= 50
