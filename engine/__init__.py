"""spotx matching engine: numba kernels over preallocated numpy state (README.md is the spec).

Public API:
    Engine(config)                      typed wrapper: apply, apply_into, state_hash, snapshot,
                                        restore, balances, open_orders, book
    apply_batch(state, cmds, n, seq0, ts_ns, out, info) -> n_events   the kernel (process loop)
    warm()                              compile every kernel on a throwaway state
    fee_ceil(x, bps)                    the one fee rounding function
"""

from __future__ import annotations

from engine._batch import apply_batch
from engine.engine import Engine
from engine.errors import EngineConfigError, EngineError, SequenceError, SnapshotError
from engine.fees import fee_ceil
from engine.layout import FULL, OK, SEQ_GAP, State
from engine.warm import warm

__all__ = ["Engine", "apply_batch", "warm", "fee_ceil", "State", "OK", "FULL", "SEQ_GAP",
           "EngineError", "EngineConfigError", "SequenceError", "SnapshotError"]
