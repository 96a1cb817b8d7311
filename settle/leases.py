"""Leadership leases with fencing tokens, held in Postgres (DESIGN.md §9).

``acquire`` takes a free or expired lease and bumps its fencing token (or, for the current holder
of a live lease, keeps the token and extends it); ``renew`` extends a live lease only if the caller
still holds it with the same token, else ``LeaseError`` (lost: stop accepting commands); ``release``
expires it now. The token is what the leader stamps on WAL frames, Kafka messages and ledger writes;
the ledger refuses a token lower than the highest it has seen (``settle_fence``, 0002_fencing.sql).
Time is the database's ``now()``, so clocks of the contenders do not matter.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

import asyncpg

from settle.errors import LeaseError


@dataclasses.dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    fencing_token: int
    expires_at: _dt.datetime


def _lease(row: asyncpg.Record) -> Lease:
    return Lease(row["name"], row["holder"], int(row["fencing_token"]), row["expires_at"])


async def acquire(conn: asyncpg.Connection, name: str, holder: str, ttl_s: float) -> Lease:
    row = await conn.fetchrow(
        """INSERT INTO leases (name, holder, fencing_token, expires_at)
           VALUES ($1, $2, 1, now() + make_interval(secs => $3))
           ON CONFLICT (name) DO UPDATE SET
               fencing_token = CASE WHEN leases.holder = EXCLUDED.holder AND leases.expires_at > now()
                                    THEN leases.fencing_token ELSE leases.fencing_token + 1 END,
               acquired_at = CASE WHEN leases.holder = EXCLUDED.holder AND leases.expires_at > now()
                                  THEN leases.acquired_at ELSE now() END,
               holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at, renewed_at = now()
           WHERE leases.expires_at <= now() OR leases.holder = EXCLUDED.holder
           RETURNING *""", name, holder, ttl_s)
    if row is None:
        cur = await conn.fetchrow("SELECT * FROM leases WHERE name = $1", name)
        who = f"{cur['holder']} (token {cur['fencing_token']}, until {cur['expires_at']})" if cur else "?"
        raise LeaseError(f"lease {name!r} is held by {who}")
    return _lease(row)


async def renew(conn: asyncpg.Connection, lease: Lease, ttl_s: float) -> Lease:
    row = await conn.fetchrow(
        """UPDATE leases SET expires_at = now() + make_interval(secs => $4), renewed_at = now()
           WHERE name = $1 AND holder = $2 AND fencing_token = $3 AND expires_at > now()
           RETURNING *""", lease.name, lease.holder, lease.fencing_token, ttl_s)
    if row is None:
        raise LeaseError(f"lease {lease.name!r} (token {lease.fencing_token}) was lost by {lease.holder}")
    return _lease(row)


async def release(conn: asyncpg.Connection, lease: Lease) -> None:
    await conn.execute(
        """UPDATE leases SET expires_at = now() WHERE name = $1 AND holder = $2
           AND fencing_token = $3""", lease.name, lease.holder, lease.fencing_token)


async def current(conn: asyncpg.Connection, name: str) -> Lease | None:
    row = await conn.fetchrow("SELECT * FROM leases WHERE name = $1", name)
    return _lease(row) if row else None
