"""WAL -> outbox -> real Kafka -> ledger consumer -> real Postgres: the round trip, a consumer that
dies between its database commit and its offset commit, outbox restarts, and a missing broker."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline import config
from pipeline.wal import WalWriter
from settle.catalog import Catalog, sync
from settle.consumer import KafkaLedgerConsumer
from settle.invariants import check_against_wal, check_all
from settle.ledger import Batch, LedgerWriter, WriteResult
from settle.migrate import migrate
from settle.outbox import Outbox, read_cursor
from settle.postings import concat_events
from settle.synth import Synth, append_batches

CAT = Catalog.from_config(config.load(env={}))


class Crash(Exception):
    pass


async def prepare(dsn: str) -> asyncpg.Connection:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    await sync(conn, CAT)
    return conn


def write_wal(wal: Path, synth: Synth, n_cmds: int, *, deposits: bool = True,
              blobs: dict[int, bytes] | None = None) -> np.ndarray:
    now = time.time_ns()
    parts = ([synth.deposits(ts_ns=now)] if deposits else []) + [
        synth.trades(n_cmds, fills=2, ts_ns=now, withdraw_every=30)]
    ev = concat_events(parts)
    with WalWriter(wal, segment_bytes=1 << 20, fencing_token=3) as w:
        append_batches(w, ev, seqs_per_batch=16, blobs=blobs)
    return ev


def publish(wal: Path, bootstrap: str, topic: str) -> Outbox:
    ob = Outbox(wal, wal / "outbox.cursor", bootstrap, topic, CAT)
    assert ob.flush(30), "outbox did not drain"
    return ob


async def consume_until(c: KafkaLedgerConsumer, seq: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while c.settled_seq < seq:
        assert time.monotonic() < deadline, f"consumer stuck at seq {c.settled_seq} < {seq}"
        await c.step()


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        c.close()


def test_outbox_kafka_ledger_round_trip(pg_database: str, kafka_bootstrap: str, kafka_topic: str,
                                        tmp_path: Path) -> None:
    note = json.dumps({"actor": "ops", "reason": "drill", "ticket": "INC-9"}).encode()
    ev = write_wal(tmp_path, Synth(CAT, accounts=8), 200, blobs={3: note})

    async def go() -> None:
        conn = await prepare(pg_database)
        ob = publish(tmp_path, kafka_bootstrap, kafka_topic)
        assert ob.delivered == len(ev) + 1 and ob.cursor == int(ev["seq"][-1]) + 1
        assert read_cursor(tmp_path / "outbox.cursor") == ob.cursor
        ob.close()
        w = LedgerWriter(pg_database, retry_max_s=10)
        c = KafkaLedgerConsumer(kafka_bootstrap, kafka_topic, w, CAT, group=kafka_topic, max_batch=300)
        try:
            await c.start()
            await consume_until(c, int(ev["seq"][-1]))
            assert (await check_against_wal(conn, tmp_path, CAT)).ok
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)).ok
            assert await conn.fetchval("SELECT ticket FROM audit_log WHERE seq = 3") == "INC-9"
            prog = await w.progress("kafka", 0)
            assert prog is not None and prog.kafka_offsets == {f"{kafka_topic}:0": len(ev) + 1}
        finally:
            await c.close()
            await w.close()
            await conn.close()
        assert committed(kafka_bootstrap, kafka_topic, kafka_topic) == len(ev) + 1

    asyncio.run(go())


@pytest.mark.parametrize("trust_db_offsets", [True, False])
def test_crash_between_db_commit_and_offset_commit(pg_database: str, kafka_bootstrap: str,
                                                   kafka_topic: str, tmp_path: Path,
                                                   trust_db_offsets: bool) -> None:
    ev = write_wal(tmp_path, Synth(CAT, accounts=6), 120)
    publish(tmp_path, kafka_bootstrap, kafka_topic).close()

    async def go() -> None:
        conn = await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        crashed: list[int] = []

        def die(batch: Batch, res: WriteResult) -> None:
            crashed.append(res.inserted)
            raise Crash("killed after the database commit, before the offset commit")

        c1 = KafkaLedgerConsumer(kafka_bootstrap, kafka_topic, w, CAT, group=kafka_topic,
                                 max_batch=100, after_db_commit=die, trust_db_offsets=trust_db_offsets)
        await c1.start()
        with pytest.raises(Crash):
            while not crashed:
                await c1.step()
        await c1.close()
        first = await conn.fetchval("SELECT count(*) FROM ledger_entries")
        assert first == crashed[0] > 0
        c2 = KafkaLedgerConsumer(kafka_bootstrap, kafka_topic, w, CAT, group=kafka_topic,
                                 max_batch=100, trust_db_offsets=trust_db_offsets)
        try:
            await c2.start()
            await consume_until(c2, int(ev["seq"][-1]))
            # database offsets: nothing read twice; Kafka offsets: re-read, and posted nothing twice
            if trust_db_offsets:
                assert c2.messages == len(ev) - c1.messages
            else:
                assert c2.messages == len(ev)
            assert (await check_against_wal(conn, tmp_path, CAT)).ok
            dup = await conn.fetchval("""SELECT count(*) FROM (SELECT 1 FROM ledger_entries
                GROUP BY shard, seq, leg HAVING count(*) > 1) t""")
            assert dup == 0
        finally:
            await c2.close()
            await w.close()
            await conn.close()

    asyncio.run(go())


def test_outbox_restart_resumes_from_its_cursor(pg_database: str, kafka_bootstrap: str,
                                                kafka_topic: str, tmp_path: Path) -> None:
    synth = Synth(CAT, accounts=5)
    ev1 = write_wal(tmp_path, synth, 60)
    ob = publish(tmp_path, kafka_bootstrap, kafka_topic)
    ob.close()
    ev2 = write_wal(tmp_path, synth, 40, deposits=False)
    ob2 = Outbox(tmp_path, tmp_path / "outbox.cursor", kafka_bootstrap, kafka_topic, CAT)
    assert ob2.cursor == int(ev1["seq"][-1]) + 1
    assert ob2.flush(30)
    assert ob2.delivered == len(ev2) and ob2.cursor == int(ev2["seq"][-1]) + 1
    ob2.close()

    async def go() -> None:
        conn = await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        c = KafkaLedgerConsumer(kafka_bootstrap, kafka_topic, w, CAT, group=kafka_topic)
        try:
            await c.start()
            await consume_until(c, int(ev2["seq"][-1]))
            assert c.messages == len(ev1) + len(ev2)
            assert (await check_against_wal(conn, tmp_path, CAT)).ok
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)).ok
        finally:
            await c.close()
            await w.close()
            await conn.close()

    asyncio.run(go())


def test_outbox_never_blocks_without_a_broker(tmp_path: Path) -> None:
    ev = write_wal(tmp_path, Synth(CAT, accounts=4), 100)
    ob = Outbox(tmp_path, tmp_path / "outbox.cursor", "127.0.0.1:1", "nowhere", CAT,
                max_queue=50, producer_config={"socket.connection.setup.timeout.ms": 1000})
    try:
        t0 = time.monotonic()
        for _ in range(20):
            ob.step(0.0)
        assert time.monotonic() - t0 < 5  # each step returns; the WAL writer never waited
        assert ob.cursor == 0 and ob.delivered == 0
        assert 0 < ob.backlog() <= len(ev)  # bounded: it stopped reading the WAL when full
        from prometheus_client import REGISTRY

        assert (REGISTRY.get_sample_value("outbox_backlog_events") or 0) >= len(ev) - 1
    finally:
        ob._producer.purge()
        ob.close(timeout_s=0.1)
    assert read_cursor(tmp_path / "outbox.cursor") == 0


def test_outbox_rewinds_after_rejected_deliveries(kafka_bootstrap: str, make_kafka_topic: object,
                                                  tmp_path: Path) -> None:
    """The broker refuses the messages (too large for the topic) until an operator raises the
    limit: the outbox counts the errors, rewinds to its cursor, and then delivers everything."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    topic = make_kafka_topic(config={"max.message.bytes": "100"})  # type: ignore[operator]
    ev = write_wal(tmp_path, Synth(CAT, accounts=4), 30)
    ob = Outbox(tmp_path, tmp_path / "outbox.cursor", kafka_bootstrap, topic, CAT)
    try:
        deadline = time.monotonic() + 20
        while ob.rewinds < 2:
            assert time.monotonic() < deadline, "no delivery error seen"
            ob.step(0.05)
        assert ob.produce_errors >= 2 and ob.cursor == 0
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        entry = ConfigEntry("max.message.bytes", "1048576",
                            incremental_operation=AlterConfigOpType.SET)
        res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
        for f in admin.incremental_alter_configs([res]).values():
            f.result(timeout=30)
        deadline = time.monotonic() + 30
        while ob.cursor <= int(ev["seq"][-1]):
            assert time.monotonic() < deadline, f"outbox stuck at cursor {ob.cursor}"
            ob.step(0.05)
    finally:
        ob.close(timeout_s=1)
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    seqs: set[tuple[int, int]] = set()
    try:
        deadline = time.monotonic() + 30
        while len(seqs) < len(ev) and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    d = json.loads(m.value())
                    seqs.add((d["seq"], d["ix"]))
    finally:
        c.close()
    assert len(seqs) == len(ev)  # every event at least once: nothing skipped by the rewinds


def test_a_second_wal_behind_the_same_topic_and_shard_is_refused(
        pg_database: str, kafka_bootstrap: str, kafka_topic: str, tmp_path: Path) -> None:
    """A fresh data directory (new WAL id, seqs from 1 again) published into the topic the ledger
    already settles: its postings would be skipped as duplicates of the first WAL's (shard, seq,
    leg), so the consumer refuses it loudly, posts nothing of it and commits no offset past it."""
    wal_a, wal_b = tmp_path / "a", tmp_path / "b"
    ev_a = write_wal(wal_a, Synth(CAT, accounts=4), 40)
    write_wal(wal_b, Synth(CAT, accounts=4, seed=99), 40)
    publish(wal_a, kafka_bootstrap, kafka_topic).close()

    async def go() -> None:
        from settle.errors import SettleError

        conn = await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        c = KafkaLedgerConsumer(kafka_bootstrap, kafka_topic, w, CAT, group=kafka_topic,
                                max_batch=1000)
        try:
            await c.start()
            await consume_until(c, int(ev_a["seq"][-1]))
            rows = await conn.fetchval("SELECT count(*) FROM ledger_entries")
            bound = await conn.fetchval("SELECT wal_id FROM shard_wal WHERE shard = 0")
            publish(wal_b, kafka_bootstrap, kafka_topic).close()
            with pytest.raises(SettleError, match="bound to WAL id"):
                for _ in range(200):
                    await c.step()
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == rows
            assert await conn.fetchval("SELECT wal_id FROM shard_wal WHERE shard = 0") == bound
        finally:
            await c.close()
            await w.close()
            await conn.close()
        assert committed(kafka_bootstrap, kafka_topic, kafka_topic) == len(ev_a)

    asyncio.run(go())
