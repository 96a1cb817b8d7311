"""Versioned SQL migrations: ``settle/migrations/NNNN_name.sql`` applied in order, once each.

``await migrate(dsn)`` takes a session advisory lock (two migrators never race: the second waits,
then finds nothing left to do), creates ``schema_migrations`` if missing, checks that every applied
migration's file still has the checksum recorded when it was applied (an edited, already-applied
migration is a ``MigrationError``: write a new one instead), and applies each pending file in its
own transaction together with its ``schema_migrations`` row. Idempotent. Returns the names applied.

CLI: ``python -m settle migrate [--dsn DSN]`` (``spotx db migrate`` calls the same function).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from settle.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# pg_advisory_lock key: "spotxmig" as a signed int64
LOCK_KEY = int.from_bytes(b"spotxmig", "big", signed=True)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of ``directory`` in version order; rejects gaps and duplicates."""
    out = []
    for p in sorted(directory.glob("*.sql")):
        m = _NAME.match(p.name)
        if not m:
            raise MigrationError(f"{p.name}: migration files are named NNNN_lower_snake.sql")
        out.append(Migration(int(m.group(1)), p.stem, p.read_text()))
    versions = [m.version for m in out]
    if versions != list(range(1, len(out) + 1)):
        raise MigrationError(f"migration versions must be 1..N without gaps, found {versions}")
    return out


async def migrate(dsn: str, *, directory: Path = MIGRATIONS_DIR, timeout_s: float = 60.0) -> list[str]:
    """Apply pending migrations to the database at ``dsn``; returns the names applied."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'")
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _apply(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute("""
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer     PRIMARY KEY,
            name       text        NOT NULL,
            checksum   text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
    applied = {r["version"]: r for r in await conn.fetch("SELECT * FROM schema_migrations")}
    known = {m.version for m in migrations}
    for version, row in applied.items():
        if version not in known:
            raise MigrationError(f"database has migration {row['name']} that this code does not know "
                                 f"(a newer release migrated it?)")
    done: list[str] = []
    for m in migrations:
        row = applied.get(m.version)
        if row is not None:
            if row["checksum"] != m.checksum:
                raise MigrationError(f"migration {m.name} was edited after it was applied "
                                     f"(checksum {row['checksum'][:12]} != {m.checksum[:12]})")
            continue
        try:
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum)
        except asyncpg.PostgresError as e:
            raise MigrationError(f"migration {m.name} failed: {e}") from e
        done.append(m.name)
    return done


async def applied_versions(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]
    finally:
        await conn.close()
