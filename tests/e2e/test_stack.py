"""End to end through `spotx up`'s own code path with real clients (httpx, websockets)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from decimal import Decimal
from typing import Any

import pytest
import websockets
from stackutil import Stack

from edge.auth import sign

pytestmark = pytest.mark.e2e
SYM = "BTC-USDT"


def order(side: str, price: str, qty: str, **kw: Any) -> dict[str, Any]:
    return {"symbol": SYM, "side": side, "type": "LIMIT", "timeInForce": "GTC", "price": price,
            "quantity": qty, **kw}


def test_public_routes_and_openapi(stack: Stack) -> None:
    c = stack.admin()
    assert c.http.get("/healthz").status_code == 200
    assert c.http.get("/readyz").status_code == 200
    syms = c.http.get("/v1/symbols").json()
    assert {s["symbol"] for s in syms} >= {"BTC-USDT", "ETH-USDT"}
    doc = c.http.get("/openapi.json").json()
    assert "/v1/orders" in doc["paths"]


def test_rest_place_cross_cancel_and_balances(stack: Stack) -> None:
    stack.fund(2001, "USDT", "100000")
    stack.fund(2002, "BTC", "10")
    buyer, seller = stack.client(2001), stack.client(2002)
    r = seller.call("POST", "/v1/orders", order("SELL", "30000.00", "0.5", clientOrderId="s-1"))
    assert r.status_code == 200, r.text
    sell = r.json()
    assert sell["status"] == "NEW" and sell["clientOrderId"] == "s-1"
    r = buyer.call("POST", "/v1/orders", order("BUY", "30001.00", "0.2", timeInForce="IOC"))
    assert r.status_code == 200, r.text
    buy = r.json()
    assert buy["status"] == "FILLED" and Decimal(buy["executedQty"]) == Decimal("0.2")
    assert buy["fills"] and Decimal(buy["fills"][0]["price"]) == Decimal("30000")
    assert buy["fills"][0]["liquidity"] == "TAKER"
    st = seller.call("GET", f"/v1/orders/{sell['orderId']}").json()
    assert st["status"] == "PARTIALLY_FILLED" and Decimal(st["executedQty"]) == Decimal("0.2")
    r = seller.call("DELETE", f"/v1/orders/{sell['orderId']}")
    assert r.status_code == 200 and r.json()["status"] == "CANCELED"
    bal = {b["asset"]: b for b in seller.call("GET", "/v1/balances").json()}
    assert Decimal(bal["BTC"]["locked"]) == 0
    assert Decimal(bal["BTC"]["available"]) == Decimal("9.8")
    assert r.headers.get("X-RateLimit-Limit") is not None


@pytest.mark.parametrize("case", ["missing", "bad_signature", "old_timestamp", "future_timestamp"])
def test_auth_failures(stack: Stack, case: str) -> None:
    c = stack.client(2003)
    if case == "missing":
        r = c.http.get("/v1/balances")
        want = "AUTH_MISSING"
    elif case == "bad_signature":
        r = c.call("GET", "/v1/balances", sig="0" * 64)
        want = "AUTH_BAD_SIGNATURE"
    elif case == "old_timestamp":
        r = c.call("GET", "/v1/balances", ts=int(time.time() * 1000) - 120_000)
        want = "AUTH_TIMESTAMP"
    else:
        r = c.call("GET", "/v1/balances", ts=int(time.time() * 1000) + 10_000)
        want = "AUTH_TIMESTAMP"
    assert r.status_code == 401, r.text
    assert r.json()["error"] == want


def test_replay_is_refused(stack: Stack) -> None:
    c = stack.client(2004)
    ts = int(time.time() * 1000)
    first = c.call("GET", "/v1/balances", ts=ts)
    again = c.call("GET", "/v1/balances", ts=ts)
    assert first.status_code == 200
    assert again.status_code == 401 and again.json()["error"] == "AUTH_REPLAY"


def test_read_key_cannot_trade(stack: Stack) -> None:
    c = stack.client(2005, role="read")
    r = c.call("POST", "/v1/orders", order("BUY", "1.00", "0.001"))
    assert r.status_code == 403 and r.json()["error"] == "FORBIDDEN"


def test_admin_modes_refuse_orders_then_lift(stack: Stack) -> None:
    stack.fund(2006, "USDT", "1000")
    c, adm = stack.client(2006), stack.admin()
    r = adm.call("POST", f"/v1/admin/symbols/{SYM}/mode", {"mode": "CANCEL_ONLY", "reason": "drill",
                                                            "ticket": "T-2"})
    assert r.status_code == 200, r.text
    r = c.call("POST", "/v1/orders", order("BUY", "100.00", "0.01"))
    assert r.status_code == 403 and r.json()["error"] == "SYMBOL_CANCEL_ONLY"
    r = adm.call("POST", "/v1/admin/mode", {"mode": "SOFT_HALT", "reason": "drill", "ticket": "T-3"})
    assert r.status_code == 200, r.text
    r = c.call("POST", "/v1/orders", {**order("BUY", "100.00", "0.01"), "symbol": "ETH-USDT"})
    assert r.status_code == 403 and r.json()["error"] == "MARKET_HALTED"
    for path, body in ((f"/v1/admin/symbols/{SYM}/mode", {"mode": "NORMAL"}),
                       ("/v1/admin/mode", {"mode": "NORMAL"})):
        assert adm.call("POST", path, {**body, "reason": "drill over", "ticket": "T-4"}).status_code == 200
    r = c.call("POST", "/v1/orders", order("BUY", "100.00", "0.01"))
    assert r.status_code == 200, r.text
    audit = adm.call("GET", "/v1/admin/audit?limit=10").json()
    assert any(a.get("ticket") == "T-2" and a.get("reason") == "drill" for a in audit)
    r = adm.call("POST", f"/v1/admin/symbols/{SYM}/mode", {"mode": "HARD_HALT"})
    assert r.status_code == 400  # reason and ticket are required


async def _ws_session(stack: Stack, account: int) -> Any:
    key = stack.store.create(account, "trade")
    await asyncio.sleep(0.06)  # the edge re-reads the key store on a miss at most every 50 ms
    ws = await websockets.connect(stack.ws_url, open_timeout=10)
    ts = int(time.time() * 1000)
    await ws.send(json.dumps({"id": "logon", "method": "session.logon", "params": {
        "apiKey": key.key_id, "timestamp": ts, "signature": sign(key.secret, f"{ts}session.logon".encode())}}))
    resp = json.loads(await ws.recv())
    assert resp["status"] == 200, resp
    return ws


async def _request(ws: Any, rid: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"id": rid, "method": method, "params": params}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("id") == rid:
            return msg


def test_ws_order_entry_many_in_flight(stack: Stack) -> None:
    stack.fund(2010, "USDT", "100000")

    async def go() -> None:
        ws = await _ws_session(stack, 2010)
        try:
            for i in range(20):  # 20 requests in flight, answered by id
                await ws.send(json.dumps({"id": i, "method": "order.place",
                                          "params": order("BUY", f"{100 + i}.00", "0.01")}))
            got: dict[Any, dict[str, Any]] = {}
            updates = 0
            while len(got) < 20:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if "id" in msg:
                    got[msg["id"]] = msg
                elif msg.get("type") == "OrderUpdate":
                    updates += 1
            assert all(m["status"] == 200 and m["result"]["status"] == "NEW" for m in got.values())
            res = await _request(ws, "open", "orders.open", {"symbol": SYM})
            assert len(res["result"]) >= 20
            res = await _request(ws, "ca", "orders.cancelAll", {"symbol": SYM})
            assert res["status"] == 200, res
            res = await _request(ws, "open2", "orders.open", {"symbol": SYM})
            assert res["result"] == []
            res = await _request(ws, "bal", "balances.get", {})
            assert res["status"] == 200
        finally:
            await ws.close()

    asyncio.run(go())


def test_ws_cancel_on_disconnect(stack: Stack) -> None:
    stack.fund(2011, "USDT", "1000")

    async def go() -> int:
        ws = await _ws_session(stack, 2011)
        r = await _request(ws, 1, "session.cancelOnDisconnect", {"enabled": True})
        assert r["status"] == 200, r
        r = await _request(ws, 2, "order.place", order("BUY", "500.00", "0.01"))
        assert r["status"] == 200, r
        await ws.close()
        return int(r["result"]["orderId"])

    oid = asyncio.run(go())
    c = stack.client(2011)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        status = c.call("GET", f"/v1/orders/{oid}").json().get("status")
        if status == "CANCELED":
            break
        time.sleep(0.1)
    assert status == "CANCELED"


def test_bad_input_gets_precise_errors(stack: Stack) -> None:
    stack.fund(2012, "USDT", "1000")
    c = stack.client(2012)
    cases = [
        (order("BUY", "100.001", "0.01"), "INVALID_PRICE"),
        (order("BUY", "100.00", "0.00001"), "INVALID_QUANTITY"),
        ({**order("BUY", "100.00", "0.01"), "symbol": "NOPE-USDT"}, "UNKNOWN_SYMBOL"),
        ({**order("BUY", "100.00", "0.01"), "colour": "red"}, "BAD_REQUEST"),
        (order("BUY", "100000.00", "1"), "INSUFFICIENT_BALANCE"),
    ]
    for body, want in cases:
        r = c.call("POST", "/v1/orders", body)
        assert r.status_code in (400, 403, 404, 409), (body, r.text)
        assert r.json()["error"] == want, (body, r.text)
    r = c.http.post("/v1/orders", content=b"x" * (1 << 20))
    assert r.status_code in (400, 401, 413)


def test_ack_survives_engine_kill_9(stack: Stack) -> None:
    stack.fund(2020, "USDT", "1000")
    c = stack.client(2020)
    r = c.call("POST", "/v1/orders", order("BUY", "700.00", "0.01", clientOrderId="durable-1"))
    assert r.status_code == 200, r.text
    oid = r.json()["orderId"]
    eng = stack.sup.child("engine")
    os.kill(eng.proc.pid, signal.SIGKILL)
    eng.proc.join(10)
    assert stack.sup.poll()  # restarts the engine through WAL recovery
    assert stack.sup.child("engine").ready
    st = c.call("GET", f"/v1/orders/{oid}").json()
    assert st["status"] == "NEW" and st["clientOrderId"] == "durable-1"
    r = c.call("DELETE", f"/v1/orders?symbol={SYM}&clientOrderId=durable-1")
    assert r.status_code == 200 and r.json()["status"] == "CANCELED", r.text


def test_metrics_endpoint_has_runbook_series(stack: Stack) -> None:
    import httpx

    c = stack.client(2099)
    assert c.http.get("/v1/balances").status_code == 401  # an auth failure to count
    ts = int(time.time() * 1000)
    c.call("GET", "/v1/balances", ts=ts)
    assert c.call("GET", "/v1/balances", ts=ts).status_code == 401  # and a replay
    text = httpx.get(stack.metrics_url, timeout=10).text
    for name in ("engine_seq", "engine_queue_depth", "engine_loop_seconds_bucket",
                 "wal_fsync_seconds_bucket", "engine_commands_total", "engine_symbol_seq", "auth_fail_total",
                 "replay_detect_total", "http_request_duration_seconds_bucket",
                 "spotx_process_cpu_seconds_total", "spotx_process_up", "md_publisher_seq",
                 "ws_connected_clients", "spotx_wal_segments", "spotx_wal_disk_bytes",
                 "spotx_data_fs_free_bytes"):
        assert name in text, name
    from prometheus_client.parser import text_string_to_metric_families

    disk = {s.name: s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name in ("spotx_wal_segments", "spotx_wal_disk_bytes")}
    assert disk["spotx_wal_segments"] >= 1 and disk["spotx_wal_disk_bytes"] > 0  # this stack's


def test_engine_counts_order_commands_per_symbol(stack: Stack) -> None:
    """engine_commands_total{symbol} / engine_symbol_seq{symbol} move with the symbol's orders."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    def series() -> dict[tuple[str, str], float]:
        text = httpx.get(stack.metrics_url, timeout=10).text
        return {(smp.name, smp.labels["symbol"]): smp.value
                for fam in text_string_to_metric_families(text)
                if fam.name in ("engine_commands", "engine_symbol_seq")
                for smp in fam.samples if "symbol" in smp.labels}

    stack.fund(2040, "USDT", "1000")
    c = stack.client(2040)
    before = series()
    r = c.call("POST", "/v1/orders", order("BUY", "600.00", "0.01", clientOrderId="count-1"))
    assert r.status_code == 200, r.text
    r = c.call("DELETE", f"/v1/orders?symbol={SYM}&clientOrderId=count-1")
    assert r.status_code == 200 and r.json()["status"] == "CANCELED", r.text
    after = series()
    assert after[("engine_commands_total", SYM)] - before.get(("engine_commands_total", SYM), 0) == 2
    assert after[("engine_symbol_seq", SYM)] > before.get(("engine_symbol_seq", SYM), 0)
    other = "ETH-USDT"  # no order of this test on it: unchanged
    assert after.get(("engine_commands_total", other), 0) == before.get(("engine_commands_total", other), 0)


def test_market_data_rest_from_durable_events(stack: Stack) -> None:
    stack.fund(2030, "USDT", "100000")
    stack.fund(2031, "ETH", "10")
    buyer, seller = stack.client(2030), stack.client(2031)
    sell = {"symbol": "ETH-USDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
            "price": "2000.00", "quantity": "1.5"}
    assert seller.call("POST", "/v1/orders", sell).status_code == 200
    buy = {**sell, "side": "BUY", "timeInForce": "IOC", "quantity": "0.5"}
    r = buyer.call("POST", "/v1/orders", buy)
    assert r.status_code == 200 and r.json()["status"] == "FILLED", r.text
    pub = stack.admin().http
    depth = pub.get("/v1/depth", params={"symbol": "ETH-USDT", "limit": 5}).json()
    assert [[Decimal(p), Decimal(q)] for p, q in depth["asks"]][:1] == [[Decimal("2000"), Decimal("1")]]
    trades = pub.get("/v1/trades", params={"symbol": "ETH-USDT"}).json()
    assert trades and Decimal(trades[-1]["qty"]) == Decimal("0.5") and trades[-1]["takerSide"] == "BUY"
    candles = pub.get("/v1/candles", params={"symbol": "ETH-USDT", "interval": "1m"}).json()
    assert candles and Decimal(candles[-1]["volume"]) >= Decimal("0.5")
    ticker = pub.get("/v1/ticker", params={"symbol": "ETH-USDT"}).json()
    assert Decimal(ticker["last"]) == Decimal("2000")


def test_settlement_lag_throttle_flag_limits_new_orders(stack: Stack) -> None:
    """RUNBOOK 3.2: above T2 settle sets run/settle-throttle; the edge then admits few new orders."""
    from pathlib import Path

    stack.fund(2040, "USDT", "10000")
    c = stack.client(2040)
    flag = Path(stack.cfg.data_dir) / "run" / "settle-throttle"
    flag.write_text("1")
    try:
        time.sleep(0.15)
        codes = [c.call("POST", "/v1/orders", order("BUY", "100.00", "0.01")) for _ in range(150)]
        refused = [r for r in codes if r.status_code == 429]
        assert refused, "no order was throttled"
        assert refused[0].json()["error"] == "RATE_LIMITED" and refused[0].headers.get("Retry-After")
    finally:
        flag.write_text("0")
    time.sleep(0.15)
    assert c.call("POST", "/v1/orders", order("BUY", "100.00", "0.01")).status_code == 200
    assert c.call("DELETE", f"/v1/orders?symbol={SYM}").status_code == 200


def test_spotx_status_shows_processes_seq_and_queue_depths(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import cli, native

    for k, v in stack.env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    for name in ("engine", "edge-1", "publisher"):
        assert re.search(rf"^\s+{name}\s+pid\s+\d+\s+ready\s+restarts \d+", out, re.M), out
    edge_line = next(line for line in out.splitlines() if line.strip().startswith("edge-1"))
    assert edge_line.endswith("modules compiled" if native.check() == "" and
                              os.environ.get("SPOTX_NATIVE") != "0" else "modules interpreted")
    assert re.search(r"engine_seq@engine = \d+", out) and "engine_queue_depth@engine = 0" in out
    assert re.search(r"wal_durable_seq\S*@engine = \d+", out), out
    assert "retention: off" in out
    disk = re.search(r"disk: WAL (\d+\.\d+) GiB in (\d+) segments from seq 1 \(nothing archived\), "
                     r"(\d+\.\d) GiB free of (\d+\.\d) GiB", out)
    assert disk and int(disk[2]) >= 1 and 0 < float(disk[3]) <= float(disk[4]), out
    assert cli.main(["status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["storage"]["spotx_wal_segments"] == int(disk[2])
    assert doc["storage"]["spotx_wal_disk_bytes"] > 0


def test_processes_run_on_their_cores_and_downstream_below_the_order_path(stack: Stack) -> None:
    """Each child is pinned to its configured core; the publisher and the fan-out run at
    ``market.nice`` below the engine and the edge (pipeline.cpu), on every thread."""
    cfg, cores = stack.cfg, os.cpu_count() or 1
    want = {"engine": (cfg.engine.core, 0), "edge-1": (cfg.edge.core, 0),
            "publisher": (cfg.market.core, cfg.market.nice), "fanout-1": (cfg.market.core, cfg.market.nice)}
    assert cfg.market.nice == 10
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for name, (core, nice) in want.items():
        pid = stack.sup.child(name).proc.pid
        assert os.sched_getaffinity(pid) == {core % cores}, name
        for tid in os.listdir(f"/proc/{pid}/task"):
            assert os.getpriority(os.PRIO_PROCESS, int(tid)) == min(19, base + nice), (name, tid)


def test_operator_cli_admin_and_deposit(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``spotx deposit`` and every ``spotx admin`` command of the RUNBOOK, as an operator runs them
    (the admin key from the key store), each checked by its effect on trading."""
    from pipeline import cli

    for k, v in stack.env.items():
        monkeypatch.setenv(k, v)

    def run(*argv: str) -> Any:
        capsys.readouterr()
        assert cli.main(list(argv)) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    acct = 2060
    c = stack.client(acct)
    run("deposit", "--account", str(acct), "--asset", "USDT", "--amount", "500.25",
        "--reason", "cli drill", "--ticket", "CLI-1")
    bal = {b["asset"]: b for b in c.call("GET", "/v1/balances").json()}
    assert Decimal(bal["USDT"]["available"]) == Decimal("500.25")

    run("admin", "mode", SYM, "CANCEL_ONLY", "--reason", "cli drill", "--ticket", "CLI-2")
    r = c.call("POST", "/v1/orders", order("BUY", "100.00", "0.01"))
    assert r.status_code == 403 and r.json()["error"] == "SYMBOL_CANCEL_ONLY", r.text
    run("admin", "mode", SYM, "NORMAL", "--reason", "cli drill", "--ticket", "CLI-3")
    r = c.call("POST", "/v1/orders", order("BUY", "100.00", "0.01", clientOrderId="cli-rest"))
    assert r.status_code == 200 and r.json()["status"] == "NEW", r.text

    run("admin", "cancel-all", SYM, "--reason", "cli drill", "--ticket", "CLI-4")
    st = c.call("GET", f"/v1/orders?symbol={SYM}&clientOrderId=cli-rest").json()
    assert st["status"] == "CANCELED", st

    run("admin", "global-mode", "SOFT_HALT", "--reason", "cli drill", "--ticket", "CLI-5")
    r = c.call("POST", "/v1/orders", {**order("BUY", "100.00", "0.01"), "symbol": "ETH-USDT"})
    assert r.status_code == 403 and r.json()["error"] == "MARKET_HALTED", r.text
    run("admin", "global-mode", "NORMAL", "--reason", "cli drill", "--ticket", "CLI-6")

    run("admin", "withdrawals", "halt", "--reason", "cli drill", "--ticket", "CLI-7")
    r = c.call("POST", "/v1/withdrawals", {"asset": "USDT", "amount": "1"})
    assert r.status_code == 403 and r.json()["error"] == "WITHDRAWALS_HALTED", r.text
    run("admin", "withdrawals", "resume", "--reason", "cli drill", "--ticket", "CLI-8")
    r = c.call("POST", "/v1/withdrawals", {"asset": "USDT", "amount": "1"})
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text

    audit = run("admin", "audit", "--limit", "20")
    tickets = [a.get("ticket") for a in audit]
    assert [t for t in tickets if t and t.startswith("CLI-")] == [f"CLI-{i}" for i in range(8, 0, -1)]
    assert all(a["reason"] == "cli drill" and a["actor"] == stack.admin_key.key_id
               for a in audit if str(a.get("ticket", "")).startswith("CLI-"))

    with pytest.raises(SystemExit) as ei:  # reason and ticket are required, before any call
        cli.main(["admin", "mode", SYM, "HARD_HALT", "--reason", "no ticket"])
    assert ei.value.code == 2 and "--ticket" in capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["deposit", "--account", str(acct), "--asset", "USDT", "--amount", "0.0000001",
                     "--reason", "r", "--ticket", "t"]) == 1  # finer than USDT's 6 decimals
    assert "INVALID_AMOUNT" in capsys.readouterr().err
