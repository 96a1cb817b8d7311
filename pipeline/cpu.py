"""Where a process runs: its core (affinity) and, for downstream consumers, a lower CPU priority.

Every long-running process calls ``place(core, nice)`` first thing in its entry point. Linux
applies a nice value per thread: ``place`` sets it on every thread the process has (the
supervisor's child entry may have started one already), and threads started later inherit it.

Why nice. On the 2-core layout the edge shares core 1 with the publisher, the fan-out and
settlement. They all wake on the same durable batch; at equal priority the scheduler lets them
take turns and the order path waits behind market data. Measured with the e2e bench's stack and
market data on (20 k orders/s open loop, three alternating runs each): ack p50 12.5, 19.3, 28.5 ms
with the publisher and fan-out at nice 0; 8.8, 3.1, 5.3 ms at nice 10. Downstream consumers read
the WAL at their own pace (the publisher conflates, a lapped fan-out reader resyncs, settlement
has its lag alarms), so they are the ones that should wait. ``market.nice`` / ``settle.nice``
(default 10; 0 turns it off). Raising a nice value needs no privilege; lowering it would.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
MAX_NICE = 19


def pin(core: int | None) -> bool:
    """Pin the calling process to ``core`` (modulo the cores there are); False if refused."""
    if core is None:
        return False
    try:
        os.sched_setaffinity(0, {core % (os.cpu_count() or 1)})
        return True
    except (AttributeError, OSError):
        return False


def place(core: int | None, nice: int = 0) -> None:
    """Pin to ``core`` and lower this process's priority by ``nice`` (0..19; 0: unchanged)."""
    pin(core)
    if not 0 <= nice <= MAX_NICE:
        raise ValueError(f"nice must be 0..{MAX_NICE}, got {nice}")
    if not nice:
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]  # no procfs: the calling thread only
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError as e:  # a thread that just ended, or a refusal
            log.warning("could not lower the priority of thread %d by %d: %s", tid, nice, e)
