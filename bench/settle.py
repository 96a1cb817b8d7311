"""Bench suite ``settle``: trades into the Postgres ledger, and settlement lag at a fixed rate.

Regimes (a fresh database ``spotx_bench_<pid>`` at ``SPOTX_PG_DSN``, migrated, dropped after):

* ``ledger writer``: pre-built batches of ``BATCH`` trades (1 fill per command, 5 postings each:
  buyer/seller base and quote, fee account) through ``LedgerWriter.write``, one transaction per
  batch (fence + binary COPY + accounts + settled batch + progress), ``synchronous_commit`` as
  configured on the server. Value = trades/s. Checked: row count and per-asset zero sums.
* ``embedded WAL -> ledger``: the same trades journaled in a WAL (fdatasync), then the embedded
  settler drains it (WAL read, batching, postings, writes overlapped with the next read).
* peers in the same run: a bare ``COPY`` of the same rows (binary) into an unindexed, unconstrained
  table — the bulk-insert ceiling of this Postgres on this box — and ``executemany`` INSERT ... ON
  CONFLICT DO NOTHING into the ledger (the alternative write path, on a smaller sample).
* ``lag @ R trades/s``: a separate "engine" process appends a WAL batch every millisecond at R
  trades/s (fdatasync per batch, ts_ns stamped at append, doorbell rung after each sync); the
  embedded settler posts them live. Lag = ledger COMMIT return minus the event's ts_ns, per trade,
  HDR histogram (p50/p99/p99.9 in ms). Checked: every trade settled, WAL cross-check clean.

The box has 2 cores and is shared with other work while this runs: figures are indicative.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg
import numpy as np

from bench.harness import Latency, Result, rate
from pipeline import config
from pipeline.wal import WalWriter
from settle import copybin
from settle.catalog import Catalog, sync
from settle.embedded import EmbeddedSettler
from settle.ledger import Batch, LedgerWriter, WriteResult
from settle.migrate import migrate
from settle.postings import ordinals, postings
from settle.synth import Synth, append_batches

DURABILITY = "fdatasync"
BATCH = 5_000
PG_DSN = os.environ.get("SPOTX_PG_DSN", "postgresql://exchange:exchange@127.0.0.1:5432/exchange")
CTX = mp.get_context("spawn")
SHARED = "machine shared with other engineers' work while measured (2 cores)"


def _catalog() -> Catalog:
    return Catalog.from_config(config.load(env={}))


def _batches(cat: Catalog, synth: Synth, trades: int, fencing: int = 1) -> list[Batch]:
    out = []
    for i in range(0, trades, BATCH):
        ev = synth.trades(min(BATCH, trades - i), fills=1, ts_ns=time.time_ns())
        o, _ = ordinals(ev["seq"])
        p = postings(ev, o, fencing, cat)
        first, last = int(ev["seq"][0]), int(ev["seq"][-1])
        out.append(Batch("bench", cat.shard, p, last, fencing, fencing, [(first, last, len(p))],
                         event_ts_ns=ev["ts_ns"].astype(np.int64)))
    return out


async def _fresh_db() -> tuple[str, str]:
    name = f"spotx_bench_{os.getpid()}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return PG_DSN.rsplit("/", 1)[0] + "/" + name, name


async def _drop_db(name: str) -> None:
    admin = await asyncpg.connect(PG_DSN)
    try:
        for attempt in range(20):  # an autovacuum worker on it cannot be forced out by us: wait
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except asyncpg.InsufficientPrivilegeError:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _reset(conn: asyncpg.Connection) -> None:
    await conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_truncate")
    await conn.execute("TRUNCATE ledger_entries, settled_batches, settlement_progress, "
                       "fencing_high_water, accounts, shard_wal")
    await conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_truncate")


async def _balanced(conn: asyncpg.Connection, rows: int) -> bool:
    n = await conn.fetchval("SELECT count(*) FROM ledger_entries")
    bad = await conn.fetchval(
        "SELECT count(*) FROM (SELECT asset FROM ledger_entries GROUP BY asset HAVING sum(amount) <> 0) t")
    return bool(n == rows and bad == 0)


async def _writer_regime(dsn: str, cat: Catalog, trades: int) -> tuple[Result, list[Batch]]:
    batches = _batches(cat, Synth(cat, accounts=1000, seed=1), trades)
    w = LedgerWriter(dsn)
    await w.connect()
    await w.write(_batches(cat, Synth(cat, accounts=10, seed=9), 100)[0])  # warm: connection, plans
    conn = await asyncpg.connect(dsn)
    await _reset(conn)
    t0 = time.perf_counter()
    for b in batches:
        await w.write(b)
    dt = time.perf_counter() - t0
    ok = await _balanced(conn, sum(len(b.postings) for b in batches))
    await conn.close()
    await w.close()
    return Result(f"ledger writer, {BATCH}-trade tx", "trades/s", rate(trades, dt), correct=ok,
                  notes=f"{trades} trades, 5 postings each, binary COPY; {SHARED}"), batches


async def _copy_ceiling(dsn: str, batches: list[Batch], trades: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        cols = ", ".join(f"{c} {t}" for c, t in zip(copybin.COLUMNS, (
            "smallint", "bigint", "integer", "bigint", "smallint", "bigint", "smallint", "integer",
            "bigint", "bigint", "timestamptz"), strict=True))
        await conn.execute(f"DROP TABLE IF EXISTS bare_copy; CREATE TABLE bare_copy ({cols})")
        import io

        t0 = time.perf_counter()
        for b in batches:
            async with conn.transaction():
                await conn.copy_to_table("bare_copy", source=io.BytesIO(copybin.encode(b.postings)),
                                         columns=copybin.COLUMNS, format="binary")
        dt = time.perf_counter() - t0
        await conn.execute("DROP TABLE bare_copy")
        return rate(trades, dt)
    finally:
        await conn.close()


async def _executemany(dsn: str, cat: Catalog, trades: int) -> float:
    batches = _batches(cat, Synth(cat, accounts=1000, seed=3), trades, fencing=1)
    conn = await asyncpg.connect(dsn)
    await _reset(conn)
    sql = (f"INSERT INTO ledger_entries ({', '.join(copybin.COLUMNS)}) VALUES "
           f"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11::bigint / 1e9)) "
           f"ON CONFLICT ON CONSTRAINT ledger_entries_idem DO NOTHING")
    try:
        t0 = time.perf_counter()
        for b in batches:
            p = b.postings
            rows = list(zip(*(p[f].tolist() for f in ("shard", "seq", "leg", "account", "asset",
                                                       "amount", "kind", "symbol", "trade_id",
                                                       "fencing", "ts_ns")), strict=True))
            async with conn.transaction():
                await conn.executemany(sql, rows)
        return rate(trades, time.perf_counter() - t0)
    finally:
        await conn.close()


async def _embedded_regime(dsn: str, cat: Catalog, trades: int, wal: Path) -> Result:
    s = Synth(cat, accounts=1000, seed=5)
    ev = s.trades(trades, fills=1, ts_ns=time.time_ns())
    with WalWriter(wal, segment_bytes=64 << 20, fencing_token=1) as w:
        append_batches(w, ev, seqs_per_batch=256)
    conn = await asyncpg.connect(dsn)
    await _reset(conn)
    w2 = LedgerWriter(dsn)
    st = EmbeddedSettler(wal, w2, cat, consumer="bench-embedded", max_batch_events=BATCH)
    await st.start()
    t0 = time.perf_counter()
    await st.drain()
    dt = time.perf_counter() - t0
    ok = await _balanced(conn, 5 * trades) and st.settled_seq == int(ev["seq"][-1])
    await st.close()
    await w2.close()
    await conn.close()
    return Result("embedded WAL -> ledger drain", "trades/s", rate(trades, dt), correct=ok,
                  notes=f"{trades} trades journaled first (256 cmds/WAL batch); {SHARED}")


def _feed(wal: str, run_dir: str, tps: int, seconds: float, start_seq: int,
          batch_ms: float = 1.0, sync_mode: str = "fdatasync") -> None:
    """The 'engine': one WAL batch every ``batch_ms`` at ``tps`` trades/s, synced, bell rung."""
    from pipeline.doorbell import Ringer

    cat = _catalog()
    s = Synth(cat, accounts=1000, seed=11)
    s.seq = start_seq
    ringer = Ringer(run_dir)
    per_batch = max(1, int(tps * batch_ms / 1000))
    n = int(tps * seconds)
    sent = 0
    t0 = time.perf_counter()
    with WalWriter(wal, segment_bytes=64 << 20, fencing_token=1, sync_mode=sync_mode) as w:
        while sent < n:
            due = t0 + sent / tps
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            k = min(per_batch, n - sent)
            ev = s.trades(k, fills=1, ts_ns=time.time_ns())
            append_batches(w, ev, seqs_per_batch=k, sync=True)
            ringer.ring()
            sent += k
    ringer.close()


async def _lag_regime(dsn: str, cat: Catalog, tps: int, seconds: float, wal: Path) -> Result:
    from pipeline.doorbell import Doorbell

    run_dir = wal.parent / "run"
    conn = await asyncpg.connect(dsn)
    await _reset(conn)
    lat = Latency()

    def on_commit(batch: Batch, res: WriteResult) -> None:
        lat.record_many((res.committed_ns - batch.event_ts_ns).tolist())

    w = LedgerWriter(dsn)
    bell = Doorbell(run_dir, "settle")
    st = EmbeddedSettler(wal, w, cat, consumer="bench-lag", doorbell=bell, on_commit=on_commit,
                         max_batch_events=BATCH)
    await st.start()
    proc = CTX.Process(target=_feed, args=(str(wal), str(run_dir), tps, seconds, 0))
    stop = asyncio.Event()
    runner = asyncio.create_task(st.run(stop))
    proc.start()
    try:
        await asyncio.to_thread(proc.join, seconds + 60)
        n = int(tps * seconds)
        deadline = time.monotonic() + 30
        while st.settled_seq < n and time.monotonic() < deadline and not runner.done():
            await asyncio.wait([runner], timeout=0.01)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
        if proc.is_alive():
            proc.kill()
    from settle.invariants import check_against_wal

    ok = st.settled_seq == n and lat.count == n and proc.exitcode == 0
    ok = ok and (await check_against_wal(conn, wal, cat)).ok
    await st.close()
    bell.close()
    await w.close()
    await conn.close()
    p50, p99, p999 = (lat.pct(50) / 1e6, lat.pct(99) / 1e6, lat.pct(99.9) / 1e6)
    return Result(f"settlement lag @ {tps // 1000}k trades/s", "ms", p99, p50=p50, p99=p99,
                  p999=p999, correct=ok,
                  notes=f"{n} trades over {seconds:.0f}s, 1 WAL batch/ms with fdatasync; value = "
                        f"p99; ts_ns at WAL append -> ledger COMMIT; {SHARED}")


async def _run(quick: bool) -> list[Result]:
    cat = _catalog()
    dsn, name = await _fresh_db()
    tmp = Path(tempfile.mkdtemp(prefix="spotx-bench-settle-"))
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        await sync(conn, cat)
        await conn.close()
        trades = 100_000 if quick else 500_000
        res, batches = await _writer_regime(dsn, cat, trades)
        ceiling = await _copy_ceiling(dsn, batches, trades)
        res.with_peer("bare COPY, no indexes", ceiling)
        em = await _executemany(dsn, cat, 20_000 if quick else 50_000)
        em_res = Result("executemany ON CONFLICT, 5k-trade tx", "trades/s", em,
                        notes=f"the alternative write path, same rows; {SHARED}")
        em_res.with_peer("ledger writer (COPY)", res.value)
        (tmp / "wal-drain").mkdir()
        (tmp / "wal-lag").mkdir()
        emb = await _embedded_regime(dsn, cat, trades, tmp / "wal-drain")
        lag = await _lag_regime(dsn, cat, 10_000, 3.0 if quick else 10.0, tmp / "wal-lag")
        return [res, emb, em_res, lag]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        await _drop_db(name)


def run(quick: bool) -> list[Result]:
    return asyncio.run(_run(quick))
