"""Ring errors: one base, each subclass also the builtin it refines."""

from __future__ import annotations


class RingError(Exception):
    """Base of every ringbuf error."""


class RingFull(RingError, BlockingIOError):
    """A blocking push timed out with the ring still full."""


class RingEmpty(RingError, BlockingIOError):
    """A blocking pop timed out with the ring still empty."""


class RingClosed(RingError, ValueError):
    """The ring was closed in this process."""


class SegmentNotFound(RingError, FileNotFoundError):
    """No shared-memory segment of that name: the owner has not created it (or removed it)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"shared-memory segment {name!r} does not exist")
        self.name = name


class SegmentMismatch(RingError, ValueError):
    """The segment exists but its layout (magic, kind, record size, dtype) is not what we expect."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"shared-memory segment {name!r}: {why}")
        self.name = name
        self.why = why
