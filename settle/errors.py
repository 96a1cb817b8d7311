"""The settle package's exceptions: one base, each subclass also inherits the builtin it refines.

``FencingTokenError`` is the one the runbook names (``FENCING_TOKEN``, RUNBOOK 3.3 / G1): a write
stamped with a leader token lower than the highest the ledger has seen for the shard — a stale
leader. It is never retried. ``LedgerConflictError`` means a replayed posting disagrees with the
row already stored under the same idempotency key: the replay is not deterministic or the ledger
was altered; settlement stops (SEV1) rather than pick one.
"""

from __future__ import annotations


class SettleError(Exception):
    """Base of every settle error."""


class MigrationError(SettleError, RuntimeError):
    """A migration failed, or an applied migration's file no longer matches its recorded checksum."""


class PostingError(SettleError, ValueError):
    """An event cannot be turned into postings (unknown symbol, seqs out of order, bad kind)."""


class FencingTokenError(SettleError, PermissionError):
    """A batch carries a fencing token lower than the highest seen for its shard (code FENCING_TOKEN)."""

    code = "FENCING_TOKEN"

    def __init__(self, shard: int, token: int, highest: int) -> None:
        super().__init__(f"FENCING_TOKEN: shard {shard} batch token {token} is lower than {highest}, "
                         f"the highest the ledger has seen")
        self.shard = shard
        self.token = token
        self.highest = highest


class LedgerConflictError(SettleError, ValueError):
    """A replayed posting differs from the stored row with the same (shard, seq, leg)."""

    def __init__(self, shard: int, rows: list[dict[str, int]]) -> None:
        super().__init__(f"shard {shard}: {len(rows)} replayed postings differ from the stored rows "
                         f"with the same idempotency key, first: {rows[:3]}")
        self.shard = shard
        self.rows = rows


class SchemaError(SettleError, ValueError):
    """A Kafka message that does not follow settle/SCHEMA.md (version, type or field)."""


class LeaseError(SettleError, RuntimeError):
    """A lease is held by someone else, or was lost."""


class ReconcileError(SettleError, RuntimeError):
    """Reconciliation could not run (no engine balances source, no ledger)."""
