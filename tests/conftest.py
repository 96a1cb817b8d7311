"""Root fixtures: real Postgres and real Kafka (unique per test), async helpers, a /dev/shm leak guard.

Services come from the environment that ``scripts/test.sh`` exports:

* ``SPOTX_PG_DSN``          (default ``postgresql://exchange:exchange@127.0.0.1:5432/exchange``)
* ``SPOTX_KAFKA_BOOTSTRAP`` (default ``127.0.0.1:9092``)

A test that needs a service it cannot reach FAILS when ``CI=true`` and is skipped with the reason
otherwise (a developer box without the service).

Fixtures:

* ``pg_dsn`` (session) -> str: the service DSN, probed once.
* ``pg_database`` -> str: DSN of a fresh database ``spotx_test_<pid>_<hex>``, dropped afterwards.
* ``kafka_bootstrap`` (session) -> str, probed once.
* ``kafka_topic`` -> str: a fresh 1-partition topic, deleted afterwards.
* ``make_kafka_topic`` -> ``(partitions=1, config=None) -> str``: more topics, all deleted afterwards.
* ``loop_impl``: parametrized over ``"asyncio"`` and ``"uvloop"``.
* ``arun`` -> ``(coro_fn, loop_impl=None) -> result``: runs ``coro_fn()`` on a fresh loop of the
  test's ``loop_impl`` (so a test taking ``arun`` runs once per loop implementation).

Async tests do not use pytest-asyncio: they call ``arun(main)`` (or ``asyncio.run`` when only one
loop matters).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

T = TypeVar("T")

PG_DSN = os.environ.get("SPOTX_PG_DSN", "postgresql://exchange:exchange@127.0.0.1:5432/exchange")
KAFKA = os.environ.get("SPOTX_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
IN_CI = os.environ.get("CI", "").lower() == "true"
LOOP_IMPLS = ("asyncio", "uvloop")


def service_missing(what: str, why: object) -> NoReturn:
    """Fail (CI) or skip (developer box) a test whose service is not there."""
    msg = f"{what} unreachable: {type(why).__name__}: {why}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: a missing service is a failure; run scripts/test.sh)", pytrace=False)
    pytest.skip(msg + " (run scripts/test.sh, which starts the services)")


# --- async -------------------------------------------------------------------------------------


def run_on_loop(coro_fn: Callable[[], Awaitable[T]], loop_impl: str) -> T:
    """Run ``coro_fn()`` to completion on a fresh event loop of the named implementation."""

    async def main() -> T:
        return await coro_fn()

    if loop_impl == "uvloop":
        import uvloop

        return uvloop.run(main())
    if loop_impl == "asyncio":
        return asyncio.run(main())
    raise ValueError(f"unknown loop implementation {loop_impl!r}; expected one of {LOOP_IMPLS}")


@pytest.fixture(params=LOOP_IMPLS)
def loop_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def arun(loop_impl: str) -> Callable[..., Any]:
    def _arun(coro_fn: Callable[[], Awaitable[T]], impl: str | None = None) -> T:
        return run_on_loop(coro_fn, impl or loop_impl)

    return _arun


# --- Postgres ------------------------------------------------------------------------------------


async def _pg_execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_drop(dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await _drop_database(conn, name)
    finally:
        await conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str, prefix: str) -> bool:
    """``<prefix><pid>_...`` left by a test run (on this host) that died before its teardown."""
    pid = name[len(prefix):].split("_", 1)[0].split("-", 1)[0]
    return name.startswith(prefix) and pid.isdigit() and not _pid_alive(int(pid))


async def _drop_database(conn: Any, name: str) -> None:
    """``DROP DATABASE ... WITH (FORCE)``, waiting out an autovacuum worker.

    FORCE terminates the other sessions in the database, but on Postgres 15 it refuses (as
    InsufficientPrivilege: "must be a member of the role whose process is being terminated") when
    one of them is an autovacuum worker, which runs as no role; a plain DROP signals autovacuum
    workers and waits for them. A CI run hit this right after a settlement test had written rows.
    """
    import asyncpg

    sql = f'DROP DATABASE IF EXISTS "{name}"'
    for _ in range(50):
        try:
            await conn.execute(sql + " WITH (FORCE)")
            return
        except asyncpg.exceptions.InsufficientPrivilegeError:
            try:
                await conn.execute(sql)
                return
            except asyncpg.exceptions.ObjectInUseError:
                await asyncio.sleep(0.1)
    await conn.execute(sql + " WITH (FORCE)")


async def _drop_stale_databases(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        me = await conn.fetchval("SELECT current_user")
        names = await conn.fetch("SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                                 "WHERE datname LIKE 'spotx\\_test\\_%' AND r.rolname = $1", me)
        for row in names:
            if _stale(row["datname"], "spotx_test_"):
                await _drop_database(conn, row["datname"])
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    err: Exception | None = None
    try:
        asyncio.run(_pg_execute(PG_DSN, "SELECT 1"))
    except Exception as e:  # noqa: BLE001 - any failure to connect means the service is missing
        err = e
    if err is not None:
        service_missing("Postgres at " + PG_DSN.rsplit("@", 1)[-1], err)
    asyncio.run(_drop_stale_databases(PG_DSN))
    return PG_DSN


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """A fresh database owned by the service role; yields its DSN and drops it afterwards."""
    name = f"spotx_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_pg_execute(pg_dsn, f'CREATE DATABASE "{name}"'))
    base, _, query = pg_dsn.partition("?")
    dsn = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    try:
        yield dsn
    finally:
        asyncio.run(_pg_drop(pg_dsn, name))


# --- Kafka ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from confluent_kafka.admin import AdminClient

    err: Exception | None = None
    try:
        md = AdminClient({"bootstrap.servers": KAFKA, "log_level": 0}).list_topics(timeout=5)
        if not md.brokers:
            err = RuntimeError("metadata lists no broker")
    except Exception as e:  # noqa: BLE001 - any failure means the service is missing
        err = e
    if err is not None:
        service_missing(f"Kafka at {KAFKA}", err)
    admin = AdminClient({"bootstrap.servers": KAFKA, "log_level": 0})
    stale = [t for t in admin.list_topics(timeout=10).topics if _stale(t, "spotx-test-")]
    if stale:
        for fut in admin.delete_topics(stale, operation_timeout=30).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001 - a concurrent run may have deleted it first
                pass
    return KAFKA


@pytest.fixture
def make_kafka_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made: list[str] = []

    def make(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"spotx-test-{os.getpid()}-{secrets.token_hex(5)}"
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        admin.create_topics([topic], operation_timeout=30)[name].result(timeout=30)
        made.append(name)
        # creation is acknowledged by the controller; wait until the broker serves its metadata
        deadline = time.monotonic() + 30
        while True:
            t = admin.list_topics(name, timeout=5).topics.get(name)
            if t is not None and t.error is None and len(t.partitions) == partitions:
                return name
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} created but not visible in metadata after 30 s")
            time.sleep(0.05)

    yield make
    if made:
        for fut in admin.delete_topics(made, operation_timeout=30).values():
            fut.result(timeout=30)


@pytest.fixture
def kafka_topic(make_kafka_topic: Callable[..., str]) -> str:
    return make_kafka_topic()


# --- /dev/shm leak guard ----------------------------------------------------------------------

SHM_DIR = Path("/dev/shm")


def _shm_spotx() -> dict[str, float]:
    try:
        return {p.name: p.stat().st_mtime for p in SHM_DIR.glob("spotx*")}
    except FileNotFoundError:
        return {}


def _mapped_elsewhere(names: set[str]) -> set[str]:
    """Names some other live process maps (a concurrent test run's or a running stack's)."""
    me = os.getpid()
    found: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            maps = (proc / "maps").read_text()
        except OSError:
            continue
        found.update(n for n in names if f"/dev/shm/{n}" in maps)
    return found


@pytest.fixture(scope="session", autouse=True)
def shm_leak_guard() -> Iterator[None]:
    """Fails the session when tests leave ``/dev/shm/spotx*`` segments behind.

    The machine is shared: segments that existed before the session, or that another live process
    still maps (a concurrent test run, a running stack), are not counted. Leaks are removed after
    being reported so they do not poison the next run. ``SPOTX_SHM_GUARD=0`` turns the guard off.
    """
    if os.environ.get("SPOTX_SHM_GUARD", "1") == "0":
        yield
        return
    before = _shm_spotx()
    t_start = time.time()
    yield
    after = _shm_spotx()
    new = {n for n, mtime in after.items() if n not in before and mtime >= t_start - 1}
    leaked = sorted(new - _mapped_elsewhere(new))
    for name in leaked:
        try:
            (SHM_DIR / name).unlink()
        except OSError:
            pass
    if leaked:
        pytest.fail(f"tests leaked {len(leaked)} shared-memory segment(s) in /dev/shm "
                    f"(removed now): {leaked}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def numba_kernels_warm() -> None:
    """The edge's numba kernels compiled (or loaded from numba's cache) once, before any test:
    cold, that takes seconds, which a test with a deadline or a timeout must not pay as it runs
    (processes ``spotx up`` starts warm them themselves before reporting ready)."""
    from edge.wire_fast import warm as warm_wire
    from pipeline.publisher.flatbook import warm as warm_books

    warm_wire()
    warm_books()
