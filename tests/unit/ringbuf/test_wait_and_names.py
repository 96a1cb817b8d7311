"""Wait strategies, segment names and crash clean-up."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from pipeline.records import COMMAND
from ringbuf import (
    BusySpin,
    ParkBackoff,
    SpinThenYield,
    SpscRing,
    cleanup,
    segment_name,
    strategy,
)


def test_park_backoff_doubles_to_its_cap() -> None:
    p = ParkBackoff(spins=2, min_s=1e-5, max_s=8e-5)
    assert [p.sleep_s(a) for a in range(8)] == [0, 0, 1e-5, 2e-5, 4e-5, 8e-5, 8e-5, 8e-5]
    assert p.sleep_s(10_000) == 8e-5  # no overflow however long the wait


def test_strategies_from_config_names() -> None:
    assert strategy("busy_spin") == BusySpin()
    assert strategy("spin_yield", spins=10) == SpinThenYield(spins=10)
    assert strategy("park", max_s=0.002) == ParkBackoff(max_s=0.002)
    with pytest.raises(ValueError, match="unknown wait strategy 'nap'"):
        strategy("nap")
    with pytest.raises(ValueError, match="park"):
        strategy("park", max_ms=2)
    with pytest.raises(ValueError):
        ParkBackoff(min_s=0.01, max_s=0.001)
    with pytest.raises(ValueError):
        SpinThenYield(spins=-1)


def test_segment_names_follow_the_scheme() -> None:
    assert segment_name("prod", "cmd-1") == "spotx-prod-cmd-1"
    for instance, purpose in (("", "md"), ("a b", "md"), ("prod", "x/y"), ("prod", "-md")):
        with pytest.raises(ValueError, match="bad segment"):
            segment_name(instance, purpose)


def test_cleanup_removes_only_its_prefix(shm_name: Callable[[], str]) -> None:
    mine = [SpscRing.create(shm_name(), COMMAND, 2) for _ in range(3)]
    prefix = mine[0].name.rsplit("-", 1)[0] + "-"
    other = SpscRing.create(f"spotx-other{os.getpid()}-x", COMMAND, 2)
    try:
        assert sorted(cleanup(prefix)) == sorted(r.name for r in mine)
        assert not any(os.path.exists(f"/dev/shm/{r.name}") for r in mine)
        assert os.path.exists(f"/dev/shm/{other.name}")
        assert all(r.orphaned() for r in mine)
        with pytest.raises(ValueError, match="spotx"):
            cleanup("")
    finally:
        for r in mine:
            r.close()
        other.close()
        other.unlink()
