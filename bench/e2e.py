"""Bench suite ``e2e``: order entry through the real stack (``spotx up``'s code path), fsync mode.

System under test: ``pipeline.supervisor.Supervisor`` started in this process on free ports with
a throw-away data dir — engine (WAL fdatasync group commit, core 0), one edge process (REST +
WS order entry, core 1), settlement and market data off (they do not sit on the ack path).

Load generator: ``CLIENTS`` separate processes (``multiprocessing`` spawn), each one WebSocket
connection for one market-maker account (the ``websockets`` client, not the project's code). Each
sends ``order.place`` open-loop: request i is *due* at ``t0 + i / rate``; it is sent at the due
time (or as soon as the process can, if behind), and its latency is measured **from the due
time** to the response (coordinated-omission aware: a stalled server or client shows up as
latency, not as a lower offered rate). Orders alternate BUY below / SELL above the mid so nothing
trades and the book stays bounded (each client cancels all its orders between regimes).
Latencies go into an HDR histogram per regime. ``max`` regime: closed loop with many orders in
flight per connection, to find sustained orders/s per edge process.

Peer in the same run: REST ``POST /v1/orders`` (httpx, keep-alive, one client process) at a
modest fixed rate, same latency definition.

Honesty: this machine has 2 cores. The engine (core 0, ``park`` wait so it does not burn a core
while idle), the edge (core 1) and the Python load-generator processes (unpinned) share them: the
generator competes with the edge, so the figures understate what the edge does on a machine with
cores to spare for clients.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Latency, Result

DURABILITY = "fdatasync"
CTX = mp.get_context("spawn")
CLIENTS = 2
SYMBOL = "BTC-USDT"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data: str) -> dict[str, str]:
    return {
        "SPOTX_DATA_DIR": data, "SPOTX_INSTANCE": f"b{uuid.uuid4().hex[:8]}",
        "SPOTX_EDGE_REST_PORT": str(_free_port()), "SPOTX_EDGE_WS_TRADE_PORT": str(_free_port()),
        "SPOTX_MARKET_PORT": str(_free_port()), "SPOTX_METRICS_PORT": str(_free_port()),
        "SPOTX_SETTLE_ENABLED": "false", "SPOTX_MARKET_ENABLED": "false",
        "SPOTX_ENGINE_WAIT": os.environ.get("SPOTX_BENCH_ENGINE_WAIT", "park"), "SPOTX_ENGINE_DURABILITY": DURABILITY,
        "SPOTX_EDGE_ORDERS_PER_SECOND": "1000000", "SPOTX_EDGE_WEIGHT_PER_MINUTE": "100000000",
    }


def _client(ws_url: str, key: str, secret: str, idx: int, regimes: list[tuple[str, float, float]],
            out: Any) -> None:
    """One load-generator process: for each regime (name, rate/s or 0 = closed loop, seconds)."""
    import websockets

    from edge.auth import sign

    async def go() -> None:
        async with websockets.connect(ws_url, max_size=1 << 26) as ws:  # cancelAll answers list every order
            ts = int(time.time() * 1000)
            await ws.send(json.dumps({"id": "logon", "method": "session.logon", "params": {
                "apiKey": key, "timestamp": ts,
                "signature": sign(secret, f"{ts}session.logon".encode())}}))
            while json.loads(await ws.recv()).get("id") != "logon":
                pass
            for name, rate, secs in regimes:
                res = await _regime(ws, idx, rate, secs)
                out.put((idx, name, res))
                await ws.send(json.dumps({"id": f"ca-{name}", "method": "orders.cancelAll",
                                          "params": {"symbol": SYMBOL}}))
                while True:
                    m = json.loads(await ws.recv())
                    if m.get("id") == f"ca-{name}":
                        break

    asyncio.run(go())


async def _regime(ws: Any, idx: int, rate: float, secs: float) -> dict[str, Any]:
    due: dict[int, int] = {}
    lat: list[int] = []
    errors = 0
    sent = 0
    done = asyncio.Event()
    t0 = time.perf_counter_ns()
    end = t0 + int(secs * 1e9)
    inflight_cap = 64

    async def reader() -> None:
        nonlocal errors
        while True:
            msg = json.loads(await ws.recv())
            rid = msg.get("id")
            if not isinstance(rid, int) or rid not in due:
                continue
            lat.append(time.perf_counter_ns() - due.pop(rid))
            if msg.get("status") != 200:
                errors += 1
            if done.is_set() and not due:
                return

    rd = asyncio.ensure_future(reader())
    i = 0
    while True:
        now = time.perf_counter_ns()
        if now >= end:
            break
        if rate > 0:
            t_due = t0 + int(i * 1e9 / rate)
            if t_due > now:
                await asyncio.sleep((t_due - now) / 1e9 if t_due - now > 200_000 else 0)
                continue
        else:
            if len(due) >= inflight_cap:
                await asyncio.sleep(0)
                continue
            t_due = now
        side = "BUY" if i % 2 == 0 else "SELL"
        price = f"{29000 + (i % 50)}.00" if side == "BUY" else f"{31000 + (i % 50)}.00"
        due[i] = t_due
        await ws.send(json.dumps({"id": i, "method": "order.place", "params": {
            "symbol": SYMBOL, "side": side, "type": "LIMIT", "timeInForce": "GTC",
            "price": price, "quantity": "0.0001"}}))
        sent += 1
        i += 1
    done.set()
    try:
        await asyncio.wait_for(rd, 30)
    except TimeoutError:
        rd.cancel()
    secs_real = (time.perf_counter_ns() - t0) / 1e9
    return {"sent": sent, "answered": len(lat), "errors": errors, "lat": lat, "secs": secs_real}


def _rest_peer(base: str, key: str, secret: str, rate: float, secs: float, out: Any) -> None:
    import httpx

    from bench.harness import pin
    from edge.auth import rest_payload, sign

    pin(1)
    lat: list[int] = []
    errors = 0
    with httpx.Client(base_url=base, timeout=10) as cl:
        t0 = time.perf_counter_ns()
        n = int(rate * secs)
        for i in range(n):
            t_due = t0 + int(i * 1e9 / rate)
            while time.perf_counter_ns() < t_due:
                time.sleep(0.0001)
            body = json.dumps({"symbol": SYMBOL, "side": "BUY", "type": "LIMIT",
                               "timeInForce": "IOC", "price": "1.00", "quantity": "1"}).encode()
            ts = int(time.time() * 1000)
            r = cl.post("/v1/orders", content=body, headers={
                "X-API-KEY": key, "X-TIMESTAMP": str(ts), "Content-Type": "application/json",
                "X-SIGNATURE": sign(secret, rest_payload(ts, "POST", "/v1/orders", body))})
            lat.append(time.perf_counter_ns() - t_due)
            if r.status_code != 200:
                errors += 1
    out.put(("rest", {"sent": n, "answered": len(lat), "errors": errors, "lat": lat}))


def run(quick: bool) -> list[Result]:
    from edge.auth import KeyStore
    from pipeline import config
    from pipeline.admin_client import call
    from pipeline.supervisor import Supervisor

    secs = 4.0 if quick else 20.0
    rates = (2_000, 5_000, 10_000) if quick else (2_000, 5_000, 10_000, 20_000, 50_000)
    tmp = tempfile.mkdtemp(prefix="spotx-bench-e2e-")
    cfg = config.load(env=_env(tmp))
    Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
    store = KeyStore(Path(cfg.data_dir) / "keys.json")
    admin = store.create(1000, "admin")
    keys = [store.create(3000 + c, "trade") for c in range(CLIENTS + 1)]
    sup = Supervisor(cfg)
    sup.start()
    out: list[Result] = []
    try:
        for k in keys:
            call(cfg, "POST", "/v1/admin/deposits", {"account": k.account, "asset": "USDT",
                 "amount": "100000000", "reason": "bench", "ticket": "BENCH"}, admin.key_id, admin.secret)
            call(cfg, "POST", "/v1/admin/deposits", {"account": k.account, "asset": "BTC",
                 "amount": "100000", "reason": "bench", "ticket": "BENCH"}, admin.key_id, admin.secret)
        seq_before = _durable_seq(cfg)
        regimes = [(f"ws open-loop {r:,}/s", r / CLIENTS, secs) for r in rates]
        regimes.append(("ws closed-loop max (64 in flight/conn)", 0.0, secs))
        q: Any = CTX.Queue()
        ws_url = f"ws://127.0.0.1:{cfg.edge.ws_trade_port}{cfg.edge.ws_trade_path}"
        procs = [CTX.Process(target=_client, args=(ws_url, keys[c].key_id, keys[c].secret, c,
                                                    regimes, q)) for c in range(CLIENTS)]
        for p in procs:
            p.start()
        results: dict[str, list[dict[str, Any]]] = {}
        for _ in range(CLIENTS * len(regimes)):
            _idx, name, res = q.get(timeout=secs * 4 + 120)
            results.setdefault(name, []).append(res)
        for p in procs:
            p.join(60)
        total_acked = 0
        for name, _rate, _s in regimes:
            parts = results.get(name, [])
            lat = Latency()
            sent = sum(r["sent"] for r in parts)
            answered = sum(r["answered"] for r in parts)
            errors = sum(r["errors"] for r in parts)
            total_acked += answered - errors
            for r in parts:
                lat.record_many(r["lat"])
            real = max((r["secs"] for r in parts), default=secs)
            p50, p99, p999 = lat.summary_us()
            out.append(Result(name, "orders/s acked", answered / real if real else 0.0, p50=p50,
                              p99=p99, p999=p999, correct=(answered == sent and errors == 0),
                              notes=f"sent {sent}, answered {answered}, errors {errors}; latency us "
                                    f"from due time; {CLIENTS} client processes share the 2 cores"))
        seq_after = _durable_seq(cfg)
        sequenced = seq_after - seq_before
        # every acked order is a sequenced command (plus the cancel-alls between regimes)
        out.append(Result("engine sequenced vs edge acked", "commands", float(sequenced),
                          correct=sequenced >= total_acked,
                          notes=f"acked {total_acked} orders; WAL durable seq advanced {sequenced}"))
        rq: Any = CTX.Queue()
        rp = CTX.Process(target=_rest_peer, args=(f"http://127.0.0.1:{cfg.edge.rest_port}",
                                                   keys[-1].key_id, keys[-1].secret, 500.0,
                                                   min(secs, 4.0), rq))
        rp.start()
        _tag, rres = rq.get(timeout=120)
        rp.join(30)
        rlat = Latency()
        rlat.record_many(rres["lat"])
        p50, p99, p999 = rlat.summary_us()
        rest = Result("rest open-loop 500/s (peer)", "orders/s acked",
                      rres["answered"] / min(secs, 4.0), p50=p50, p99=p99, p999=p999,
                      correct=rres["errors"] == 0, notes="httpx keep-alive, one process")
        for r in out:
            if r.name.startswith("ws open-loop 2,000"):
                r.with_peer("REST 500/s p50 (us)", p50)
        out.append(rest)
    finally:
        sup.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _durable_seq(cfg: Any) -> int:
    from pipeline.wal import read_durable

    d = read_durable(Path(cfg.data_dir) / "wal")
    return int(d.seq) if d else 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
