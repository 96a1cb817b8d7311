"""Named errors of the engine package (one base, CONVENTIONS.md habit 6).

Rejected commands are not errors: they are REJECTED events. These are for misuse of the API and for
states the engine refuses to run from.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every engine error."""


class EngineConfigError(EngineError, ValueError):
    """The configuration cannot build an engine state (capacities, accounts); the message says why."""


class SequenceError(EngineError, ValueError):
    """A batch's first seq is not the last applied seq + 1 (or a split CANCEL_ALL was not resumed)."""

    def __init__(self, message: str, expected: int, got: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class SnapshotError(EngineError, OSError):
    """A snapshot is missing, torn, for another configuration, or its state hash does not verify."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path
