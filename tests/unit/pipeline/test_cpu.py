"""pipeline.cpu.place: pins the calling process and lowers its priority, threads included."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from multiprocessing.connection import Connection

import pytest

from pipeline.cpu import place


def _child(core: int, nice: int, out: Connection) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    go = threading.Event()
    seen: list[int] = []

    def report() -> None:
        go.wait(10)
        seen.append(os.getpriority(os.PRIO_PROCESS, 0))

    before = threading.Thread(target=report)  # a thread that already runs when place() is called
    before.start()
    place(core, nice)
    go.set()
    before.join()
    after = threading.Thread(target=report)  # and one started later
    after.start()
    after.join()
    out.send((sorted(os.sched_getaffinity(0)), base, os.getpriority(os.PRIO_PROCESS, 0), seen))


def test_place_pins_and_lowers_priority_for_later_threads() -> None:
    core = (os.cpu_count() or 1) - 1
    rx, tx = mp.get_context("spawn").Pipe(duplex=False)
    p = mp.get_context("spawn").Process(target=_child, args=(core + (os.cpu_count() or 1), 7, tx))
    p.start()
    affinity, base, now, threads = rx.recv()
    p.join(10)
    assert p.exitcode == 0
    assert affinity == [core]  # modulo the cores there are
    assert now == min(19, base + 7) and threads == [now, now]


def test_place_refuses_out_of_range_nice() -> None:
    with pytest.raises(ValueError, match="nice must be 0..19"):
        place(None, 20)
