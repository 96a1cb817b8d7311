"""WS order entry over a live edge (picows server, in-process engine), websockets as the client."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from edge_live import LiveEdge, signed_headers, start_live_edge, tap_events
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from edge.auth import sign
from edge.errors import ERRORS
from pipeline.records import CancelReason, Ev

BUY = {"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "60000.00", "quantity": "0.01"}
_ts = [0]


def fresh_ts() -> int:
    _ts[0] = max(time.time_ns() // 1_000_000, _ts[0] + 1)
    return _ts[0]


def admin(live: LiveEdge, path: str, params: dict[str, Any]) -> dict[str, Any]:
    body = orjson.dumps({**params, "reason": "test", "ticket": "T-1"})
    r = httpx.post(live.base + path, content=body,
                   headers=signed_headers(live.keys["admin"], "POST", path, body), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def signed_get(live: LiveEdge, key: str, target: str) -> Any:
    r = httpx.get(live.base + target, headers=signed_headers(live.keys[key], "GET", target), timeout=10)
    return r.json()


class Ws:
    def __init__(self, live: LiveEdge) -> None:
        self.c: ClientConnection = connect(live.ws_url, open_timeout=5, max_size=2**22).__enter__()
        self.events: list[dict[str, Any]] = []
        self.live = live

    def send(self, rid: Any, method: str, params: Any = None) -> None:
        msg: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.c.send(orjson.dumps(msg).decode())

    def recv(self) -> dict[str, Any]:
        """The next response (private events are collected on the side)."""
        while True:
            m = orjson.loads(self.c.recv(timeout=5))
            if "type" in m and "id" not in m:
                self.events.append(m)
                continue
            return m

    def call(self, rid: Any, method: str, params: Any = None) -> dict[str, Any]:
        self.send(rid, method, params)
        r = self.recv()
        assert r["id"] == rid
        return r

    def logon(self, key: str = "trade") -> dict[str, Any]:
        k = self.live.keys[key]
        ts = fresh_ts()
        return self.call("logon", "session.logon", {"apiKey": k.key_id, "timestamp": ts,
                                                    "signature": sign(k.secret, f"{ts}session.logon".encode())})


def is_error(r: dict[str, Any], name: str) -> None:
    assert r["error"]["error"] == name, r
    assert r["status"] == ERRORS[name].status and r["error"]["code"] == ERRORS[name].code


def test_session_in_order_responses_and_private_events(live: LiveEdge) -> None:
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "100000"})
    ws = Ws(live)
    is_error(ws.call(1, "order.place", BUY), "AUTH_MISSING")
    r = ws.logon()
    assert r["status"] == 200 and r["result"]["account"] == 11
    is_error(ws.logon(), "BAD_REQUEST")  # already logged on
    n = 20
    for i in range(n):  # many in flight at once, then reads that must see them (read-your-writes)
        ws.send(i if i % 2 else f"p{i}", "order.place", {**BUY, "clientOrderId": f"w{i}"})
    ws.send("st", "order.status", {"clientOrderId": "w19"})
    ws.send("open", "orders.open", {"symbol": "BTC-USDT"})
    ws.send("bal", "balances.get")
    got = [ws.recv() for _ in range(n + 3)]
    assert [g["id"] for g in got] == [i if i % 2 else f"p{i}" for i in range(n)] + ["st", "open", "bal"]
    assert all(g["status"] == 200 and g["result"]["status"] == "NEW" for g in got[:n])
    assert got[n]["result"]["clientOrderId"] == "w19" and got[n]["result"]["status"] == "NEW"
    assert len(got[n + 1]["result"]) == n
    usdt = next(b for b in got[n + 2]["result"] if b["asset"] == "USDT")
    assert 600 * n <= Decimal(usdt["locked"]) <= 600 * n * Decimal("1.001")  # notional + fee hold
    oid = got[0]["result"]["orderId"]
    r = ws.call("c", "order.cancel", {"orderId": oid})
    assert r["result"]["status"] == "CANCELED"
    is_error(ws.call("c2", "order.cancel", {"orderId": oid}), "UNKNOWN_ORDER")
    r = ws.call("ca", "orders.cancelAll", {"symbol": "BTC-USDT"})
    assert len(r["result"]) == n - 1
    assert ws.call("o2", "orders.open", {})["result"] == []
    deadline = time.monotonic() + 5
    while sum(1 for e in ws.events if e["type"] == "OrderUpdate" and e["status"] == "CANCELED") < n:
        assert time.monotonic() < deadline, ws.events[-3:]
        ws.c.send(orjson.dumps({"id": "ping", "method": "balances.get"}).decode())
        ws.recv()
    news = [e for e in ws.events if e["type"] == "OrderUpdate" and e["status"] == "NEW"]
    assert len(news) == n and news[0]["orderType"] == "LIMIT" and news[0]["lastFill"] is None
    assert any(e["type"] == "BalanceUpdate" and e["asset"] == "USDT" for e in ws.events)
    ws.c.close()


def test_malformed_messages_get_error_responses(live: LiveEdge) -> None:
    ws = Ws(live)
    for raw, rid, name in [("{nope", None, "BAD_REQUEST"), ("[1,2]", None, "BAD_REQUEST"),
                           ('{"id":[1],"method":"order.place"}', None, "BAD_REQUEST"),
                           ('{"id":7,"method":"order.fly"}', 7, "BAD_REQUEST"),
                           ('{"id":8,"method":"balances.get","extra":1}', 8, "BAD_REQUEST"),
                           ('{"id":9,"method":"session.logon","params":{"apiKey":1}}', 9, "BAD_REQUEST"),
                           ('{"id":10,"method":"session.logon","params":{"apiKey":"x",'
                            '"timestamp":1,"signature":"y"}}', 10, "AUTH_BAD_SIGNATURE")]:
        ws.c.send(raw)
        r = ws.recv()
        assert r["id"] == rid
        is_error(r, name)
    ws.logon()
    is_error(ws.call(11, "order.place", {**BUY, "price": 1}), "BAD_REQUEST")
    is_error(ws.call(12, "order.place", {**BUY, "quantity": "0.00001"}), "INVALID_QUANTITY")
    is_error(ws.call(13, "order.place", "notadict"), "BAD_REQUEST")
    is_error(ws.call(14, "order.status", {"orderId": 12345}), "UNKNOWN_ORDER")
    ws.c.send(b'{"id":15,"method":"balances.get"}')  # binary frames are accepted too
    assert ws.recv()["status"] == 200
    # an oversized frame closes this socket (1009); the server stays up for others
    ws.c.send("x" * (live.cfg.edge.max_frame_bytes + 1))
    with pytest.raises(ConnectionClosed) as ei:
        ws.recv()
    assert ei.value.rcvd is not None and ei.value.rcvd.code == 1009
    ws2 = Ws(live)
    assert ws2.logon()["status"] == 200
    ws2.c.close()


def test_read_key_cannot_trade_and_admin_key_cannot_read(live: LiveEdge) -> None:
    ws = Ws(live)
    ws.logon("read")
    is_error(ws.call(1, "order.place", BUY), "FORBIDDEN")
    assert ws.call(2, "balances.get")["status"] == 200
    ws.c.close()
    ws = Ws(live)
    ws.logon("admin")
    is_error(ws.call(1, "balances.get"), "FORBIDDEN")
    ws.c.close()


@pytest.mark.parametrize("enabled", [True, False])
def test_cancel_on_disconnect(live: LiveEdge, enabled: bool) -> None:
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "100000"})
    other = Ws(live)  # another session of the same account: its order must survive
    other.logon()
    keep = other.call("k", "order.place", BUY)["result"]["orderId"]
    events = tap_events(live)
    ws = Ws(live)
    ws.logon()
    assert ws.call(1, "session.cancelOnDisconnect", {"enabled": enabled})["result"] == {
        "cancelOnDisconnect": enabled}
    for i in range(3):
        ws.send(i, "order.place", BUY)
    ids = [ws.recv()["result"]["orderId"] for _ in range(3)]
    ws.send(9, "order.place", BUY)  # in flight when the socket drops
    ws.c.close()
    deadline = time.monotonic() + 5
    while True:
        open_ids = {o["orderId"] for o in signed_get(live, "read", "/v1/orders")}
        if not enabled or not (open_ids & set(ids)) and len(open_ids) == 1:
            break
        assert time.monotonic() < deadline, open_ids
        time.sleep(0.02)
    if enabled:
        assert open_ids == {keep}
        canceled = {e.order_id: e.reason for e in events if e.kind == Ev.CANCELED}
        assert set(ids) <= canceled.keys() and len(canceled) == 4  # + the one in flight
        assert set(canceled.values()) == {CancelReason.DISCONNECT}
    else:
        time.sleep(0.1)
        open_ids = {o["orderId"] for o in signed_get(live, "read", "/v1/orders")}
        assert set(ids) | {keep} <= open_ids
    other.c.close()


def test_a_session_forgets_the_orders_it_canceled(live: LiveEdge) -> None:
    """Cancel-on-disconnect keeps this session's open orders; an order it canceled itself leaves
    that set at once (not at the next prune), and one still open stays."""
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "100000"})
    ws = Ws(live)
    ws.logon()
    a = ws.call("a", "order.place", {**BUY, "price": "100.00"})["result"]["orderId"]
    b = ws.call("b", "order.place", {**BUY, "price": "101.00"})["result"]["orderId"]

    def placed() -> set[int]:
        (sess,) = [s for s in live.edge.ws.sessions.values() if s.key is not None
                   and (a in s.placed or b in s.placed)]
        return set(sess.placed)

    assert {a, b} <= live.call(placed)
    assert ws.call("c", "order.cancel", {"symbol": "BTC-USDT", "orderId": a})["status"] == 200
    got = live.call(placed)
    assert a not in got and b in got
    ws.c.close()


def test_message_rate_limit_and_logon_timeout(tmp_path: Path, loop_impl: str) -> None:
    # the limits come from [edge] config keys, as in the stack (edge.app.ws_options)
    live, stop = start_live_edge(tmp_path, loop_impl, {"edge.ws_messages_per_second": 5,
                                                       "edge.ws_logon_timeout_s": 1})
    assert live.edge.ws.max_inflight == 256 and live.edge.ws.logon_timeout_s == 1.0
    try:
        ws = Ws(live)
        for i in range(8):
            ws.send(i, "balances.get")
        got = [ws.recv() for _ in range(8)]
        assert [g["id"] for g in got] == list(range(8))
        assert [g["error"]["error"] for g in got] == ["AUTH_MISSING"] * 5 + ["RATE_LIMITED"] * 3
        assert got[5]["status"] == 429 and got[5]["retryAfter"] >= 1
        with pytest.raises(ConnectionClosed) as ei:  # never logged on: closed after 1 s
            ws.recv()
        assert ei.value.rcvd is not None and ei.value.rcvd.code == 1008
        m = live.call(lambda: live.edge.metrics.render()).decode()
        assert 'rate_limit_drops_total{key="-",reason="ws_messages"} 3.0' in m
    finally:
        stop()


def test_maker_gets_order_update_with_last_fill(live: LiveEdge) -> None:
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "100000"})
    admin(live, "/v1/admin/deposits", {"account": 12, "asset": "BTC", "amount": "1"})
    ws = Ws(live)
    ws.logon()
    oid = ws.call(1, "order.place", {**BUY, "quantity": "0.5"})["result"]["orderId"]
    body = orjson.dumps({**BUY, "side": "SELL", "quantity": "0.2"})
    r = httpx.post(live.base + "/v1/orders", content=body, timeout=10,
                   headers=signed_headers(live.keys["trade2"], "POST", "/v1/orders", body))
    assert r.json()["status"] == "FILLED"
    deadline = time.monotonic() + 5
    while not any(e.get("lastFill") for e in ws.events):
        assert time.monotonic() < deadline
        ws.call("b", "balances.get")
    upd = next(e for e in ws.events if e.get("lastFill"))
    assert upd["orderId"] == oid and upd["status"] == "PARTIALLY_FILLED"
    assert upd["executedQty"] == "0.2000" and upd["lastFill"]["liquidity"] == "MAKER"
    assert upd["lastFill"]["fee"] == "2.400000" and upd["lastFill"]["qty"] == "0.2000"
    assert any(e["type"] == "BalanceUpdate" and e["asset"] == "BTC" and e["available"] == "0.20000000"
               for e in ws.events)
    ws.c.close()


def test_inflight_cap_and_ping_idle(tmp_path: Path, loop_impl: str) -> None:
    import socket

    live, stop = start_live_edge(tmp_path, loop_impl, max_inflight=4, ping_idle_s=0.2,
                                 ping_reply_s=0.2)
    try:
        admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "100000"})
        ws = Ws(live)
        ws.logon()
        for i in range(40):  # 10x the cap: reading pauses and resumes, nothing is lost or reordered
            ws.send(i, "order.place" if i % 3 else "orders.open", BUY if i % 3 else {})
        got = [ws.recv() for _ in range(40)]
        assert [g["id"] for g in got] == list(range(40)) and all(g["status"] == 200 for g in got)
        time.sleep(0.8)  # idle well past ping_idle + ping_reply: websockets answers the pings
        assert ws.call("after", "balances.get")["status"] == 200
        ws.c.close()
        m = live.call(lambda: live.edge.metrics.render()).decode()
        assert 'ws_request_duration_seconds_count{method="order.place"} 26.0' in m
        # a peer that never answers pings is dropped
        s = socket.create_connection(("127.0.0.1", live.edge.ws_port), timeout=5)
        s.sendall(b"GET /v1/ws/trade HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 101") and time.monotonic() - t0 < 3
        s.close()
    finally:
        stop()


def test_a_gateway_that_cannot_take_a_command_at_once_falls_back_in_order(live: LiveEdge) -> None:
    """``send`` returning False (inbound ring full) makes the session wait for room through
    ``submit``; answers still come back in request order, with the right results."""
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "100000"})
    svc = live.edge.service
    gw = svc.gw
    calls = [0]

    class EveryOtherRefused:  # the real gateway, whose send() refuses every other command
        def __getattr__(self, name: str) -> Any:
            return getattr(gw, name)

        def send(self, cmd: Any, slot: int, done: Any) -> bool:
            calls[0] += 1
            return False if calls[0] % 2 else gw.send(cmd, slot, done)

    svc.gw = EveryOtherRefused()  # type: ignore[assignment]
    try:
        ws = Ws(live)
        ws.logon()
        for i in range(6):
            ws.send(i, "order.place", {**BUY, "clientOrderId": f"fb-{i}"})
        placed = [ws.recv() for _ in range(6)]
        assert [p["id"] for p in placed] == list(range(6))
        assert [p["result"]["clientOrderId"] for p in placed] == [f"fb-{i}" for i in range(6)]
        for i, p in enumerate(placed):
            ws.send(10 + i, "order.cancel", {"orderId": p["result"]["orderId"]})
        canceled = [ws.recv() for _ in range(6)]
        assert [c["id"] for c in canceled] == list(range(10, 16))
        assert {c["result"]["status"] for c in canceled} == {"CANCELED"}
        assert calls[0] == 12
        ws.c.close()
    finally:
        svc.gw = gw


def test_frames_of_every_length_class_arrive_whole_and_in_order(live: LiveEdge) -> None:
    """Output is written as pre-built frames, coalesced per loop iteration: short (< 126 B),
    16-bit (< 64 KiB) and 64-bit length headers must all parse, in request order."""
    from edge.ws_trade import _frame_header

    assert _frame_header(125) == b"\x81\x7d" and _frame_header(126) == b"\x81\x7e\x00\x7e"
    assert _frame_header(65535) == b"\x81\x7e\xff\xff"
    assert _frame_header(65536) == b"\x81\x7f" + (65536).to_bytes(8, "big")
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "10000000"})
    ws = Ws(live)
    ws.logon()
    n = 260  # orders.open of all of them is > 64 KiB of JSON
    for i in range(n):
        ws.send(i, "order.place", {**BUY, "price": f"{50000 + i}.00", "clientOrderId": f"len-{i}"})
    ws.send("small", "balances.get")
    ws.send("big", "orders.open", {"symbol": "BTC-USDT"})
    got = [ws.recv() for _ in range(n + 2)]
    assert [g["id"] for g in got] == [*range(n), "small", "big"]
    assert all(g["status"] == 200 for g in got)
    big = got[-1]["result"]
    assert len(orjson.dumps(big)) > 65536 and len(big) == n
    assert {o["clientOrderId"] for o in big} == {f"len-{i}" for i in range(n)}
    assert len(ws.events) > 0  # pushes interleaved with responses parsed as well
    ws.c.close()


def test_fragmented_messages_are_reassembled_between_whole_ones(live: LiveEdge) -> None:
    """A message in several frames (TEXT + CONTINUATIONs) is answered like a whole one, before and
    after whole messages on the same socket (the listener hands whole ones to the compiled fast
    path and fragments to its own reassembly); fragments adding up past the frame limit close
    the socket with 1009, and the server stays up."""
    ws = Ws(live)
    ws.c.send(iter(['{"id":"f1","method":"session.logon","params":{"apiKey":"nope",',
                    '"timestamp":1,', '"signature":"x"}}']))
    is_error(ws.recv(), "AUTH_BAD_SIGNATURE")
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "1000"})
    ws.logon()  # whole
    place = orjson.dumps({"id": "f2", "method": "order.place",
                          "params": {**BUY, "price": "1000.00", "clientOrderId": "frag-1"}}).decode()
    ws.c.send(iter([place[:10], place[10:11], place[11:]]))  # the same bytes the kernel takes whole
    r = ws.recv()
    assert r["id"] == "f2" and r["result"]["clientOrderId"] == "frag-1", r
    assert ws.call("w", "order.status", {"clientOrderId": "frag-1"})["result"]["status"] == "NEW"
    ws.c.send(iter([b'{"id":"f3","method":', b'"balances.get"}']))  # BINARY fragments
    assert ws.recv()["id"] == "f3"
    half = live.cfg.edge.max_frame_bytes // 2 + 1
    with pytest.raises(ConnectionClosed) as ei:  # (the close may already meet the second send)
        ws.c.send(iter(["x" * half, "x" * half]))
        ws.recv()
    assert ei.value.rcvd is not None and ei.value.rcvd.code == 1009
    ws2 = Ws(live)
    assert ws2.logon()["status"] == 200
    ws2.c.close()


def test_a_client_close_with_and_without_a_reason_is_echoed(live: LiveEdge) -> None:
    """The peer's CLOSE is answered with a CLOSE (RFC 6455 5.5.1), also when it carries no reason
    (picows then reports the message as None)."""
    for reason in ("", "bye"):
        ws = Ws(live)
        ws.logon()
        ws.c.close(1000, reason)
        rcvd = ws.c.protocol.close_rcvd  # the server's CLOSE frame, None if it just dropped us
        assert rcvd is not None and rcvd.code == 1000 and ws.c.close_code == 1000, reason


def test_a_batch_answered_in_chunks_keeps_order_and_balances(live: LiveEdge) -> None:
    """Many orders in flight: the engine takes them in a few batches, each fed to the read model and
    answered in chunks of ``Dispatcher.chunk`` events with the output written between chunks (shrunk
    here so a handful of orders spans several). Answers stay in request order, every order gets its NEW
    OrderUpdate, and the BalanceUpdates (one per asset and batch) end at the balance the read model
    answers."""
    d = live.gateway.dispatcher
    chunk = d.chunk
    live.call(lambda: setattr(d, "chunk", 8))
    calls = [0]
    inner = d.progress
    assert inner is not None  # build_edge wires the WS server's writer

    def counted() -> None:
        calls[0] += 1
        inner()
    live.call(lambda: setattr(d, "progress", counted))
    admin(live, "/v1/admin/deposits", {"account": 11, "asset": "USDT", "amount": "1000000"})
    ws = Ws(live)
    assert ws.logon()["status"] == 200
    gw = live.gateway  # the in-process engine: hold its batch until every order is queued, so one
    live.call(lambda: setattr(gw, "_scheduled", True))  # batch of n commands is certain
    n = 60
    for i in range(n):
        ws.send(i, "order.place", {**BUY, "clientOrderId": f"chunk{i}"})
    deadline = time.monotonic() + 5
    while live.call(lambda: len(gw._queue)) < n:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    live.call(gw._flush)  # one engine batch: 2n events, fed in chunks of 8
    got = [ws.recv() for _ in range(n)]
    assert [g["id"] for g in got] == list(range(n))
    assert all(g["status"] == 200 and g["result"]["status"] == "NEW" for g in got)
    assert calls[0] >= 2 * n // 8 - 1  # progress between every two chunks of the one batch
    bal = ws.call("bal", "balances.get")["result"]
    locked = next(b["locked"] for b in bal if b["asset"] == "USDT")
    news = {e["clientOrderId"] for e in ws.events if e["type"] == "OrderUpdate"}
    assert news == {f"chunk{i}" for i in range(n)}
    usdt = [e for e in ws.events if e["type"] == "BalanceUpdate" and e["asset"] == "USDT"]
    assert usdt and usdt[-1]["locked"] == locked and len(usdt) <= n
    assert [e["seq"] for e in usdt] == sorted(e["seq"] for e in usdt)
    live.call(lambda: setattr(d, "progress", inner))
    live.call(lambda: setattr(d, "chunk", chunk))
    ws.c.close()
