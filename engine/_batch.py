# mypy: ignore-errors
"""``apply_batch``: the engine's one entry point per batch, and the state-hash kernels.

Per command: check ``out`` has room for its worst case (README §1), stamp seq / ts / route into
``ctl``, dispatch on ``kind``, mark the last event ``last = 1``, advance ``C_LAST_SEQ``, and emit a
CHECKPOINT when ``seq % checkpoint_every == 0``. No Python runs per command. ``info`` receives
(commands completed, status); the return value is the number of events written.
"""

from __future__ import annotations

import numpy as np

from engine._admin_kernels import ack, cancel, cancel_all, reject_unknown, transfer
from engine._events import cmd_cid, ev_new
from engine._hash import bal_term, global_term, mode_term, order_term
from engine._maps import cid_home
from engine._match_kernels import new_order
from engine._modes import set_mode, withdrawals_halt
from engine._numba import kernel
from engine._prefetch import prefetch
from engine.layout import (
    C_ACCOUNT,
    C_CKPT_EVERY,
    C_CONN,
    C_EVPOS,
    C_GLOBAL_LAG,
    C_GLOBAL_MODE,
    C_LAST_SEQ,
    C_MAX_TOUCH,
    C_NEXT_TRADE,
    C_REQ,
    C_RESUME_SEQ,
    C_SEQ,
    C_TS,
    C_WD_HALT,
    FULL,
    OK,
    SEQ_GAP,
)

NEW_ORDER, CANCEL, CANCEL_ALL, SET_MODE, DEPOSIT, WITHDRAW = 1, 2, 3, 4, 5, 6
WITHDRAWALS_HALT, SNAPSHOT, HEARTBEAT, SET_LAG_HALT = 7, 8, 9, 10
EV_CHECKPOINT = 8
RESUME_MISMATCH = -2


@kernel
def state_hash(st):
    g = global_term(st.ctl[C_GLOBAL_MODE], st.ctl[C_GLOBAL_LAG], st.ctl[C_WD_HALT],
                    st.ctl[C_NEXT_TRADE])
    return st.hs[0] + g


@kernel
def recompute_terms(st):
    """The multiset sum recomputed from scratch (O(state)): what ``hs[0]`` must equal."""
    h = np.uint64(0)
    for a in range(st.avail.shape[0]):
        for asset in range(st.avail.shape[1]):
            av = st.avail[a, asset]
            lk = st.locked[a, asset]
            if av != 0 or lk != 0:
                h += bal_term(a, asset, av, lk)
    for s in range(st.orders.shape[0]):
        if st.orders[s].live != 0:
            h += order_term(st.orders, s)
    for sym in range(st.smode.shape[0]):
        if st.smode[sym, 0] != 0 or st.smode[sym, 1] != 0:
            h += mode_term(sym, st.smode[sym, 0], st.smode[sym, 1])
    return h


@kernel
def _need(kind, max_touch):
    if kind == NEW_ORDER:
        return 5 + 3 * max_touch
    if kind == CANCEL_ALL:
        return 3
    if kind == CANCEL or kind == DEPOSIT or kind == WITHDRAW:
        return 3
    return 2


@kernel
def _prefetch_batch(st, cmds, n):
    """Prefetch the map entry each command will probe (and, for cancels by id, the order record
    behind it), so a batch's cache misses overlap instead of queueing one after another."""
    mask = st.idmap.shape[0] - 1
    for i in range(n):
        c = cmds[i]
        if c.kind == NEW_ORDER:
            c0, c1, c2, c3 = cmd_cid(cmds, i)
            if c0 != 0 or c1 != 0 or c2 != 0 or c3 != 0:
                prefetch(st.cidmap, cid_home(np.int64(c.account), c0, c1, c2, c3, mask))
        elif c.kind == CANCEL and c.flags == 0:
            prefetch(st.idmap, c.order_id & mask)
    for i in range(n):  # second level: the order records those id-map entries point at
        c = cmds[i]
        if c.kind == CANCEL and c.flags == 0:
            s = st.idmap[c.order_id & mask]
            if s >= 0:
                prefetch(st.orders, s)


@kernel
def apply_batch(st, cmds, n, seq0, ts_ns, out, info):
    ctl = st.ctl
    ctl[C_EVPOS] = 0
    info[0] = 0
    info[1] = OK
    if seq0 != ctl[C_LAST_SEQ] + 1:
        info[1] = SEQ_GAP
        return 0
    if ctl[C_RESUME_SEQ] != 0 and (n < 1 or cmds[0].kind != CANCEL_ALL):
        info[1] = RESUME_MISMATCH
        return 0
    cap = out.shape[0]
    max_touch = ctl[C_MAX_TOUCH]
    every = ctl[C_CKPT_EVERY]
    done = 0
    _prefetch_batch(st, cmds, n)
    for i in range(n):
        c = cmds[i]
        kind = np.int64(c.kind)
        if cap - ctl[C_EVPOS] < _need(kind, max_touch):
            info[1] = FULL
            break
        seq = seq0 + i
        ctl[C_SEQ] = seq
        ctl[C_TS] = ts_ns
        ctl[C_CONN] = c.conn
        ctl[C_REQ] = c.req
        ctl[C_ACCOUNT] = c.account
        if kind == NEW_ORDER:
            new_order(st, cmds, i, out)
        elif kind == CANCEL:
            cancel(st, cmds, i, out)
        elif kind == CANCEL_ALL:
            if not cancel_all(st, cmds, i, out):
                info[1] = FULL
                break
        elif kind == SET_MODE:
            set_mode(st, cmds, i, out, False)
        elif kind == SET_LAG_HALT:
            set_mode(st, cmds, i, out, True)
        elif kind == DEPOSIT:
            transfer(st, cmds, i, out, False)
        elif kind == WITHDRAW:
            transfer(st, cmds, i, out, True)
        elif kind == WITHDRAWALS_HALT:
            withdrawals_halt(st, cmds, i, out)
        elif kind == SNAPSHOT or kind == HEARTBEAT:
            ack(st, cmds, i, out)
        else:
            reject_unknown(st, cmds, i, out)
        out[ctl[C_EVPOS] - 1].last = 1
        ctl[C_LAST_SEQ] = seq
        done += 1
        if every > 0 and seq % every == 0:
            e = ev_new(st, out, EV_CHECKPOINT)
            out[e].state_hash = state_hash(st)
            out[e].conn = 0
            out[e].req = 0
            out[e].last = 1
    info[0] = done
    return ctl[C_EVPOS]
