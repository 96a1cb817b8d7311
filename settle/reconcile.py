"""Reconciliation: engine balances at a seq vs the ledger's balances at the same seq.

Engine side (``EngineBalances``: (account, asset id) -> total minor units, total = available +
locked, at ``seq``) comes from one of:

* an engine snapshot: ``engine_balances_from_snapshot(path, cfg, accounts)`` calls
  ``engine.Engine.restore(path, cfg)``, ``seq`` and ``balances(account)`` -> {asset id:
  (available, locked)} for every account the ledger knows;
* a JSON file (``load_engine_balances_json``): ``{"seq": N, "balances": [{"account": A,
  "asset": "BTC" | 2, "total": T} | {"account", "asset", "available", "locked"}, ...]}``;
* any mapping a caller builds.

Ledger side: ``SUM(amount)`` of the shard's postings with ``seq <= N`` per (account, asset), plus
the shard's operator corrections as of seq ``<= N`` (``settle/correct.py``). Every
(account, asset) present on either side is compared, the fee account and the external account
(the engine keeps it as the negative of everything deposited) included; ``skip`` leaves accounts
out (an engine that does not track the external account).

``python -m settle reconcile --seq N (--snapshot PATH | --engine-balances FILE)`` prints the report
and exits 1 on any difference (RUNBOOK 3.1 / 3.6 "run reconciliation").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import asyncpg

from pipeline.config import Config
from settle.catalog import Catalog
from settle.correct import correction_shard
from settle.errors import ReconcileError

EngineBalances = Mapping[tuple[int, int], int]


@dataclasses.dataclass(frozen=True)
class Difference:
    account: int
    asset: int
    engine: int
    ledger: int

    @property
    def delta(self) -> int:
        return self.ledger - self.engine


@dataclasses.dataclass
class ReconcileReport:
    shard: int
    seq: int
    compared: int
    differences: list[Difference]
    asset_names: dict[int, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.differences

    def text(self, limit: int = 50) -> str:
        head = (f"reconciliation shard {self.shard} at seq {self.seq}: {self.compared} balances "
                f"compared, {len(self.differences)} differ")
        if self.ok:
            return head + " — engine and ledger agree"
        lines = [head, f"{'account':>12} {'asset':>6} {'engine':>22} {'ledger':>22} {'ledger-engine':>22}"]
        for d in self.differences[:limit]:
            name = self.asset_names.get(d.asset, str(d.asset))
            lines.append(f"{d.account:>12} {name:>6} {d.engine:>22} {d.ledger:>22} {d.delta:>22}")
        if len(self.differences) > limit:
            lines.append(f"... and {len(self.differences) - limit} more")
        return "\n".join(lines)


async def ledger_balances(conn: asyncpg.Connection, shard: int, seq: int) -> dict[tuple[int, int], int]:
    """The shard's postings and its operator corrections (settle/correct.py) as of ``seq``."""
    rows = await conn.fetch(
        """SELECT account, asset, sum(amount)::bigint AS total FROM ledger_entries
           WHERE shard = ANY($1::smallint[]) AND seq <= $2 GROUP BY account, asset""",
        [shard, correction_shard(shard)], seq)
    return {(int(r["account"]), int(r["asset"])): int(r["total"]) for r in rows}


def compare(engine: EngineBalances, ledger: Mapping[tuple[int, int], int], *, shard: int, seq: int,
            catalog: Catalog, skip: Iterable[int] = ()) -> ReconcileReport:
    left_out = set(skip)
    keys = sorted(k for k in set(engine) | set(ledger) if k[0] not in left_out)
    diffs = [Difference(a, s, int(engine.get((a, s), 0)), int(ledger.get((a, s), 0)))
             for a, s in keys if int(engine.get((a, s), 0)) != int(ledger.get((a, s), 0))]
    return ReconcileReport(shard, seq, len(keys), diffs,
                           {a.asset_id: a.name for a in catalog.assets})


async def reconcile(conn: asyncpg.Connection, engine: EngineBalances, *, seq: int,
                    catalog: Catalog, skip: Iterable[int] = ()) -> ReconcileReport:
    """Compare ``engine`` balances (taken at ``seq``) with the ledger at ``seq``."""
    settled = await conn.fetchval(
        "SELECT coalesce(max(last_seq), 0) FROM settlement_progress WHERE shard = $1", catalog.shard)
    if int(settled) < seq:
        raise ReconcileError(f"the ledger has settled shard {catalog.shard} only up to seq {settled} "
                             f"< {seq}: wait for settlement to catch up (or reconcile at a lower seq)")
    return compare(engine, await ledger_balances(conn, catalog.shard, seq), shard=catalog.shard,
                   seq=seq, catalog=catalog, skip=skip)


def _asset_id(v: Any, catalog: Catalog) -> int:
    if isinstance(v, int):
        return v
    for a in catalog.assets:
        if a.name == v:
            return a.asset_id
    raise ReconcileError(f"unknown asset {v!r}")


def _total(v: Any) -> int:
    """A balance in any of the shapes an engine may report: total, (available, locked), dict."""
    if isinstance(v, int):
        return v
    if isinstance(v, Mapping):
        if "total" in v:
            return int(v["total"])
        return int(v.get("available", 0)) + int(v.get("locked", 0))
    if isinstance(v, Iterable):
        return sum(int(x) for x in v)
    return int(v)


def load_engine_balances_json(path: str | Path, catalog: Catalog) -> tuple[int, dict[tuple[int, int], int]]:
    doc = json.loads(Path(path).read_text())
    try:
        seq = int(doc["seq"])
        out = {(int(r["account"]), _asset_id(r["asset"], catalog)): _total(r) for r in doc["balances"]}
    except (KeyError, TypeError, ValueError) as e:
        raise ReconcileError(f"{path}: expected {{'seq': N, 'balances': [...]}} ({e!r})") from None
    return seq, out


def engine_balances_from_snapshot(path: str | Path, cfg: Config,
                                  accounts: Iterable[int]) -> tuple[int, dict[tuple[int, int], int]]:
    """Restore the engine from a snapshot and read every account's balances (the engine hook)."""
    import importlib

    try:  # by name: settle does not type-depend on the engine package
        engine_cls = importlib.import_module("engine").Engine
    except (ImportError, AttributeError):
        raise ReconcileError("engine.Engine is not available: pass --engine-balances FILE.json "
                             "(see settle/reconcile.py for the format)") from None
    eng = engine_cls.restore(str(path), cfg)
    catalog = Catalog.from_config(cfg)
    listed = getattr(eng, "accounts", None)
    accts = sorted(set(accounts) | (set(listed()) if callable(listed) else set()))
    out: dict[tuple[int, int], int] = {}
    for a in accts:
        bal = eng.balances(a)
        items = bal.items() if isinstance(bal, Mapping) else enumerate(bal)
        for asset, v in items:
            total = _total(v)
            if total:
                out[(a, _asset_id(asset, catalog))] = total
    s = getattr(eng, "seq", 0)
    return int(s() if callable(s) else s), out
