"""The real services answer as the project uses them.

* asyncpg (under asyncio and uvloop): create/insert/select with int64 extremes, rollback.
* confluent-kafka: idempotent acks=all produce with key and headers, consume them back in order.
* a throw-away cluster survives a crash (immediate stop) with committed rows and without
  uncommitted ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from confluent_kafka import Consumer, KafkaError, Producer

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def test_postgres_round_trip(pg_database: str, arun: Callable[..., Any]) -> None:
    async def go() -> tuple[list[tuple[int, int]], int]:
        conn = await asyncpg.connect(pg_database, timeout=10)
        try:
            await conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, amount bigint NOT NULL)")
            await conn.executemany("INSERT INTO t VALUES ($1, $2)",
                                   [(1, INT64_MIN), (2, INT64_MAX), (3, 0)])
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES (4, 4)")
                    await conn.execute("INSERT INTO t VALUES (1, 1)")  # duplicate: all rolled back
            rows = await conn.fetch("SELECT id, amount FROM t ORDER BY id")
            db = await conn.fetchval("SELECT current_database()")
            return [(r["id"], r["amount"]) for r in rows], db
        finally:
            await conn.close()

    rows, db = arun(go)
    assert rows == [(1, INT64_MIN), (2, INT64_MAX), (3, 0)]
    assert db.startswith("spotx_test_")


def test_kafka_round_trip(kafka_bootstrap: str, kafka_topic: str) -> None:
    n = 20
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 1})
    reports: list[tuple[KafkaError | None, int | None]] = []
    for i in range(n):
        p.produce(kafka_topic, key=b"BTC-USDT", value=i.to_bytes(8, "little", signed=True),
                  headers=[("seq", str(i).encode()), ("kind", b"trade")],
                  on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert p.flush(30) == 0, "messages still queued after 30 s"
    assert [e for e, _ in reports] == [None] * n
    assert [o for _, o in reports] == list(range(n))  # one partition, one producer: dense offsets

    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{kafka_topic}-g",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    got: list[tuple[Any, int, dict[str, Any]]] = []
    try:
        c.subscribe([kafka_topic])
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            value = m.value()
            assert value is not None
            got.append((m.key(), int.from_bytes(value, "little", signed=True),
                        dict(m.headers() or [])))
    finally:
        c.close()
    assert got == [(b"BTC-USDT", i, {"seq": str(i).encode(), "kind": b"trade"}) for i in range(n)]


def test_throwaway_postgres_survives_a_crash(throwaway_pg: Any) -> None:
    async def write() -> None:
        conn = await asyncpg.connect(throwaway_pg.dsn, timeout=10)
        await conn.execute("CREATE TABLE ledger (id bigint PRIMARY KEY, amount bigint NOT NULL)")
        await conn.execute("INSERT INTO ledger VALUES (1, 100)")
        tr = conn.transaction()
        await tr.start()
        await conn.execute("INSERT INTO ledger VALUES (2, 200)")  # never committed
        throwaway_pg.crash()  # immediate stop: no checkpoint, recovery on the next start
        with pytest.raises((asyncpg.PostgresConnectionError, ConnectionError, OSError)):
            await conn.fetchval("SELECT 1")
        conn.terminate()

    async def read() -> list[tuple[int, int]]:
        conn = await asyncpg.connect(throwaway_pg.dsn, timeout=10)
        try:
            return [(r["id"], r["amount"]) for r in await conn.fetch("SELECT * FROM ledger ORDER BY id")]
        finally:
            await conn.close()

    asyncio.run(write())
    assert not throwaway_pg.running()
    with pytest.raises(OSError):
        asyncio.run(read())
    throwaway_pg.start()
    assert asyncio.run(read()) == [(1, 100)]
