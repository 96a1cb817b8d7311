"""Fixtures of the edge tests: run a coroutine on the parametrised loop (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_live import LiveEdge, start_live_edge

Runner = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]


def arun(coro_fn: Callable[[], Coroutine[Any, Any, Any]], loop_impl: str) -> Any:
    if loop_impl == "uvloop":
        import uvloop

        return uvloop.run(coro_fn())
    return asyncio.run(coro_fn())


@pytest.fixture
def aio(loop_impl: str) -> Runner:
    """``aio(lambda: coro())`` on a fresh loop of each implementation (root ``loop_impl``)."""
    return lambda fn: arun(fn, loop_impl)


@pytest.fixture
def live(tmp_path: Path, loop_impl: str) -> Iterator[LiveEdge]:
    edge, stop = start_live_edge(tmp_path, loop_impl)
    try:
        yield edge
    finally:
        stop()
