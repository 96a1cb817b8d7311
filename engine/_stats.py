"""Per-symbol order counters of the engine loop (``engine_commands_total{symbol}``,
``engine_symbol_seq{symbol}``), written straight into the process's shared-memory stats block.

It replaced numpy calls per batch in ``pipeline.engine_proc.main`` (a mask, boolean indexing,
``np.unique`` with indices and counts, a Python loop over the result): ~23 us a batch measured with
timeit for 50 commands, against 0.43 us for this loop (same machine, same batch).
"""

from __future__ import annotations

import numpy as np

from engine._numba import kernel
from pipeline.records import Cmd

NEW_ORDER = int(Cmd.NEW_ORDER)
CANCEL = int(Cmd.CANCEL)
CANCEL_ALL = int(Cmd.CANCEL_ALL)


@kernel
def count_orders(cmds: np.ndarray, n: int, seq0: int, count_off: np.ndarray,
                 seq_off: np.ndarray, data: np.ndarray) -> None:
    """For each order command (NEW_ORDER, CANCEL, CANCEL_ALL) among ``cmds[:n]``, numbered
    ``seq0, seq0 + 1, ...``: ``data[count_off[symbol]] += 1`` and ``data[seq_off[symbol]]`` = its
    seq (so the symbol's last one wins). Symbols outside ``count_off`` or mapped to -1 are skipped.
    """
    m = count_off.shape[0]
    for i in range(n):
        k = cmds[i].kind
        if k == NEW_ORDER or k == CANCEL or k == CANCEL_ALL:
            s = np.int64(cmds[i].symbol)
            if s < m:
                o = count_off[s]
                if o >= 0:
                    data[o] += 1
                    data[seq_off[s]] = seq0 + i
