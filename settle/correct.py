"""Operator corrections: balanced CORRECTION postings, audited (``spotx ledger correct``).

The ledger is append-only (a trigger refuses UPDATE and DELETE); a wrong or missing posting is
fixed by posting its counter-entry. A correction moves ``amount`` of one asset from one account to
another: two legs, ``-amount`` and ``+amount``, kind CORRECTION, so every asset still sums to zero.

Keys. Corrections of engine shard ``s`` live in their own ledger shard ``correction_shard(s)`` =
``-(s + 1)`` (shard 0 -> -1), with ``seq`` = the engine seq the correction is *as of* (default: the
seq the shard has settled up to) and the next free legs of that (shard, seq); so
``spotx reconcile`` at seq N counts the corrections as of N or earlier, next to the shard's own
postings. Fencing token: the shard's current high-water mark (corrections are not fenced out by a
leader change; they never carry an older token than the engine's).

Checks (refused with a reason, nothing written): reason and ticket given, amount positive and exact
in the asset's scale, two different accounts, a known asset, and the debited account not going
negative (the external account may: it is the outside world's side). One transaction with its
``audit_log`` row (actor, action ``ledger.correction``, reason, ticket, the legs); a
transaction-scoped advisory lock serialises concurrent corrections.

Repairs (``spotx ledger repair``). A posting the writer stored wrong (a corrupted leg: the asset no
longer sums to zero) cannot be fixed by moving value, and a replay will not overwrite it. ``repair``
recomputes the postings from the WAL (``settle.invariants.wal_differences``, the same comparison
as ``spotx check --against-wal``) and, for each differing leg, posts in the correction shard at
that seq the reversal of the stored row and the expected row (either may be absent: a missing or
an extra leg). The ledger then sums to what the WAL says. Each repaired (seq, leg) is recorded in
its ``ledger.repair`` audit row; ``check --against-wal`` and a second ``repair`` skip it, so
repairing twice posts nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from settle.errors import SettleError

LOCK_KEY = 0x5350_4F54_4358  # "SPOTCX": one correction at a time


def correction_shard(shard: int) -> int:
    return -(shard + 1)


@dataclass(frozen=True)
class Correction:
    shard: int  # the ledger shard the legs were posted under (correction_shard of the engine's)
    seq: int
    legs: tuple[int, int]
    asset: str
    amount_minor: int
    from_account: int
    to_account: int


def to_minor(amount: str, scale: int) -> int:
    """``amount`` (a decimal string) in minor units of a ``scale``-decimal asset; exact or refused."""
    try:
        d = Decimal(amount)
    except InvalidOperation:
        raise SettleError(f"amount {amount!r} is not a decimal number") from None
    if not d.is_finite():
        raise SettleError(f"amount {amount!r} is not a finite number")
    minor = d.scaleb(scale)
    if minor != minor.to_integral_value():
        raise SettleError(f"amount {amount} has more than {scale} decimals")
    return int(minor)


async def correct(conn: asyncpg.Connection, *, shard: int, asset: str, amount: str,
                  from_account: int, to_account: int, reason: str, ticket: str, actor: str,
                  external_account: int, as_of_seq: int | None = None) -> Correction:
    """Post one balanced correction (see the module header); returns what was posted."""
    if not reason.strip() or not ticket.strip():
        raise SettleError("a correction needs a reason and a ticket")
    if from_account == to_account:
        raise SettleError("from and to accounts are the same")
    row = await conn.fetchrow("SELECT asset, scale FROM assets WHERE name = $1", asset)
    if row is None:
        raise SettleError(f"unknown asset {asset!r}")
    asset_id, scale = int(row["asset"]), int(row["scale"])
    minor = to_minor(amount, scale)
    if minor <= 0:
        raise SettleError("amount must be positive")
    cshard = correction_shard(shard)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        if as_of_seq is None:
            as_of_seq = int(await conn.fetchval(
                "SELECT coalesce(max(last_seq), 0) FROM settlement_progress WHERE shard = $1",
                shard))
        if as_of_seq < 0:
            raise SettleError("as-of seq must be >= 0")
        if from_account != external_account:
            have = int(await conn.fetchval(
                "SELECT coalesce(sum(amount), 0)::bigint FROM ledger_entries "
                "WHERE account = $1 AND asset = $2", from_account, asset_id))
            if have < minor:
                raise SettleError(f"account {from_account} holds {have} minor units of {asset}: "
                                  f"debiting {minor} would make it negative")
        leg0 = int(await conn.fetchval(
            "SELECT coalesce(max(leg) + 1, 0) FROM ledger_entries WHERE shard = $1 AND seq = $2",
            cshard, as_of_seq))
        token = int(await conn.fetchval(
            "SELECT coalesce(max(fencing_token), 0) FROM fencing_high_water "
            "WHERE shard = ANY($1::smallint[])", [shard, cshard]))
        now = dt.datetime.now(dt.UTC)
        await conn.executemany(
            "INSERT INTO accounts (account) VALUES ($1) ON CONFLICT DO NOTHING",
            [(from_account,), (to_account,)])
        await conn.executemany(
            "INSERT INTO ledger_entries (shard, seq, leg, account, asset, amount, kind, "
            "fencing_token, event_time) VALUES ($1, $2, $3, $4, $5, $6, 5, $7, $8)",
            [(cshard, as_of_seq, leg0, from_account, asset_id, -minor, token, now),
             (cshard, as_of_seq, leg0 + 1, to_account, asset_id, minor, token, now)])
        note = {"asset": asset, "amount": amount, "amount_minor": minor, "from": from_account,
                "to": to_account, "legs": [leg0, leg0 + 1], "as_of_seq": as_of_seq}
        sub = int(await conn.fetchval(
            "SELECT coalesce(max(sub) + 1, 0) FROM audit_log WHERE shard = $1 AND seq = $2",
            cshard, as_of_seq))
        await conn.execute(
            "INSERT INTO audit_log (shard, seq, sub, actor, action, reason, ticket, note, "
            "fencing_token, time) VALUES ($1, $2, $3, $4, 'ledger.correction', $5, $6, $7::jsonb, "
            "$8, $9)", cshard, as_of_seq, sub, actor, reason, ticket, json.dumps(note), token, now)
    return Correction(cshard, as_of_seq, (leg0, leg0 + 1), asset, minor, from_account, to_account)


async def repaired_legs(conn: asyncpg.Connection, shard: int) -> set[tuple[int, int]]:
    """(seq, leg) of the shard's legs already repaired from the WAL."""
    rows = await conn.fetch(
        "SELECT note FROM audit_log WHERE shard = $1 AND action = 'ledger.repair'",
        correction_shard(shard))
    done: set[tuple[int, int]] = set()
    for r in rows:
        done.update((int(s), int(leg)) for s, leg in json.loads(r["note"]).get("repaired", []))
    return done


async def repair(conn: asyncpg.Connection, wal_dir: str | os.PathLike[str], catalog: Any, *,
                 reason: str, ticket: str, actor: str, from_seq: int = 1,
                 to_seq: int | None = None) -> list[dict[str, Any]]:
    """Post the counter-legs that make the shard's ledger equal the WAL (module header); returns
    the differences repaired (empty: nothing to do)."""
    from settle.invariants import wal_differences

    if not reason.strip() or not ticket.strip():
        raise SettleError("a repair needs a reason and a ticket")
    shard = int(catalog.shard)
    cshard = correction_shard(shard)
    if to_seq is None:
        to_seq = int(await conn.fetchval(
            "SELECT coalesce(max(last_seq), 0) FROM settlement_progress WHERE shard = $1", shard))
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        done = await repaired_legs(conn, shard)
        todo = [d for d in await wal_differences(conn, wal_dir, catalog, from_seq=from_seq,
                                                 to_seq=to_seq)
                if (d["seq"], d["leg"]) not in done]
        if not todo:
            return []
        token = int(await conn.fetchval(
            "SELECT coalesce(max(fencing_token), 0) FROM fencing_high_water "
            "WHERE shard = ANY($1::smallint[])", [shard, cshard]))
        now = dt.datetime.now(dt.UTC)
        by_seq: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for d in todo:
            by_seq[int(d["seq"])].append(d)
        for seq, diffs in sorted(by_seq.items()):
            leg = int(await conn.fetchval(
                "SELECT coalesce(max(leg) + 1, 0) FROM ledger_entries WHERE shard = $1 "
                "AND seq = $2", cshard, seq))
            rows = []
            for d in diffs:
                if d["ledger"] is not None:
                    a, asset, amount = d["ledger"]
                    rows.append((int(a), int(asset), -int(amount)))
                if d["expected"] is not None:
                    a, asset, amount = d["expected"]
                    rows.append((int(a), int(asset), int(amount)))
            await conn.executemany(
                "INSERT INTO accounts (account) VALUES ($1) ON CONFLICT DO NOTHING",
                [(a,) for a, _, _ in rows])
            await conn.executemany(
                "INSERT INTO ledger_entries (shard, seq, leg, account, asset, amount, kind, "
                "fencing_token, event_time) VALUES ($1, $2, $3, $4, $5, $6, 5, $7, $8)",
                [(cshard, seq, leg + i, a, asset, amount, token, now)
                 for i, (a, asset, amount) in enumerate(rows)])
            sub = int(await conn.fetchval(
                "SELECT coalesce(max(sub) + 1, 0) FROM audit_log WHERE shard = $1 AND seq = $2",
                cshard, seq))
            note = {"repaired": [[seq, int(d["leg"])] for d in diffs],
                    "legs": list(range(leg, leg + len(rows))),
                    "differences": [{"leg": int(d["leg"]), "expected": d["expected"],
                                     "ledger": d["ledger"]} for d in diffs]}
            await conn.execute(
                "INSERT INTO audit_log (shard, seq, sub, actor, action, reason, ticket, note, "
                "fencing_token, time) VALUES ($1, $2, $3, $4, 'ledger.repair', $5, $6, "
                "$7::jsonb, $8, $9)", cshard, seq, sub, actor, reason, ticket,
                json.dumps(note, default=int), token, now)
    return todo
