"""Root fixtures: real Postgres and real Kafka, unique per test run, and a /dev/shm leak guard.

A test that needs a service it cannot reach fails when ``CI=true`` (never skips), and skips with the
reason on a developer machine without the service.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_DSN = os.environ.get("SPOTX_PG_DSN", "postgresql://exchange:exchange@127.0.0.1:5432/exchange")
KAFKA = os.environ.get("SPOTX_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(what: str, why: object) -> None:
    msg = f"{what} unreachable: {why}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(msg)


def _shm_spotx() -> set[str]:
    try:
        return {p for p in os.listdir("/dev/shm") if p.startswith("spotx")}
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def shm_leak_guard() -> Iterator[None]:
    before = _shm_spotx()
    yield
    leaked = _shm_spotx() - before
    for name in leaked:  # clean up so one leak does not poison the next run, then fail loudly
        try:
            os.unlink(Path("/dev/shm") / name)
        except OSError:
            pass
    assert not leaked, f"tests leaked shared-memory segments: {sorted(leaked)}"


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def arun(coro_fn: Callable[[], Coroutine[Any, Any, Any]], loop_impl: str = "asyncio") -> Any:
    """Run ``coro_fn()`` to completion on a fresh loop of the given implementation."""
    if loop_impl == "uvloop":
        import uvloop

        return uvloop.run(coro_fn())
    return asyncio.run(coro_fn())


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as e:  # noqa: BLE001 - any failure to connect means the service is missing
        service_missing("Postgres at " + PG_DSN.split("@")[-1], e)
    return PG_DSN


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """A fresh database for one test; yields its DSN and drops it afterwards."""
    import asyncpg

    name = f"spotx_test_{os.getpid()}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = pg_dsn.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": KAFKA, "log_level": 0}).list_topics(timeout=5)
    except Exception as e:  # noqa: BLE001
        service_missing(f"Kafka at {KAFKA}", e)
    return KAFKA


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    name = f"spotx-test-{uuid.uuid4().hex[:12]}"
    fut = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name]
    fut.result(timeout=30)
    try:
        yield name
    finally:
        admin.delete_topics([name])[name].result(timeout=30)
