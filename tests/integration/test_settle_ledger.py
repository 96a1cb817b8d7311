"""The ledger writer against a real Postgres: migrations, idempotent replay, fencing, append-only,
conflicting replays, lost connections, leases, and the invariant checker catching bad postings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np
import pytest
from prometheus_client import REGISTRY

from pipeline import config
from settle import leases
from settle.catalog import Catalog, sync
from settle.errors import FencingTokenError, LeaseError, LedgerConflictError, MigrationError
from settle.invariants import check_all
from settle.ledger import AuditRow, Batch, LedgerWriter
from settle.migrate import discover, migrate
from settle.postings import POSTING, concat_events, ordinals, postings
from settle.synth import Synth

CAT = Catalog.from_config(config.load(env={}))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metric_sum(name: str) -> float:
    return sum(s.value for m in REGISTRY.collect() for s in m.samples if s.name == name)


async def prepare(dsn: str) -> None:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await sync(conn, CAT, smoke_accounts=[1000])
    finally:
        await conn.close()


def synth_events(n_cmds: int = 200, fills: int = 2, seed: int = 1) -> np.ndarray:
    s = Synth(CAT, accounts=8, seed=seed)
    return concat_events([s.deposits(), s.trades(n_cmds, fills=fills, withdraw_every=25)])


def batch_of(ev: np.ndarray, *, fencing: int = 1, consumer: str = "test", rows: np.ndarray | None = None,
             ranges: list[tuple[int, int, int]] | None = None) -> Batch:
    o, _ = ordinals(ev["seq"])
    p = postings(ev, o, fencing, CAT) if rows is None else rows
    first, last = int(ev["seq"][0]), int(ev["seq"][-1])
    return Batch(consumer=consumer, shard=0, postings=p, last_seq=last, fencing_min=fencing,
                 fencing_max=fencing, ranges=ranges if ranges is not None else [(first, last, len(p))],
                 event_ts_ns=ev["ts_ns"].astype(np.int64))


def seqs(ev: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The events of seqs lo..hi (batches cut at seq boundaries, as the engine's are)."""
    s = ev["seq"].astype(np.int64)
    return ev[(s >= lo) & (s <= hi)]


async def scalar(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def test_migrations_are_idempotent_serialised_and_checksummed(pg_database: str) -> None:
    async def go() -> None:
        a, b = await asyncio.gather(migrate(pg_database), migrate(pg_database))
        names = [m.name for m in discover()]
        assert names[:3] == ["0001_ledger", "0002_fencing", "0003_views"]
        assert sorted([a, b], key=len) == [[], names]
        assert await migrate(pg_database) == []
        assert await scalar(pg_database, "SELECT count(*) FROM schema_migrations") == len(names)
        await scalar(pg_database, "UPDATE schema_migrations SET checksum = 'x' WHERE version = 2")
        with pytest.raises(MigrationError, match="0002_fencing was edited"):
            await migrate(pg_database)

    asyncio.run(go())


def test_replay_posts_nothing_twice(pg_database: str, arun: Callable[..., Any]) -> None:
    ev = synth_events()

    async def go() -> None:
        await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        try:
            mid = int(ev["seq"][len(ev) // 2])
            halves = [seqs(ev, 1, mid), seqs(ev, mid + 1, 10**9)]
            first = [await w.write(batch_of(h)) for h in halves]
            assert [r.path for r in first] == ["copy", "copy"]
            n = await scalar(pg_database, "SELECT count(*) FROM ledger_entries")
            assert n == sum(r.inserted for r in first) > 0
            again = await w.write(batch_of(ev))  # the whole stream once more, as one batch
            assert (again.inserted, again.duplicates, again.path) == (0, n, "upsert")
            w2 = LedgerWriter(pg_database, retry_max_s=10)  # a fresh writer (no local state)
            assert (await w2.write(batch_of(ev, consumer="other"))).inserted == 0
            await w2.close()
            assert await scalar(pg_database, "SELECT count(*) FROM ledger_entries") == n
            assert await scalar(pg_database, """SELECT count(*) FROM (SELECT asset FROM ledger_entries
                GROUP BY asset HAVING sum(amount) <> 0) t""") == 0
            prog = await w.progress("test", 0)
            assert prog is not None and prog.last_seq == int(ev["seq"][-1]) and prog.fencing_token == 1
            await w.refresh_balances()
            assert await scalar(pg_database, "SELECT sum(balance) FROM balances") == 0
            assert await scalar(pg_database, "SELECT count(*) FROM smoke_ledger_entries") > 0
            accounts = await scalar(pg_database, "SELECT count(*) FROM accounts WHERE kind = 'user'")
            assert accounts == 7  # 8 synth accounts, one of them marked smoke
        finally:
            await w.close()

    arun(go)


def test_fencing_token_regression_is_rejected(pg_database: str) -> None:
    ev = synth_events(20)

    async def go() -> None:
        await prepare(pg_database)
        a, b = LedgerWriter(pg_database, retry_max_s=5), LedgerWriter(pg_database, retry_max_s=5)
        before = metric("ledger_fencing_rejects_total")
        try:
            head, rest = seqs(ev, 1, 10), seqs(ev, 11, 10**9)
            await a.write(batch_of(head, fencing=5))
            with pytest.raises(FencingTokenError, match="FENCING_TOKEN") as e1:  # database side
                await b.write(batch_of(rest, fencing=4))
            assert (e1.value.token, e1.value.highest) == (4, 5)
            with pytest.raises(FencingTokenError):  # the same from the writer that saw token 5
                await a.write(batch_of(rest, fencing=4))
            assert metric("ledger_fencing_rejects_total") - before == 2
            # any insert path is fenced: an operator's raw INSERT with a stale token too
            conn = await asyncpg.connect(pg_database)
            try:
                with pytest.raises(asyncpg.PostgresError, match="FENCING_TOKEN"):
                    await conn.execute("""INSERT INTO ledger_entries (shard, seq, leg, account, asset,
                        amount, kind, fencing_token, event_time) VALUES (0, 999, 0, 1, 1, 1, 5, 3, now())""")
            finally:
                await conn.close()
            res = await b.write(batch_of(rest, fencing=6))  # a newer leader is fine
            assert res.inserted > 0
            assert await scalar(pg_database, "SELECT fencing_token FROM fencing_high_water") == 6
            # replaying the old leader's rows (already posted) is not a write: no rejection
            again = await a.write(batch_of(head, fencing=5))
            assert (again.inserted, again.path) == (0, "upsert")
            assert metric("ledger_fencing_rejects_total") - before == 2
            assert await scalar(pg_database, "SELECT fencing_token FROM settlement_progress") == 6
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_ledger_is_append_only(pg_database: str) -> None:
    async def go() -> None:
        await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=5)
        await w.write(batch_of(synth_events(5)))
        await w.close()
        conn = await asyncpg.connect(pg_database)
        try:
            for sql in ("UPDATE ledger_entries SET amount = amount + 1 WHERE id = 1",
                        "DELETE FROM ledger_entries WHERE id = 1", "TRUNCATE ledger_entries"):
                with pytest.raises(asyncpg.PostgresError, match="append-only"):
                    await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def test_conflicting_replay_stops_and_is_recorded(pg_database: str) -> None:
    ev = synth_events(10)

    async def go() -> None:
        await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=5)
        try:
            b = batch_of(ev)
            await w.write(b)
            bad = b.postings.copy()
            bad["amount"][3] += 1
            with pytest.raises(LedgerConflictError) as e:
                await w.write(batch_of(ev, rows=bad))
            assert e.value.rows[0]["amount"] == int(bad["amount"][3])
            assert await scalar(pg_database, """SELECT count(*) FROM invariant_violations
                WHERE invariant = 'replay_mismatch'""") == 1
            assert await scalar(pg_database, "SELECT count(*) FROM ledger_entries") == len(b.postings)
        finally:
            await w.close()

    asyncio.run(go())


def test_writer_reconnects_after_losing_its_connection(pg_database: str) -> None:
    ev = synth_events(40)

    async def go() -> None:
        await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=10)
        before = metric_sum("ledger_db_tx_errors_total")
        try:
            await w.write(batch_of(seqs(ev, 1, 20)))
            # hold the shard's fencing row so the next write blocks inside its transaction, then
            # kill the writer's backend mid-transaction: the attempt fails, the retry commits
            blocker = await asyncpg.connect(pg_database)
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT * FROM fencing_high_water FOR UPDATE")
            task = asyncio.create_task(w.write(batch_of(seqs(ev, 21, 10**9))))
            for _ in range(200):
                pid = await blocker.fetchval("""SELECT pid FROM pg_stat_activity WHERE application_name
                    = 'spotx-settle' AND datname = current_database() AND wait_event_type = 'Lock'""")
                if pid:
                    break
                await asyncio.sleep(0.01)
            assert pid, "the writer never blocked on the fencing row"
            await blocker.execute("SELECT pg_terminate_backend($1)", pid)
            await tx.rollback()
            await blocker.close()
            res = await task
            assert res.attempts >= 2 and res.inserted > 0 and w.tx_errors >= 1
            assert metric_sum("ledger_db_tx_errors_total") > before
            audit = AuditRow(1, "ops", "SET_MODE", "BTC-USDT", "r", "T-1", '{"a": 1}', 1, 1_700_000_000 * 10**9)
            b = batch_of(ev[:1], rows=np.zeros(0, POSTING))
            b.audit = [audit, audit]
            await w.write(b)
            assert await scalar(pg_database, "SELECT count(*) FROM audit_log") == 1
            assert await scalar(pg_database, "SELECT ticket FROM audit_log") == "T-1"
        finally:
            await w.close()

    asyncio.run(go())


def test_leases_bump_tokens_and_exclude_others(pg_database: str) -> None:
    async def go() -> None:
        await prepare(pg_database)
        conn = await asyncpg.connect(pg_database)
        try:
            a = await leases.acquire(conn, "engine-0", "host-a", 30)
            assert a.fencing_token == 1
            assert (await leases.acquire(conn, "engine-0", "host-a", 30)).fencing_token == 1
            with pytest.raises(LeaseError, match="held by host-a"):
                await leases.acquire(conn, "engine-0", "host-b", 30)
            a = await leases.renew(conn, a, 30)
            await leases.release(conn, a)
            b = await leases.acquire(conn, "engine-0", "host-b", 30)
            assert b.fencing_token == 2
            with pytest.raises(LeaseError, match="lost"):
                await leases.renew(conn, a, 30)
            cur = await leases.current(conn, "engine-0")
            assert cur is not None and cur.holder == "host-b"
        finally:
            await conn.close()

    asyncio.run(go())


def test_invariants_catch_corrupted_postings(pg_database: str) -> None:
    ev = synth_events(60)
    a, b = int(ev["seq"][len(ev) // 3]), int(ev["seq"][2 * len(ev) // 3])

    async def go() -> None:
        await prepare(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=5)
        conn = await asyncpg.connect(pg_database)
        try:
            await w.write(batch_of(seqs(ev, 1, a)))
            clean = await check_all(conn, external_account=CAT.external_account, grace_s=0,
                                    engine_seq=a + 3)
            assert clean.ok and {"asset_zero_sum", "non_negative", "entry_balanced", "seq_contiguous",
                                 "batch_legs", "seq_lag"} <= set(clean.checked)
            before = metric("invariant_violation_total", invariant="asset_zero_sum")
            # a buggy writer: one posting's amount off by one, one leg dropped, and a seq gap
            mid = seqs(ev, a + 1, b)
            good = batch_of(mid)
            bad = good.postings.copy()
            bad["amount"][5] += 1
            bad = np.delete(bad, 11)
            await w.write(batch_of(mid, rows=bad, ranges=good.ranges))
            tail = seqs(ev, b + 10, 10**9)
            await w.write(batch_of(tail))
            rep = await check_all(conn, external_account=CAT.external_account, grace_s=0,
                                  engine_seq=int(ev["seq"][-1]) + 5_000, max_seq_lag=1_000)
            assert rep.names() == {"asset_zero_sum", "entry_balanced", "batch_legs", "seq_contiguous",
                                   "seq_lag"}
            assert metric("invariant_violation_total", invariant="asset_zero_sum") == before + 1
            rows = await conn.fetch("SELECT invariant, evidence FROM invariant_violations")
            assert {r["invariant"] for r in rows} == rep.names()
            gap = next(v for v in rep.violations if v.invariant == "seq_contiguous")
            assert gap.evidence["rows"][0]["prev_last"] == b
            assert gap.evidence["rows"][0]["first_seq"] == b + 10
            # per-batch checks are incremental: the same bad batches are not reported again
            again = await check_all(conn, external_account=CAT.external_account, grace_s=0)
            assert again.names() == {"asset_zero_sum"}
            # a negative balance (a withdrawal nobody funded) is its own violation
            from settle.synth import transfer_event
            last = int(ev["seq"][-1])
            await w.write(batch_of(transfer_event(last + 1, account=5555, asset=1, amount=-10)))
            neg = await check_all(conn, external_account=CAT.external_account, grace_s=0)
            assert "non_negative" in neg.names()
        finally:
            await conn.close()
            await w.close()

    asyncio.run(go())
