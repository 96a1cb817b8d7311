"""Garbage at the live REST and WS servers: the server stays up, every answer is a well-formed API
error from the table, and the engine never sees a command (state hash and seq unchanged).

Every generated request is invalid by construction (a mutation that validation must refuse), so a
single command reaching the engine is a bug, not noise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from edge_live import LiveEdge, signed_headers, start_live_edge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from edge.auth import sign
from edge.errors import ERRORS
from edge.schema import PLACE

VALID = {"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "price": "60000.00", "quantity": "0.01", "postOnly": False, "clientOrderId": "fz-1",
         "stp": "EXPIRE_TAKER"}
REQUIRED = [f.name for f in PLACE if f.required]
FIELDS = [f.name for f in PLACE]
DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,8})?")
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

json_scalars = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.booleans(),
                         st.text(max_size=20))
wrong_type = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.booleans(),
                       st.lists(json_scalars, max_size=3), st.dictionaries(st.text(max_size=5), json_scalars, max_size=2))
bad_decimal = st.one_of(
    st.text(max_size=30).filter(lambda s: not DECIMAL.fullmatch(s)),
    st.integers(10**16, 10**40).map(str),  # far beyond any limit
    st.sampled_from(["1e5", "-1", "+1", " 1", "1 ", "0x10", "NaN", "Infinity", "1_0", ".5", "5.",
                     "60000.001", "0.000001", "0", "0.00"]))


@st.composite
def bad_orders(draw: st.DrawFn) -> dict[str, Any]:
    o = dict(VALID)
    kind = draw(st.sampled_from(["drop", "unknown", "type", "decimal", "enum", "cid", "combo"]))
    if kind == "drop":
        del o[draw(st.sampled_from(REQUIRED))]
    elif kind == "unknown":
        o[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS))] = draw(json_scalars)
    elif kind == "type":
        f = draw(st.sampled_from(FIELDS))
        v = draw(wrong_type)
        if f == "postOnly" and isinstance(v, bool):
            v = "yes"
        o[f] = v
    elif kind == "decimal":
        o[draw(st.sampled_from(["price", "quantity"]))] = draw(bad_decimal)
    elif kind == "enum":
        f = draw(st.sampled_from(["side", "type", "timeInForce", "stp", "symbol"]))
        o[f] = draw(st.text(max_size=12).filter(lambda s: s not in ("BUY", "SELL", "LIMIT", "MARKET",
                                                                     "GTC", "IOC", "FOK", "EXPIRE_TAKER",
                                                                     "EXPIRE_MAKER", "EXPIRE_BOTH",
                                                                     "NONE", "BTC-USDT", "ETH-USDT",
                                                                     "SMK-USDT")))
    elif kind == "cid":
        o["clientOrderId"] = draw(st.one_of(st.just(""), st.text(min_size=37, max_size=60),
                                            st.text(min_size=1, max_size=10).filter(
                                                lambda s: not re.fullmatch(r"[A-Za-z0-9_-]+", s))))
    else:
        o = {**o, "type": "MARKET", "quoteQuantity": "10"}  # price + quoteQuantity together
    return o


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def fuzz_live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEdge]:
    live, stop = start_live_edge(tmp_path_factory.mktemp("fuzz"), request.param)
    live.baseline = live.state()  # type: ignore[attr-defined]
    live.http = httpx.Client(base_url=live.base, timeout=10)  # type: ignore[attr-defined]
    try:
        yield live
    finally:
        live.http.close()  # type: ignore[attr-defined]
        stop()


def check_error(status: int, body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"code", "error", "message"}, body
    spec = ERRORS[body["error"]]
    assert (spec.code, spec.status) == (body["code"], status), body
    assert isinstance(body["message"], str) and body["message"]
    assert status < 500, body  # garbage is answered as bad input, never as an unknown outcome


def unchanged(live: LiveEdge) -> None:
    assert live.state() == live.baseline  # type: ignore[attr-defined]


@SETTINGS
@given(order=bad_orders(), raw=st.one_of(st.none(), st.binary(max_size=200)),
       oversize=st.integers(0, 12))
def test_rest_garbage(fuzz_live: LiveEdge, order: dict[str, Any], raw: bytes | None,
                      oversize: int) -> None:
    live = fuzz_live
    body = raw if raw is not None else orjson.dumps(order, option=orjson.OPT_NON_STR_KEYS)
    if oversize == 0:
        body = b'{"symbol":"' + b"A" * live.cfg.edge.max_body_bytes + b'"}'
    headers = signed_headers(live.keys["trade"], "POST", "/v1/orders", body)
    r = live.http.post("/v1/orders", content=body, headers=headers)  # type: ignore[attr-defined]
    check_error(r.status_code, r.json())
    assert "X-RateLimit-Limit" in r.headers
    unchanged(live)


@SETTINGS
@given(path=st.sampled_from(["/v1/orders", "/v1/orders/1", "/v1/fills", "/v1/balances",
                             "/v1/admin/audit", "/v1/orders/x", "/v1/zz", "/v1/admin/mode"]),
       method=st.sampled_from(["GET", "DELETE", "POST", "PUT", "PATCH"]),
       query=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), min_size=1,
                             max_size=3),
       headers=st.dictionaries(st.sampled_from(["X-API-KEY", "X-TIMESTAMP", "X-SIGNATURE",
                                                "X-RECV-WINDOW"]),
                               st.text(alphabet="abcdef0123456789-x.", max_size=70), max_size=4))
def test_rest_garbage_queries_and_headers(fuzz_live: LiveEdge, path: str, method: str,
                                          query: dict[str, str], headers: dict[str, str]) -> None:
    live = fuzz_live
    q = httpx.QueryParams(query)
    target = f"{path}?{q}"
    if headers:
        h = headers
    else:
        h = signed_headers(live.keys["trade"], method, target)
        query_names = set(query)
        if method == "DELETE" and path == "/v1/orders" and query_names <= {"symbol"}:
            return  # could be a valid cancel-all; not garbage
    r = live.http.request(method, target, headers=h)  # type: ignore[attr-defined]
    check_error(r.status_code, r.json())
    unchanged(live)


def _logon(c: Any, live: LiveEdge) -> None:
    import time

    k = live.keys["trade"]
    ts = time.time_ns() // 1_000_000
    c.send(orjson.dumps({"id": 0, "method": "session.logon", "params": {
        "apiKey": k.key_id, "timestamp": ts, "signature": sign(k.secret, f"{ts}session.logon".encode())}}).decode())
    assert orjson.loads(c.recv(timeout=5))["status"] == 200


@settings(SETTINGS, max_examples=40)
@given(frames=st.lists(st.one_of(
    st.binary(max_size=100),
    st.text(max_size=100),
    bad_orders().map(lambda o: orjson.dumps({"id": 1, "method": "order.place", "params": o},
                                            option=orjson.OPT_NON_STR_KEYS)),
    st.builds(lambda m, p: orjson.dumps({"id": "x", "method": m, "params": p}),
              st.sampled_from(["order.cancel", "order.status", "orders.open", "orders.cancelAll",
                               "balances.get", "session.cancelOnDisconnect", "nope"]),
              st.dictionaries(st.text(min_size=1, max_size=6), wrong_type, min_size=1, max_size=2)),
    st.builds(lambda i: orjson.dumps({"id": i, "method": "order.place"}),
              st.one_of(st.lists(st.integers(), max_size=2), st.floats(), st.text(min_size=65, max_size=70)))),
    min_size=1, max_size=6))
def test_ws_garbage(fuzz_live: LiveEdge, frames: list[bytes | str]) -> None:
    live = fuzz_live
    with connect(live.ws_url, open_timeout=5, max_size=2**22) as c:
        _logon(c, live)
        for f in frames:
            c.send(f)
            m = orjson.loads(c.recv(timeout=5))
            if "type" in m:
                pytest.fail(f"a private event means state changed: {m}")
            assert set(m) <= {"id", "status", "error", "retryAfter"}, m
            check_error(m["status"], m["error"])
        c.send("y" * (live.cfg.edge.max_frame_bytes + 1))  # oversized: this socket is closed
        with pytest.raises(ConnectionClosed):
            c.recv(timeout=5)
    unchanged(live)
    assert httpx.get(live.base + "/healthz", timeout=5).status_code == 200
