# mypy: ignore-errors
"""Symbol and global modes, lag halts, withdrawals halt (README §5). Kernels.

``smode[sym] = (operator mode, lag flag)``; globals in ``ctl[C_GLOBAL_MODE]``, ``ctl[C_GLOBAL_LAG]``,
``ctl[C_WD_HALT]``. A symbol's hash term covers its pair while it is not (NORMAL, 0); the globals are
hashed when the state hash is read.
"""

from __future__ import annotations

import numpy as np

from engine._events import ev_command, ev_new
from engine._hash import mode_term
from engine._numba import kernel
from engine.layout import C_ACCOUNT, C_GLOBAL_LAG, C_GLOBAL_MODE, C_N_SYMBOLS, C_WD_HALT

GLOBAL_SYMBOL = 0xFFFF
CANCEL_ONLY, SOFT_HALT, HARD_HALT = 1, 2, 3
R_UNKNOWN_SYMBOL, R_CANCEL_ONLY, R_SYMBOL_HALTED, R_MARKET_HALTED, R_BAD = 1, 9, 10, 11, 14
EV_REJECTED, EV_MODE_CHANGED, EV_WITHDRAWALS = 2, 7, 9
CMD_SET_MODE, CMD_SET_LAG_HALT = 4, 10


@kernel
def scope_eff(mode, lag):
    if lag != 0 and mode < SOFT_HALT:
        return np.int64(SOFT_HALT)
    return np.int64(mode)


@kernel
def mode_reject(st, sym, cancel):
    """The reject reason the mode of ``sym`` gives a new order (cancel=False) or a cancel; 0 = ok."""
    es = scope_eff(st.smode[sym, 0], st.smode[sym, 1])
    eg = scope_eff(st.ctl[C_GLOBAL_MODE], st.ctl[C_GLOBAL_LAG])
    eff = es if es > eg else eg
    if eff == 0 or (cancel and eff != HARD_HALT):
        return 0
    if eff == CANCEL_ONLY:
        return R_CANCEL_ONLY
    return R_MARKET_HALTED if eg > es else R_SYMBOL_HALTED


@kernel
def _mode_event(st, out, sym, mode, lag, kind):
    e = ev_new(st, out, EV_MODE_CHANGED)
    r = out[e]
    r.account = st.ctl[C_ACCOUNT]
    r.symbol = sym
    r.mode = scope_eff(mode, lag)
    r.qty = mode
    r.price = lag
    r.reason = kind


@kernel
def set_mode(st, cmds, i, out, lag_cmd):
    """SET_MODE (lag_cmd False: operator mode) or SET_LAG_HALT (lag_cmd True: lag flag)."""
    c = cmds[i]
    sym = np.int64(c.symbol)
    v = np.int64(c.mode)
    kind = CMD_SET_LAG_HALT if lag_cmd else CMD_SET_MODE
    reason = 0
    if sym != GLOBAL_SYMBOL and (sym < 1 or sym > st.ctl[C_N_SYMBOLS]):
        reason = R_UNKNOWN_SYMBOL
    elif v > (1 if lag_cmd else HARD_HALT):
        reason = R_BAD
    if reason != 0:
        e = ev_command(st, out, EV_REJECTED, cmds, i, reason)
        out[e].symbol = sym
        return
    if sym == GLOBAL_SYMBOL:
        if lag_cmd:
            st.ctl[C_GLOBAL_LAG] = v
        else:
            st.ctl[C_GLOBAL_MODE] = v
        _mode_event(st, out, sym, st.ctl[C_GLOBAL_MODE], st.ctl[C_GLOBAL_LAG], kind)
        return
    m = st.smode[sym, 0]
    lg = st.smode[sym, 1]
    if m != 0 or lg != 0:
        st.hs[0] -= mode_term(sym, m, lg)
    if lag_cmd:
        lg = v
    else:
        m = v
    st.smode[sym, 0] = m
    st.smode[sym, 1] = lg
    if m != 0 or lg != 0:
        st.hs[0] += mode_term(sym, m, lg)
    _mode_event(st, out, sym, m, lg, kind)


@kernel
def withdrawals_halt(st, cmds, i, out):
    v = np.int64(cmds[i].mode)
    if v > 1:
        ev_command(st, out, EV_REJECTED, cmds, i, R_BAD)
        return
    st.ctl[C_WD_HALT] = v
    e = ev_new(st, out, EV_WITHDRAWALS)
    out[e].account = st.ctl[C_ACCOUNT]
    out[e].mode = v
