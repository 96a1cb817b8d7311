"""Ledger invariants (DESIGN.md §8, RUNBOOK 3.1), checked in SQL, continuously and on demand.

=================  ===========================================================================
asset_zero_sum     every asset sums to zero over all accounts (deposits come from the external
                   account), whole ledger
non_negative       no (account, asset) balance below zero, except the external account
entry_balanced     the postings of every seq sum to zero per asset (localises a bad posting)
seq_contiguous     settled_batches of a shard tile the seq line with no gap or overlap from the
                   first seq settlement started at
batch_legs         every settled batch has exactly the legs its events produced (a lost or extra
                   posting in a batch)
seq_lag            engine durable seq minus the ledger's settled seq is within a bound
wal_mismatch       (``check_against_wal``) postings recomputed from the WAL equal the ledger rows,
                   leg by leg: the authoritative "every TRADE/TRANSFER seq has its legs" check
replay_mismatch    (raised by the writer) a replay disagreed with a stored posting
=================  ===========================================================================

Each violation increments ``invariant_violation_total{invariant}`` and writes an
``invariant_violations`` row with evidence (first rows found). Whole-ledger checks re-report a
violation every run while it persists (the alert stays on); per-seq checks are incremental from
``invariant_checkpoints`` (only batches committed at least ``grace_s`` ago and at or below the
settled seq are examined) and report each bad batch once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import asyncpg
import numpy as np

from settle import metrics
from settle.catalog import Catalog
from settle.postings import POSTING, postings
from settle.walbatch import WalBatcher

LIMIT = 20


@dataclasses.dataclass(frozen=True)
class Violation:
    invariant: str
    shard: int | None
    evidence: dict[str, Any]


@dataclasses.dataclass
class CheckReport:
    checked: list[str] = dataclasses.field(default_factory=list)
    violations: list[Violation] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def names(self) -> set[str]:
        return {v.invariant for v in self.violations}


def _jsonable(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [{k: (int(v) if isinstance(v, int) else str(v) if v is not None else None)
             for k, v in dict(r).items()} for r in rows]


async def record_violation(conn: asyncpg.Connection, invariant: str, shard: int | None,
                           evidence: dict[str, Any]) -> None:
    metrics.INVARIANT_VIOLATIONS.labels(invariant).inc()
    await conn.execute(
        "INSERT INTO invariant_violations (invariant, shard, evidence) VALUES ($1, $2, $3::jsonb)",
        invariant, shard, json.dumps(evidence, default=str))


async def _report(conn: asyncpg.Connection, rep: CheckReport, name: str, shard: int | None,
                  rows: list[asyncpg.Record], **extra: Any) -> None:
    rep.checked.append(name)
    if rows:
        v = Violation(name, shard, {"rows": _jsonable(rows), **extra})
        rep.violations.append(v)
        await record_violation(conn, name, shard, v.evidence)


async def _checkpoint(conn: asyncpg.Connection, name: str, shard: int) -> int:
    v = await conn.fetchval(
        "SELECT checked_seq FROM invariant_checkpoints WHERE invariant = $1 AND shard = $2", name, shard)
    return int(v or 0)


async def _set_checkpoint(conn: asyncpg.Connection, name: str, shard: int, seq: int) -> None:
    await conn.execute(
        """INSERT INTO invariant_checkpoints (invariant, shard, checked_seq) VALUES ($1, $2, $3)
           ON CONFLICT (invariant, shard) DO UPDATE SET checked_seq = greatest(
               invariant_checkpoints.checked_seq, EXCLUDED.checked_seq), updated_at = now()""",
        name, shard, seq)


async def check_all(conn: asyncpg.Connection, *, external_account: int, shard: int = 0,
                    engine_seq: int | None = None, max_seq_lag: int = 1_000_000,
                    start_seq: int = 1, grace_s: float = 2.0) -> CheckReport:
    """Run every SQL invariant; ``engine_seq`` (the WAL's durable seq) enables ``seq_lag``."""
    rep = CheckReport()
    await _report(conn, rep, "asset_zero_sum", None, await conn.fetch(
        f"""SELECT asset, sum(amount) AS total FROM ledger_entries GROUP BY asset
            HAVING sum(amount) <> 0 ORDER BY asset LIMIT {LIMIT}"""))
    await _report(conn, rep, "non_negative", None, await conn.fetch(
        f"""SELECT account, asset, sum(amount) AS balance FROM ledger_entries WHERE account <> $1
            GROUP BY account, asset HAVING sum(amount) < 0 ORDER BY account, asset LIMIT {LIMIT}""",
        external_account))
    settled = int(await conn.fetchval(
        "SELECT coalesce(max(last_seq), 0) FROM settlement_progress WHERE shard = $1", shard))
    # per-batch checks: batches old enough and fully settled
    hi = int(await conn.fetchval(
        """SELECT coalesce(max(last_seq), 0) FROM settled_batches WHERE shard = $1
           AND last_seq <= $2 AND settled_at < now() - make_interval(secs => $3)""",
        shard, settled, grace_s))
    lo = await _checkpoint(conn, "batches", shard)
    if hi > lo:
        await _report(conn, rep, "entry_balanced", shard, await conn.fetch(
            f"""SELECT seq, asset, sum(amount) AS total FROM ledger_entries
                WHERE shard = $1 AND seq > $2 AND seq <= $3 GROUP BY seq, asset
                HAVING sum(amount) <> 0 ORDER BY seq LIMIT {LIMIT}""", shard, lo, hi))
        gaps = await conn.fetch(
            f"""SELECT first_seq, last_seq, prev_last FROM (
                    SELECT first_seq, last_seq,
                           lag(last_seq) OVER (ORDER BY first_seq) AS prev_last
                    FROM settled_batches WHERE shard = $1 AND last_seq >= $2 AND first_seq <= $3) t
                WHERE (prev_last IS NULL AND $2 = 0 AND first_seq <> $4)
                   OR (prev_last IS NOT NULL AND first_seq <> prev_last + 1)
                ORDER BY first_seq LIMIT {LIMIT}""", shard, lo, hi, start_seq)
        await _report(conn, rep, "seq_contiguous", shard, gaps)
        await _report(conn, rep, "batch_legs", shard, await conn.fetch(
            f"""SELECT b.first_seq, b.last_seq, b.legs, (
                    SELECT count(*) FROM ledger_entries e WHERE e.shard = b.shard
                    AND e.seq BETWEEN b.first_seq AND b.last_seq) AS posted
                FROM settled_batches b WHERE b.shard = $1 AND b.last_seq > $2 AND b.last_seq <= $3
                AND b.legs <> (SELECT count(*) FROM ledger_entries e WHERE e.shard = b.shard
                               AND e.seq BETWEEN b.first_seq AND b.last_seq)
                ORDER BY b.first_seq LIMIT {LIMIT}""", shard, lo, hi))
        await _set_checkpoint(conn, "batches", shard, hi)
    if engine_seq is not None:
        lag = engine_seq - settled
        rows = [{"engine_seq": engine_seq, "ledger_seq": settled, "lag": lag}] if lag > max_seq_lag else []
        rep.checked.append("seq_lag")
        if rows:
            v = Violation("seq_lag", shard, {"rows": rows, "bound": max_seq_lag})
            rep.violations.append(v)
            await record_violation(conn, "seq_lag", shard, v.evidence)
    metrics.INVARIANT_CHECKS.labels("ok" if rep.ok else "violation").inc()
    return rep


async def check_against_wal(conn: asyncpg.Connection, wal_dir: str | os.PathLike[str],
                            catalog: Catalog, *, from_seq: int = 1, to_seq: int | None = None,
                            chunk_events: int = 200_000) -> CheckReport:
    """Recompute postings from the WAL for seqs ``from_seq..to_seq`` (default: up to the shard's
    settled seq) and compare with the ledger leg by leg: missing, extra and different rows. Legs
    an operator already repaired (``spotx ledger repair``, settle/correct.py) are not reported."""
    from settle.correct import repaired_legs

    shard = catalog.shard
    if to_seq is None:
        to_seq = int(await conn.fetchval(
            "SELECT coalesce(max(last_seq), 0) FROM settlement_progress WHERE shard = $1", shard))
    rep = CheckReport(checked=["wal_mismatch"])
    done = await repaired_legs(conn, shard)
    bad = [d for d in await wal_differences(conn, wal_dir, catalog, from_seq=from_seq,
                                            to_seq=to_seq, chunk_events=chunk_events)
           if (d["seq"], d["leg"]) not in done]
    if bad:
        v = Violation("wal_mismatch", shard, {"rows": bad[:LIMIT], "count": len(bad),
                                             "from_seq": from_seq, "to_seq": to_seq})
        rep.violations.append(v)
        await record_violation(conn, "wal_mismatch", shard, v.evidence)
    metrics.INVARIANT_CHECKS.labels("ok" if rep.ok else "violation").inc()
    return rep


async def wal_differences(conn: asyncpg.Connection, wal_dir: str | os.PathLike[str],
                          catalog: Catalog, *, from_seq: int, to_seq: int,
                          chunk_events: int = 200_000) -> list[dict[str, Any]]:
    """Every leg where the shard's ledger differs from the postings recomputed from the WAL:
    ``{"seq", "leg", "expected": (account, asset, amount) | None, "ledger": ... | None}``."""
    from pipeline.wal import WalReader

    shard = catalog.shard
    bad: list[dict[str, Any]] = []
    batcher = WalBatcher(catalog)
    pending: list[np.ndarray] = []
    n_pending, lo, hi = 0, from_seq, from_seq - 1
    reader = WalReader(wal_dir)
    try:
        for frame in reader.iter_frames(from_seq):
            if frame.first_seq > to_seq:
                break
            for b in batcher.feed(frame):
                if b.last_seq < from_seq:
                    continue
                rows = postings(b.events, b.ords, b.fencing_events, catalog)
                pending.append(rows[(rows["seq"] >= from_seq) & (rows["seq"] <= to_seq)])
                n_pending += len(pending[-1])
                hi = min(b.last_seq, to_seq)
                if n_pending >= chunk_events:
                    bad += await _compare(conn, shard, np.concatenate(pending), lo, hi)
                    pending, n_pending, lo = [], 0, hi + 1
    finally:
        reader.close()
    if lo <= to_seq:
        bad += await _compare(conn, shard, np.concatenate(pending) if pending else
                              np.zeros(0, POSTING), lo, to_seq)
    return bad


async def _compare(conn: asyncpg.Connection, shard: int, exp: np.ndarray, lo: int,
                   hi: int) -> list[dict[str, Any]]:
    """Differences between the expected postings of seqs lo..hi and the ledger's rows there."""
    got = await conn.fetch(
        """SELECT seq, leg, account, asset, amount FROM ledger_entries
           WHERE shard = $1 AND seq BETWEEN $2 AND $3""", shard, lo, hi)
    want = {(int(r["seq"]), int(r["leg"])): (int(r["account"]), int(r["asset"]), int(r["amount"]))
            for r in exp}
    have = {(r["seq"], r["leg"]): (r["account"], r["asset"], r["amount"]) for r in got}
    out = []
    for k in sorted(want.keys() | have.keys()):
        w, h = want.get(k), have.get(k)
        if w != h:
            out.append({"seq": k[0], "leg": k[1], "expected": w, "ledger": h})
    return out
