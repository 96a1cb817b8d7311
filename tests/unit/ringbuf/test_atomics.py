"""The numba atomics: the hoisting trap they exist for, and their semantics."""

from __future__ import annotations

import mmap
import os
import time

import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

from ringbuf import cas, fence_acquire, fence_release, idle, load_acquire, store_release


@numba.njit(cache=True)
def _spin_acquire(flag: np.ndarray) -> int:
    spins = 0
    while load_acquire(flag, 0) == 0:
        spins += 1
    return spins


@numba.njit(cache=True)
def _spin_plain(flag: np.ndarray) -> int:
    spins = 0
    while flag[0] == 0:  # LLVM may hoist this load: the loop then never sees the other process
        spins += 1
    return spins


@numba.njit(cache=True)
def _store(flag: np.ndarray, v: int) -> None:
    store_release(flag, 0, v)


def _shared_flag() -> tuple[mmap.mmap, np.ndarray]:
    mm = mmap.mmap(-1, 4096)  # anonymous MAP_SHARED: inherited across fork, like a /dev/shm ring
    return mm, np.frombuffer(mm, dtype=np.int64, count=8)


def _spinner_exits(spin: object, wait_s: float) -> bool:
    """Fork a child spinning on a shared flag, set the flag from here, report if the child ended."""
    mm, flag = _shared_flag()
    spin(np.ones(1, np.int64))  # type: ignore[operator]  # compile before forking
    pid = os.fork()
    if pid == 0:  # child: spin until the parent's store becomes visible
        try:
            spin(flag)  # type: ignore[operator]
        finally:
            os._exit(0)
    try:
        time.sleep(0.2)  # let the child enter its loop before the store
        _store(flag, 1)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
            time.sleep(0.01)
        return False
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        del flag
        mm.close()


def test_acquire_spin_loop_sees_another_process_store() -> None:
    assert _spinner_exits(_spin_acquire, wait_s=10.0)


def test_plain_load_spin_loop_hangs_which_is_why_acquire_exists() -> None:
    """Control for the test above: the same loop with a plain load never ends (LLVM hoists the
    load). If this starts failing, the compiler stopped hoisting; the acquire version is still
    required for ordering, but the hang is no longer reproducible here."""
    assert not _spinner_exits(_spin_plain, wait_s=1.0)


@numba.njit(cache=True)
def _cas(a: np.ndarray, i: int, e: int, n: int) -> int:
    return cas(a, i, e, n)


@numba.njit(cache=True)
def _roundtrip(a: np.ndarray, i: int, v: int) -> int:
    store_release(a, i, v)
    fence_release()
    fence_acquire()
    return load_acquire(a, i)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_store_then_load_any_index(dtype: type) -> None:
    a = np.zeros(4, dtype)
    assert _roundtrip(a, 3, 7) == 7 and list(a) == [0, 0, 0, 7]


def test_cas_swaps_only_on_match_and_returns_old() -> None:
    a = np.array([5, 0], np.int64)
    assert _cas(a, 0, 4, 9) == 5 and a[0] == 5  # mismatch: unchanged
    assert _cas(a, 0, 5, 9) == 5 and a[0] == 9  # match: swapped
    assert _cas(a, 1, 0, -1) == 0 and a[1] == -1


def test_atomics_refuse_non_word_arrays() -> None:
    with pytest.raises(TypingError):
        _roundtrip(np.zeros(4, np.float64), 0, 1)
    with pytest.raises(TypingError):
        _roundtrip(np.zeros(4, np.int32), 0, 1)


@numba.njit(cache=True)
def _spin_yield_until_set(flag: np.ndarray, spins: int) -> int:
    attempt = 0
    while load_acquire(flag, 0) == 0:
        idle(attempt, spins)
        attempt += 1
    return attempt


@pytest.mark.parametrize("spins", [0, 1_000_000])
def test_njit_spin_then_yield_sees_another_process_store(spins: int) -> None:
    """``idle`` (pause, then sched_yield) inside a numba wait loop: compiles, and the loop still
    ends when another process stores (spins=0 yields on every poll)."""
    assert _spinner_exits(lambda f: _spin_yield_until_set(f, spins), wait_s=10.0)
    assert _spin_yield_until_set(np.ones(1, np.int64), spins) == 0
