"""The ledger consumer: Kafka -> Postgres, offsets committed only AFTER the database commit.

Per step: consume up to ``max_batch`` messages (in a worker thread: confluent-kafka blocks),
decode them (settle/schema.py), write postings + audit rows + settled-batch rows + progress (with
the next offset of every partition in ``settlement_progress.kafka_offsets``) in ONE ledger
transaction, then commit the same offsets to Kafka synchronously.

Crash between the two commits: the database already holds the offsets, and on (re)assignment the
consumer seeks every partition to the offset stored in Postgres (``trust_db_offsets``), so it does
not even re-read; with that off it re-reads from Kafka's committed offset and the idempotency keys
turn the re-read into zero new rows. Both are tested.

Outages: a broker outage shows up as empty polls (librdkafka reconnects by itself) and failed
offset commits (counted, harmless: the next commit or the database offsets cover them); a
database outage is retried with back-off inside the writer, without polling Kafka meanwhile
(``max.poll.interval.ms`` is raised so a long database outage does not cost the assignment).
Messages of another shard are skipped (their offsets still advance).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from settle import metrics
from settle.catalog import Catalog
from settle.errors import SettleError
from settle.ledger import Batch, LedgerWriter, WriteResult
from settle.postings import postings
from settle.schema import decode_many

AfterCommitHook = Callable[[Batch, WriteResult], Awaitable[None] | None]


class KafkaLedgerConsumer:
    def __init__(self, bootstrap: str, topic: str, writer: LedgerWriter, catalog: Catalog, *,
                 group: str = "spotx-ledger", consumer: str = "kafka", max_batch: int = 5000,
                 poll_timeout_s: float = 0.2, trust_db_offsets: bool = True,
                 consumer_config: dict[str, Any] | None = None,
                 after_db_commit: AfterCommitHook | None = None) -> None:
        self.topic = topic
        self.writer = writer
        self.catalog = catalog
        self.name = consumer
        self.max_batch = max_batch
        self.poll_timeout_s = poll_timeout_s
        self.trust_db_offsets = trust_db_offsets
        self.after_db_commit = after_db_commit
        self._config = {
            "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "max.poll.interval.ms": 3_600_000, "log_level": 3, **(consumer_config or {})}
        self._consumer: Consumer | None = None
        self._db_offsets: dict[int, int] = {}
        self._positions: dict[int, int] = {}
        self._lag_at = 0.0
        self.commit_errors = 0
        self.messages = 0
        self.settled_seq = 0
        self._wal = 0  # the WAL id this shard is known to be bound to

    async def start(self) -> None:
        await self.writer.connect()
        prog = await self.writer.progress(self.name, self.catalog.shard)
        if prog is not None:
            self.settled_seq = prog.last_seq
            for k, v in prog.kafka_offsets.items():
                topic, _, part = k.rpartition(":")
                if topic == self.topic:
                    self._db_offsets[int(part)] = v
        self._consumer = Consumer(self._config)
        self._consumer.subscribe([self.topic], on_assign=self._on_assign)

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if self.trust_db_offsets:
            for p in parts:
                if p.partition in self._db_offsets:
                    p.offset = self._db_offsets[p.partition]
        consumer.assign(parts)

    async def _check_wal(self, wal_id: int) -> None:
        """The shard's ledger settles one WAL: messages from another one (a fresh data directory
        behind the same topic and shard) would be skipped as duplicates of its seqs. Refuse them
        before writing anything, offsets uncommitted."""
        if wal_id == self._wal:
            return
        bound = await self.writer.bind_wal(self.catalog.shard, wal_id)
        if bound != wal_id:
            metrics.DB_TX_ERRORS.labels("wal_mismatch").inc()
            raise SettleError(
                f"ledger shard {self.catalog.shard} is bound to WAL id {bound}, but topic "
                f"{self.topic} carries events of WAL {wal_id}: settling them would skip postings "
                "as duplicates. Use another shard or database, or restore the matching WAL")
        self._wal = wal_id

    async def step(self) -> int:
        """Consume, post, commit. Returns the number of messages handled."""
        c = self._consumer
        if c is None:
            raise RuntimeError("call start() first")
        msgs: list[Message] = await asyncio.to_thread(c.consume, self.max_batch, self.poll_timeout_s)
        good = [m for m in msgs if m.error() is None]
        if not good:
            await self._update_lag()
            return 0
        offsets: dict[int, int] = {}
        for m in good:
            p, o = m.partition(), m.offset()
            if p is not None and o is not None and o + 1 > offsets.get(p, -1):
                offsets[p] = o + 1
        d = decode_many([m.value() or b"" for m in good], self.catalog.shard)
        for wal_id in sorted(d.wal_ids):
            await self._check_wal(wal_id)
        rows = postings(d.events, d.ords, d.fencing, self.catalog)
        batch = Batch(consumer=self.name, shard=self.catalog.shard, postings=rows,
                      last_seq=d.last_seq, fencing_min=d.fencing_min, fencing_max=d.fencing_max,
                      ranges=d.ranges, audit=d.audit,
                      kafka_offsets={f"{self.topic}:{p}": o for p, o in offsets.items()},
                      event_ts_ns=d.ts_ns)
        res = await self.writer.write(batch)
        self._db_offsets.update(offsets)
        self.settled_seq = max(self.settled_seq, d.last_seq)
        self.messages += len(good)
        if self.after_db_commit is not None:
            r = self.after_db_commit(batch, res)
            if r is not None:
                await r
        tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        try:
            await asyncio.to_thread(c.commit, offsets=tps, asynchronous=False)
        except KafkaException as e:
            self.commit_errors += 1
            err = e.args[0] if e.args else None
            metrics.CONSUMER_COMMIT_ERRORS.labels(err.name() if isinstance(err, KafkaError) else "unknown").inc()
        self._positions.update(offsets)
        await self._update_lag()
        return len(good)

    async def _update_lag(self, every_s: float = 1.0) -> None:
        """``ledger_consumer_lag_events`` = high watermark - settled position, summed over the
        assigned partitions; at most once a second, the broker queries off the event loop."""
        now = time.monotonic()
        c = self._consumer
        if c is None or now - self._lag_at < every_s:
            return
        self._lag_at = now

        def lag() -> int | None:
            total = 0
            try:
                for tp in c.assignment():
                    _lo, hi = c.get_watermark_offsets(tp, timeout=0.5, cached=False)
                    pos = self._positions.get(tp.partition,
                                              self._db_offsets.get(tp.partition, OFFSET_INVALID))
                    total += max(0, hi - pos) if pos >= 0 else hi
            except KafkaException:
                return None
            return total

        n = await asyncio.to_thread(lag)
        if n is not None:
            metrics.CONSUMER_LAG.labels(self.name).set(n)

    async def run(self, stop: asyncio.Event) -> None:
        if self._consumer is None:
            await self.start()
        while not stop.is_set():
            await self.step()

    async def close(self) -> None:
        if self._consumer is not None:
            c, self._consumer = self._consumer, None
            await asyncio.to_thread(c.close)

