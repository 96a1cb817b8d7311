"""The real engine drives settlement: its batches journaled in a WAL, settled into Postgres, and
its balances (live and from a snapshot) reconciled against the ledger at the same seq."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from pipeline import config
from pipeline.records import COMMAND, Cmd, Ev, OrdType, Side, Stp, Tif
from pipeline.wal import FrameKind, WalWriter
from settle.__main__ import main as settle_cli
from settle.catalog import Catalog, sync
from settle.embedded import EmbeddedSettler
from settle.invariants import check_against_wal, check_all
from settle.ledger import LedgerWriter
from settle.migrate import migrate
from settle.reconcile import engine_balances_from_snapshot, reconcile

engine_mod = pytest.importorskip("engine")
if not hasattr(engine_mod, "Engine"):
    pytest.skip("engine.Engine has not landed", allow_module_level=True)
CFG = config.load(env={})
CAT = Catalog.from_config(CFG)
ACCOUNTS = list(range(100, 116))


def commands(rng: np.random.Generator, n: int) -> np.ndarray:
    """Limit orders on BTC-USDT and ETH-USDT around a mid price: many cross, some rest."""
    c = np.zeros(n, COMMAND)
    c["kind"] = Cmd.NEW_ORDER
    c["account"] = rng.choice(ACCOUNTS, n)
    c["symbol"] = rng.choice([1, 2], n)
    c["side"] = rng.choice([Side.BUY, Side.SELL], n)
    c["otype"], c["tif"], c["stp"] = OrdType.LIMIT, Tif.GTC, Stp.EXPIRE_TAKER
    c["price"] = 6_500_000 + rng.integers(-50, 50, n)
    c["qty"] = rng.integers(1, 40, n)
    return c


def deposits() -> np.ndarray:
    c = np.zeros(len(ACCOUNTS) * 3, COMMAND)
    c["kind"] = Cmd.DEPOSIT
    c["account"] = np.repeat(ACCOUNTS, 3)
    c["asset"] = np.tile([1, 2, 3], len(ACCOUNTS))
    c["amount"] = np.tile([10**13, 10**11, 10**11], len(ACCOUNTS))
    return c


def run_engine(wal: Path, batches: list[np.ndarray], fencing: int = 7) -> object:
    eng = engine_mod.Engine(CFG)
    with WalWriter(wal, segment_bytes=1 << 20, fencing_token=fencing) as w:
        for cmds in batches:
            first = eng.seq + 1
            ts = time.time_ns()
            ev = eng.apply(cmds, ts)
            w.append(FrameKind.COMMANDS, first, len(cmds), cmds.tobytes(), ts)
            w.append(FrameKind.EVENTS, first, len(ev), ev.tobytes(), ts)
        w.sync()
    return eng


def test_engine_balances_reconcile_with_the_ledger(pg_database: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    wd = np.zeros(1, COMMAND)
    wd["kind"], wd["account"], wd["asset"], wd["amount"] = Cmd.WITHDRAW, ACCOUNTS[0], 1, 12345
    batches = [deposits()] + [commands(rng, 64) for _ in range(30)] + [wd] + [commands(rng, 64)]
    wal = tmp_path / "wal"
    wal.mkdir()
    eng = run_engine(wal, batches)
    seq = eng.seq  # type: ignore[attr-defined]
    snap = tmp_path / "snap"
    eng.snapshot(snap, seq, 7)  # type: ignore[attr-defined]

    async def go() -> None:
        await migrate(pg_database)
        conn = await asyncpg.connect(pg_database)
        await sync(conn, CAT)
        w = LedgerWriter(pg_database, retry_max_s=10)
        try:
            s = EmbeddedSettler(wal, w, CAT)
            await s.start()
            await s.drain()
            assert s.settled_seq == seq
            trades = await conn.fetchval("SELECT count(DISTINCT trade_id) FROM ledger_entries WHERE kind = 1")
            assert trades > 100  # the orders really crossed
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 4") == 2
            assert (await check_all(conn, external_account=CAT.external_account, grace_s=0,
                                    engine_seq=seq)).ok
            assert (await check_against_wal(conn, wal, CAT)).ok
            accounts = [int(r["account"]) for r in await conn.fetch("SELECT account FROM accounts")]
            live = {(a, asset): av + lk for a in accounts
                    for asset, (av, lk) in eng.balances(a).items() if av + lk}  # type: ignore[attr-defined]
            rep = await reconcile(conn, live, seq=seq, catalog=CAT)
            assert rep.ok, rep.text()
            assert rep.compared >= len(ACCOUNTS) * 2 + 2  # users, the fee and external accounts
            snap_seq, from_snap = engine_balances_from_snapshot(snap, CFG, accounts)
            assert snap_seq == seq and from_snap == live
            # a ledger with one posting missing no longer reconciles
            short = dict(live)
            key = next(k for k in short if k[0] == ACCOUNTS[3])
            short[key] += 1
            bad = await reconcile(conn, short, seq=seq, catalog=CAT)
            assert [(d.account, d.delta) for d in bad.differences] == [(key[0], -1)]
            assert "1 differ" in bad.text()
            await s.close()
        finally:
            await w.close()
            await conn.close()

    asyncio.run(go())
    cli = ["--dsn", pg_database, "reconcile", "--snapshot", str(snap), "--seq", str(seq)]
    assert settle_cli(cli) == 0
    assert settle_cli(["--dsn", pg_database, "check", "--wal", str(wal), "--against-wal"]) == 0


def test_trade_events_of_the_real_engine_balance(tmp_path: Path) -> None:
    from pipeline.wal import WalReader
    from settle.postings import LEGS_PER_EVENT, postings
    from settle.walbatch import WalBatcher

    wal = tmp_path / "wal"
    wal.mkdir()
    run_engine(wal, [deposits()] + [commands(np.random.default_rng(9), 128) for _ in range(5)])
    r = WalReader(wal)
    b = WalBatcher(CAT)
    rows = np.concatenate([postings(x.events, x.ords, 0, CAT) for f in r.iter_frames()
                           for x in b.feed(f)])
    r.close()
    assert (rows["kind"] == 1).sum() > 0
    key = rows["seq"].astype(np.int64) * 1000 + rows["leg"] // LEGS_PER_EVENT
    for asset in np.unique(rows["asset"]):
        m = rows["asset"] == asset
        sums = np.bincount(np.unique(key[m], return_inverse=True)[1], weights=rows["amount"][m])
        assert np.all(sums == 0)
    assert Ev.TRADE == 3
