"""The write-ahead log: mmap'd, preallocated, hash-chained segments with group commit.

The engine appends one COMMANDS and one EVENTS frame per loop iteration (``WalWriter.append``);
a ``GroupCommitter`` thread seals and fdatasyncs everything appended so far in one go and advances
the durable watermark (``durable.pos``), which readers in other processes tail (``WalReader.tail``)
without ever seeing a frame before it is durable. ``recover`` drops a torn tail and refuses
corruption; ``verify_chain`` checks the integrity roots. Layout: format.py; design: DESIGN.md §5.

Modules: format (layout), durable (watermark file), segment (files, preallocation), writer,
commit (group commit), reader (iter/tail), recovery, verify, errors; ``python -m pipeline.wal``.
"""

from pipeline.wal.commit import CommitStats, GroupCommitter
from pipeline.wal.durable import DurablePos, read_durable
from pipeline.wal.errors import (
    WalAppendError,
    WalClosed,
    WalCorruption,
    WalError,
    WalFencingError,
    WalGapError,
    WalLocked,
    WalSyncError,
)
from pipeline.wal.format import Frame, FrameKind, position, split_position
from pipeline.wal.reader import WalReader, WalTail
from pipeline.wal.recovery import RecoveryResult, recover
from pipeline.wal.verify import ChainReport, SegmentReport, verify_chain
from pipeline.wal.writer import SYNC_MODES, WalWriter

__all__ = [
    "SYNC_MODES",
    "ChainReport",
    "CommitStats",
    "DurablePos",
    "Frame",
    "FrameKind",
    "GroupCommitter",
    "RecoveryResult",
    "SegmentReport",
    "WalAppendError",
    "WalClosed",
    "WalCorruption",
    "WalError",
    "WalFencingError",
    "WalGapError",
    "WalLocked",
    "WalReader",
    "WalSyncError",
    "WalTail",
    "WalWriter",
    "position",
    "read_durable",
    "recover",
    "split_position",
    "verify_chain",
]
