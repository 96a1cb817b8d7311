"""The market-data fan-out process: md broadcast ring -> ``/v1/ws/market`` subscribers.

``main(cfg, index, ready_conn)`` (supervisor entry) pins itself to core
``(market.core + index - 1) % cores``, runs uvloop, serves picows on ``market.host:port`` with
SO_REUSEPORT (M processes share the port; the kernel spreads connections), and reports ready.

Ring side (``Fanout``): attaches ``spotx-<instance>-md`` (waiting for the publisher to create it),
reading from the oldest record still in the ring so the latest snapshots are found. A pump round
reads up to ``batch`` records, reassembles messages (record.MdAssembler) and hands them to the
hub (market_hub.py); a full read schedules the next round with ``call_soon`` so sockets are served
in between. Wake-ups: a doorbell FIFO (``<run_dir>/md/doorbells/fanout-<index>.fifo``) the
publisher rings after each publish, plus a ``poll_s`` timer as a safety net.

Lapped (the publisher overwrote records this process had not read): the cursor moves to the
oldest record still held (or to the head if that is overwritten too), the partial message is
dropped and the hub marks every book channel
stale until its next snapshot (subscribers then get a fresh BookSnapshot; trade subscribers get a
``Resync`` notice) — nothing out of order or wrong is ever sent. A ring replaced by a restarted
publisher (new inode) is re-attached the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from edge.market_hub import MarketHub
from edge.market_metrics import FanoutMetrics
from edge.market_ws import FanoutLimits, MarketServer
from pipeline import heap, shm_layout
from pipeline.config import Config
from pipeline.cpu import place
from pipeline.doorbell import Doorbell
from pipeline.publisher.process import md_doorbell_dir
from pipeline.publisher.record import MD, MdAssembler
from ringbuf import BroadcastReader, Lapped, SegmentNotFound

log = logging.getLogger("spotx.fanout")
SHM = Path("/dev/shm")


class Fanout:
    def __init__(self, server: MarketServer, ring_name: str, *, batch: int = 1024,
                 doorbell: Doorbell | None = None, poll_s: float = 0.05,
                 tick_s: float = 1.0) -> None:
        self.server = server
        self.hub = server.hub
        self.ring_name = ring_name
        self.buf = np.zeros(batch, MD)
        self.asm = MdAssembler()
        self.reader: BroadcastReader | None = None
        self.inode = 0
        self.doorbell = doorbell
        self.poll_s = poll_s
        self.tick_s = tick_s
        self.rounds = 0
        self._scheduled = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.paused = False  # tests: stop pumping to force a lap

    # -- ring ---------------------------------------------------------------------------------------
    def attach(self) -> bool:
        try:
            r = BroadcastReader.attach(self.ring_name, MD, start="oldest")
        except SegmentNotFound:
            return False
        try:
            ino = os.stat(SHM / self.ring_name).st_ino
        except FileNotFoundError:
            r.close()
            return False
        if self.reader is not None:
            self.reader.close()
            self.asm.reset()
            self.hub.lapped()
        self.reader, self.inode = r, ino
        log.info("md ring %s attached (published %d)", self.ring_name, r.published())
        return True

    async def wait_attached(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.attach():
            if time.monotonic() > deadline:
                raise TimeoutError(f"md ring {self.ring_name} did not appear in {timeout_s:.0f} s")
            await asyncio.sleep(0.05)

    def _check_replaced(self) -> None:
        try:
            ino = os.stat(SHM / self.ring_name).st_ino
        except FileNotFoundError:
            return  # publisher stopped; keep the old mapping until a new ring appears
        if ino != self.inode:
            self.attach()

    def pump(self) -> int:
        """One round; returns the records read."""
        self._scheduled = False
        r = self.reader
        if r is None or self.paused:
            return 0
        try:
            n = r.try_read(self.buf)
        except Lapped:
            self.asm.reset()
            self.hub.lapped()
            self.server.metrics.laps.inc()
            r.resync_to_oldest()
            try:
                n = r.try_read(self.buf)
            except Lapped:
                r.resync_to_latest()
                n = 0
        if n:
            msgs = self.asm.feed(self.buf, n)
            if msgs:
                self.hub.dispatch(msgs)
                lag = time.time_ns() - msgs[0].pub_ns
                self.server.metrics.lag.observe(max(0, lag) / 1e9)
            self.rounds += 1
            self.server.report()
            if n == len(self.buf):
                self._schedule()
        return n

    def _schedule(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self.pump)

    # -- loop wiring --------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.doorbell is not None:
            loop.add_reader(self.doorbell.fileno(), self._on_bell)
        self._every(self.poll_s, self.pump)
        self._every(self.tick_s, self._second)

    def _on_bell(self) -> None:
        if self.doorbell is not None:
            self.doorbell.drain()
        self.pump()

    def _every(self, period: float, fn: Any) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("Fanout.start() first")
        name = fn.__name__

        def tick() -> None:
            try:
                fn()
            finally:
                if name in self._timers:
                    self._timers[name] = loop.call_later(period, tick)

        self._timers[name] = loop.call_later(period, tick)

    def _second(self) -> None:
        self._check_replaced()
        self.server.tick()

    def stop(self) -> None:
        timers, self._timers = self._timers, {}
        for t in timers.values():
            t.cancel()
        if self._loop is not None and self.doorbell is not None:
            self._loop.remove_reader(self.doorbell.fileno())
        if self.reader is not None:
            self.reader.close()
            self.reader = None


async def serve(cfg: Config, index: int, ready_conn: Connection | None,
                stop: asyncio.Event, limits: FanoutLimits | None = None) -> None:
    run_dir = Path(cfg.data_dir) / "run"
    hub = MarketHub(cfg)
    server = MarketServer(hub, FanoutMetrics(), limits or FanoutLimits.from_config(cfg.market),
                          cfg.market.path)
    bell = Doorbell(md_doorbell_dir(run_dir), f"fanout-{index}")
    fo = Fanout(server, shm_layout.md_ring(cfg), doorbell=bell)
    srv: asyncio.Server | None = None
    try:
        await fo.wait_attached()
        fo.pump()
        loop = asyncio.get_running_loop()
        fo.start(loop)
        srv = await server.start(cfg.market.host, cfg.market.port, reuse_port=True)
        heap.settle()
        if ready_conn is not None:
            ready_conn.send({"ready": True, "port": cfg.market.port, "pid": os.getpid()})
        await stop.wait()
    finally:
        if srv is not None:
            srv.close()
        server.shutdown()
        await asyncio.sleep(0.2)
        fo.stop()
        bell.close()


def main(cfg: Config, index: int, ready_conn: Connection) -> None:
    """Supervisor entry: serve until SIGTERM."""
    import uvloop

    place(cfg.market.core + index - 1, cfg.market.nice)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await serve(cfg, index, ready_conn, stop)
        except BaseException as e:
            try:
                ready_conn.send({"error": f"{type(e).__name__}: {e}"})
            except OSError:
                pass
            raise

    uvloop.run(run())
