"""The market-data fan-out over real sockets (picows server and clients on 127.0.0.1), fed through
a real broadcast ring by the publisher library: subscribe protocol, snapshot + deltas equal to the
engine's book, resubscribe on a gap, slow consumer closed 4008 while others see every trade,
conflation ending at the fast subscriber's book, a lapped fan-out resyncing from snapshots, pings
and silent sockets, per-connection limits. Every test runs on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from edge.fanout import Fanout
from edge.market_client import BookClient, BookGap
from edge.market_hub import MarketHub
from edge.market_metrics import FanoutMetrics
from edge.market_ws import FanoutLimits, MarketServer
from pipeline import config
from pipeline.publisher.channels import DEPTHS
from pipeline.publisher.derive import MarketDeriver, Out
from pipeline.publisher.record import MD, MdEncoder
from pipeline.publisher.synth import RefEngine, random_commands
from ringbuf import BroadcastWriter

CFG = config.load(env={})
SYM = "BTC-USDT"


class Rig:
    """RefEngine -> MarketDeriver -> md ring -> in-process Fanout + MarketServer."""

    def __init__(self, capacity: int = 1 << 14, limits: FanoutLimits | None = None,
                 seed: int = 1) -> None:
        self.name = f"spotx-test-{os.getpid()}-{uuid.uuid4().hex[:8]}-md"
        self.w = BroadcastWriter.create(self.name, MD, capacity)
        self.eng = RefEngine(CFG)
        self.d = MarketDeriver(CFG)
        self.enc = MdEncoder(self.w.publish)
        self.rng = np.random.default_rng(seed)
        self.metrics = FanoutMetrics()
        self.server = MarketServer(MarketHub(CFG), self.metrics, limits or FanoutLimits())
        self.fo = Fanout(self.server, self.name, poll_s=0.002, tick_s=0.05)
        self.srv: asyncio.Server | None = None
        self.port = 0
        self.trade_ids: list[int] = []

    async def start(self) -> Rig:
        self.publish(self.d.snapshots())
        assert self.fo.attach()
        self.fo.start(asyncio.get_running_loop())
        self.srv = await self.server.start("127.0.0.1", 0)
        self.port = self.srv.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.server.shutdown()
        self.fo.stop()
        if self.srv is not None:
            self.srv.close()
        await asyncio.sleep(0.05)
        self.w.unlink()
        self.w.close()

    def publish(self, out: list[Out]) -> None:
        for kind, chan, seq, prev, js in out:
            self.enc.add(kind, chan, seq, prev, js, time.time_ns())
        self.enc.flush()

    def step(self, n: int = 10, spread: int = 8) -> None:
        ev = self.eng.apply(random_commands(self.rng, n, [1], spread=spread,
                                            open_orders=self.eng.open_orders()))
        self.trade_ids += ev["trade_id"][ev["kind"] == 3].tolist()
        self.publish(self.d.apply(ev))

    def book(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        f = self.d.syms[1].fmt
        bids, asks = self.eng.book(1, depth)
        return ([[f.price(p), f.qty(q)] for p, q in bids], [[f.price(p), f.qty(q)] for p, q in asks])


class Client(WSListener):
    def __init__(self) -> None:
        self.msgs: list[dict[str, Any]] = []
        self.closed: tuple[int, bytes] | None = None
        self.pings = 0
        self.t: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.t = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.msgs.append(orjson.loads(frame.get_payload_as_bytes()))
        elif frame.msg_type == WSMsgType.CLOSE:
            self.closed = (int(frame.get_close_code().value), frame.get_close_message())
        elif frame.msg_type == WSMsgType.PING:
            self.pings += 1

    def send(self, obj: Any) -> None:
        assert self.t is not None
        self.t.send(WSMsgType.TEXT, orjson.dumps(obj))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m.get("type") == kind]

    def books(self, channel: str) -> BookClient:
        """Replay every book message of ``channel`` through the reference client (checks chains
        and checksums on the way)."""
        c = BookClient(int(channel.rsplit("@", 1)[1]))
        for m in self.msgs:
            if m.get("channel") == channel and m.get("type") in ("BookSnapshot", "BookUpdated"):
                c.apply(m)
        return c


async def connect(port: int, rcvbuf: int = 0, **kw: Any) -> Client:
    def factory(_url: Any) -> socket.socket | None:
        if not rcvbuf:
            return None
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setblocking(False)
        return s

    _t, c = await ws_connect(Client, f"ws://127.0.0.1:{port}/v1/ws/market",
                             socket_factory=factory, **kw)
    return c  # type: ignore[return-value]


async def until(pred: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def subscribe(c: Client, channels: list[str], rid: int = 1) -> dict[str, Any]:
    n = len(c.msgs)
    c.send({"op": "subscribe", "id": rid, "channels": channels})
    await until(lambda: any(m.get("id") == rid for m in c.msgs[n:]))
    return next(m for m in c.msgs[n:] if m.get("id") == rid)


def test_subscribe_protocol(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        rig = await Rig().start()
        try:
            c = await connect(rig.port)
            ack = await subscribe(c, ["book:BTC-USDT", "trades:BTC-USDT", "candles:BTC-USDT@1m"])
            assert ack == {"id": 1, "result": "subscribed",
                           "channels": ["book:BTC-USDT@1000", "trades:BTC-USDT",
                                        "candles:BTC-USDT@1m"]}
            await until(lambda: bool(c.of("BookSnapshot")))
            i_ack = c.msgs.index(ack)
            assert c.msgs[i_ack + 1]["type"] == "BookSnapshot"  # right after the answer
            for rid, chans, status, err in ((2, ["trades:NOPE-USDT"], 404, "UNKNOWN_SYMBOL"),
                                            (3, ["book:BTC-USDT@7"], 400, "BAD_REQUEST"),
                                            (4, [], 400, "BAD_REQUEST")):
                r = await subscribe(c, chans, rid)
                assert (r["status"], r["error"]["error"]) == (status, err)
            c.send({"op": "subscribe", "id": 5, "channels": ["trades:BTC-USDT"], "x": 1})
            c.send({"op": "dance", "id": 6, "channels": ["trades:BTC-USDT"]})
            c.t.send(WSMsgType.TEXT, b"{not json")  # type: ignore[union-attr]
            await until(lambda: sum(1 for m in c.msgs if m.get("status") == 400) == 5)
            c.send({"op": "unsubscribe", "id": 7, "channels": ["trades:BTC-USDT"]})
            await until(lambda: any(m.get("id") == 7 for m in c.msgs))
            n_trades = len(c.of("TradeExecuted"))
            for _ in range(20):
                rig.step(20, spread=2)
            await until(lambda: len(c.of("BookUpdated")) > 5)
            await asyncio.sleep(0.05)
            assert len(c.of("TradeExecuted")) == n_trades  # unsubscribed: no more trades
            assert c.of("CandleUpdated")
        finally:
            await rig.close()

    arun(main)


def test_snapshot_and_deltas_follow_the_engine(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        rig = await Rig(seed=2).start()
        try:
            chans = [f"book:{SYM}@{d}" for d in DEPTHS] + [f"trades:{SYM}", f"candles:{SYM}@1s",
                                                           f"ticker:{SYM}"]
            early = await connect(rig.port)
            await subscribe(early, chans)
            for i in range(150):
                rig.step(int(rig.rng.integers(1, 30)), spread=int(rig.rng.integers(2, 40)))
                if i == 70:
                    late = await connect(rig.port)  # joins mid-stream from the fan-out's copy
                    await subscribe(late, chans[:len(DEPTHS)])
                if i % 10 == 0:
                    rig.publish(rig.d.tickers(rig.eng.now // 10**6))
                    await asyncio.sleep(0)
            rig.publish(rig.d.tickers(rig.eng.now // 10**6))
            final = [rig.book(d) for d in DEPTHS]
            for c in (early, late):
                for d, want in zip(DEPTHS, final, strict=True):
                    await until(shows(c, f"book:{SYM}@{d}", want))
            assert [t["tradeId"] for t in early.of("TradeExecuted")] == rig.trade_ids
            assert len(rig.trade_ids) > 100
            last = {}
            for m in early.of("CandleUpdated"):
                last[m["openTime"]] = m
            series = rig.d.syms[1].candles[0].all()
            assert [(m["openTime"], m["trades"]) for m in last.values()] == \
                [(c.open_ms, c.n) for c in series]
            await until(lambda: early.of("Ticker")[-1]["trades"] == len(rig.trade_ids))
        finally:
            await rig.close()

    arun(main)


def _top(c: Client, channel: str) -> tuple[list[list[str]], list[list[str]]]:
    return c.books(channel).top()


def shows(c: Client, channel: str, want: Any) -> Callable[[], bool]:
    return lambda: _top(c, channel) == want


def test_resubscribe_after_a_lost_delta_resyncs(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        rig = await Rig(seed=3).start()
        try:
            ch = f"book:{SYM}@20"
            c = await connect(rig.port)
            await subscribe(c, [ch])
            book = BookClient(20)
            pos = 0
            lost = resyncs = 0
            lose_at = 10  # the first delta read from this step on is "lost" (then every 25 steps)
            waiting = False  # resubscribed: deltas are dropped until the snapshot comes
            for i in range(120):
                rig.step(8, spread=6)
                await asyncio.sleep(0.002)
                for m in c.msgs[pos:]:
                    pos += 1
                    if m.get("type") not in ("BookSnapshot", "BookUpdated"):
                        continue
                    if m["type"] == "BookUpdated" and (waiting or (
                            i >= lose_at and lost < 3 and lost == resyncs)):
                        if not waiting:  # the client "loses" this delta
                            lost += 1
                            lose_at = i + 25
                        continue
                    try:
                        book.apply(m)
                        waiting = False
                    except BookGap:  # resubscribe, as the docs say
                        resyncs += 1
                        waiting = True
                        c.send({"op": "subscribe", "id": 100 + resyncs, "channels": [ch]})
            await asyncio.sleep(0.1)
            for m in c.msgs[pos:]:
                if m.get("type") in ("BookSnapshot", "BookUpdated"):
                    book.apply(m)
            assert lost >= 3 and resyncs == lost and book.snapshots == 1 + resyncs
            assert book.top() == rig.book(20)
        finally:
            await rig.close()

    arun(main)


def test_slow_consumer_is_closed_4008_and_others_see_every_trade(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        lim = FanoutLimits(sndbuf_bytes=4096, high_water_bytes=16384, low_water_bytes=4096,
                           max_trade_backlog=300, max_backlog_bytes=1 << 20)
        rig = await Rig(limits=lim, seed=4).start()
        try:
            fast = await connect(rig.port)
            slow = await connect(rig.port, rcvbuf=4096)
            for c in (fast, slow):
                await subscribe(c, [f"trades:{SYM}", f"book:{SYM}@5"])
            assert slow.t is not None
            slow.t.underlying_transport.pause_reading()  # stops reading
            while rig.server.closes.get("SLOW_CONSUMER", 0) == 0:
                rig.step(60, spread=1)
                await asyncio.sleep(0.003)
                assert len(rig.trade_ids) < 200_000
            for _ in range(20):
                rig.step(60, spread=1)
            slow.t.underlying_transport.resume_reading()
            await until(lambda: slow.closed is not None)
            assert slow.closed == (4008, b"SLOW_CONSUMER")
            got = slow.of("TradeExecuted")
            assert [t["tradeId"] for t in got] == rig.trade_ids[:len(got)]  # in order, no holes
            await until(lambda: len(fast.of("TradeExecuted")) == len(rig.trade_ids))
            assert [t["tradeId"] for t in fast.of("TradeExecuted")] == rig.trade_ids
            assert _top(fast, f"book:{SYM}@5") == rig.book(5)
            assert b'ws_close_total{reason="SLOW_CONSUMER"} 1.0' in rig.metrics.render()
        finally:
            await rig.close()

    arun(main)


def test_conflated_subscriber_ends_with_the_fast_book(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        lim = FanoutLimits(sndbuf_bytes=4096, high_water_bytes=8192, low_water_bytes=2048)
        rig = await Rig(limits=lim, seed=5).start()
        try:
            chans = [f"book:{SYM}@20", f"book:{SYM}@1000", f"candles:{SYM}@1s", f"ticker:{SYM}"]
            fast = await connect(rig.port)
            slow = await connect(rig.port, rcvbuf=4096)
            for c in (fast, slow):
                await subscribe(c, chans)
            assert slow.t is not None
            slow.t.underlying_transport.pause_reading()
            for i in range(300):
                rig.step(10, spread=30)
                if i % 20 == 0:
                    rig.publish(rig.d.tickers(rig.eng.now // 10**6))
                await asyncio.sleep(0.001)
            assert any(c.backlogged for c in rig.server.conns)
            slow.t.underlying_transport.resume_reading()
            for ch in chans[:2]:
                want = rig.book(int(ch.rsplit("@", 1)[1]))
                await until(shows(fast, ch, want))
                await until(shows(slow, ch, want))
            assert len(slow.of("BookUpdated")) < len(fast.of("BookUpdated"))
            assert any(m.get("conflated", 0) > 1 for m in slow.of("BookUpdated"))
            assert slow.closed is None

            def last(c: Client) -> dict[int, dict[str, Any]]:
                return {m["openTime"]: m for m in c.of("CandleUpdated")}

            await until(lambda: last(slow) == last(fast))  # the newest state of every candle
            assert len(slow.of("CandleUpdated")) < len(fast.of("CandleUpdated"))
            await until(lambda: slow.of("Ticker")[-1] == fast.of("Ticker")[-1])
            assert b"md_conflated_total" in rig.metrics.render()
        finally:
            await rig.close()

    arun(main)


def test_lapped_fanout_resyncs_from_snapshots(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        rig = await Rig(capacity=512, seed=6).start()
        try:
            ch = f"book:{SYM}@20"
            c = await connect(rig.port)
            await subscribe(c, [ch, f"trades:{SYM}"])
            rig.step(20)
            await asyncio.sleep(0.05)
            rig.fo.paused = True  # the fan-out falls behind ...
            published = rig.w.published()
            while rig.w.published() - published < 3 * 512:
                rig.step(30, spread=4)
            rig.fo.paused = False  # ... and is lapped
            await until(lambda: rig.server.hub.stats.laps >= 1)
            for _ in range(5):
                rig.step(5)
            rig.publish(rig.d.snapshots())  # the publisher's periodic snapshots
            rig.step(5)
            await until(lambda: _top(c, ch) == rig.book(20))  # BookClient: no gap, checksums ok
            assert len(c.of("BookSnapshot")) >= 2
            assert any(m.get("type") == "Resync" and m["channel"] == f"trades:{SYM}" for m in c.msgs)
            assert b"md_fanout_laps_total 1.0" in rig.metrics.render()
        finally:
            await rig.close()

    arun(main)


def test_pings_and_a_silent_socket_is_closed(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        lim = FanoutLimits(ping_interval_s=0.1, ping_timeout_s=0.5)
        rig = await Rig(limits=lim).start()
        try:
            alive = await connect(rig.port)
            mute = await connect(rig.port, enable_auto_pong=False)
            await until(lambda: mute.closed is not None, within_s=3)
            assert mute.closed == (1001, b"PING_TIMEOUT") and mute.pings >= 3
            assert alive.closed is None and len(rig.server.conns) == 1  # it answers (auto pong)
            assert rig.server.closes.get("PING_TIMEOUT") == 1
        finally:
            await rig.close()

    arun(main)


def test_subscription_and_message_rate_limits(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        lim = FanoutLimits(max_subscriptions=3, messages_per_second=5, burst=4, max_refusals=3)
        rig = await Rig(limits=lim).start()
        try:
            c = await connect(rig.port)
            r = await subscribe(c, [f"trades:{SYM}", f"ticker:{SYM}", f"book:{SYM}@5",
                                    f"book:{SYM}@10"])
            assert r["error"]["error"] == "BAD_REQUEST" and "at most 3" in r["error"]["message"]
            r = await subscribe(c, [f"trades:{SYM}", f"ticker:{SYM}", f"book:{SYM}@5"], 2)
            assert r["result"] == "subscribed"
            for i in range(10):
                c.send({"op": "unsubscribe", "id": 10 + i, "channels": [f"ticker:{SYM}"]})
            await until(lambda: c.closed is not None)
            limited = [m for m in c.msgs if m.get("status") == 429]
            assert limited and limited[0]["error"]["error"] == "RATE_LIMITED"
            assert c.closed == (1008, b"RATE_LIMITED")
        finally:
            await rig.close()

    arun(main)
