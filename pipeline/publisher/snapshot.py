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

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.edge_snapshot import fingerprint, write, write_in_child

log = logging.getLogger("spotx.publisher")

VERSION = 1
FILE = "publisher-snapshot.pickle"

__all__ = ["FILE", "VERSION", "MdSnapshot", "read", "snapshot_path", "write", "write_in_child"]


@dataclass
class MdSnapshot:
    version: int
    wal_id: int
    resume_seq: int
    fingerprint: str
    events: int  # durable events folded in (information)
    deriver: Any  # pipeline.publisher.derive.MarketDeriver


def snapshot_path(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "md-state" / FILE


def read(cfg: Config, wal_id: int, durable_seq: int) -> MdSnapshot | None:
    """The snapshot if it exists and fits this WAL and config; None (reason logged) otherwise."""
    path = snapshot_path(cfg)
    try:
        with open(path, "rb") as f:
            snap = pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - a damaged snapshot only costs a full rebuild
        log.warning("publisher snapshot %s unreadable (%s): rebuilding from the whole WAL", path, e)
        return None
    why = None
    if not isinstance(snap, MdSnapshot) or snap.version != VERSION:
        why = "format version differs"
    elif snap.wal_id != wal_id:
        why = f"it is of WAL {snap.wal_id}, this WAL is {wal_id}"
    elif snap.fingerprint != fingerprint(cfg):
        why = "symbols, assets or history bounds changed"
    elif snap.resume_seq - 1 > durable_seq:
        why = f"it resumes at seq {snap.resume_seq}, beyond the durable seq {durable_seq}"
    if why is not None:
        log.warning("publisher snapshot %s not used (%s): rebuilding from the whole WAL", path, why)
        return None
    return snap
