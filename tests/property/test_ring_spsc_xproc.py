"""SPSC ring against collections.deque, producer in another process, random batches and pauses."""

from __future__ import annotations

import collections
import multiprocessing as mp
import time
import uuid

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.records import COMMAND
from ringbuf import SpscRing

CTX = mp.get_context("spawn")


def _produce(name: str, batches: list[int], pauses_us: list[int]) -> None:
    r = SpscRing.attach(name, COMMAND)
    seq = 0
    for size, pause in zip(batches, pauses_us, strict=True):
        a = np.zeros(size, COMMAND)
        a["order_id"] = np.arange(seq, seq + size)
        a["qty"] = a["order_id"] * 3 + 1
        r.push(a, timeout_s=20)
        seq += size
        if pause:
            time.sleep(pause / 1e6)
    r.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cap_log2=st.integers(1, 6),
    batches=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    pop_sizes=st.lists(st.integers(1, 50), min_size=1, max_size=10),
    data=st.data(),
)
def test_cross_process_matches_deque(cap_log2: int, batches: list[int], pop_sizes: list[int],
                                     data: st.DataObject) -> None:
    pauses = data.draw(st.lists(st.sampled_from([0, 0, 50, 500]), min_size=len(batches),
                                max_size=len(batches)))
    model: collections.deque[int] = collections.deque(range(sum(batches)))
    ring = SpscRing.create(f"spotx-test-{uuid.uuid4().hex[:10]}", COMMAND, 1 << cap_log2)
    try:
        p = CTX.Process(target=_produce, args=(ring.name, batches, pauses))
        p.start()
        got: list[int] = []
        i = 0
        deadline = time.monotonic() + 30
        while model and time.monotonic() < deadline:
            out = np.zeros(pop_sizes[i % len(pop_sizes)], COMMAND)
            i += 1
            n = ring.try_pop(out)
            assert n <= ring.capacity
            for rec in out[:n]:
                expect = model.popleft()
                assert int(rec["order_id"]) == expect and int(rec["qty"]) == expect * 3 + 1
                got.append(expect)
        p.join(20)
        assert not model, f"{len(model)} records never arrived"
        assert p.exitcode == 0
        assert ring.statistics().depth == 0
    finally:
        ring.unlink()
        ring.close()
