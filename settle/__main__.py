"""``python -m settle migrate | check | reconcile | run`` (``spotx db migrate`` etc. wrap these).

Exit codes: 0 ok; 1 a finding (invariant violation, reconciliation difference); 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from pipeline import config as config_mod
from settle.errors import SettleError

if TYPE_CHECKING:
    from settle.catalog import Catalog


def _cfg(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(args.config)


async def _open(args: argparse.Namespace
                ) -> tuple[config_mod.Config, Catalog, asyncpg.Connection]:
    """The config, its settlement catalog and a Postgres connection (the caller closes it)."""
    from settle.catalog import Catalog

    cfg = _cfg(args)
    conn = await asyncpg.connect(args.dsn or cfg.settle.pg_dsn, timeout=10)
    return cfg, Catalog.from_config(cfg), conn


def _wal_dir(args: argparse.Namespace, cfg: config_mod.Config) -> Path:
    return Path(args.wal or Path(cfg.data_dir) / "wal")


async def _migrate(args: argparse.Namespace) -> int:
    from settle.migrate import migrate

    dsn = args.dsn or _cfg(args).settle.pg_dsn
    applied = await migrate(dsn)
    sys.stdout.write(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}\n")
    return 0


def _from_seq(args: argparse.Namespace, wal: Path) -> int:
    """``--from-seq``, or the oldest seq still in the live WAL (older ones may be archived)."""
    from pipeline.wal.archive import first_retained_seq

    return int(args.from_seq) or first_retained_seq(wal)


async def _check(args: argparse.Namespace) -> int:

    from pipeline.wal import read_durable
    from settle.invariants import check_against_wal, check_all

    cfg, catalog, conn = await _open(args)
    wal = _wal_dir(args, cfg)
    try:
        dp = read_durable(wal)  # None when there is no WAL there
        rep = await check_all(conn, external_account=catalog.external_account, shard=catalog.shard,
                              engine_seq=dp.seq if dp else None, grace_s=0)
        if args.against_wal:
            w = await check_against_wal(conn, wal, catalog, from_seq=_from_seq(args, wal))
            rep.checked += w.checked
            rep.violations += w.violations
    finally:
        await conn.close()
    for v in rep.violations:
        sys.stdout.write(f"VIOLATION {v.invariant} shard={v.shard}: {json.dumps(v.evidence, default=str)[:2000]}\n")
    sys.stdout.write(f"checked: {', '.join(rep.checked)}; violations: {len(rep.violations)}\n")
    return 0 if rep.ok else 1


async def _reconcile(args: argparse.Namespace) -> int:
    from settle.reconcile import engine_balances_from_snapshot, load_engine_balances_json, reconcile

    cfg, catalog, conn = await _open(args)
    try:
        if args.engine_balances:
            seq, bal = load_engine_balances_json(args.engine_balances, catalog)
        else:
            accts = [int(r["account"]) for r in await conn.fetch("SELECT account FROM accounts")]
            seq, bal = engine_balances_from_snapshot(args.snapshot, cfg, accts)
        if args.seq is not None and args.seq != seq:
            raise SettleError(f"the engine balances are at seq {seq}, not --seq {args.seq}")
        rep = await reconcile(conn, bal, seq=seq, catalog=catalog)
    finally:
        await conn.close()
    sys.stdout.write(rep.text() + "\n")
    return 0 if rep.ok else 1


async def _correct(args: argparse.Namespace) -> int:
    import getpass

    from settle.correct import correct

    cfg, catalog, conn = await _open(args)
    try:
        c = await correct(conn, shard=catalog.shard, asset=args.asset, amount=args.amount,
                          from_account=args.from_account, to_account=args.to_account,
                          reason=args.reason, ticket=args.ticket,
                          actor=args.actor or f"cli:{getpass.getuser()}",
                          external_account=catalog.external_account, as_of_seq=args.as_of_seq)
    finally:
        await conn.close()
    sys.stdout.write(json.dumps({"shard": c.shard, "seq": c.seq, "legs": list(c.legs),
                                 "asset": c.asset, "amount_minor": c.amount_minor,
                                 "from": c.from_account, "to": c.to_account}) + "\n")
    return 0


async def _repair(args: argparse.Namespace) -> int:
    import getpass

    from settle.correct import repair

    cfg, catalog, conn = await _open(args)
    wal = _wal_dir(args, cfg)
    try:
        fixed = await repair(conn, wal, catalog, reason=args.reason, ticket=args.ticket,
                             actor=args.actor or f"cli:{getpass.getuser()}",
                             from_seq=_from_seq(args, wal))
    finally:
        await conn.close()
    for d in fixed:
        sys.stdout.write(f"repaired seq {d['seq']} leg {d['leg']}: ledger {d['ledger']} -> "
                         f"expected {d['expected']}\n")
    sys.stdout.write(f"repaired legs: {len(fixed)}\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    from settle.process import main

    main(_cfg(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m settle")
    ap.add_argument("--config", default=None, help="spotx TOML (default: the embedded default)")
    ap.add_argument("--dsn", default=None, help="Postgres DSN (default: [settle] pg_dsn)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply pending schema migrations")
    c = sub.add_parser("check", help="run the ledger invariants once")
    c.add_argument("--wal", default=None, help="WAL directory (default: <data_dir>/wal)")
    c.add_argument("--against-wal", action="store_true", help="also recompute postings from the WAL")
    c.add_argument("--from-seq", type=int, default=0,
                   help="with --against-wal (default: the oldest seq in the live WAL)")
    r = sub.add_parser("reconcile", help="engine balances vs ledger balances at one seq")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--snapshot", help="engine snapshot to restore (engine.Engine.restore)")
    src.add_argument("--engine-balances", help="JSON file of engine balances at a seq")
    r.add_argument("--seq", type=int, default=None, help="expected seq of the engine balances")
    sub.add_parser("run", help="run the settle process in the foreground")
    k = sub.add_parser("correct", help="post a balanced CORRECTION (two legs), audited")
    k.add_argument("--asset", required=True)
    k.add_argument("--amount", required=True, help="decimal, in asset units")
    k.add_argument("--from-account", type=int, required=True, help="debited")
    k.add_argument("--to-account", type=int, required=True, help="credited")
    k.add_argument("--reason", required=True)
    k.add_argument("--ticket", required=True)
    k.add_argument("--actor", default=None, help="default: cli:<user>")
    k.add_argument("--as-of-seq", type=int, default=None,
                   help="engine seq the correction is as of (default: the settled seq)")
    rp = sub.add_parser("repair", help="post the counter-legs that make the ledger equal the WAL")
    rp.add_argument("--wal", default=None, help="WAL directory (default: <data_dir>/wal)")
    rp.add_argument("--from-seq", type=int, default=0,
                    help="default: the oldest seq in the live WAL (spotx wal prune archives older)")
    rp.add_argument("--reason", required=True)
    rp.add_argument("--ticket", required=True)
    rp.add_argument("--actor", default=None, help="default: cli:<user>")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            return _run(args)
        fn = {"migrate": _migrate, "check": _check, "reconcile": _reconcile,
              "correct": _correct, "repair": _repair}[args.cmd]
        return int(asyncio.run(fn(args)))
    except (SettleError, OSError, asyncpg.PostgresError, config_mod.ConfigError) as e:
        sys.stderr.write(f"settle {args.cmd}: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
