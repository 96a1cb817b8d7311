"""Embedded settlement: a real WAL tailed into a real Postgres ledger — end to end, restart and
resume, live tailing while the WAL grows, the WAL cross-check, and surviving a Postgres restart."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from prometheus_client import REGISTRY

from pipeline import config
from pipeline.wal import WalReader, WalWriter
from settle.catalog import Catalog, sync
from settle.embedded import EmbeddedSettler, build_batch
from settle.invariants import check_against_wal, check_all
from settle.ledger import LedgerWriter
from settle.migrate import migrate
from settle.postings import concat_events
from settle.synth import Synth, append_batches
from settle.walbatch import WalBatcher

CAT = Catalog.from_config(config.load(env={}))
NOTE = json.dumps({"actor": "key-ops", "action": "SET_MODE", "reason": "drill", "ticket": "INC-42"})


async def prepare(dsn: str) -> asyncpg.Connection:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    await sync(conn, CAT)
    return conn


def write_wal(wal: Path, synth: Synth, n_cmds: int, *, deposits: bool = True,
              blobs: dict[int, bytes] | None = None, fencing: int = 2) -> np.ndarray:
    now = time.time_ns()
    parts = ([synth.deposits(ts_ns=now)] if deposits else []) + [
        synth.trades(n_cmds, fills=3, ts_ns=now, withdraw_every=40)]
    ev = concat_events(parts)
    with WalWriter(wal, segment_bytes=1 << 20, fencing_token=fencing) as w:
        append_batches(w, ev, seqs_per_batch=32, blobs=blobs)
    return ev


def lag_count() -> float:
    return REGISTRY.get_sample_value("settlement_lag_seconds_count") or 0.0


def test_wal_to_ledger_end_to_end_and_resume(pg_database: str, tmp_path: Path,
                                             arun: Callable[..., Any]) -> None:
    synth = Synth(CAT, accounts=12)
    ev = write_wal(tmp_path, synth, 500, blobs={7: NOTE.encode()})

    async def go() -> None:
        conn = await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        lag0 = lag_count()
        try:
            s = EmbeddedSettler(tmp_path, w, CAT, max_batch_events=500)
            assert await s.start() == 0
            await s.drain()
            last = int(ev["seq"][-1])
            assert s.settled_seq == last and s.committed_events == len(ev)
            assert s.committed_batches > 1  # bounded batches
            n = await conn.fetchval("SELECT count(*) FROM ledger_entries")
            assert n > 5 * 500
            assert lag_count() - lag0 == len(ev)
            audit = await conn.fetchrow("SELECT * FROM audit_log")
            assert (audit["seq"], audit["actor"], audit["ticket"], audit["symbol"]) == (
                7, "key-ops", "INC-42", "BTC-USDT")
            rep = await check_all(conn, external_account=CAT.external_account, grace_s=0,
                                  engine_seq=last)
            assert rep.ok, rep.violations
            wal_rep = await check_against_wal(conn, tmp_path, CAT)
            assert wal_rep.ok, wal_rep.violations
            assert await conn.fetchval("SELECT count(*) FROM smoke_ledger_entries") > 0
            # restart: resumes at the last settled seq, posts nothing twice
            s2 = EmbeddedSettler(tmp_path, w, CAT)
            assert await s2.start() == last
            await s2.drain()
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == n
            # the WAL grows: the next settler picks up exactly the new batches
            more = write_wal(tmp_path, synth, 50, deposits=False)
            s3 = EmbeddedSettler(tmp_path, w, CAT)
            await s3.start()
            await s3.drain()
            assert s3.settled_seq == int(more["seq"][-1])
            assert (await check_against_wal(conn, tmp_path, CAT)).ok
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)).ok
            for x in (s, s2, s3):
                await x.close()
        finally:
            await w.close()
            await conn.close()

    arun(go)


def test_live_tail_while_the_wal_grows(pg_database: str, tmp_path: Path) -> None:
    synth = Synth(CAT, accounts=6)
    first = write_wal(tmp_path, synth, 10)
    done = threading.Event()
    last_seq = [int(first["seq"][-1])]

    def engine() -> None:  # appends a small batch every few ms, as a live engine would
        with WalWriter(tmp_path, segment_bytes=1 << 20, fencing_token=2) as w:
            for _ in range(40):
                ev = synth.trades(5, fills=2, ts_ns=time.time_ns())
                last_seq[0] = append_batches(w, ev, seqs_per_batch=5)
                time.sleep(0.005)
        done.set()

    async def go() -> None:
        conn = await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        stop = asyncio.Event()
        s = EmbeddedSettler(tmp_path, w, CAT, idle_max_s=0.005)
        await s.start()
        t = threading.Thread(target=engine)
        t.start()
        runner = asyncio.create_task(s.run(stop))
        try:
            deadline = time.monotonic() + 20
            while not (done.is_set() and s.settled_seq == last_seq[0]):
                assert time.monotonic() < deadline, (s.settled_seq, last_seq[0])
                assert not runner.done(), runner.exception()
                await asyncio.sleep(0.01)
            stop.set()
            await runner
            assert (await check_against_wal(conn, tmp_path, CAT)).ok
        finally:
            stop.set()
            t.join()
            await s.close()
            await w.close()
            await conn.close()

    asyncio.run(go())


def test_wal_cross_check_finds_a_missing_posting(pg_database: str, tmp_path: Path) -> None:
    ev = write_wal(tmp_path, Synth(CAT, accounts=4), 60)

    async def go() -> None:
        conn = await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        try:
            r = WalReader(tmp_path)
            batcher = WalBatcher(CAT)
            batches = [b for f in r.iter_frames() for b in batcher.feed(f)]
            r.close()
            batch = build_batch("buggy", CAT, batches)
            victim = int(np.flatnonzero(batch.postings["kind"] == 1)[40])
            lost = (int(batch.postings["seq"][victim]), int(batch.postings["leg"][victim]))
            batch.postings = np.delete(batch.postings, victim)
            await w.write(batch)
            rep = await check_against_wal(conn, tmp_path, CAT)
            assert rep.names() == {"wal_mismatch"}
            (v,) = rep.violations
            assert v.evidence["count"] == 1 and (v.evidence["rows"][0]["seq"], v.evidence["rows"][0]["leg"]) == lost
            assert v.evidence["rows"][0]["ledger"] is None
            sql = await check_all(conn, external_account=CAT.external_account, grace_s=0)
            assert {"batch_legs", "entry_balanced", "asset_zero_sum"} <= sql.names()
            assert int(ev["seq"][-1]) == batch.last_seq
        finally:
            await w.close()
            await conn.close()

    asyncio.run(go())


def test_settler_outlives_a_postgres_restart(throwaway_pg: Any, tmp_path: Path) -> None:
    synth = Synth(CAT, accounts=4)
    write_wal(tmp_path, synth, 30)

    async def go() -> None:
        dsn = throwaway_pg.dsn
        conn = await prepare(dsn)
        await conn.close()
        w = LedgerWriter(dsn, retry_max_s=60, backoff_max_s=0.5)
        s = EmbeddedSettler(tmp_path, w, CAT)
        await s.start()
        await s.drain()
        n = s.committed_events
        await asyncio.to_thread(throwaway_pg.stop, "immediate")  # a crash, mid-stream
        more = write_wal(tmp_path, synth, 30, deposits=False)
        task = asyncio.create_task(s.drain())
        await asyncio.sleep(1.0)
        assert not task.done()  # waiting (backing off) for the database, not failing
        await asyncio.to_thread(throwaway_pg.start)
        await asyncio.wait_for(task, 60)
        assert s.settled_seq == int(more["seq"][-1]) and s.committed_events > n
        assert w.tx_errors >= 1
        c = await asyncpg.connect(dsn)
        try:
            assert (await check_against_wal(c, tmp_path, CAT)).ok
        finally:
            await c.close()
        await s.close()
        await w.close()

    asyncio.run(go())


def test_a_different_wal_is_refused_for_a_bound_shard(pg_database: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A fresh data dir (new WAL, seqs from 1) against a ledger shard built from another WAL would
    have its postings skipped as duplicates: the settler refuses it loudly instead."""
    import asyncio

    import pytest

    from engine.engine import Engine
    from engine.testing import small_config
    from pipeline.records import Cmd
    from pipeline.wal import WalWriter
    from settle.catalog import Catalog
    from settle.embedded import EmbeddedSettler
    from settle.errors import SettleError
    from settle.ledger import LedgerWriter
    from settle.migrate import migrate

    cfg = small_config()
    asyncio.run(migrate(pg_database))

    def make_wal(d) -> None:  # type: ignore[no-untyped-def]
        from engine.testing import command

        eng = Engine(cfg)
        cmds = command(Cmd.DEPOSIT, account=5, asset=1, amount=1000)
        ev = eng.apply(cmds, 1)
        with WalWriter(d, segment_bytes=1 << 20) as w:
            w.append(1, 1, 1, cmds.view("u1"), 1)
            w.append(2, 1, len(ev), ev.view("u1"), 1)
            w.sync()

    async def settle_once(d) -> None:  # type: ignore[no-untyped-def]
        writer = LedgerWriter(pg_database)
        s = EmbeddedSettler(d, writer, Catalog.from_config(cfg))
        try:
            await s.start()
        finally:
            await s.close()

    a, b = tmp_path / "a", tmp_path / "b"
    make_wal(a)
    make_wal(b)
    asyncio.run(settle_once(a))
    asyncio.run(settle_once(a))  # the same WAL again: fine
    with pytest.raises(SettleError, match="bound to WAL id"):
        asyncio.run(settle_once(b))
