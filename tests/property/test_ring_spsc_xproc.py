"""SPSC ring against ``collections.deque`` with the producer in another process: random capacities,
batch sizes, pop sizes and pauses on both sides. Every record arrives once, whole, in order."""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import signal
import time
import uuid

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.records import COMMAND
from ringbuf import SpinThenYield, SpscRing, cleanup

CTX = mp.get_context("fork")  # children start in milliseconds; spawn would re-import numba
PAUSES_US = [0, 0, 0, 20, 200, 1000]


def _records(start: int, n: int) -> np.ndarray:
    a = np.zeros(n, COMMAND)
    a["order_id"] = np.arange(start, start + n)
    a["qty"] = a["order_id"] * 3 + 1
    a["account"] = a["order_id"] % 65_521
    return a


def _produce(name: str, batches: list[int], pauses_us: list[int]) -> None:
    with SpscRing.attach(name, COMMAND, wait=SpinThenYield(spins=20)) as r:
        seq = 0
        for size, pause in zip(batches, pauses_us, strict=True):
            r.push(_records(seq, size), timeout_s=10)
            seq += size
            if pause:
                time.sleep(pause / 1e6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cap_log2=st.integers(1, 6),
    batches=st.lists(st.tuples(st.integers(1, 40), st.sampled_from(PAUSES_US)), min_size=1,
                     max_size=30),
    pops=st.lists(st.tuples(st.integers(1, 50), st.sampled_from(PAUSES_US)), min_size=1,
                  max_size=10),
)
def test_cross_process_ring_behaves_like_a_deque(cap_log2: int, batches: list[tuple[int, int]],
                                                  pops: list[tuple[int, int]]) -> None:
    sizes = [b for b, _ in batches]
    model: collections.deque[int] = collections.deque(range(sum(sizes)))
    prefix = f"spotx-ptest{os.getpid()}-{uuid.uuid4().hex[:8]}"
    ring = SpscRing.create(prefix, COMMAND, 1 << cap_log2)
    p = CTX.Process(target=_produce, args=(ring.name, sizes, [w for _, w in batches]), daemon=True)
    p.start()
    try:
        i = 0
        deadline = time.monotonic() + 15
        while model and time.monotonic() < deadline:
            size, pause = pops[i % len(pops)]
            i += 1
            out = np.zeros(size, COMMAND)
            n = ring.try_pop(out)
            assert 0 <= n <= min(size, ring.capacity)
            for rec in out[:n]:
                expect = model.popleft()
                assert (int(rec["order_id"]), int(rec["qty"]), int(rec["account"])) == (
                    expect, expect * 3 + 1, expect % 65_521)
            if pause:
                time.sleep(pause / 1e6)
            elif n == 0:
                os.sched_yield()
        p.join(10)
        assert not model, f"{len(model)} records never arrived"
        assert p.exitcode == 0
        st_ = ring.statistics()
        assert (st_.pushed, st_.popped, st_.depth) == (sum(sizes), sum(sizes), 0)
        assert 1 <= st_.peak_depth <= ring.capacity
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join(10)
        ring.close()
        cleanup(prefix)
