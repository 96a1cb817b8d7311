"""Ring test fixtures: unique segment names per test, removed afterwards even when a test fails."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ringbuf import cleanup

# fork: children start in milliseconds (spawn re-imports numpy + numba: ~1 s each on this box).
CTX = mp.get_context("fork")


@pytest.fixture
def shm_name() -> Iterator[Callable[[], str]]:
    prefix = f"spotx-test{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    n = iter(range(1_000_000))
    yield lambda: f"{prefix}{next(n)}"
    cleanup(prefix)


@pytest.fixture
def procs() -> Iterator[Callable[..., Any]]:
    """Start child processes that are always reaped (SIGKILL after the test if still running)."""
    started: list[Any] = []

    def start(target: Callable[..., Any], *args: Any) -> Any:
        p = CTX.Process(target=target, args=args, daemon=True)
        p.start()
        started.append(p)
        return p

    yield start
    for p in started:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
        p.join(10)
