"""Publisher snapshots: a publisher restarts from its newest snapshot plus the WAL after it.

Why. Before it publishes, a publisher rebuilds books, trades, candles and tickers from durable
events. From the start of the WAL that is linear in the WAL (``recovery.publisher_rebuild.*`` in
``python -m bench recovery``: ~1.6 s per million commands here), and market data is down that long
after every publisher restart. With a snapshot it is bounded by the events since the snapshot.

What. One file ``<data_dir>/md-state/publisher-snapshot.pickle``: the publisher's
``MarketDeriver`` and where to resume (``resume_seq``: the first seq of the batch after the last
one folded in, taken only right after an EVENTS frame, so ``WalReader.tail(resume_seq)`` starts
exactly at the next batch). Written and checked like the edge's snapshot
(``pipeline.edge_snapshot``: pickle, never across a trust boundary; atomic temp + fsync + rename;
periodically from a forked child, synchronously at a clean stop); not used, with the reason
logged, if its format, WAL id or config fingerprint differ or it resumes beyond the durable seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.edge_snapshot import fingerprint, read_checked, write, write_in_child

VERSION = 1
FILE = "publisher-snapshot.pickle"

__all__ = ["FILE", "VERSION", "MdSnapshot", "fingerprint", "read", "snapshot_path", "write",
           "write_in_child"]


@dataclass
class MdSnapshot:
    version: int
    wal_id: int
    resume_seq: int
    fingerprint: str
    events: int  # durable events folded in (information)
    deriver: Any  # pipeline.publisher.derive.MarketDeriver
    config: dict[str, Any] | None = None  # edge_snapshot.config_doc of the config it is of


def snapshot_path(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "md-state" / FILE


def read(cfg: Config, wal_id: int, durable_seq: int) -> MdSnapshot | None:
    """The snapshot if it exists and fits this WAL and config; None (reason logged) otherwise."""
    snap = read_checked(snapshot_path(cfg), MdSnapshot, VERSION, cfg, wal_id, durable_seq,
                        "publisher snapshot", "rebuilding from the whole WAL")
    return snap if isinstance(snap, MdSnapshot) else None
