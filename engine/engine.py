"""``Engine``: the typed public wrapper around the kernels (cold paths, tests, the process loop).

The process loop calls ``Engine.apply_into`` (one kernel call per batch, no Python per command) or
the kernel ``engine.apply_batch`` itself with ``Engine.state``; tests and tools call ``apply``,
which loops over ``FULL`` splits and returns every event. Both need C-contiguous COMMAND / EVENT
arrays (another layout would compile another specialisation). Not thread-safe: one caller applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numba
import numpy as np
from numba.core import types

from engine import queries, snapshot
from engine._batch import RESUME_MISMATCH, apply_batch, recompute_terms, state_hash
from engine.errors import EngineError, SequenceError
from engine.layout import (
    C_LAST_SEQ,
    C_MAX_TOUCH,
    C_N_ORDERS,
    C_RESUME_SEQ,
    DEFAULT_MAX_MAKERS,
    FULL,
    SEQ_GAP,
    State,
    max_events_per_command,
)
from engine.state import allocate, config_hash, engine_config_doc, prefault
from pipeline.config import Config
from pipeline.records import COMMAND, EVENT


class Engine:
    """One shard's matching engine state and the calls that advance or read it."""

    def __init__(self, config: Config, *, max_makers_per_order: int = DEFAULT_MAX_MAKERS,
                 events_capacity: int | None = None, state: State | None = None) -> None:
        self.config = config
        self.max_makers = max_makers_per_order
        self.state = state if state is not None else allocate(config, max_makers_per_order)
        if int(self.state.ctl[C_MAX_TOUCH]) != max_makers_per_order:
            raise EngineError("state was built with another max_makers_per_order")
        cap = events_capacity or self.events_capacity(config.engine.batch_max)
        if cap < self.min_events_capacity():
            raise EngineError(f"events_capacity {cap} < the one-command bound "
                              f"{self.min_events_capacity()}")
        self._out = np.zeros(cap, EVENT)
        self._info = np.zeros(4, np.int64)
        self._fast: Callable[..., int] | None = None
        self.config_hash = config_hash(config, max_makers_per_order)
        # restore(): (kind, what) when the snapshot was of another config, carried over
        # (engine.snapshot); None otherwise
        self.migrated: tuple[str, str] | None = None

    # -- sizing --------------------------------------------------------------------------------
    def min_events_capacity(self) -> int:
        """Events one command can produce at most (README §1): ``out`` must hold this many."""
        return max_events_per_command(self.max_makers)

    def events_capacity(self, batch: int) -> int:
        """A buffer size that keeps a typical batch of ``batch`` commands in one kernel call."""
        return batch * 8 + self.min_events_capacity()

    # -- applying ------------------------------------------------------------------------------
    @property
    def seq(self) -> int:
        """The last applied seq (0 for a fresh engine)."""
        return int(self.state.ctl[C_LAST_SEQ])

    def apply_into(self, cmds: np.ndarray, n: int, seq0: int, ts_ns: int,
                   out: np.ndarray) -> tuple[int, int, int]:
        """One kernel call: (events written to ``out``, commands completed, status OK/FULL).

        Raises SequenceError on a seq gap or an interrupted CANCEL_ALL not resumed first."""
        info = self._info
        fast = self._fast
        if fast is not None and _plain(cmds, COMMAND) and _plain(out, EVENT):
            n_ev = int(fast(self.state, cmds, n, seq0, ts_ns, out, info))
        else:
            n_ev = int(apply_batch(self.state, cmds, n, seq0, ts_ns, out, info))
            if fast is None and _plain(cmds, COMMAND) and _plain(out, EVENT):
                self._fast = _entry_point(self.state, cmds, out, info)
        status = int(info[1])
        if status == SEQ_GAP:
            raise SequenceError(f"batch starts at seq {seq0}, expected {self.seq + 1}",
                                self.seq + 1, seq0)
        if status == RESUME_MISMATCH:
            raise SequenceError(f"seq {seq0} must resume the interrupted CANCEL_ALL",
                                self.seq + 1, seq0)
        return n_ev, int(info[0]), status

    def apply(self, cmds: np.ndarray, ts_ns: int | None = None) -> np.ndarray:
        """Apply COMMAND records with the next seqs; every event they produced, in order."""
        if cmds.dtype != COMMAND:
            raise TypeError(f"expected COMMAND records, got {cmds.dtype}")
        cmds = np.ascontiguousarray(cmds)
        ts = time.time_ns() if ts_ns is None else int(ts_ns)
        pieces = []
        i = 0
        total = len(cmds)
        while i < total or int(self.state.ctl[C_RESUME_SEQ]) != 0:
            n_ev, done, status = self.apply_into(cmds[i:], total - i, self.seq + 1, ts, self._out)
            pieces.append(self._out[:n_ev].copy())
            i += done
            if status != FULL and i < total:
                raise EngineError("kernel stopped early without saying why")  # defensive
            if status == FULL and n_ev == 0:
                raise EngineError("events buffer too small for one command")
        return join_events(pieces)

    # -- hash and snapshots --------------------------------------------------------------------
    def state_hash(self) -> int:
        return int(state_hash(self.state))

    def verify_hash(self) -> bool:
        """Recompute the multiset hash from scratch (O(state)) and compare with the running one."""
        return int(recompute_terms(self.state)) == int(self.state.hs[0])

    def snapshot(self, path: str | Path, seq: int, fencing: int) -> Path:
        """Write a snapshot of the state at ``seq`` (must be the last applied) into directory
        ``path``; returns the manifest path. Raises EngineError if a CANCEL_ALL is mid-way."""
        return self.snapshot_writer(path, seq, fencing)()

    def snapshot_writer(self, path: str | Path, seq: int, fencing: int,
                        pace: bool = False) -> Callable[[], Path]:
        """Check and hash now (numba), write later: the returned call only writes files (numpy,
        hashlib), so it can run in a forked child on the copy-on-write image of this state while
        the parent goes on (``pace`` there: see ``engine.snapshot.save``). Raises EngineError if
        ``seq`` is not the last applied or a CANCEL_ALL is mid-way."""
        if seq != self.seq:
            raise EngineError(f"snapshot asked at seq {seq} but the state is at seq {self.seq}")
        if int(self.state.ctl[C_RESUME_SEQ]) != 0:
            raise EngineError("cannot snapshot in the middle of a split CANCEL_ALL")
        st, shash, cfg_hash, makers = self.state, self.state_hash(), self.config_hash, self.max_makers
        doc = engine_config_doc(self.config, makers)
        return lambda: snapshot.save(st, Path(path), seq, shash, fencing, cfg_hash, makers, doc,
                                     pace)

    @classmethod
    def restore(cls, path: str | Path, config: Config, **kwargs: int) -> Engine:
        """An engine from a snapshot manifest (or its directory: the newest valid one)."""
        st, manifest = snapshot.load(Path(path), config)
        eng = cls(config, max_makers_per_order=int(manifest["max_makers_per_order"]), state=st,
                  **kwargs)
        m = manifest.get("migrated")
        eng.migrated = (str(m[0]), str(m[1])) if m else None
        return eng

    # -- queries -------------------------------------------------------------------------------
    def balances(self, account: int) -> dict[int, tuple[int, int]]:
        return queries.balances(self.state, account)

    def open_orders(self, account: int, symbol: int | None = None) -> list[queries.OpenOrder]:
        return queries.open_orders(self.state, account, symbol)

    def book(self, symbol: int, depth: int = 10) -> queries.Book:
        return queries.book(self.state, symbol, depth)

    def asset_totals(self) -> np.ndarray:
        return queries.asset_totals(self.state)

    def prefault(self) -> None:
        """Commit every page of the state now (see ``engine.state.prefault``)."""
        prefault(self.state)

    @property
    def n_orders(self) -> int:
        return int(self.state.ctl[C_N_ORDERS])


def _plain(a: np.ndarray, dtype: np.dtype) -> bool:
    """C-contiguous, aligned, exactly ``dtype`` (aligned struct): the layout the fast path took."""
    if a.dtype is not dtype or a.ndim != 1:  # the very dtype object of pipeline/records.py
        return False
    flags = a.flags
    return bool(flags.c_contiguous and flags.aligned)


def _entry_point(st: State, cmds: np.ndarray, out: np.ndarray,
                 info: np.ndarray) -> Callable[..., int] | None:
    """The compiled ``apply_batch`` for exactly these argument types, called without numba's
    per-call type dispatch (which costs ~3 us for a 19-array state; the entry point ~1 us). Used
    only while the arguments keep the same types (``_plain``)."""
    key = (numba.typeof(st), numba.typeof(cmds), types.int64, types.int64, types.int64,
           numba.typeof(out), numba.typeof(info))
    cres = cast(Any, apply_batch).overloads.get(key)
    return None if cres is None else cast(Callable[..., int], cres.entry_point)


def join_events(pieces: list[np.ndarray]) -> np.ndarray:
    """Concatenate EVENT arrays keeping the dtype (``np.concatenate`` drops the field aliases)."""
    res = np.zeros(sum(len(p) for p in pieces), EVENT)
    at = 0
    for p in pieces:
        res[at:at + len(p)] = p
        at += len(p)
    return res
