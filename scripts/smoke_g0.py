"""Gate G0 smoke (RUNBOOK §5), run by scripts/smoke_g0.sh against a running stack.

1. waits for /readyz; 2. subscribes a WebSocket client to trades and 1m candles of the smoke symbol,
recording every message to /tmp/ws-events-smoke.log; 3. POST /v1/smoke/trades (signed, admin key)
and requires status=settled; 4. requires TradeExecuted and CandleUpdated on the WS log;
5. checks smoke_ledger_entries through psql as user exchange. Prints smoke_g0_success=true|false
(and the reason) and exits 0 only on success.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

WS_LOG = os.environ.get("SMOKE_WS_LOG", "/tmp/ws-events-smoke.log")


def fail(reason: str) -> None:
    print(f"smoke_g0_success=false reason={reason}", flush=True)
    sys.exit(1)


def wait_ready(base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001
            last = repr(e)
        time.sleep(0.25)
    fail(f"readiness: {base}/readyz not ready after {timeout_s:.0f}s ({last}); see /tmp/edge-gateway-smoke.log")


async def record_ws(url: str, symbol: str, stop: asyncio.Event, ready: asyncio.Event,
                    seen: list[dict]) -> None:
    import websockets

    deadline = time.monotonic() + 30  # /readyz is the edge's; the fan-out may start a moment later
    while True:
        try:
            ws_conn = await websockets.connect(url, open_timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    async with ws_conn as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1,
                                  "channels": [f"trades:{symbol}", f"candles:{symbol}@1m"]}))
        with open(WS_LOG, "w") as log:
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                log.write(raw if isinstance(raw, str) else raw.decode())
                log.write("\n")
                log.flush()
                msg = json.loads(raw)
                seen.append(msg)
                if msg.get("result") == "subscribed":
                    ready.set()


async def main() -> None:
    from pipeline import config
    from pipeline.admin_client import AdminClientError, call

    cfg = config.load(os.environ.get("SPOTX_CONFIG") or None)
    base = f"http://{cfg.edge.host}:{cfg.edge.rest_port}"
    wait_ready(base, float(os.environ.get("SMOKE_READY_TIMEOUT_S", "60")))
    stop, subscribed = asyncio.Event(), asyncio.Event()
    ws_url = f"ws://{cfg.market.host}:{cfg.market.port}{cfg.market.path}"
    seen: list[dict] = []
    rec = asyncio.ensure_future(record_ws(ws_url, cfg.smoke_symbol, stop, subscribed, seen))
    try:
        await asyncio.wait_for(subscribed.wait(), 15)
    except TimeoutError:
        stop.set()
        fail(f"ws: no subscription ack from {ws_url}; see {WS_LOG}")
    try:
        res = await asyncio.to_thread(call, cfg, "POST", "/v1/smoke/trades", {}, None, None, 30.0)
    except AdminClientError as e:
        stop.set()
        fail(f"smoke trade: {e}")
    print(f"smoke trade: {json.dumps(res)}", flush=True)
    if res.get("status") != "settled":
        stop.set()
        fail(f"settlement: POST /v1/smoke/trades returned status={res.get('status')}")
    deadline = time.monotonic() + 10
    want = {"TradeExecuted", "CandleUpdated"}
    while time.monotonic() < deadline and not want <= {m.get("type") for m in seen}:
        await asyncio.sleep(0.1)
    stop.set()
    await rec
    types = {m.get("type") for m in seen}
    missing = {"TradeExecuted", "CandleUpdated"} - types
    if missing:
        fail(f"ws_events missing {sorted(missing)}; see {WS_LOG}")
    dsn_env = dict(os.environ, PGPASSWORD="exchange")
    q = await asyncio.to_thread(subprocess.run, ["psql", "-h", "127.0.0.1", "-U", "exchange", "-d", "exchange", "-tAX", "-c",
                        f"SELECT count(*) FROM smoke_ledger_entries WHERE seq = {int(res['seq'])}"],
                       capture_output=True, text=True, env=dsn_env, timeout=30)
    if q.returncode != 0 or not q.stdout.strip().isdigit() or int(q.stdout.strip()) == 0:
        fail(f"ledger: smoke_ledger_entries has no rows for seq {res['seq']}: {q.stdout.strip()} {q.stderr.strip()}")
    print(f"ws_events={sorted(t for t in types if t)} ledger_rows={q.stdout.strip()}", flush=True)
    print("smoke_g0_success=true", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
