"""engine._stats.count_orders against a plain-Python reference of the per-symbol counters."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._stats import count_orders
from pipeline.records import COMMAND, Cmd

KINDS = [int(Cmd.NEW_ORDER), int(Cmd.CANCEL), int(Cmd.CANCEL_ALL), int(Cmd.DEPOSIT),
         int(Cmd.HEARTBEAT), int(Cmd.SET_MODE)]


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 6)), max_size=64),
       extra=st.integers(0, 3), seq0=st.integers(1, 1 << 40))
def test_counts_and_last_seq_per_symbol_match_the_reference(rows, extra, seq0) -> None:  # type: ignore[no-untyped-def]
    cmds = np.zeros(len(rows) + extra, COMMAND)  # rows past n must be ignored
    for i, (k, s) in enumerate(rows):
        cmds[i]["kind"], cmds[i]["symbol"] = k, s
    cmds["kind"][len(rows):] = int(Cmd.NEW_ORDER)
    cmds["symbol"][len(rows):] = 1
    known = {1: (0, 1), 2: (2, 3), 4: (4, 5)}  # symbol 3 unmapped (-1), 5 and 6 out of the table
    count_off = np.array([-1, 0, 2, -1, 4], np.int64)
    seq_off = np.array([-1, 1, 3, -1, 5], np.int64)
    data = np.full(8, 7, np.int64)
    want = data.copy()
    for i, (k, s) in enumerate(rows):
        if k in (Cmd.NEW_ORDER, Cmd.CANCEL, Cmd.CANCEL_ALL) and s in known:
            want[known[s][0]] += 1
            want[known[s][1]] = seq0 + i
    count_orders(cmds, len(rows), seq0, count_off, seq_off, data)
    assert data.tolist() == want.tolist()
