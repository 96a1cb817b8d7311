"""SPSC ring: full/empty, statistics, attach checks, crash re-attach, cross-process spin loop."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import uuid

import numba
import numpy as np
import pytest

from pipeline.records import COMMAND, EVENT
from ringbuf import (
    ParkBackoff,
    RingEmpty,
    RingFull,
    SegmentMismatch,
    SegmentNotFound,
    SpscRing,
)
from ringbuf._atomics import load_acquire, store_release

CTX = mp.get_context("spawn")


def name() -> str:
    return f"spotx-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ring() -> SpscRing:
    r = SpscRing.create(name(), COMMAND, 8)
    yield r
    r.unlink()
    r.close()


def recs(start: int, n: int) -> np.ndarray:
    a = np.zeros(n, COMMAND)
    a["order_id"] = np.arange(start, start + n)
    return a


def test_capacity_must_be_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        SpscRing.create(name(), COMMAND, 6)


def test_full_then_empty_and_statistics(ring: SpscRing) -> None:
    assert ring.try_push(recs(0, 10)) == 8  # only capacity fits
    assert ring.try_push(recs(10, 1)) == 0
    out = np.zeros(5, COMMAND)
    assert ring.try_pop(out) == 5
    assert list(out["order_id"]) == [0, 1, 2, 3, 4]
    assert ring.try_pop(out) == 3
    assert ring.try_pop(out) == 0
    st = ring.statistics()
    assert (st.depth, st.peak_depth, st.pushed, st.popped) == (0, 8, 8, 8)
    assert st.full_waits == 2 and st.empty_waits == 1


def test_blocking_calls_time_out_with_named_errors(ring: SpscRing) -> None:
    ring.wait = ParkBackoff(min_s=1e-4, max_s=1e-3, spins=1)
    out = np.zeros(1, COMMAND)
    with pytest.raises(RingEmpty):
        ring.pop(out, timeout_s=0.02)
    ring.push(recs(0, 8), timeout_s=0.1)
    with pytest.raises(RingFull):
        ring.push(recs(8, 1), timeout_s=0.02)


def test_wrong_dtype_is_refused(ring: SpscRing) -> None:
    with pytest.raises(SegmentMismatch, match="record size"):
        SpscRing.attach(ring.name, EVENT)
    with pytest.raises(TypeError):
        ring.try_push(np.zeros(1, EVENT))


def test_attach_missing_segment() -> None:
    with pytest.raises(SegmentNotFound):
        SpscRing.attach(name(), COMMAND)


def _producer(ring_name: str, start: int, n: int) -> None:
    r = SpscRing.attach(ring_name, COMMAND)
    r.push(recs(start, n), timeout_s=20)
    r.close()


def _slow_producer(ring_name: str) -> None:
    r = SpscRing.attach(ring_name, COMMAND)
    i = 0
    while True:  # killed by the test
        if r.try_push(recs(i, 1)):
            i += 1
        time.sleep(0.0005)


def test_killed_producer_leaves_ring_usable() -> None:
    r = SpscRing.create(name(), COMMAND, 64)
    try:
        p = CTX.Process(target=_slow_producer, args=(r.name,))
        p.start()
        out = np.zeros(64, COMMAND)
        got: list[int] = []
        deadline = time.monotonic() + 20
        while len(got) < 20 and time.monotonic() < deadline:
            n = r.try_pop(out)
            got += list(out["order_id"][:n])
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        n = r.try_pop(out)
        got += list(out["order_id"][:n])
        assert got == list(range(len(got))) and len(got) >= 20
        # a new producer re-attaches and continues where the dead one stopped
        q = CTX.Process(target=_producer, args=(r.name, len(got), 10))
        q.start()
        q.join(30)
        assert q.exitcode == 0
        n = r.pop(out, timeout_s=5)
        assert list(out["order_id"][:n]) == list(range(len(got), len(got) + 10))
    finally:
        r.unlink()
        r.close()


@numba.njit(cache=True)
def _spin_until_set(flag: np.ndarray) -> int:
    spins = 0
    while load_acquire(flag, 0) == 0:  # with a plain load LLVM may hoist this and hang
        spins += 1
    return spins


def _set_flag_later(ring_name: str) -> None:
    r = SpscRing.attach(ring_name, COMMAND)
    time.sleep(0.2)
    store_release_py(r.ctrl)
    r.close()


@numba.njit(cache=True)
def _store(ctrl: np.ndarray) -> None:
    store_release(ctrl, 31, 1)


def store_release_py(ctrl: np.ndarray) -> None:
    _store(ctrl)


def test_spin_loop_sees_another_process_store() -> None:
    r = SpscRing.create(name(), COMMAND, 8)
    try:
        flag = r.ctrl[31:32]
        p = CTX.Process(target=_set_flag_later, args=(r.name,))
        p.start()
        spins = _spin_until_set(flag)  # would hang forever if the load were hoisted
        p.join(10)
        assert spins > 0 and flag[0] == 1
    finally:
        r.unlink()
        r.close()
