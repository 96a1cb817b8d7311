"""Wait strategies for the blocking ring calls, chosen per process (config) at construction.

``idle(attempt)`` is called after the ``attempt``-th consecutive poll that found nothing
(0-based); progress resets the count. The kernels never wait: a numba loop (the engine) that
drains rings does its own spinning between batches.

* ``BusySpin`` — never gives up the core: lowest latency, one whole core per waiter. Only for a
  process pinned to a core of its own (never two spinners on this 2-core box).
* ``SpinThenYield(spins)`` — polls ``spins`` times, then ``sched_yield()`` between polls: near-spin
  latency under load, lets a co-scheduled process run when idle (still 100% CPU when alone).
* ``ParkBackoff(spins, min_s, max_s)`` — polls ``spins`` times, then sleeps ``min_s``, doubling up
  to ``max_s``: for mostly-idle processes. Wake-up latency after a quiet spell is up to
  ``max_s`` (+ timer slack).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import ClassVar


class WaitStrategy:
    name: ClassVar[str] = "base"

    def idle(self, attempt: int) -> None:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class BusySpin(WaitStrategy):
    name: ClassVar[str] = "busy_spin"

    def idle(self, attempt: int) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class SpinThenYield(WaitStrategy):
    name: ClassVar[str] = "spin_yield"
    spins: int = 200

    def __post_init__(self) -> None:
        if self.spins < 0:
            raise ValueError(f"spins must be >= 0, got {self.spins}")

    def idle(self, attempt: int) -> None:
        if attempt >= self.spins:
            os.sched_yield()


@dataclasses.dataclass(frozen=True)
class ParkBackoff(WaitStrategy):
    name: ClassVar[str] = "park"
    spins: int = 50
    min_s: float = 20e-6
    max_s: float = 1e-3

    def __post_init__(self) -> None:
        if self.spins < 0 or not 0 < self.min_s <= self.max_s:
            raise ValueError(f"need spins >= 0 and 0 < min_s <= max_s, got {self}")

    def sleep_s(self, attempt: int) -> float:
        """Seconds the ``attempt``-th idle poll sleeps (0 while still spinning)."""
        if attempt < self.spins:
            return 0.0
        return min(self.max_s, self.min_s * 2.0 ** min(attempt - self.spins, 30))

    def idle(self, attempt: int) -> None:
        s = self.sleep_s(attempt)
        if s:
            time.sleep(s)


_TABLE: dict[str, type[WaitStrategy]] = {c.name: c for c in (BusySpin, SpinThenYield, ParkBackoff)}


def strategy(name: str, **params: float) -> WaitStrategy:
    """Build a strategy from config: ``strategy("park", max_s=0.002)``."""
    try:
        cls = _TABLE[name]
    except KeyError:
        raise ValueError(f"unknown wait strategy {name!r}; one of {sorted(_TABLE)}") from None
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(f"wait strategy {name!r}: {e}") from None
