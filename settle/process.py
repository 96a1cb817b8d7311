"""The settle process (supervisor role ``settle.process:main``, or ``python -m settle run``).

Composition root: migrate the schema, write the catalog, then run, per ``[settle] mode``:

* ``embedded``: EmbeddedSettler (WAL -> Postgres), woken by the doorbell ``settle``;
* ``kafka``: the Outbox in a thread (WAL -> Kafka, cursor ``<data_dir>/run/outbox.cursor``) and
  the KafkaLedgerConsumer (Kafka -> Postgres) on the event loop;

plus three housekeeping tasks: the lag policy (every 100 ms), the invariant checks (every
``INVARIANT_EVERY_S``) and the balances refresh (every ``BALANCES_EVERY_S``).

Lag policy outputs. The throttle flag is the file ``<data_dir>/run/settle-throttle`` ("1"/"0",
replaced atomically) for the edges to poll. SET_LAG_HALT commands go to the engine on the SPSC
ADMIN ring ``spotx-<instance>-adm-settle`` (this process is its only producer); while that ring
does not exist the command cannot be delivered, the failure is counted
(``settle_lag_command_errors_total``) and retried on the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from tenacity import AsyncRetrying, retry_if_exception, stop_never, wait_exponential_jitter

from pipeline.config import Config
from pipeline.records import ADMIN
from pipeline.wal import WalReader
from settle import metrics
from settle.catalog import Catalog, sync
from settle.errors import SettleError
from settle.invariants import check_all
from settle.lag import BacklogAge, LagPolicy, current_lag_ms
from settle.ledger import LedgerWriter, connect_kwargs, is_transient
from settle.migrate import migrate

log = logging.getLogger("spotx.settle")
INVARIANT_EVERY_S = 10.0
BALANCES_EVERY_S = 30.0
LAG_EVERY_S = 0.1
CONSUMER_GROUP = "spotx-ledger"  # pipeline/forensics.py reads this group's committed offsets



def admin_ring_name(cfg: Config) -> str:
    return f"spotx-{cfg.instance}-adm-settle"


class AdminSubmitter:
    """Pushes ADMIN records onto ``spotx-<instance>-adm-settle`` (attached on first use)."""

    def __init__(self, cfg: Config) -> None:
        self.name = admin_ring_name(cfg)
        self._ring: Any = None

    def __call__(self, rec: np.ndarray) -> None:
        if self._ring is None:
            import importlib

            try:  # imported by name: settle does not type-depend on the ring package
                self._ring = importlib.import_module("ringbuf").SpscRing.attach(self.name, ADMIN)
            except Exception as e:  # noqa: BLE001 - any attach failure means "not deliverable now"
                raise SettleError(f"admin ring {self.name} unavailable: {e}") from e
        if self._ring.try_push(rec) != len(rec):
            raise SettleError(f"admin ring {self.name} is full")


def throttle_flag(path: Path) -> Callable[[bool], None]:
    def write(on: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("1\n" if on else "0\n")
        os.replace(tmp, path)
    return write


async def _every(period_s: float, fn: Callable[[], Any], stop: asyncio.Event, what: str) -> None:
    while not stop.is_set():
        try:
            r = fn()
            if asyncio.iscoroutine(r):
                await r
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - housekeeping must outlive a bad tick; logged, retried
            log.exception("settle %s failed; retrying in %.1fs", what, period_s)
        try:
            await asyncio.wait_for(stop.wait(), period_s)
        except TimeoutError:
            pass


async def serve(cfg: Config, stop: asyncio.Event, ready: Callable[[dict[str, Any]], None] | None = None,
                *, group: str = CONSUMER_GROUP) -> None:
    s = cfg.settle
    catalog = Catalog.from_config(cfg)
    data, run = Path(cfg.data_dir), Path(cfg.data_dir) / "run"
    await _startup(s.pg_dsn, catalog)
    writer = LedgerWriter(s.pg_dsn)
    wal_dir = data / "wal"
    while not await asyncio.to_thread(os.path.isdir, wal_dir):  # the engine creates it first
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
            return
        except TimeoutError:
            pass
    policy = LagPolicy(s.lag_t2_ms, s.lag_t3_ms, submit=AdminSubmitter(cfg),
                       on_throttle=throttle_flag(run / "settle-throttle"))
    tasks: list[asyncio.Task[Any]] = []
    outbox_thread: threading.Thread | None = None
    outbox_stop = threading.Event()
    pending_ts: Callable[[], int | None]
    settled_seq: Callable[[], int]
    if s.mode == "embedded":
        from pipeline.doorbell import Doorbell
        from settle.embedded import EmbeddedSettler

        settler = EmbeddedSettler(wal_dir, writer, catalog, doorbell=Doorbell(run, "settle"))
        await settler.start()
        tasks.append(asyncio.create_task(settler.run(stop)))

        def pending_ts() -> int | None:
            return settler.oldest_pending_ts_ns

        def settled_seq() -> int:
            return settler.settled_seq
    elif s.mode == "kafka":
        from settle.consumer import KafkaLedgerConsumer
        from settle.outbox import Outbox

        outbox = Outbox(wal_dir, run / "outbox.cursor", s.kafka_bootstrap, s.kafka_topic, catalog)
        loop = asyncio.get_running_loop()
        outbox_failed: asyncio.Future[None] = loop.create_future()

        def outbox_main() -> None:
            try:
                outbox.run(outbox_stop)
            except BaseException as e:  # noqa: BLE001 - handed to the event loop, which re-raises
                loop.call_soon_threadsafe(outbox_failed.set_exception, e)

        outbox_thread = threading.Thread(target=outbox_main, name="outbox", daemon=True)
        outbox_thread.start()
        # static membership: a restarted settle process takes its partitions back at once instead
        # of waiting out the dead member's session timeout
        consumer = KafkaLedgerConsumer(
            s.kafka_bootstrap, s.kafka_topic, writer, catalog, group=group,
            consumer_config={"group.instance.id": f"spotx-settle-{cfg.instance}-{cfg.shard}"})
        await consumer.start()
        tasks.append(asyncio.create_task(consumer.run(stop)))
        tasks.append(asyncio.ensure_future(outbox_failed))

        def pending_ts() -> int | None:
            return None  # the backlog age covers the outbox and the consumer

        def settled_seq() -> int:
            return consumer.settled_seq
    else:
        raise SettleError(f"[settle] mode must be 'embedded' or 'kafka', not {s.mode!r}")

    backlog = BacklogAge()
    durable = WalReader(wal_dir)

    def lag_tick() -> None:
        dp = durable.durable()
        age = backlog.update(time.time_ns(), dp.seq if dp else 0, settled_seq())
        try:
            policy.update(max(age, current_lag_ms(pending_ts())))
        except SettleError:
            metrics.LAG_COMMAND_ERRORS.inc()

    async def invariants() -> None:
        dp = durable.durable()
        conn = await asyncpg.connect(s.pg_dsn, timeout=10, **connect_kwargs(s.pg_dsn))
        try:
            await check_all(conn, external_account=catalog.external_account, shard=catalog.shard,
                            engine_seq=dp.seq if dp else None)
        finally:
            await conn.close()

    tasks += [asyncio.create_task(_every(LAG_EVERY_S, lag_tick, stop, "lag policy")),
              asyncio.create_task(_every(INVARIANT_EVERY_S, invariants, stop, "invariant check")),
              asyncio.create_task(_every(BALANCES_EVERY_S, writer.refresh_balances, stop,
                                         "balances refresh"))]
    if ready is not None:
        ready({"ready": True, "mode": s.mode})
    try:
        done, _ = await asyncio.wait([*tasks, asyncio.create_task(stop.wait())],
                                     return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t in tasks and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        outbox_stop.set()
        if outbox_thread is not None:
            outbox_thread.join(10)
        durable.close()
        await writer.close()


async def _startup(dsn: str, catalog: Catalog) -> None:
    """Migrate and write the catalog, waiting (with back-off) for a database that is not up yet."""
    async def once() -> None:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn, timeout=10, **connect_kwargs(dsn))
        try:
            await sync(conn, catalog)
        finally:
            await conn.close()

    async for attempt in AsyncRetrying(retry=retry_if_exception(is_transient),
                                       wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
                                       stop=stop_never, reraise=True):
        with attempt:
            await once()


def main(cfg: Config, index: int = 0, ready: Connection | None = None) -> None:
    """Supervisor entry point: runs until SIGTERM."""
    import uvloop

    from pipeline.cpu import place

    place(cfg.settle.core, cfg.settle.nice)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await serve(cfg, stop, ready.send if ready is not None else None)

    uvloop.run(go())
