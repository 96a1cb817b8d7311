"""Ring errors: one base (``RingError``); each subclass also inherits the builtin it refines and
carries the fields a caller needs to act on it."""

from __future__ import annotations


class RingError(Exception):
    """Base of every ringbuf error."""


class RingFull(RingError, BlockingIOError):
    """A blocking push timed out with the ring still full; ``pushed`` records did go in."""

    def __init__(self, name: str, timeout_s: float, pushed: int, total: int) -> None:
        super().__init__(f"ring {name!r} stayed full for {timeout_s} s ({pushed}/{total} pushed)")
        self.name, self.timeout_s, self.pushed, self.total = name, timeout_s, pushed, total


class RingEmpty(RingError, BlockingIOError):
    """A blocking pop / read timed out with nothing to take."""

    def __init__(self, name: str, timeout_s: float) -> None:
        super().__init__(f"ring {name!r} stayed empty for {timeout_s} s")
        self.name, self.timeout_s = name, timeout_s


class RingClosed(RingError, ValueError):
    """This process already closed its handle on the ring."""

    def __init__(self, name: str) -> None:
        super().__init__(f"ring {name!r} is closed in this process")
        self.name = name


class RingBusy(RingError, RuntimeError):
    """Another live process already holds the single-writer role (producer / consumer / writer)."""

    def __init__(self, name: str, role: str, pid: int) -> None:
        super().__init__(f"ring {name!r}: the {role} role is held by live process {pid}")
        self.name, self.role, self.pid = name, role, pid


class Lapped(RingError):
    """A broadcast reader fell more than a capacity behind: ``missed`` records are gone for it.

    Nothing was copied. The reader's cursor is unchanged (``cursor``); call ``resync_to_oldest()``
    (skip exactly the lost records) or ``resync_to_latest()`` (skip everything, then rebuild state
    from a snapshot).
    """

    def __init__(self, name: str, cursor: int, missed: int) -> None:
        super().__init__(f"broadcast ring {name!r}: reader at {cursor} lapped, {missed} records lost")
        self.name, self.cursor, self.missed = name, cursor, missed


class SegmentNotFound(RingError, FileNotFoundError):
    """No shared-memory segment of that name: the owner has not created it (or removed it)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"shared-memory segment {name!r} does not exist (its owner creates it)")
        self.name = name


class SegmentExists(RingError, FileExistsError):
    """``create`` found a segment of that name; pass ``replace_stale=True`` if it is a leftover."""

    def __init__(self, name: str) -> None:
        super().__init__(f"shared-memory segment {name!r} already exists "
                         "(a live owner, or a leftover: create(..., replace_stale=True))")
        self.name = name


class SegmentMismatch(RingError, ValueError):
    """The segment exists but its layout (magic, kind, record size, dtype) is not what we expect."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"shared-memory segment {name!r}: {why}")
        self.name = name
        self.why = why
