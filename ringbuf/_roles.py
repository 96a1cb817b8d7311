"""Single-writer roles, checked rather than assumed.

Each ring has one producer (writer) and, for SPSC, one consumer. The header holds a token per
role: ``(process start time << 22) | pid`` of the holder, 0 when free. A process claims a role
with compare-and-swap the first time it pushes (pops, publishes) and frees it on ``close()``.
A token whose process is gone (or a zombie, or a reused pid with another start time) is stale:
the next claimer takes it over, so a restarted producer continues after a SIGKILL.
Another *live* holder makes the claim fail with ``RingBusy``.

Limits: pids are compared within one pid namespace (one host, no containers in between).
Roles guard against wiring mistakes between processes, not between threads of one process.
"""

from __future__ import annotations

import os

import numpy as np

from ringbuf._kernels import cas_word, load_word
from ringbuf.errors import RingBusy

_PID_BITS = 22  # Linux PID_MAX_LIMIT is 2**22
_PID_MASK = (1 << _PID_BITS) - 1
_pid = os.getpid()  # cached: os.getpid() is a syscall, and try_push asks on every call


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def current_pid() -> int:
    return _pid


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of ``pid`` from /proc, None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2:].split()  # the command name may hold spaces or ')'
    return fields[0].decode(), int(fields[19])


def token(pid: int | None = None) -> int:
    pid = _pid if pid is None else pid
    st = _stat(pid)
    if st is None:
        raise ProcessLookupError(f"no process {pid}")
    return (st[1] << _PID_BITS) | pid


def pid_of(tok: int) -> int:
    return tok & _PID_MASK


def alive(tok: int) -> bool:
    st = _stat(pid_of(tok))
    return st is not None and st[0] not in ("Z", "X") and st[1] == tok >> _PID_BITS


def claim(ctrl: np.ndarray, idx: int, name: str, role: str) -> int:
    """Take role word ``ctrl[idx]`` for this process; returns the token held. Raises RingBusy."""
    mine = token()
    while True:
        cur = int(load_word(ctrl, idx))
        if cur == mine:
            return mine
        if cur != 0 and alive(cur):
            raise RingBusy(name, role, pid_of(cur))
        if int(cas_word(ctrl, idx, cur, mine)) == cur:
            return mine


def release(ctrl: np.ndarray, idx: int, tok: int) -> None:
    """Free the role if this token still holds it (a successor may already have taken over)."""
    cas_word(ctrl, idx, tok, 0)


def holder(ctrl: np.ndarray, idx: int) -> int | None:
    """The pid holding the role, None when free or stale."""
    cur = int(load_word(ctrl, idx))
    return pid_of(cur) if cur and alive(cur) else None


class Claims:
    """This process's claims on a ring's role words (re-claimed after a fork)."""

    def __init__(self) -> None:
        self.pid = current_pid()
        self.held: dict[int, int] = {}

    def ensure(self, ctrl: np.ndarray, idx: int, name: str, role: str) -> None:
        if self.pid != current_pid():
            self.pid, self.held = current_pid(), {}
        if idx not in self.held:
            self.held[idx] = claim(ctrl, idx, name, role)

    def release_all(self, ctrl: np.ndarray) -> None:
        if self.pid == current_pid():
            for idx, tok in self.held.items():
                release(ctrl, idx, tok)
        self.held = {}
