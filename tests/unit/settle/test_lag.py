"""settle.lag: the T2/T3 policy as a table, the stateful wrapper's commands, the ADMIN record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.records import GLOBAL_SYMBOL, Cmd
from settle.lag import HaltCommand, LagPolicy, LagState, current_lag_ms, decide, halt_command

N, T, H, U = LagState.NORMAL, LagState.THROTTLE, LagState.HALT, LagState.UNKNOWN
SET, LIFT = HaltCommand.SET, HaltCommand.LIFT


@pytest.mark.parametrize("lag, state, want", [
    (0, N, (N, False, None)),
    (1999, N, (N, False, None)),
    (2001, N, (T, True, None)),
    (2001, T, (T, True, None)),
    (10_001, N, (H, True, SET)),
    (10_001, T, (H, True, SET)),
    (10_001, H, (H, True, None)),  # already halted: no second command
    (5_000, H, (H, True, None)),  # between T2 and T3: the policy halt stays
    (10_000, T, (T, True, None)),  # exactly T3 is not above it
    (2_000, H, (H, True, None)),  # exactly T2: nothing changes
    (2_000, T, (T, True, None)),
    (1_999, H, (N, False, LIFT)),  # strictly below T2 lifts
    (1_999, T, (N, False, None)),
    (0, U, (N, False, LIFT)),  # after a restart: lift whatever may be left
    (2_000, U, (N, False, None)),
    (50_000, U, (H, True, SET)),
])
def test_decide(lag: float, state: LagState, want: tuple[LagState, bool, HaltCommand | None]) -> None:
    d = decide(lag, state, 2_000, 10_000)
    assert (d.state, d.throttle, d.command) == want


@pytest.mark.parametrize("t2, t3", [(0, 10), (10, 5), (-1, 5)])
def test_bad_thresholds(t2: int, t3: int) -> None:
    with pytest.raises(ValueError, match="T2"):
        decide(0, N, t2, t3)
    with pytest.raises(ValueError):
        LagPolicy(t2, t3)


def test_policy_sequence_submits_and_flags() -> None:
    sent: list[np.ndarray] = []
    flags: list[bool] = []
    p = LagPolicy(100, 1000, submit=sent.append, on_throttle=flags.append)
    for lag in (0, 50, 150, 1500, 2000, 500, 150, 99, 0, 150):
        p.update(lag)
    assert p.commands == [LIFT, SET, LIFT]
    assert flags == [False, True, False, True]
    assert [int(r["cmd"]["mode"][0]) for r in sent] == [0, 1, 0]
    assert p.state == T and p.throttle


def test_failed_submit_is_retried_next_update() -> None:
    calls = []

    def flaky(rec: np.ndarray) -> None:
        calls.append(rec)
        if len(calls) == 1:
            raise RuntimeError("ring full")

    p = LagPolicy(100, 1000, submit=flaky)
    p.state = N
    with pytest.raises(RuntimeError):
        p.update(5000)
    assert p.state == N and p.commands == [] and p.throttle  # the flag does not wait for the ring
    p.update(5000)
    assert p.state == H and p.commands == [SET] and len(calls) == 2


def test_halt_command_record() -> None:
    rec = halt_command(SET, 12_345.6, 10_000)
    cmd = rec["cmd"][0]
    assert (int(cmd["kind"]), int(cmd["symbol"]), int(cmd["mode"])) == (Cmd.SET_LAG_HALT, GLOBAL_SYMBOL, 1)
    note = json.loads(bytes(rec["note"][0][: int(rec["note_len"][0])]))
    assert note["actor"] == "settle-lag-policy" and "12346 ms" in note["reason"]
    assert note["ticket"] and note["action"] == "SET_LAG_HALT SET"


def test_current_lag() -> None:
    assert current_lag_ms(None) == 0.0
    assert current_lag_ms(1_000_000_000, now_ns=1_250_000_000) == 250.0
    assert current_lag_ms(2_000, now_ns=1_000) == 0.0


def test_backlog_age_tracks_the_oldest_unsettled_durable_seq() -> None:
    from settle.lag import BacklogAge

    b = BacklogAge()
    ms = 1_000_000
    assert b.update(0, 10, 10) == 0.0  # caught up
    assert b.update(100 * ms, 15, 10) == 0.0  # seq 11..15 durable since (about) now
    assert b.update(200 * ms, 20, 10) == 100.0  # still waiting for 11
    assert b.update(300 * ms, 20, 15) == 100.0  # 16..20 became durable at 200 ms
    assert b.update(400 * ms, 25, 20) == 0.0  # 21..25 just now
    assert b.update(5_400 * ms, 25, 20) == 5_000.0  # settlement stalled: the age keeps growing
    assert b.update(5_500 * ms, 25, 25) == 0.0


def test_backlog_age_is_bounded() -> None:
    from settle.lag import BacklogAge

    b = BacklogAge(max_samples=3)
    for i in range(10):
        b.update(i * 1_000_000, 100 + i, 0)
    assert len(b._samples) == 3
