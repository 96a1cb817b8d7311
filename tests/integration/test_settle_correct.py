"""Operator corrections on a real Postgres: a misattributed posting makes reconciliation fail, one
balanced CORRECTION (through `spotx ledger correct`) fixes it, audited; every bad request is
refused with nothing written; the ledger stays balanced and append-only."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
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
        await migrate(pg_database)
        conn = await asyncpg.connect(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=5)
        try:
            await sync(conn, CAT)
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
        await migrate(pg_database)
        conn = await asyncpg.connect(pg_database)
        w = LedgerWriter(pg_database, retry_max_s=5)
        try:
            await sync(conn, CAT)
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
