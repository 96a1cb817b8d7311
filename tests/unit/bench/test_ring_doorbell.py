"""bench ring's doorbell ping-pong: every ping is answered through the stack's own FIFO doorbells,
each wake-up drains exactly one ring, and a child that never answers is reported, not waited on
forever. No timing is asserted."""

from __future__ import annotations

import os

import pytest

from bench import ring


def test_every_ping_is_answered() -> None:
    bad, rtt = ring._doorbell_pingpong(200, 0.0)
    assert bad == 0
    assert len(rtt) == 200 and (rtt > 0).all()
    res = ring._lat_result("x", rtt // 2, bad == 0, "")
    assert res.correct is True and res.p50 and res.p50 > 0


def test_a_silent_child_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # the child exits at once without ringing back: the parent gives up after the timeout
    monkeypatch.setattr(ring, "WAKE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(ring, "_bell_pong_main", _silent)
    bad, rtt = ring._doorbell_pingpong(5, 0.0)
    assert bad > 0 and len(rtt) == 0


def _silent(mine: str, theirs: str, n: int) -> None:
    from pathlib import Path

    Path(mine).mkdir(parents=True, exist_ok=True)
    (Path(mine) / "ready").touch()
    os._exit(0)
