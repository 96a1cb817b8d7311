"""``warm()``: compile (or load from the numba cache) every engine kernel on a tiny throwaway state,
so a process can report ready without its first order paying the compiler. The kernels are typed by
array dtypes and dimensions only, which are the same for every config, so one warm-up serves all.
"""

from __future__ import annotations

import time

import numpy as np

from engine._batch import apply_batch, recompute_terms, state_hash
from engine._drive import drive
from engine._stats import count_orders
from engine.fees import bps_floor, fee_ceil, fee_step, quote_spend_cap
from engine.state import allocate
from pipeline.config import load
from pipeline.records import COMMAND, EVENT, Cmd


def warm() -> float:
    """Compile everything; returns the seconds it took."""
    t0 = time.perf_counter()
    cfg = load(env={}, overrides={"engine.max_orders": 16, "engine.max_accounts": 8,
                                  "engine.max_levels": 4})
    st = allocate(cfg, 2)
    cmds = np.zeros(2, COMMAND)
    cmds["kind"] = Cmd.HEARTBEAT
    out = np.zeros(64, EVENT)
    info = np.zeros(4, np.int64)
    apply_batch(st, cmds, 2, 1, 0, out, info)
    drive(st, cmds, 2, 1, 3, 0, out, info, np.zeros(2, np.int64))
    state_hash(st)
    count_orders(cmds, 2, 1, np.full(2, -1, np.int64), np.full(2, -1, np.int64), info)
    recompute_terms(st)
    fee_ceil(1, 1)
    fee_step(1, 1, 1)
    quote_spend_cap(1, 1)
    bps_floor(1, 1)
    return time.perf_counter() - t0
