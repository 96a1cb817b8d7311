"""Operator corrections on a real Postgres: a misattributed posting makes reconciliation fail, one
balanced CORRECTION (through `spotx ledger correct`) fixes it, audited; every bad request is
refused with nothing written; the ledger stays balanced and append-only."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from pipeline import cli, config
from settle.catalog import Catalog, sync
from settle.correct import correct, correction_shard
from settle.errors import SettleError
from settle.invariants import check_all
from settle.ledger import Batch, LedgerWriter
from settle.migrate import migrate
from settle.postings import concat_events, ordinals, postings
from settle.reconcile import compare, ledger_balances
from settle.synth import Synth, transfer_event

CAT = Catalog.from_config(config.load(env={}))


def batch(ev: np.ndarray, rows: np.ndarray) -> Batch:
    return Batch(consumer="test", shard=0, postings=rows, last_seq=int(ev["seq"][-1]),
                 fencing_min=1, fencing_max=1,
                 ranges=[(int(ev["seq"][0]), int(ev["seq"][-1]), len(rows))],
                 event_ts_ns=ev["ts_ns"].astype(np.int64))



async def _ledger(dsn: str) -> tuple[asyncpg.Connection, LedgerWriter]:
    """A migrated ledger with the catalog synced: a connection (the caller closes it), a writer."""
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await sync(conn, CAT)
    except BaseException:
        await conn.close()
        raise
    return conn, LedgerWriter(dsn, retry_max_s=5)

def test_a_misattributed_posting_is_fixed_by_one_audited_correction(
        pg_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    s = Synth(CAT, accounts=6, seed=3)
    ev = concat_events([s.deposits(), s.trades(80, fills=2)])
    o, _ = ordinals(ev["seq"])
    truth = postings(ev, o, 1, CAT)
    stored = truth.copy()
    i = int(np.flatnonzero(stored["amount"] > 0)[7])  # one credit posted to the wrong account
    right, wrong = int(stored["account"][i]), 424242
    stored["account"][i] = wrong
    asset_id, minor = int(stored["asset"][i]), int(stored["amount"][i])
    asset = next(a for a in CAT.assets if a.asset_id == asset_id)
    last = int(ev["seq"][-1])
    engine: dict[tuple[int, int], int] = {}
    for r in truth:
        k = (int(r["account"]), int(r["asset"]))
        engine[k] = engine.get(k, 0) + int(r["amount"])

    async def go() -> None:
        conn, w = await _ledger(pg_database)
        try:
            await w.write(batch(ev, stored))
            # still balanced per asset; the account robbed of its credit may even be negative
            pre = await check_all(conn, external_account=CAT.external_account, grace_s=0)
            assert pre.names() <= {"non_negative"}
            bad = compare(engine, await ledger_balances(conn, 0, last), shard=0, seq=last,
                          catalog=CAT)
            assert {(d.account, d.delta) for d in bad.differences} == {
                (right, -minor), (wrong, minor)}
        finally:
            await w.close()
            await conn.close()

    asyncio.run(go())

    amount = str(Decimal(minor).scaleb(-asset.scale))
    monkeypatch.setenv("SPOTX_SETTLE_PG_DSN", pg_database)
    rc = cli.main(["ledger", "correct", "--asset", asset.name, "--amount", amount,
                   "--from-account", str(wrong), "--to-account", str(right), "--reason",
                   "fee leg posted to the wrong account", "--ticket", "INC-77", "--actor", "ops"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"shard": correction_shard(0), "seq": last, "legs": [0, 1],
                   "asset": asset.name, "amount_minor": minor, "from": wrong, "to": right}

    async def after() -> None:
        conn = await asyncpg.connect(pg_database)
        try:
            good = compare(engine, await ledger_balances(conn, 0, last), shard=0, seq=last,
                           catalog=CAT)
            assert good.ok, good.text()
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)).ok
            a = await conn.fetchrow("SELECT * FROM audit_log WHERE action = 'ledger.correction'")
            assert (a["shard"], a["seq"], a["sub"], a["actor"], a["ticket"]) == (
                correction_shard(0), last, 0, "ops", "INC-77")
            note = json.loads(a["note"])
            assert note["amount_minor"] == minor and note["from"] == wrong
            rows = await conn.fetch("SELECT kind, amount FROM ledger_entries WHERE shard = $1",
                                    correction_shard(0))
            assert sorted((r["kind"], r["amount"]) for r in rows) == [(5, -minor), (5, minor)]
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute("DELETE FROM ledger_entries WHERE shard = $1",
                                   correction_shard(0))
        finally:
            await conn.close()

    asyncio.run(after())


def test_bad_corrections_are_refused_and_write_nothing(pg_database: str) -> None:
    async def go() -> None:
        conn, w = await _ledger(pg_database)
        try:
            dep = transfer_event(1, account=10, asset=1, amount=5_000_000)  # 5 USDT
            o, _ = ordinals(dep["seq"])
            await w.write(batch(dep, postings(dep, o, 1, CAT)))
            base: dict[str, Any] = {"shard": 0, "asset": "USDT", "amount": "1", "from_account": 10,
                                    "to_account": 11, "reason": "r", "ticket": "T",
                                    "actor": "ops", "external_account": CAT.external_account}
            cases = [({"to_account": 10}, "same"), ({"amount": "0.0000001"}, "decimals"),
                     ({"amount": "-1"}, "positive"), ({"amount": "abc"}, "not a decimal"),
                     ({"asset": "NOPE"}, "unknown asset"), ({"ticket": " "}, "ticket"),
                     ({"amount": "6"}, "negative")]
            before = await conn.fetchval("SELECT count(*) FROM ledger_entries")
            for change, why in cases:
                with pytest.raises(SettleError, match=why):
                    await correct(conn, **{**base, **change})
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == before
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0
            # the external account may go negative (it is the outside world's side); two
            # corrections as of the same seq take the next legs and audit subs
            for _ in range(2):
                await correct(conn, **{**base, "from_account": CAT.external_account,
                                       "to_account": 10, "as_of_seq": 1})
            legs = [r["leg"] for r in await conn.fetch(
                "SELECT leg FROM ledger_entries WHERE shard = -1 ORDER BY leg")]
            assert legs == [0, 1, 2, 3]
            assert [r["sub"] for r in await conn.fetch(
                "SELECT sub FROM audit_log ORDER BY sub")] == [0, 1]
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)).ok
        finally:
            await w.close()
            await conn.close()

    asyncio.run(go())


def test_a_corrupted_leg_is_repaired_from_the_wal_once(
        pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The writer stored one leg wrong (the asset no longer sums to zero; a replay would not
    overwrite it): `spotx ledger repair` posts the reversal and the WAL's posting as CORRECTION
    legs, after which the invariants and `check --against-wal` pass; a second repair posts
    nothing."""
    from pipeline.wal import WalReader, WalWriter
    from settle.invariants import check_against_wal
    from settle.synth import append_batches
    from settle.walbatch import WalBatcher

    data = tmp_path / "data"
    wal = data / "wal"
    s = Synth(CAT, accounts=5, seed=9)
    ev = concat_events([s.deposits(), s.trades(60, fills=2)])
    with WalWriter(wal, segment_bytes=1 << 20, fencing_token=1) as w:
        append_batches(w, ev, seqs_per_batch=16)
    batches = []
    reader = WalReader(wal)
    b8 = WalBatcher(CAT)
    for f in reader.iter_frames(1):
        for b in b8.feed(f):
            rows = postings(b.events, b.ords, b.fencing_events, CAT)
            batches.append(Batch(consumer="embedded", shard=0, postings=rows,
                                 last_seq=b.last_seq, fencing_min=1, fencing_max=1,
                                 ranges=[(b.first_seq, b.last_seq, len(rows))],
                                 event_ts_ns=b.events["ts_ns"].astype(np.int64)))
    reader.close()
    bad = batches[2].postings
    bad["amount"][3] += 7  # one leg stored wrong
    seq, leg = int(bad["seq"][3]), int(bad["leg"][3])

    async def setup() -> None:
        conn, w = await _ledger(pg_database)
        try:
            for b in batches:
                await w.write(b)
            assert "asset_zero_sum" in (await check_all(
                conn, external_account=CAT.external_account, grace_s=0)).names()
            rep = await check_against_wal(conn, wal, CAT)
            assert [(r["seq"], r["leg"]) for r in rep.violations[0].evidence["rows"]] == [(seq, leg)]
        finally:
            await w.close()
            await conn.close()

    asyncio.run(setup())
    monkeypatch.setenv("SPOTX_SETTLE_PG_DSN", pg_database)
    monkeypatch.setenv("SPOTX_DATA_DIR", str(data))
    args = ["ledger", "repair", "--reason", "writer bug INC-80", "--ticket", "INC-80"]
    assert cli.main(args) == 0
    assert "repaired legs: 1" in capsys.readouterr().out
    assert cli.main(args) == 0  # idempotent
    assert "repaired legs: 0" in capsys.readouterr().out

    async def verify() -> None:
        conn = await asyncpg.connect(pg_database)
        try:
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)
                    ).names() <= {"entry_balanced"}  # reported once, for the corrupt seq
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)).ok
            assert (await check_against_wal(conn, wal, CAT)).ok
            legs = await conn.fetch("SELECT seq, amount, kind FROM ledger_entries WHERE shard = -1")
            stored = int(bad["amount"][3])
            assert sorted((r["seq"], r["amount"], r["kind"]) for r in legs) == sorted(
                [(seq, -stored, 5), (seq, stored - 7, 5)])
            a = await conn.fetchrow("SELECT note, ticket FROM audit_log WHERE action = 'ledger.repair'")
            assert a["ticket"] == "INC-80" and json.loads(a["note"])["repaired"] == [[seq, leg]]
        finally:
            await conn.close()

    asyncio.run(verify())
