"""The market-data path as separate processes: engine events in a real WAL -> publisher process
(``pipeline.publisher:main``) -> md ring -> fan-out process (``edge.fanout:main``, SO_REUSEPORT)
-> WebSocket client. The client's book follows the engine, trades arrive once each, a publisher
killed (-9) and restarted continues the ring without losing or repeating a trade, a publisher
stopped and started again (new ring) is picked up by the fan-out with fresh snapshots, and the
REST state rebuilt from the WAL keeps the whole trade and candle history."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import secrets
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

import edge.fanout
import pipeline.publisher
from edge.market_client import BookClient
from edge.market_state import MarketFollower, MarketState
from engine import Engine
from pipeline import config, shm_layout
from pipeline.publisher.synth import deposits, random_commands
from pipeline.records import Ev
from pipeline.wal import WalWriter

CTX = mp.get_context("spawn")
ACCOUNTS = (3, 4, 5, 6)
CH = "book:BTC-USDT@20"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WalFeed:
    """The engine's job, in the test process: apply command batches, journal them, sync."""

    def __init__(self, cfg: config.Config) -> None:
        self.eng = Engine(cfg)
        self.w = WalWriter(Path(cfg.data_dir) / "wal", segment_bytes=1 << 20, sync_mode="msync")
        self.rng = np.random.default_rng(9)
        self.trades: list[int] = []
        self.accounts: dict[int, int] = {}
        self.open: set[int] = set()
        self.batch(deposits(ACCOUNTS, (1, 2), 10**15))

    def batch(self, cmds: np.ndarray) -> None:
        seq0 = self.w.last_seq + 1
        ts = time.time_ns()
        ev = self.eng.apply(cmds, ts)
        self.w.append(1, seq0, len(cmds), cmds.view(np.uint8), ts)
        self.w.append(2, seq0, len(ev), ev.view(np.uint8), ts)
        self.w.sync()
        self.trades += ev["trade_id"][ev["kind"] == Ev.TRADE].tolist()
        acc = ev[ev["kind"] == Ev.ACCEPTED]
        self.accounts.update(zip(acc["order_id"].tolist(), acc["account"].tolist(), strict=True))

    def flow(self, batches: int) -> None:
        for _ in range(batches):
            oo = [(o.order_id, a) for a in ACCOUNTS for o in self.eng.open_orders(a)]
            self.batch(random_commands(self.rng, 12, (1,), accounts=ACCOUNTS, mid=10_000,
                                       spread=5, lots=(100, 3000), open_orders=oo))

    def book(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        from pipeline.publisher.units import SymbolFormat

        f = SymbolFormat(self.eng.config.symbol("BTC-USDT"))
        b = self.eng.book(1, depth)
        return ([[f.price(lv.price), f.qty(lv.qty)] for lv in b.bids],
                [[f.price(lv.price), f.qty(lv.qty)] for lv in b.asks])


class Proc:
    def __init__(self, target: Any, cfg: config.Config, index: int) -> None:
        parent, child = CTX.Pipe(duplex=False)
        self.p = CTX.Process(target=target, args=(cfg, index, child), daemon=True)
        self.p.start()
        child.close()
        if not parent.poll(60):
            self.p.kill()
            raise AssertionError(f"{target.__module__} not ready in 60 s")
        msg = parent.recv()
        assert msg.get("ready"), msg
        self.info = msg

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.p.is_alive():
            os.kill(self.p.pid, sig)  # type: ignore[arg-type]
        self.p.join(15)
        if self.p.is_alive():
            self.p.kill()
            self.p.join(5)
        return self.p.exitcode


class Client(WSListener):
    def __init__(self) -> None:
        self.msgs: list[dict[str, Any]] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.msgs.append(orjson.loads(frame.get_payload_as_bytes()))

    def book(self) -> BookClient:
        c = BookClient(20)
        for m in self.msgs:
            if m.get("channel") == CH and m.get("type") in ("BookSnapshot", "BookUpdated"):
                c.apply(m)
        return c

    def trade_ids(self) -> list[int]:
        return [m["tradeId"] for m in self.msgs if m.get("type") == "TradeExecuted"]


async def until(pred: Any, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    return config.load(env={}, overrides={
        "data_dir": str(tmp_path), "instance": f"t{os.getpid()}{secrets.token_hex(3)}",
        "market.port": free_port(), "market.broadcast_capacity": 1 << 14})


def test_publisher_and_fanout_processes(cfg: config.Config) -> None:
    feed = WalFeed(cfg)
    feed.flow(30)  # history before the publisher starts
    procs: list[Proc] = []
    try:
        pub = Proc(pipeline.publisher.main, cfg, 0)
        procs.append(pub)
        fan = Proc(edge.fanout.main, cfg, 1)
        procs.append(fan)

        async def main() -> None:
            _t, c = await ws_connect(Client, f"ws://127.0.0.1:{cfg.market.port}{cfg.market.path}")
            cl: Client = c  # type: ignore[assignment]
            _t.send(WSMsgType.TEXT, orjson.dumps({"op": "subscribe", "id": 1,
                                                   "channels": [CH, "trades:BTC-USDT"]}))
            await until(lambda: any(m.get("type") == "BookSnapshot" for m in cl.msgs))
            first = len(feed.trades)
            feed.flow(30)
            await until(lambda: cl.book().top() == feed.book(20))
            await until(lambda: cl.trade_ids() == feed.trades[first:])

            nonlocal pub
            assert pub.stop(signal.SIGKILL) == -signal.SIGKILL  # crash: the ring stays
            feed.flow(15)  # trades while the publisher is down
            pub = Proc(pipeline.publisher.main, cfg, 0)
            procs.append(pub)
            feed.flow(10)
            await until(lambda: cl.trade_ids() == feed.trades[first:])  # none lost, none twice
            await until(lambda: cl.book().top() == feed.book(20))

            assert pub.stop() == 0  # clean stop: the ring is unlinked ...
            assert not (Path("/dev/shm") / shm_layout.md_ring(cfg)).exists()
            snaps = sum(1 for m in cl.msgs if m.get("type") == "BookSnapshot")
            pub = Proc(pipeline.publisher.main, cfg, 0)  # ... and a new one appears
            procs.append(pub)
            await until(lambda: any(m.get("type") == "Resync" for m in cl.msgs))
            feed.flow(10)
            await until(lambda: cl.book().top() == feed.book(20))
            assert sum(1 for m in cl.msgs if m.get("type") == "BookSnapshot") > snaps
            _t.disconnect()

        asyncio.run(main())
        st = MarketState(cfg)  # REST state rebuilt from the WAL: every trade and candle
        MarketFollower(st).catch_up()
        got = st.trades({"symbol": "BTC-USDT", "limit": 1000})
        assert [t["tradeId"] for t in got] == feed.trades[-1000:] and len(feed.trades) > 50
        assert sum(c["trades"] for c in st.candles({"symbol": "BTC-USDT", "interval": "1d"})) == \
            len(feed.trades)
        assert st.depth({"symbol": "BTC-USDT", "limit": 20})["bids"] == feed.book(20)[0]
    finally:
        for p in reversed(procs):
            p.stop()
        feed.w.close()
    assert procs[1].p.exitcode == 0 and procs[-1].p.exitcode == 0
    assert not list(Path("/dev/shm").glob(f"spotx-{cfg.instance}-*"))
