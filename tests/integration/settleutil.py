"""Shared by the integration tests that run the settle process: a WAL of synthetic trades, and a
wait until the process settled a seq."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from pipeline.wal import WalWriter
from settle.catalog import Catalog
from settle.postings import concat_events
from settle.synth import Synth, append_batches


def wal_with_trades(data: Path, catalog: Catalog, trades: int = 80) -> int:
    """``<data>/wal`` holding deposits and ``trades`` synthetic trades; returns the last seq."""
    (data / "wal").mkdir(parents=True)
    s = Synth(catalog, accounts=6)
    ev = concat_events([s.deposits(ts_ns=time.time_ns()),
                        s.trades(trades, fills=2, ts_ns=time.time_ns())])
    with WalWriter(data / "wal", segment_bytes=1 << 20, fencing_token=1) as w:
        return append_batches(w, ev, seqs_per_batch=16)


async def wait_settled(dsn: str, last: int, task: asyncio.Task[None],
                       ready: Callable[[], bool], timeout_s: float = 60.0) -> asyncpg.Connection:
    """Poll ``settlement_progress`` until it reaches ``last`` while ``task`` (``serve``) stays
    alive; connects once ``ready()`` (pass ``serve``'s ready report: before it, the tables may not
    exist yet). Returns the open connection (the caller closes it)."""
    deadline = time.monotonic() + timeout_s
    conn: asyncpg.Connection | None = None
    settled = 0
    try:
        while settled < last:
            assert time.monotonic() < deadline, f"settled {settled} of {last}"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
            if conn is None and ready():
                conn = await asyncpg.connect(dsn)
            if conn is not None:
                settled = int(await conn.fetchval(
                    "SELECT coalesce(max(last_seq), 0) FROM settlement_progress"))
    except BaseException:
        if conn is not None:
            await conn.close()
        raise
    assert conn is not None
    return conn
