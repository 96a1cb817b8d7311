"""SPSC ring: full/empty, statistics, validation, roles, crash re-attach, numba direct use."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pytest

from pipeline.records import COMMAND, EVENT
from ringbuf import (
    ERR_LAYOUT,
    ERR_SHAPE,
    BroadcastWriter,
    ParkBackoff,
    RingBusy,
    RingClosed,
    RingEmpty,
    RingFull,
    SegmentExists,
    SegmentMismatch,
    SegmentNotFound,
    SpscRing,
    as_words,
    spsc_pop,
    spsc_push,
)
from ringbuf._kernels import H_VERSION

Name = Callable[[], str]


def recs(start: int, n: int) -> np.ndarray:
    a = np.zeros(n, COMMAND)
    a["order_id"] = np.arange(start, start + n)
    a["qty"] = a["order_id"] * 3 + 1
    return a


@pytest.fixture
def ring(shm_name: Name) -> Any:
    r = SpscRing.create(shm_name(), COMMAND, 8)
    yield r
    r.close()


@pytest.mark.parametrize("cap", [0, 1, 6, 3, 2**31, True, 8.0])
def test_capacity_must_be_power_of_two(shm_name: Name, cap: Any) -> None:
    with pytest.raises(ValueError, match="power of two"):
        SpscRing.create(shm_name(), COMMAND, cap)


def test_full_then_empty_and_statistics(ring: SpscRing) -> None:
    assert ring.try_push(recs(0, 10)) == 8  # only capacity fits
    assert ring.try_push(recs(10, 1)) == 0
    assert ring.depth() == 8
    out = np.zeros(5, COMMAND)
    assert ring.try_pop(out) == 5 and list(out["order_id"]) == [0, 1, 2, 3, 4]
    assert ring.try_pop(out) == 3 and list(out["order_id"][:3]) == [5, 6, 7]
    assert ring.try_pop(out) == 0
    st = ring.statistics()
    assert (st.capacity, st.depth, st.peak_depth, st.pushed, st.popped) == (8, 0, 8, 8, 8)
    assert (st.full_waits, st.empty_waits) == (2, 1)


def test_peak_depth_is_the_real_peak_not_capacity(ring: SpscRing) -> None:
    out = np.zeros(8, COMMAND)
    for i in range(20):  # depth never exceeds 3
        assert ring.try_push(recs(3 * i, 3)) == 3
        assert ring.try_pop(out) == 3
    assert ring.statistics().peak_depth == 3


def test_single_record_and_max_n(ring: SpscRing) -> None:
    assert ring.try_push(recs(41, 1)[0]) == 1  # a np.void record
    assert ring.try_push(recs(42, 2)) == 2
    out = np.zeros(8, COMMAND)
    assert ring.try_pop(out, max_n=1) == 1 and out["order_id"][0] == 41
    assert ring.try_pop(out, max_n=0) == 0
    assert ring.try_pop(out) == 2 and list(out["order_id"][:2]) == [42, 43]


def test_pop_into_non_contiguous_array_is_refused_and_loses_nothing(ring: SpscRing) -> None:
    ring.try_push(recs(0, 4))
    out = np.zeros(8, COMMAND)
    with pytest.raises(ValueError, match="contiguous"):
        ring.try_pop(out[::2])
    assert ring.try_pop(out) == 4 and list(out["order_id"][:4]) == [0, 1, 2, 3]


def test_wrong_record_type_is_refused(ring: SpscRing) -> None:
    with pytest.raises(TypeError, match="carries"):
        ring.try_push(np.zeros(1, EVENT))
    with pytest.raises(TypeError, match="carries"):
        ring.try_pop(np.zeros(1, EVENT))


def test_kernels_refuse_wrong_width(ring: SpscRing) -> None:
    assert spsc_push(ring.ctrl, ring.slots, np.zeros((1, 3), np.int64), 1) == ERR_SHAPE
    assert spsc_pop(ring.ctrl, ring.slots, np.zeros((1, 9), np.int64), 1) == ERR_SHAPE


def test_kernels_refuse_a_segment_of_another_layout_version(ring: SpscRing) -> None:
    """What a stale numba cache (kernels of an older layout inlined in a caller) would meet."""
    ring.ctrl[H_VERSION] += 1
    try:
        assert spsc_push(ring.ctrl, ring.slots, as_words(recs(0, 1)), 1) == ERR_LAYOUT
        with pytest.raises(SegmentMismatch, match="stale numba cache"):
            ring.try_push(recs(0, 1))
        with pytest.raises(SegmentMismatch, match="stale numba cache"):
            ring.try_pop(np.zeros(1, COMMAND))
        assert ring.statistics().pushed == 0
    finally:
        ring.ctrl[H_VERSION] -= 1


def test_blocking_calls_time_out_with_named_errors(ring: SpscRing) -> None:
    ring.wait = ParkBackoff(spins=1, min_s=1e-4, max_s=1e-3)
    with pytest.raises(RingEmpty) as empty:
        ring.pop(np.zeros(1, COMMAND), timeout_s=0.02)
    assert isinstance(empty.value, BlockingIOError)
    ring.push(recs(0, 5), timeout_s=0.1)
    with pytest.raises(RingFull) as full:
        ring.push(recs(5, 6), timeout_s=0.02)
    assert (full.value.pushed, full.value.total) == (3, 6)


def _push_later(name: str, start: int, n: int, delay_s: float) -> None:
    time.sleep(delay_s)
    with SpscRing.attach(name, COMMAND) as r:
        r.push(recs(start, n), timeout_s=10)


def test_blocking_pop_wakes_for_another_process(shm_name: Name, procs: Any) -> None:
    r = SpscRing.create(shm_name(), COMMAND, 64, wait=ParkBackoff())
    p = procs(_push_later, r.name, 100, 5, 0.1)
    out = np.zeros(8, COMMAND)
    got: list[int] = []
    while len(got) < 5:
        n = r.pop(out, timeout_s=10)
        got += out["order_id"][:n].tolist()
    assert got == [100, 101, 102, 103, 104]
    p.join(10)
    r.close()


def test_attach_checks_layout(ring: SpscRing, shm_name: Name) -> None:
    with pytest.raises(SegmentMismatch, match="record size"):
        SpscRing.attach(ring.name, EVENT)
    same_size_other_fields = np.dtype([("a", "<i8"), ("b", "<u8", (7,))])
    assert same_size_other_fields.itemsize == COMMAND.itemsize
    with pytest.raises(SegmentMismatch, match="differs"):
        SpscRing.attach(ring.name, same_size_other_fields)
    with pytest.raises(SegmentMismatch, match="spsc ring, expected broadcast"):
        BroadcastWriter.attach(ring.name, COMMAND)
    with open(f"/dev/shm/{(junk := shm_name())}", "wb") as f:
        f.write(b"\0" * 4096)
    with pytest.raises(SegmentMismatch, match="magic"):
        SpscRing.attach(junk, COMMAND)
    with SpscRing.attach(ring.name, COMMAND) as same:
        assert same.capacity == 8


def test_segment_lifecycle_errors(shm_name: Name) -> None:
    name = shm_name()
    with pytest.raises(SegmentNotFound) as nf:
        SpscRing.attach(name, COMMAND)
    assert isinstance(nf.value, FileNotFoundError) and nf.value.name == name
    old = SpscRing.create(name, COMMAND, 8)
    old.try_push(recs(0, 3))
    with pytest.raises(SegmentExists):
        SpscRing.create(name, COMMAND, 8)
    new = SpscRing.create(name, COMMAND, 16, replace_stale=True)
    assert old.orphaned() and not new.orphaned()
    assert new.statistics().pushed == 0 and new.capacity == 16
    for bad in ("x", "spotx-", "spotx-a/b", "other-a-b"):
        with pytest.raises(ValueError, match="bad segment name"):
            SpscRing.create(bad, COMMAND, 8)
    old.close()
    old.close()  # idempotent
    with pytest.raises(RingClosed):
        old.try_push(recs(0, 1))
    new.close()


def _try_push_once(name: str, parent_pid: int) -> None:
    with SpscRing.attach(name, COMMAND) as r:
        try:
            r.try_push(recs(0, 1))
        except RingBusy as e:
            sys.exit(3 if e.pid == parent_pid and e.role == "producer" else 4)


def test_a_second_live_producer_is_refused(shm_name: Name, procs: Any) -> None:
    r = SpscRing.create(shm_name(), COMMAND, 8)
    assert r.try_push(recs(0, 1)) == 1  # this process is now the producer
    p = procs(_try_push_once, r.name, os.getpid())
    p.join(10)
    assert p.exitcode == 3
    r.close()  # frees the role
    q = procs(_try_push_once, r.name, os.getpid())
    q.join(10)
    assert q.exitcode == 0
    with SpscRing.attach(r.name, COMMAND) as again:
        assert again.depth() == 2 and again.holders() == (None, None)


def _slow_producer(name: str, start: int) -> None:
    r = SpscRing.attach(name, COMMAND)
    i = start
    while True:  # until SIGKILL
        if r.try_push(recs(i, 1)):
            i += 1
        time.sleep(0.0002)


def _drain(r: SpscRing, out: np.ndarray, want: int, timeout_s: float = 20) -> list[int]:
    got: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        n = r.try_pop(out)
        got += out["order_id"][:n].tolist()
        assert np.all(out["qty"][:n] == out["order_id"][:n] * 3 + 1)
    return got


def test_killed_producer_is_replaced_and_the_stream_continues(shm_name: Name, procs: Any) -> None:
    r = SpscRing.create(shm_name(), COMMAND, 64)
    out = np.zeros(64, COMMAND)
    p = procs(_slow_producer, r.name, 0)
    got = _drain(r, out, 50)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    got += _drain(r, out, r.depth())  # what the dead producer published is all there
    assert got == list(range(len(got))) and len(got) >= 50
    assert r.holders()[0] is None  # the dead producer's role is stale
    q = procs(_slow_producer, r.name, len(got))  # a restarted producer takes over
    got += _drain(r, out, 30)
    assert r.holders()[0] == q.pid
    assert got == list(range(len(got)))
    r.close()


def _slow_consumer(name: str) -> None:
    r = SpscRing.attach(name, COMMAND)
    out = np.zeros(3, COMMAND)
    while True:  # until SIGKILL
        r.try_pop(out)
        time.sleep(0.0005)


def test_killed_consumer_is_replaced_and_nothing_is_lost_or_repeated(shm_name: Name,
                                                                      procs: Any) -> None:
    total = 100_000  # the slow consumer would need ~15 s for all of them: it is killed midway
    r = SpscRing.create(shm_name(), COMMAND, 1 << 17)
    r.push(recs(0, total), timeout_s=5)
    c = procs(_slow_consumer, r.name)
    deadline = time.monotonic() + 10
    while r.statistics().popped < 30 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(c.pid, signal.SIGKILL)
    c.join(10)
    popped = r.statistics().popped
    assert 30 <= popped < total
    out = np.zeros(4096, COMMAND)
    rest = _drain(r, out, total - popped)  # this process becomes the consumer
    assert rest == list(range(popped, total))
    r.close()


@numba.njit(cache=True)
def _engine_like_drain(ctrl: np.ndarray, slots: np.ndarray, words: np.ndarray,
                       batch: np.ndarray) -> tuple[int, int]:
    n_total, qty_sum = 0, 0
    while True:
        n = spsc_pop(ctrl, slots, words, words.shape[0])
        if n <= 0:
            return n_total, qty_sum
        for i in range(n):
            qty_sum += batch[i]["qty"]  # the same memory, read as records
        n_total += n


def test_numba_loop_pops_directly_from_the_views(ring: SpscRing) -> None:
    ring.claim_consumer()
    ring.try_push(recs(10, 7))
    batch = np.zeros(3, COMMAND)
    n, total = _engine_like_drain(ring.ctrl, ring.slots, as_words(batch), batch)
    assert n == 7 and total == sum(i * 3 + 1 for i in range(10, 17))
