"""Wait strategies for blocking ring calls, chosen per process in config.

* ``BusySpin`` — never gives up the core: lowest latency, one full core per waiter.
* ``SpinThenYield`` — spins ``spins`` times, then ``sched_yield`` between polls: near-spin latency
  while there is work, lets a co-scheduled process run when there is not.
* ``ParkBackoff`` — sleeps with exponential back-off from ``min_s`` to ``max_s``: for idle-heavy
  processes on a 2-core box. Latency after a quiet period is up to ``max_s``.
"""

from __future__ import annotations

import os
import time


class WaitStrategy:
    name = "base"

    def idle(self, attempt: int) -> None:
        """Called after the ``attempt``-th consecutive poll that found nothing (0-based)."""
        raise NotImplementedError


class BusySpin(WaitStrategy):
    name = "busy_spin"

    def idle(self, attempt: int) -> None:
        return None


class SpinThenYield(WaitStrategy):
    name = "spin_yield"

    def __init__(self, spins: int = 200) -> None:
        self.spins = spins

    def idle(self, attempt: int) -> None:
        if attempt >= self.spins:
            os.sched_yield()


class ParkBackoff(WaitStrategy):
    name = "park"

    def __init__(self, min_s: float = 20e-6, max_s: float = 1e-3, spins: int = 50) -> None:
        self.min_s, self.max_s, self.spins = min_s, max_s, spins

    def idle(self, attempt: int) -> None:
        if attempt < self.spins:
            return
        time.sleep(min(self.max_s, self.min_s * (2 ** min(attempt - self.spins, 16))))


def strategy(name: str) -> WaitStrategy:
    table: dict[str, type[WaitStrategy]] = {"busy_spin": BusySpin, "spin_yield": SpinThenYield,
                                            "park": ParkBackoff}
    try:
        return table[name]()
    except KeyError:
        raise ValueError(f"unknown wait strategy {name!r}; one of {sorted(table)}") from None
