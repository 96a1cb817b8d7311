"""REST over a live edge (ephemeral port, in-process engine), with httpx as the client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from edge_live import LiveEdge, signed_headers, start_live_edge, tap_events

from edge.auth import ApiKey
from edge.errors import ERRORS
from pipeline.records import CancelReason, Ev


class Rest:
    def __init__(self, live: LiveEdge) -> None:
        self.live = live
        self.c = httpx.Client(base_url=live.base, timeout=10)

    def get(self, path: str) -> httpx.Response:
        return self.c.get(path)

    def signed(self, key: ApiKey | str, method: str, path: str, params: dict[str, Any] | None = None,
               **kw: Any) -> httpx.Response:
        k = self.live.keys[key] if isinstance(key, str) else key
        body = orjson.dumps(params) if method == "POST" and params is not None else b""
        target = path + ("?" + urlencode(params) if method != "POST" and params else "")
        return self.c.request(method, target, content=body,
                              headers=signed_headers(k, method, target, body, **kw))

    def admin(self, path: str, params: dict[str, Any]) -> httpx.Response:
        return self.signed("admin", "POST", path, {**params, "reason": "test", "ticket": "T-1"})


@pytest.fixture
def rest(live: LiveEdge) -> Iterator[Rest]:
    r = Rest(live)
    yield r
    r.c.close()


def err(resp: httpx.Response, name: str) -> dict[str, Any]:
    body = resp.json()
    assert body["error"] == name, body
    assert resp.status_code == ERRORS[name].status and body["code"] == ERRORS[name].code
    assert isinstance(body["message"], str) and body["message"]
    return body


def fund(rest: Rest) -> None:
    assert rest.admin("/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "100000"}).status_code == 200
    assert rest.admin("/v1/admin/deposits", {"account": 12, "asset": "BTC", "amount": "10"}).status_code == 200


BUY = {"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "60000.00", "quantity": "0.5"}


def test_public_routes(rest: Rest) -> None:
    t = rest.get("/v1/time").json()["serverTime"]
    assert abs(t - time.time_ns() // 1_000_000) < 5000
    syms = {s["symbol"]: s for s in rest.get("/v1/symbols").json()}
    assert syms["BTC-USDT"]["tickSize"] == "0.01" and syms["BTC-USDT"]["mode"] == "NORMAL"
    assert set(syms["BTC-USDT"]) >= {"base", "quote", "lotSize", "minQty", "maxQty", "minNotional",
                                     "maxPrice", "makerFeeBps", "takerFeeBps", "orderTypes",
                                     "timeInForce", "stpModes"}
    assert rest.get("/healthz").json() == {"status": "ok"}
    assert rest.get("/readyz").status_code == 200
    doc = rest.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "post" in doc["paths"]["/v1/orders"]
    assert set(doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]) == set(ERRORS)
    err(rest.get("/v1/nope"), "NOT_FOUND")
    err(rest.c.put("/v1/time"), "METHOD_NOT_ALLOWED")
    err(rest.get("/v1/depth?symbol=BTC-USDT"), "SERVICE_UNAVAILABLE")
    err(rest.get("/v1/time?x=1"), "BAD_REQUEST")


def test_order_lifecycle(rest: Rest) -> None:
    fund(rest)
    r = rest.signed("trade", "POST", "/v1/orders", {**BUY, "clientOrderId": "c-1"})
    assert r.status_code == 200, r.text
    o = r.json()
    assert o["status"] == "NEW" and o["clientOrderId"] == "c-1" and o["price"] == "60000.00"
    assert (o["quantity"], o["executedQty"], o["fills"]) == ("0.5000", "0.0000", [])
    assert r.headers["X-RateLimit-Limit"] == str(rest.live.cfg.edge.weight_per_minute)
    assert int(r.headers["X-RateLimit-Remaining"]) < rest.live.cfg.edge.weight_per_minute
    oid = o["orderId"]
    assert rest.signed("read", "GET", f"/v1/orders/{oid}").json()["status"] == "NEW"
    assert rest.signed("trade", "GET", "/v1/orders", {"clientOrderId": "c-1"}).json()["orderId"] == oid
    assert [x["orderId"] for x in rest.signed("read", "GET", "/v1/orders", {"status": "open"}).json()] == [oid]
    bal = {b["asset"]: b for b in rest.signed("read", "GET", "/v1/balances").json()}
    locked, avail = Decimal(bal["USDT"]["locked"]), Decimal(bal["USDT"]["available"])
    assert locked + avail == 100000 and 30000 <= locked <= 30000 * Decimal("1.001")  # + fee hold
    err(rest.signed("trade", "POST", "/v1/orders", {**BUY, "clientOrderId": "c-1"}),
        "DUPLICATE_CLIENT_ORDER_ID")
    c = rest.signed("trade", "DELETE", f"/v1/orders/{oid}")
    assert c.status_code == 200 and c.json()["status"] == "CANCELED" and c.json()["orderId"] == oid
    err(rest.signed("trade", "DELETE", f"/v1/orders/{oid}"), "UNKNOWN_ORDER")
    err(rest.signed("trade", "GET", "/v1/orders/999999"), "UNKNOWN_ORDER")
    err(rest.signed("trade", "DELETE", "/v1/orders/abc"), "BAD_REQUEST")
    # cancel by clientOrderId, then cancel-all of a symbol
    rest.signed("trade", "POST", "/v1/orders", {**BUY, "clientOrderId": "c-2"})
    c = rest.signed("trade", "DELETE", "/v1/orders", {"symbol": "BTC-USDT", "clientOrderId": "c-2"})
    assert c.json()["status"] == "CANCELED" and c.json()["clientOrderId"] == "c-2"
    ids = [rest.signed("trade", "POST", "/v1/orders", {**BUY, "price": p}).json()["orderId"]
           for p in ("59000.00", "58000.00")]
    c = rest.signed("trade", "DELETE", "/v1/orders", {"symbol": "BTC-USDT"})
    assert sorted(x["orderId"] for x in c.json()) == sorted(ids)
    assert all(x["status"] == "CANCELED" for x in c.json())
    assert rest.signed("trade", "DELETE", "/v1/orders", {"symbol": "BTC-USDT"}).json() == []
    assert rest.signed("read", "GET", "/v1/orders").json() == []
    err(rest.signed("trade", "POST", "/v1/orders", {**BUY, "quantity": "100"}), "INSUFFICIENT_BALANCE")
    err(rest.signed("trade", "POST", "/v1/orders", {**BUY, "price": "60000.001"}), "INVALID_PRICE")
    err(rest.signed("trade", "POST", "/v1/orders", {**BUY, "extra": 1}), "BAD_REQUEST")
    w = rest.signed("trade", "POST", "/v1/withdrawals", {"asset": "USDT", "amount": "100"})
    assert w.json()["status"] == "COMPLETED" and w.json()["amount"] == "100.000000"
    bal = {b["asset"]: b for b in rest.signed("read", "GET", "/v1/balances").json()}
    assert bal["USDT"] == {"asset": "USDT", "available": "99900.000000", "locked": "0.000000"}
    err(rest.signed("trade", "POST", "/v1/withdrawals", {"asset": "USDT", "amount": "1000000"}),
        "INSUFFICIENT_BALANCE")


AUTH_CASES = ["missing_key", "missing_sig", "bad_sig", "unknown_key", "future", "expired",
              "bad_window", "forbidden_read", "forbidden_admin", "forbidden_trade_on_admin"]


@pytest.mark.parametrize("case", AUTH_CASES)
def test_auth_failures(rest: Rest, case: str) -> None:
    k = rest.live.keys["trade"]
    now = time.time_ns() // 1_000_000
    target = "/v1/balances"
    h = signed_headers(k, "GET", target)
    expect = "AUTH_BAD_SIGNATURE"
    if case == "missing_key":
        del h["X-API-KEY"]
        expect = "AUTH_MISSING"
    elif case == "missing_sig":
        del h["X-SIGNATURE"]
        expect = "AUTH_MISSING"
    elif case == "bad_sig":
        h["X-SIGNATURE"] = "0" * 64
    elif case == "unknown_key":
        h["X-API-KEY"] = "not-a-key"
    elif case == "future":
        h = signed_headers(k, "GET", target, ts=now + 3000)
        expect = "AUTH_TIMESTAMP"
    elif case == "expired":
        h = signed_headers(k, "GET", target, ts=now - 10_000)
        expect = "AUTH_TIMESTAMP"
    elif case == "bad_window":
        h = signed_headers(k, "GET", target, window=60_001)
        expect = "AUTH_TIMESTAMP"
    elif case == "forbidden_read":
        body = orjson.dumps(BUY)
        r = rest.c.post("/v1/orders", content=body,
                        headers=signed_headers(rest.live.keys["read"], "POST", "/v1/orders", body))
        err(r, "FORBIDDEN")
        return
    elif case == "forbidden_admin":
        err(rest.signed("admin", "GET", "/v1/balances"), "FORBIDDEN")
        return
    elif case == "forbidden_trade_on_admin":
        err(rest.signed("trade", "POST", "/v1/admin/mode",
                        {"mode": "SOFT_HALT", "reason": "r", "ticket": "t"}), "FORBIDDEN")
        return
    r = rest.c.get(target, headers=h)
    err(r, expect)
    if "X-API-KEY" in h:
        assert "X-RateLimit-Limit" in r.headers and "X-RateLimit-Remaining" in r.headers
    metrics = rest.live.call(lambda: rest.live.edge.metrics.render()).decode()
    assert "auth_fail_total{" in metrics


def test_replay_is_refused_and_counted(rest: Rest) -> None:
    h = signed_headers(rest.live.keys["trade"], "GET", "/v1/balances")
    assert rest.c.get("/v1/balances", headers=h).status_code == 200
    err(rest.c.get("/v1/balances", headers=h), "AUTH_REPLAY")
    m = rest.live.call(lambda: rest.live.edge.metrics.render()).decode()
    assert "replay_detect_total 1.0" in m and 'auth_fail_total{reason="replay"} 1.0' in m
    assert 'api_errors_total{error="AUTH_REPLAY"} 1.0' in m
    assert 'http_request_duration_seconds_count{route="GET /v1/balances"} 2.0' in m


def test_admin_modes_and_audit(rest: Rest) -> None:
    fund(rest)
    live_id = rest.signed("trade", "POST", "/v1/orders", BUY).json()["orderId"]
    r = rest.admin("/v1/admin/symbols/BTC-USDT/mode", {"mode": "CANCEL_ONLY"})
    assert r.status_code == 200 and r.json()["mode"] == "CANCEL_ONLY", r.text
    assert {s["symbol"]: s["mode"] for s in rest.get("/v1/symbols").json()}["BTC-USDT"] == "CANCEL_ONLY"
    err(rest.signed("trade", "POST", "/v1/orders", BUY), "SYMBOL_CANCEL_ONLY")
    assert rest.signed("trade", "DELETE", f"/v1/orders/{live_id}").json()["status"] == "CANCELED"
    rest.admin("/v1/admin/symbols/BTC-USDT/mode", {"mode": "HARD_HALT"})
    err(rest.signed("trade", "POST", "/v1/orders", BUY), "SYMBOL_HALTED")
    rest.admin("/v1/admin/symbols/BTC-USDT/mode", {"mode": "NORMAL"})
    rest.admin("/v1/admin/mode", {"mode": "SOFT_HALT"})
    err(rest.signed("trade", "POST", "/v1/orders", BUY), "MARKET_HALTED")
    rest.admin("/v1/admin/mode", {"mode": "NORMAL"})
    oid = rest.signed("trade", "POST", "/v1/orders", BUY).json()["orderId"]
    events = tap_events(rest.live)
    r = rest.admin("/v1/admin/symbols/BTC-USDT/cancel-all", {})
    assert r.json()["canceled"] == 1
    assert [(e.order_id, e.reason) for e in events if e.kind == Ev.CANCELED] == [
        (oid, CancelReason.ADMIN)]  # an operator's cancel, not the account's own cancel-all
    assert rest.signed("read", "GET", f"/v1/orders/{oid}").json()["status"] == "CANCELED"
    assert rest.admin("/v1/admin/withdrawals/halt", {"on": True}).json()["withdrawalsHalted"] is True
    err(rest.signed("trade", "POST", "/v1/withdrawals", {"asset": "USDT", "amount": "1"}),
        "WITHDRAWALS_HALTED")
    rest.admin("/v1/admin/withdrawals/halt", {"on": False})
    err(rest.signed("admin", "POST", "/v1/admin/mode", {"mode": "SOFT_HALT", "ticket": "t"}), "BAD_REQUEST")
    err(rest.admin("/v1/admin/symbols/NOPE-USDT/mode", {"mode": "NORMAL"}), "UNKNOWN_SYMBOL")
    audit = rest.signed("admin", "GET", "/v1/admin/audit", {"limit": 3}).json()
    assert len(audit) == 3 and audit[0]["action"] == "withdrawals.halt" and audit[0]["on"] is False
    assert audit[0]["actor"] == rest.live.keys["admin"].key_id
    assert audit[0]["reason"] == "test" and audit[0]["ticket"] == "T-1"
    assert audit[0]["seq"] > audit[1]["seq"] > audit[2]["seq"]


def test_rate_limits(tmp_path: Path, loop_impl: str) -> None:
    live, stop = start_live_edge(tmp_path, loop_impl, {"edge.orders_per_second": 2,
                                                        "edge.weight_per_minute": 8})
    rest = Rest(live)
    try:
        codes = [rest.signed("trade", "DELETE", "/v1/orders/1").status_code for _ in range(3)]
        assert codes[:2] == [404, 404] and codes[2] == 429
        r = rest.signed("trade", "DELETE", "/v1/orders/1")
        err(r, "RATE_LIMITED")
        assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-RateLimit-Limit"] == "8"
        for _ in range(6):
            r = rest.signed("read", "GET", "/v1/fills")  # weight 5 of 8/min: the second is refused
        err(r, "RATE_LIMITED")
        assert r.headers["X-RateLimit-Remaining"] == "3"
        m = live.call(lambda: live.edge.metrics.render()).decode()
        kid = live.keys["trade"].key_id
        assert f'rate_limit_drops_total{{key="{kid}",reason="orders"}}' in m
        assert 'reason="weight"' in m
    finally:
        rest.c.close()
        stop()


def test_oversized_body_and_garbage_json(rest: Rest) -> None:
    big = b'{"symbol":"' + b"x" * (rest.live.cfg.edge.max_body_bytes + 10) + b'"}'
    r = rest.c.post("/v1/orders", content=big,
                    headers=signed_headers(rest.live.keys["trade"], "POST", "/v1/orders", big))
    err(r, "PAYLOAD_TOO_LARGE")
    body = b"{not json"
    r = rest.c.post("/v1/orders", content=body,
                    headers=signed_headers(rest.live.keys["trade"], "POST", "/v1/orders", body))
    err(r, "BAD_REQUEST")
    assert rest.get("/healthz").status_code == 200


def test_matching_fills_fees_and_order_types(rest: Rest) -> None:
    fund(rest)
    sell = rest.signed("trade2", "POST", "/v1/orders", {**BUY, "side": "SELL", "quantity": "0.5"}).json()
    assert sell["status"] == "NEW"
    r = rest.signed("trade", "POST", "/v1/orders", {**BUY, "price": "61000.00", "quantity": "0.2",
                                                    "clientOrderId": "taker-1"}).json()
    assert r["status"] == "FILLED" and r["executedQty"] == "0.2000"
    assert r["cumQuoteQty"] == "12000.000000"
    assert r["fills"] == [{"tradeId": r["fills"][0]["tradeId"], "price": "60000.00", "qty": "0.2000",
                           "quoteQty": "12000.000000", "fee": "6.000000", "feeAsset": "USDT",
                           "liquidity": "TAKER"}]  # 5 bps taker fee
    maker = rest.signed("trade2", "GET", f"/v1/orders/{sell['orderId']}").json()
    assert maker["status"] == "PARTIALLY_FILLED" and maker["executedQty"] == "0.2000"
    mf = rest.signed("trade2", "GET", "/v1/fills", {"symbol": "BTC-USDT"}).json()
    assert [(f["liquidity"], f["fee"], f["side"], f["orderId"]) for f in mf] == [
        ("MAKER", "2.400000", "SELL", sell["orderId"])]  # 2 bps maker fee
    assert rest.signed("trade", "GET", "/v1/fills").json()[0]["liquidity"] == "TAKER"
    # MARKET by quantity takes what is there and expires the rest
    m = rest.signed("trade", "POST", "/v1/orders", {"symbol": "BTC-USDT", "side": "BUY",
                                                    "type": "MARKET", "quantity": "0.5"}).json()
    assert (m["status"], m["executedQty"], m["price"]) == ("EXPIRED", "0.3000", None)
    assert rest.signed("trade2", "GET", f"/v1/orders/{sell['orderId']}").json()["status"] == "FILLED"
    # MARKET by quote budget on an empty ask side
    q = rest.signed("trade", "POST", "/v1/orders", {"symbol": "BTC-USDT", "side": "BUY",
                                                    "type": "MARKET", "quoteQuantity": "100"}).json()
    assert (q["status"], q["quantity"], q["quoteQuantity"]) == ("EXPIRED", None, "100.000000")
    # post-only that would cross is refused; FOK that cannot fill completely expires
    bid = rest.signed("trade", "POST", "/v1/orders", {**BUY, "price": "70000.00", "quantity": "0.01",
                                                      "postOnly": True}).json()
    assert bid["status"] == "NEW" and bid["postOnly"] is True
    err(rest.signed("trade2", "POST", "/v1/orders", {**BUY, "side": "SELL", "price": "65000.00",
                                                     "postOnly": True}), "WOULD_TAKE")
    fok = rest.signed("trade2", "POST", "/v1/orders", {**BUY, "side": "SELL", "price": "69000.00",
                                                       "quantity": "1", "timeInForce": "FOK"}).json()
    assert fok["status"] == "EXPIRED" and fok["executedQty"] == "0.0000" and fok["fills"] == []
    ioc = rest.signed("trade2", "POST", "/v1/orders", {**BUY, "side": "SELL", "price": "69000.00",
                                                       "quantity": "1", "timeInForce": "IOC"}).json()
    assert (ioc["status"], ioc["executedQty"]) == ("EXPIRED", "0.0100")
    assert ioc["fills"][0]["price"] == "70000.00" and ioc["fills"][0]["liquidity"] == "TAKER"
