"""The Kafka outbox: tail the durable WAL and publish every event (and admin note) to Kafka.

Producer: confluent-kafka, ``enable.idempotence`` (so ``acks=all``, ordered, no duplicates from
librdkafka's own retries), key and headers per settle/SCHEMA.md. ``message.timeout.ms`` defaults
to 0 (never give up): during a broker outage librdkafka keeps retrying, its bounded local queue
fills, ``produce`` raises BufferError, and the outbox simply stops reading the WAL until there is
room. The WAL is on disk, so the engine never waits for Kafka (RUNBOOK 3.5: keep the core
running); ``outbox_backlog_events`` grows and drains when the broker returns.

Cursor: the seq of the first WAL batch not yet fully acknowledged — batches complete in WAL order,
a batch counts as done when every one of its messages got a successful delivery report. The
cursor file (JSON ``{"next_seq": N}``) is written atomically (temp file, fsync, rename, fsync dir)
at most every ``cursor_interval_s`` and on close. A restart resumes the WAL tail at the cursor:
what was acknowledged but not yet in the file is published again (the consumer is idempotent),
nothing is skipped. A failed delivery or a fatal producer error rewinds the same way: the
producer is rebuilt and the tail restarts from the cursor.

Threading: synchronous; run it in its own thread or process (``run(stop)``); ``step`` for tests.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer

from pipeline.wal import WalReader, WalTail
from settle import metrics
from settle.catalog import Catalog
from settle.schema import Message, encode_batch
from settle.walbatch import WalBatcher


def write_cursor(path: Path, next_seq: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps({"next_seq": next_seq, "updated_ns": time.time_ns()}))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_cursor(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["next_seq"])
    except FileNotFoundError:
        return 0


class _Pending:
    __slots__ = ("first_seq", "last_seq", "outstanding", "gen")

    def __init__(self, first_seq: int, last_seq: int, outstanding: int, gen: int) -> None:
        self.first_seq, self.last_seq, self.outstanding = first_seq, last_seq, outstanding
        self.gen = gen


class Outbox:
    def __init__(self, wal_dir: str | os.PathLike[str], cursor_path: str | os.PathLike[str],
                 bootstrap: str, topic: str, catalog: Catalog, *, producer_config: dict[str, Any] | None = None,
                 cursor_interval_s: float = 0.2, max_queue: int = 100_000) -> None:
        self.reader = WalReader(wal_dir)
        self.cursor_path = Path(cursor_path)
        self.topic = topic
        self.catalog = catalog
        self.cursor_interval_s = cursor_interval_s
        self._config = {
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 2, "compression.type": "lz4", "message.timeout.ms": 0,
            "queue.buffering.max.messages": max_queue, "error_cb": self._on_error,
            "log_level": 3, **(producer_config or {})}
        self._producer = Producer(self._config)
        self.cursor = read_cursor(self.cursor_path)
        self._saved_cursor = self.cursor
        self._saved_at = 0.0
        self._tail: WalTail = self.reader.tail(max(1, self.cursor))
        self._batcher = WalBatcher(catalog)
        self._queue: collections.deque[tuple[Message, _Pending]] = collections.deque()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._read_seq = self.cursor
        self._rewind = False
        self._gen = 0
        self.delivered = 0
        self.produce_errors = 0
        self.rewinds = 0
        self.broker_up = True

    # -- callbacks (run inside producer.poll / flush, on this thread) --------------------------------

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.broker_up = False
            metrics.BROKER_UP.set(0)
        if err.fatal():
            self._count_error("fatal")
            self._rewind = True

    def _on_delivery(self, entry: _Pending, err: KafkaError | None, _msg: Any) -> None:
        if entry.gen != self._gen:
            return  # a report from before a rewind (purged): that batch is being produced again
        if err is not None:
            self._count_error(err.name())
            self._rewind = True
            return
        self.delivered += 1
        metrics.OUTBOX_DELIVERED.inc()
        if not self.broker_up:
            self.broker_up = True
        metrics.BROKER_UP.set(1)
        entry.outstanding -= 1

    def _count_error(self, reason: str) -> None:
        self.produce_errors += 1
        metrics.PRODUCE_ERRORS.labels(reason).inc()

    # -- loop ---------------------------------------------------------------------------------------

    def step(self, poll_timeout_s: float = 0.0) -> int:
        """Read durable WAL batches (when the producer has room), produce, serve delivery reports,
        advance and maybe persist the cursor. Returns the messages produced."""
        if self._rewind:
            self._do_rewind()
        produced = self._produce_queued()
        if not self._queue:
            for f in self._tail.poll(256):
                for b in self._batcher.feed(f):
                    msgs = encode_batch(b, self.catalog, self._wal_id())
                    entry = _Pending(b.first_seq, b.last_seq, len(msgs), self._gen)
                    self._pending.append(entry)
                    self._queue.extend((m, entry) for m in msgs)
                    self._read_seq = b.last_seq + 1
            produced += self._produce_queued()
        self._producer.poll(poll_timeout_s)
        self._advance()
        dp = self.reader.durable()
        unread = max(0, dp.seq + 1 - self._read_seq) if dp is not None else 0
        metrics.OUTBOX_BACKLOG.set(len(self._producer) + len(self._queue) + unread)
        return produced

    def _produce_queued(self) -> int:
        n = 0
        q, produce = self._queue, self._producer.produce
        while q and not self._rewind:
            (key, value, headers), entry = q[0]
            try:
                produce(self.topic, value=value, key=key, headers=headers,
                        on_delivery=functools.partial(self._on_delivery, entry))
            except BufferError:
                self._producer.poll(0.05)  # full local queue (broker slow or away): serve reports
                break
            q.popleft()
            n += 1
        return n

    def _advance(self) -> None:
        p = self._pending
        while p and p[0].outstanding == 0:
            self.cursor = p.popleft().last_seq + 1
        now = time.monotonic()
        if self.cursor != self._saved_cursor and now - self._saved_at >= self.cursor_interval_s:
            self.save_cursor()

    def _wal_id(self) -> int:
        d = self.reader.durable()  # a frame was read, so the watermark exists
        return int(d.wal_id) if d is not None else 0

    def save_cursor(self) -> None:
        write_cursor(self.cursor_path, self.cursor)
        self._saved_cursor = self.cursor
        self._saved_at = time.monotonic()

    def _do_rewind(self) -> None:
        """Drop everything in flight and start again from the cursor (duplicates, never gaps)."""
        self.rewinds += 1
        self._gen += 1
        self._producer.purge()
        self._producer.flush(0)
        self._producer = Producer(self._config)
        self._queue.clear()
        self._pending.clear()
        self._batcher = WalBatcher(self.catalog)
        self._tail = self.reader.tail(max(1, self.cursor))
        self._read_seq = self.cursor
        self._rewind = False

    def backlog(self) -> int:
        return len(self._producer) + len(self._queue)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Produce everything durable now and wait for its delivery reports (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.step(0.01)
            dp = self.reader.durable()
            if not self._queue and not self._pending and (dp is None or self._read_seq > dp.seq):
                self.save_cursor()
                return True
        return False

    def run(self, stop: threading.Event, idle_min_s: float = 0.001, idle_max_s: float = 0.01) -> None:
        """Until ``stop``: step; when idle, serve delivery reports for a back-off period."""
        idle = idle_min_s
        while not stop.is_set():
            if self.step(0.0):
                idle = idle_min_s
                continue
            self._producer.poll(idle)
            self._advance()
            idle = min(idle_max_s, idle * 2)
        self.close()

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
        self._advance()
        self.save_cursor()
        self.reader.close()
