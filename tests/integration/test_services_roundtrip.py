"""The real services answer: an asyncpg round trip and a confluent-kafka produce/consume."""

from __future__ import annotations

import asyncio

import asyncpg
from confluent_kafka import Consumer, Producer


def test_postgres_round_trip(pg_database: str) -> None:
    async def go() -> list[tuple[int, int]]:
        conn = await asyncpg.connect(pg_database)
        try:
            await conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, amount bigint NOT NULL)")
            await conn.executemany("INSERT INTO t VALUES ($1, $2)", [(1, -(2**62)), (2, 2**62)])
            rows = await conn.fetch("SELECT id, amount FROM t ORDER BY id")
            return [(r["id"], r["amount"]) for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(go()) == [(1, -(2**62)), (2, 2**62)]


def test_kafka_round_trip(kafka_bootstrap: str, kafka_topic: str) -> None:
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    delivered = []
    for i in range(5):
        p.produce(kafka_topic, key=b"BTC-USDT", value=f"v{i}".encode(),
                  headers=[("seq", str(i).encode())], on_delivery=lambda e, m: delivered.append(e))
    assert p.flush(30) == 0
    assert delivered == [None] * 5
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": kafka_topic,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([kafka_topic])
    got = []
    try:
        for _ in range(60):
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            got.append((m.key(), m.value(), dict(m.headers() or [])["seq"]))
            if len(got) == 5:
                break
    finally:
        c.close()
    assert got == [(b"BTC-USDT", f"v{i}".encode(), str(i).encode()) for i in range(5)]
