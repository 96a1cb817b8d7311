"""Settlement lag: how it is measured, and the policy that acts on it (DESIGN.md §8, RUNBOOK 3.2).

Measured: ``settlement_lag_seconds`` (histogram) = commit time of the ledger transaction minus the
event's sequencing time ``ts_ns``, per event (ledger.py); ``ledger_consumer_lag_events`` = what is
durable/produced but not yet settled (embedded.py, consumer.py).

Policy input: the age of the oldest durable event not yet settled (0 when caught up). Unlike the
histogram it keeps growing while the database or the broker is away, which is exactly when the
policy must act. Two estimates, the process takes the larger: ``current_lag_ms`` from the
sequencing time of the oldest event the settler holds (embedded mode), and ``BacklogAge`` from
periodic samples of the WAL's durable seq against the settled seq (any mode; resolution = the
sampling period).

Policy (``decide``, pure): above T2 -> throttle new orders (a flag for the edge); above T3 ->
``SOFT_HALT`` through a ``SET_LAG_HALT`` mode 1 command (the engine marks the halt as the
policy's: only the policy lifts it); strictly below T2 -> throttle off and, if the policy halted,
``SET_LAG_HALT`` mode 0. Between T2 and T3 a policy halt stays (hysteresis: the lag must really
come down before trading resumes); exactly T2 changes nothing.

After a restart the policy does not know whether its halt is in force, so the state starts as
``UNKNOWN``: the first reading below T2 sends a lift (a no-op for the engine if there was none).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
import time
from collections.abc import Callable

import numpy as np

from pipeline.records import ADMIN, COMMAND, GLOBAL_SYMBOL, Cmd
from settle import metrics


class LagState(enum.IntEnum):
    UNKNOWN = -1
    NORMAL = 0
    THROTTLE = 1
    HALT = 2


class HaltCommand(enum.IntEnum):
    LIFT = 0  # SET_LAG_HALT mode 0
    SET = 1  # SET_LAG_HALT mode 1


@dataclasses.dataclass(frozen=True)
class LagDecision:
    state: LagState
    throttle: bool
    command: HaltCommand | None  # what to send to the engine now, if anything


def decide(lag_ms: float, state: LagState, t2_ms: int, t3_ms: int) -> LagDecision:
    """The policy as a pure function of the current lag and the previous state."""
    if not 0 < t2_ms <= t3_ms:
        raise ValueError(f"lag thresholds must satisfy 0 < T2 <= T3, got T2={t2_ms} T3={t3_ms}")
    if lag_ms > t3_ms:
        return LagDecision(LagState.HALT, True, None if state == LagState.HALT else HaltCommand.SET)
    if lag_ms > t2_ms:
        if state == LagState.HALT:
            return LagDecision(LagState.HALT, True, None)
        return LagDecision(LagState.THROTTLE, True, None)
    if lag_ms < t2_ms:
        lift = state in (LagState.HALT, LagState.UNKNOWN)
        return LagDecision(LagState.NORMAL, False, HaltCommand.LIFT if lift else None)
    # exactly T2: keep what we have
    keep = LagState.NORMAL if state == LagState.UNKNOWN else state
    return LagDecision(keep, keep != LagState.NORMAL, None)


def current_lag_ms(oldest_pending_ts_ns: int | None, now_ns: int | None = None) -> float:
    if oldest_pending_ts_ns is None:
        return 0.0
    now = time.time_ns() if now_ns is None else now_ns
    return max(0.0, (now - oldest_pending_ts_ns) / 1e6)


class BacklogAge:
    """Age of the oldest durable-but-unsettled seq, from ``(time, durable seq)`` samples: the first
    sample whose durable seq exceeds the settled seq is (within one period) when the oldest
    unsettled seq became durable. Bounded: one sample per tick while the backlog lasts, capped."""

    def __init__(self, max_samples: int = 100_000) -> None:
        self._samples: collections.deque[tuple[int, int]] = collections.deque(maxlen=max_samples)

    def update(self, now_ns: int, durable_seq: int, settled_seq: int) -> float:
        s = self._samples
        while s and s[0][1] <= settled_seq:
            s.popleft()
        if durable_seq <= settled_seq:
            s.clear()
            return 0.0
        if not s or durable_seq > s[-1][1]:
            s.append((now_ns, durable_seq))
        return max(0.0, (now_ns - s[0][0]) / 1e6)


def halt_command(cmd: HaltCommand, lag_ms: float, t_ms: int) -> np.ndarray:
    """The ADMIN record (command + audit note) for a policy halt or lift, venue-wide."""
    rec = np.zeros(1, ADMIN)
    c = np.zeros(1, COMMAND)
    c["kind"] = Cmd.SET_LAG_HALT
    c["symbol"] = GLOBAL_SYMBOL
    c["mode"] = int(cmd)
    rec["cmd"] = c
    what = "above T3" if cmd == HaltCommand.SET else "back below T2"
    note = json.dumps({"actor": "settle-lag-policy", "action": f"SET_LAG_HALT {cmd.name}",
                       "reason": f"settlement lag {lag_ms:.0f} ms {what} ({t_ms} ms)",
                       "ticket": "auto"}).encode()
    rec["note_len"] = len(note)
    rec["note"][0, :len(note)] = np.frombuffer(note, np.uint8)
    return rec


class LagPolicy:
    """Stateful wrapper: feed it the current lag, it calls ``submit`` with the ADMIN record to
    send when the halt must be set or lifted, and ``on_throttle`` when the flag flips."""

    def __init__(self, t2_ms: int, t3_ms: int, *,
                 submit: Callable[[np.ndarray], None] | None = None,
                 on_throttle: Callable[[bool], None] | None = None) -> None:
        decide(0, LagState.UNKNOWN, t2_ms, t3_ms)  # validates the thresholds
        self.t2_ms, self.t3_ms = t2_ms, t3_ms
        self.submit = submit
        self.on_throttle = on_throttle
        self.state = LagState.UNKNOWN
        self.throttle = False
        self._flag_written = False
        self.commands: list[HaltCommand] = []

    def update(self, lag_ms: float) -> LagDecision:
        d = decide(lag_ms, self.state, self.t2_ms, self.t3_ms)
        if d.throttle != self.throttle or not self._flag_written:
            if self.on_throttle is not None:
                self.on_throttle(d.throttle)
            self.throttle = d.throttle
            self._flag_written = True
        if d.command is not None:
            if self.submit is not None:  # may raise: then the state stays and the next update retries
                t = self.t3_ms if d.command == HaltCommand.SET else self.t2_ms
                self.submit(halt_command(d.command, lag_ms, t))
            self.commands.append(d.command)
        self.state = d.state
        metrics.LAG_POLICY_STATE.set(max(0, int(d.state)))
        return d
