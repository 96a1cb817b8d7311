"""The ledger writer: one batch of postings + its progress row, in ONE Postgres transaction.

Transaction (asyncpg, one connection, one writer per shard), three round trips + one for audit::

    BEGIN; SELECT settle_commit(...)        -- new accounts, settled_batches, settlement_progress
    COPY ledger_entries FROM STDIN (binary) -- fast path: rows never posted; the statement trigger
                                            -- fences them (FENCING_TOKEN, row lock till COMMIT)
    [INSERT audit rows ON CONFLICT DO NOTHING]
    COMMIT

A unique violation on (shard, seq, leg) means the batch (or part of it) was posted before — a
replay. The transaction is rolled back and redone on the replay path: COPY into a temp stage,
INSERT .. SELECT .. ON CONFLICT DO NOTHING, and compare the conflicting rows with the stored ones
(any difference: ``LedgerConflictError``). So a retry, a replay, or a consumer that crashed
between this COMMIT and its Kafka offset commit posts nothing twice. Binary COPY was measured
against executemany (bench/settle.py: ~10x faster); round trips are few because on a busy 2-core
host each one waits for the scheduler.

Fencing: the statement trigger on ledger_entries (``settle_fence`` over the inserted rows, for
every insert path) refuses postings stamped with a token lower than the shard's high-water mark:
``FencingTokenError``, counted in ``ledger_fencing_rejects_total``, never retried. Rows that are
only replayed (already posted) are not new writes and pass, so a replay across a leader change
works; a batch without postings is not fenced (it changes no balance).

Retries: transient errors (connection lost or refused, server shutting down, serialization
failure, deadlock, timeouts) are retried by tenacity with exponential back-off and jitter, each
failed attempt counted in ``ledger_db_tx_errors_total``; the connection is re-opened as needed.
``retry_max_s=None`` retries for as long as the database is away (a settler must outlive a
Postgres restart); anything else is raised at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

from settle import copybin, metrics
from settle.errors import FencingTokenError, LedgerConflictError, SettleError
from settle.postings import POSTING

FENCE_SQLSTATE = "SX001"
_TRANSIENT_SQLSTATES = ("40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03")
_TRANSIENT_CLASSES = ("08", "53")

_STAGE = """CREATE TEMP TABLE ledger_stage (
    shard smallint, seq bigint, leg integer, account bigint, asset smallint, amount bigint,
    kind smallint, symbol integer, trade_id bigint, fencing_token bigint, event_time timestamptz
) ON COMMIT DROP"""
_COLS = ", ".join(copybin.COLUMNS)
_UPSERT = (f"INSERT INTO ledger_entries ({_COLS}) SELECT {_COLS} FROM ledger_stage "
           f"ORDER BY seq, leg ON CONFLICT ON CONSTRAINT ledger_entries_idem DO NOTHING")
_CONFLICTS = """
    SELECT s.seq, s.leg, s.account, s.asset, s.amount, s.kind,
           l.account AS stored_account, l.asset AS stored_asset, l.amount AS stored_amount,
           l.kind AS stored_kind
    FROM ledger_stage s JOIN ledger_entries l USING (shard, seq, leg)
    WHERE (s.account, s.asset, s.amount, s.kind) IS DISTINCT FROM (l.account, l.asset, l.amount, l.kind)
    ORDER BY s.seq, s.leg LIMIT 20"""
_AUDIT = """INSERT INTO audit_log (shard, seq, actor, action, symbol, reason, ticket, note,
        fencing_token, time)
    SELECT $1, t.seq, t.actor, t.action, t.symbol, t.reason, t.ticket, t.note::jsonb, t.fencing,
           to_timestamp(t.ts_ns::numeric / 1e9)
    FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::bigint[], $10::bigint[])
         AS t(seq, actor, action, symbol, reason, ticket, note, fencing, ts_ns)
    ON CONFLICT (shard, seq, sub) DO NOTHING"""
def connect_kwargs(dsn: str) -> dict[str, Any]:
    """asyncpg.connect options: TLS off for a loopback server unless the DSN asks for a sslmode
    (TLS on 127.0.0.1 buys nothing and costs a measurable share of the writer's CPU)."""
    from urllib.parse import urlsplit

    host = urlsplit(dsn).hostname or ""
    if "sslmode=" not in dsn and host in ("127.0.0.1", "localhost", "::1"):
        return {"ssl": False}
    return {}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data  # an async source keeps asyncpg's COPY off its thread-pool file reader


def _text(v: str) -> str:
    """A SQL string literal (standard_conforming_strings is on: only quotes need doubling)."""
    if "\x00" in v:
        raise SettleError("NUL in a text value sent to the ledger")
    return "'" + v.replace("'", "''") + "'"


def _ints(vals: list[int], typ: str) -> str:
    return "'{" + ",".join(str(int(v)) for v in vals) + "}'::" + typ + "[]"


@dataclasses.dataclass(frozen=True)
class AuditRow:
    seq: int
    actor: str | None
    action: str | None
    symbol: str | None
    reason: str | None
    ticket: str | None
    note: str  # the JSON document (or {"raw": ...} when the note was not JSON)
    fencing: int
    ts_ns: int


@dataclasses.dataclass
class Batch:
    """What one ledger transaction writes. ``last_seq``: settled through this seq (progress)."""

    consumer: str
    shard: int
    postings: np.ndarray
    last_seq: int
    fencing_min: int
    fencing_max: int
    ranges: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # first, last, legs
    audit: list[AuditRow] = dataclasses.field(default_factory=list)
    kafka_offsets: dict[str, int] = dataclasses.field(default_factory=dict)  # "topic:partition" -> next
    event_ts_ns: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        if self.postings.dtype != POSTING:
            raise SettleError(f"Batch.postings must be POSTING rows, got {self.postings.dtype}")
        if self.fencing_min > self.fencing_max:
            raise SettleError("Batch.fencing_min > fencing_max")


@dataclasses.dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int
    path: str  # "copy" (fast), "upsert" (replay), "none" (no postings)
    committed_ns: int  # time.time_ns() after COMMIT returned
    attempts: int


@dataclasses.dataclass(frozen=True)
class Progress:
    consumer: str
    shard: int
    last_seq: int
    kafka_offsets: dict[str, int]
    fencing_token: int


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the database (or the way to it) is away or asked us to try again."""
    if isinstance(exc, FencingTokenError | LedgerConflictError):
        return False
    if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresConnectionError):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc) or "connection" in str(exc)
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return state in _TRANSIENT_SQLSTATES or state[:2] in _TRANSIENT_CLASSES
    return False


class LedgerWriter:
    """Single-connection ledger writer. ``write``, ``progress`` and ``highest_fencing`` share the
    connection: await one before starting another (``refresh_balances`` has its own)."""

    def __init__(self, dsn: str, *, retry_max_s: float | None = None, backoff_max_s: float = 5.0,
                 connect_timeout_s: float = 5.0, statement_timeout_ms: int = 30_000) -> None:
        self.dsn = dsn
        self.retry_max_s = retry_max_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self._conn: asyncpg.Connection | None = None
        self._high: dict[int, int] = {}  # shard -> highest fencing token seen
        self._accounts: set[int] = set()
        self._accounts_loaded = False
        self.tx_errors = 0
        self.fencing_rejects = 0

    # -- connection --------------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._ensure_conn()

    async def _ensure_conn(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = await asyncpg.connect(
            self.dsn, timeout=self.connect_timeout_s, **connect_kwargs(self.dsn),
            server_settings={"application_name": "spotx-settle",
                             "statement_timeout": str(self.statement_timeout_ms)})
        if not self._accounts_loaded:
            rows = await self._conn.fetch("SELECT account FROM accounts")
            self._accounts.update(int(r["account"]) for r in rows)
            self._accounts_loaded = True
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    def _drop_conn(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    # -- reads -----------------------------------------------------------------------------------

    async def progress(self, consumer: str, shard: int) -> Progress | None:
        conn = await self._retrying(self._ensure_conn)
        row = await conn.fetchrow(
            "SELECT * FROM settlement_progress WHERE consumer = $1 AND shard = $2", consumer, shard)
        if row is None:
            return None
        offsets = row["kafka_offsets"]
        return Progress(consumer, shard, int(row["last_seq"]),
                        {k: int(v) for k, v in json.loads(offsets).items()},
                        int(row["fencing_token"]))

    async def bind_wal(self, shard: int, wal_id: int) -> int:
        """Bind ``shard`` to ``wal_id`` on first use; returns the WAL id the shard is bound to
        (a different one means: refuse, its postings would be skipped as duplicates)."""
        conn = await self._retrying(self._ensure_conn)
        bound = await conn.fetchval(
            "INSERT INTO shard_wal (shard, wal_id) VALUES ($1, $2) "
            "ON CONFLICT (shard) DO UPDATE SET shard = EXCLUDED.shard RETURNING wal_id",
            shard, wal_id)
        return int(bound)

    async def highest_fencing(self, shard: int) -> int:
        conn = await self._retrying(self._ensure_conn)
        v = await conn.fetchval("SELECT fencing_token FROM fencing_high_water WHERE shard = $1", shard)
        return int(v or 0)

    async def refresh_balances(self) -> None:
        """REFRESH MATERIALIZED VIEW CONCURRENTLY balances, on a connection of its own (it is a
        full aggregate: it must neither wait for nor hold up the writer's transactions)."""
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s,
                                     **connect_kwargs(self.dsn))
        try:
            await conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY balances")
        finally:
            await conn.close()

    # -- write -----------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> WriteResult:
        """Commit ``batch`` (postings, audit, ranges, progress) atomically; retry transient errors."""
        attempts = 0

        async def once() -> WriteResult:
            nonlocal attempts
            attempts += 1
            conn = await self._ensure_conn()
            return await self._write_once(conn, batch, attempts)

        res = await self._retrying(once)
        self._high[batch.shard] = max(self._high.get(batch.shard, 0), batch.fencing_max)
        self._accounts.update(int(a) for a in np.unique(batch.postings["account"]).tolist())
        metrics.POSTINGS.inc(res.inserted)
        if res.duplicates:
            metrics.DUPLICATES.inc(res.duplicates)
        metrics.BATCHES.labels(res.path).inc()
        if batch.audit:
            metrics.AUDIT_ROWS.inc(len(batch.audit))
        metrics.LEDGER_SEQ.labels(batch.consumer).set(batch.last_seq)
        if len(batch.event_ts_ns):
            lags = (res.committed_ns - batch.event_ts_ns).astype(np.float64) / 1e9
            metrics.observe_many(metrics.SETTLEMENT_LAG, np.maximum(lags, 0.0))
        return res

    def _fenced(self, shard: int, token: int, high: int) -> None:
        self.fencing_rejects += 1
        metrics.FENCING_REJECTS.inc()
        raise FencingTokenError(shard, token, high)

    async def _retrying(self, fn: Any) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.05, jitter=0.05, max=self.backoff_max_s),
            stop=stop_never if self.retry_max_s is None else stop_after_delay(self.retry_max_s),
            before_sleep=self._before_retry, reraise=True)
        return await retrying(fn)

    def _before_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        self._count_error(exc)
        if exc is not None and is_transient(exc):
            self._drop_conn()

    def _count_error(self, exc: BaseException | None) -> None:
        self.tx_errors += 1
        metrics.DB_TX_ERRORS.labels(type(exc).__name__ if exc else "unknown").inc()

    def _commit_sql(self, b: Batch, postings: int) -> str:
        """``SELECT settle_commit(...)`` with literal arguments (ints, int arrays, the consumer
        name and the offsets JSON as quoted literals), so it can ride on the BEGIN round trip."""
        new = self._new_accounts(b.postings)
        accts, seqs = new if new is not None else ([], [])
        return (f"SELECT settle_commit({int(b.shard)}::smallint, {_text(b.consumer)}, "
                f"{int(b.last_seq)}, {int(b.fencing_min)}, {int(b.fencing_max)}, "
                f"{_ints([r[0] for r in b.ranges], 'bigint')}, {_ints([r[1] for r in b.ranges], 'bigint')}, "
                f"{_ints([r[2] for r in b.ranges], 'integer')}, {_text(json.dumps(b.kafka_offsets))}::jsonb, "
                f"{len(b.event_ts_ns)}, {int(postings)}, {_ints(accts, 'bigint')}, {_ints(seqs, 'bigint')})")

    async def _write_once(self, conn: asyncpg.Connection, b: Batch, attempt: int) -> WriteResult:
        p = b.postings
        try:
            try:
                inserted, path = await self._tx(conn, b, upsert=False)
            except asyncpg.UniqueViolationError:
                # rows of this batch are already posted (a replay): again, keeping the old rows
                inserted, path = await self._tx(conn, b, upsert=True)
        except LedgerConflictError as e:
            await self._record_conflict(e)
            raise
        except asyncpg.PostgresError as e:
            if getattr(e, "sqlstate", None) == FENCE_SQLSTATE:  # settle_fence or the trigger
                high = await conn.fetchval(
                    "SELECT fencing_token FROM fencing_high_water WHERE shard = $1", b.shard)
                self._high[b.shard] = int(high or 0)
                self._fenced(b.shard, b.fencing_min, int(high or 0))
            if not is_transient(e):
                self._count_error(e)  # transient ones are counted by the retry hook
            raise
        return WriteResult(inserted, len(p) - inserted, path, time.time_ns(), attempt)

    async def _tx(self, conn: asyncpg.Connection, b: Batch, upsert: bool) -> tuple[int, str]:
        """One transaction; rolled back on any error (the connection is dropped if that fails)."""
        p = b.postings
        try:
            if not len(p) or not upsert:
                await conn.execute("BEGIN; " + self._commit_sql(b, len(p)))
                if len(p):
                    await conn.copy_to_table("ledger_entries", source=_chunks(copybin.encode(p)),
                                             columns=copybin.COLUMNS, format="binary")
                inserted, path = len(p), ("copy" if len(p) else "none")
            else:
                await conn.execute("BEGIN")
                inserted = await self._upsert(conn, b)
                await conn.execute(self._commit_sql(b, inserted))
                path = "upsert"
            if b.audit:
                a = b.audit
                await conn.execute(
                    _AUDIT, b.shard, [r.seq for r in a], [r.actor for r in a],
                    [r.action for r in a], [r.symbol for r in a], [r.reason for r in a],
                    [r.ticket for r in a], [r.note for r in a], [r.fencing for r in a],
                    [r.ts_ns for r in a])
            await conn.execute("COMMIT")
            return inserted, path
        except BaseException:
            try:
                if not conn.is_closed():
                    await asyncio.wait_for(conn.execute("ROLLBACK"), 5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self._drop_conn()
            raise

    async def _upsert(self, conn: asyncpg.Connection, b: Batch) -> int:
        await conn.execute(_STAGE)
        await conn.copy_to_table("ledger_stage", source=_chunks(copybin.encode(b.postings)),
                                 columns=copybin.COLUMNS, format="binary")
        status = await conn.execute(_UPSERT)
        inserted = int(status.split()[-1])
        if inserted < len(b.postings):
            bad = await conn.fetch(_CONFLICTS)
            if bad:
                raise LedgerConflictError(b.shard, [dict(r) for r in bad])
        return inserted

    def _new_accounts(self, p: np.ndarray) -> tuple[list[int], list[int]] | None:
        if not len(p):
            return None
        accts, first = np.unique(p["account"], return_index=True)
        keep = [i for i, a in enumerate(accts.tolist()) if a not in self._accounts]
        if not keep:
            return None
        return [int(accts[i]) for i in keep], [int(p["seq"][first[i]]) for i in keep]

    async def _record_conflict(self, e: LedgerConflictError) -> None:
        from settle.invariants import record_violation

        try:
            conn = await self._ensure_conn()
            await record_violation(conn, "replay_mismatch", e.shard, {"rows": e.rows})
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # the error itself is raised to the caller; the counter was bumped
