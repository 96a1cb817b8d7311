"""The WAL's exceptions: one base, each subclass also inherits the builtin it refines.

``WalCorruption`` is the SEV1 one: durable bytes that no longer verify. A torn tail (the frame that
was being written when the process or machine died, never reported durable) is *not* an error;
recovery zeroes it and says how many bytes it dropped.
"""

from __future__ import annotations


class WalError(Exception):
    """Base of every WAL error."""


class WalCorruption(WalError, ValueError):
    """Bytes that were durable (or are followed by durable bytes) fail their CRC or hash chain."""

    def __init__(self, segment: str, offset: int, reason: str) -> None:
        super().__init__(f"WAL corruption in {segment} at byte {offset}: {reason}")
        self.segment = segment
        self.offset = offset
        self.reason = reason


class WalSyncError(WalError, OSError):
    """fdatasync/msync failed. Fatal: the writer refuses further appends; crash and recover.

    Never retried: after a failed fsync the kernel may have dropped the dirty pages, so a retry that
    "succeeds" would report durable bytes that are not on disk.
    """

    def __init__(self, errno_: int, message: str, segment: str = "") -> None:
        super().__init__(errno_, f"WAL sync failed ({segment or 'wal'}): {message}")
        self.segment = segment


class WalClosed(WalError, RuntimeError):
    """The writer, reader or committer was closed (or failed) and cannot be used any more."""


class WalFencingError(WalError, PermissionError):
    """A writer's fencing token is lower than the highest already in the log (a stale leader)."""

    def __init__(self, token: int, highest: int) -> None:
        super().__init__(f"fencing token {token} is lower than {highest}, the highest in the WAL")
        self.token = token
        self.highest = highest


class WalAppendError(WalError, ValueError):
    """An append with bad arguments: unknown kind, out-of-order seq, oversized payload."""


class WalLocked(WalError, RuntimeError):
    """Another process (or writer) holds the WAL directory's writer lock."""


class WalGapError(WalError, LookupError):
    """A reader asked for a seq older than the oldest segment still on disk."""
