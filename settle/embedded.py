"""Embedded single-host settlement: tail the durable WAL straight into the Postgres ledger.

Loop: poll the WAL tail (never past the durable watermark), group frames into engine batches
(walbatch.py), turn up to ``max_batch_events`` events into postings, and hand them to the
LedgerWriter as ONE transaction with the progress row. While that transaction is in flight the
next group is read and posted out of the same thread, so Python work and Postgres work overlap;
at most one write is in flight and writes commit in order.

Resume: from ``settlement_progress.last_seq`` of this consumer, inclusive (the last batch is read
again and posts nothing new). A fatal error (FencingTokenError, LedgerConflictError, a broken WAL
contract) ends ``run``; transient database errors are retried inside the writer for as long as the
database is away, during which the WAL simply waits on disk (the engine is never slowed).

Wake-ups: a doorbell (pipeline/doorbell.py) when given, else polling with back-off from
``idle_min_s`` to ``idle_max_s``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.doorbell import Doorbell
from pipeline.wal import WalReader, WalTail
from settle import metrics
from settle.catalog import Catalog
from settle.errors import SettleError
from settle.ledger import AuditRow, Batch, LedgerWriter, WriteResult
from settle.postings import concat_events as concat
from settle.postings import postings
from settle.walbatch import WalBatch, WalBatcher


def build_batch(consumer: str, catalog: Catalog, batches: list[WalBatch]) -> Batch:
    """One ledger Batch (postings, per-WAL-batch ranges, audit) from consecutive WAL batches."""
    events = concat([b.events for b in batches]) if len(batches) > 1 else batches[0].events
    ords = np.concatenate([b.ords for b in batches])
    fencing = np.concatenate([np.full(len(b.events), b.fencing_events, np.int64) for b in batches])
    rows = postings(events, ords, fencing, catalog)
    seqs = rows["seq"]
    ranges = []
    for b in batches:
        legs = int(np.searchsorted(seqs, b.last_seq, "right") - np.searchsorted(seqs, b.first_seq, "left"))
        ranges.append((b.first_seq, b.last_seq, legs))
    audit: list[AuditRow] = [a for b in batches for a in b.audit]
    return Batch(consumer=consumer, shard=catalog.shard, postings=rows, last_seq=batches[-1].last_seq,
                 fencing_min=min(b.fencing_min for b in batches),
                 fencing_max=max(b.fencing_max for b in batches), ranges=ranges, audit=audit,
                 event_ts_ns=events["ts_ns"].astype(np.int64))


class EmbeddedSettler:
    def __init__(self, wal_dir: str | os.PathLike[str], writer: LedgerWriter, catalog: Catalog, *,
                 consumer: str = "embedded", max_batch_events: int = 20_000,
                 idle_min_s: float = 0.0005, idle_max_s: float = 0.02,
                 doorbell: Doorbell | None = None,
                 on_commit: Callable[[Batch, WriteResult], None] | None = None) -> None:
        if max_batch_events < 1:
            raise ValueError("max_batch_events must be >= 1")
        self.reader = WalReader(wal_dir)
        self.writer = writer
        self.catalog = catalog
        self.consumer = consumer
        self.max_batch_events = max_batch_events
        self.idle_min_s, self.idle_max_s = idle_min_s, idle_max_s
        self.doorbell = doorbell
        self.on_commit = on_commit
        self._tail: WalTail | None = None
        self._batcher = WalBatcher(catalog)
        self._ready: list[WalBatch] = []
        self._inflight: asyncio.Task[WriteResult] | None = None
        self._inflight_batch: Batch | None = None
        self.settled_seq = 0
        self.from_seq = 0
        self._wal_bound = False
        self.committed_batches = 0
        self.committed_events = 0

    async def start(self) -> int:
        """Find where to resume; returns the seq the WAL tail starts from."""
        await self.writer.connect()
        await self._bind_wal()
        prog = await self.writer.progress(self.consumer, self.catalog.shard)
        self.from_seq = prog.last_seq if prog else 0
        self.settled_seq = prog.last_seq if prog else 0
        self._tail = self.reader.tail(max(1, self.from_seq))  # 1: a gap error if archived
        return self.from_seq

    async def _bind_wal(self) -> None:
        """Refuse to settle a WAL other than the one this shard's ledger was built from."""
        d = self.reader.durable()
        if d is None:
            return  # nothing durable yet: bound before the first write (step)
        bound = await self.writer.bind_wal(self.catalog.shard, int(d.wal_id))
        self._wal_bound = bound == int(d.wal_id)
        if not self._wal_bound:
            raise SettleError(
                f"ledger shard {self.catalog.shard} is bound to WAL id {bound}, but this WAL is "
                f"{d.wal_id}: settling it would skip postings as duplicates. Use another shard "
                f"(config `shard`) or database, or restore the matching WAL")

    @property
    def oldest_pending_ts_ns(self) -> int | None:
        """Sequencing time of the oldest event read but not yet committed (lag policy input)."""
        cands = []
        if self._inflight_batch is not None and len(self._inflight_batch.event_ts_ns):
            cands.append(int(self._inflight_batch.event_ts_ns.min()))
        cands += [int(b.events["ts_ns"].min()) for b in self._ready[:1] if len(b.events)]
        return min(cands) if cands else None

    def lag_seqs(self) -> int:
        dp = self.reader.durable()
        return max(0, dp.seq - self.settled_seq) if dp is not None else 0

    def _collect(self) -> list[WalBatch]:
        """Read durable frames until ``max_batch_events`` events are ready (bounded)."""
        if self._tail is None:
            raise SettleError("EmbeddedSettler: call start() first")
        n = sum(len(b.events) for b in self._ready)
        while n < self.max_batch_events:
            frames = self._tail.poll(256)
            if not frames:
                break
            for f in frames:
                for b in self._batcher.feed(f):
                    self._ready.append(b)
                    n += len(b.events)
        take: list[WalBatch] = []
        n = 0
        while self._ready and (not take or n + len(self._ready[0].events) <= self.max_batch_events):
            b = self._ready.pop(0)
            take.append(b)
            n += len(b.events)
        return take

    async def _finish(self) -> None:
        if self._inflight is None:
            return
        task, batch = self._inflight, self._inflight_batch
        try:
            res = await task
        finally:
            self._inflight, self._inflight_batch = None, None
        if batch is None:  # set together with _inflight; never None here
            return
        self.settled_seq = max(self.settled_seq, batch.last_seq)
        self.committed_batches += 1
        self.committed_events += len(batch.event_ts_ns)
        metrics.CONSUMER_LAG.labels(self.consumer).set(self.lag_seqs())
        if self.on_commit is not None:
            self.on_commit(batch, res)

    async def step(self) -> int:
        """Read what is durable and start posting it; returns the events handed to the writer."""
        take = self._collect()
        if not take:
            if self._inflight is not None and self._inflight.done():
                await self._finish()
            return 0
        batch = build_batch(self.consumer, self.catalog, take)
        await self._finish()  # writes commit in order: wait for the previous one first
        if not self._wal_bound:
            await self._bind_wal()
        self._inflight_batch = batch
        self._inflight = asyncio.create_task(self.writer.write(batch))
        return len(batch.event_ts_ns)

    async def drain(self) -> None:
        """Post everything durable now and wait for it to commit."""
        while await self.step():
            pass
        await self._finish()

    async def run(self, stop: asyncio.Event) -> None:
        if self._tail is None:
            await self.start()
        idle = self.idle_min_s
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        bell = self.doorbell
        if bell is not None:
            def rung() -> None:  # drain at once: a readable FIFO left full would spin the loop
                bell.drain()
                wake.set()
            loop.add_reader(bell.fileno(), rung)
        try:
            while not stop.is_set():
                if await self.step():
                    idle = self.idle_min_s
                    continue
                waiters: list[asyncio.Future[Any]] = []
                if self._inflight is not None:
                    waiters.append(self._inflight)
                t0 = time.monotonic()
                await _wait_any(waiters, wake, stop, idle)
                wake.clear()
                if time.monotonic() - t0 >= idle * 0.9:
                    idle = min(self.idle_max_s, idle * 2)
            await self._finish()
        finally:
            if self.doorbell is not None:
                loop.remove_reader(self.doorbell.fileno())
            if self._inflight is not None:
                self._inflight.cancel()

    async def close(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
        self.reader.close()


async def _wait_any(waiters: list[asyncio.Future[Any]], wake: asyncio.Event, stop: asyncio.Event,
                    wait_s: float) -> None:
    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(wake.wait()),
                                        asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait([*waiters, *tasks], timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
