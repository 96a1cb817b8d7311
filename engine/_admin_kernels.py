# mypy: ignore-errors
"""CANCEL, CANCEL_ALL, DEPOSIT / WITHDRAW and ACK commands (README §2, §6). Kernels.

CANCEL_ALL collects the matching order ids into ``ca_ids``, sorts them, and cancels them one step
at a time (CANCELED + its BALANCE). When ``out`` has no room for another step it records the
position in ``ctl[C_RESUME_*]`` and returns False; the next ``apply_batch`` call, starting with the
same command and seq, continues from there. A step never depends on where the split fell, so the
events are the same for any buffer size. Cost O(k log k) for k orders, plus walking the book
(SYMBOL scope) or the account's list (ACCOUNT scopes).
"""

from __future__ import annotations

import numpy as np

from engine._bal import bal_begin, bal_finish, bal_move, sort_i64
from engine._events import cmd_cid, ev_command, ev_new, ev_order
from engine._maps import cid_find, id_find
from engine._modes import mode_reject
from engine._numba import kernel, kernel_inline
from engine._orders import order_remove
from engine.layout import (
    C_CONN,
    C_EVPOS,
    C_EXT_ACCT,
    C_MAX_ACCOUNTS,
    C_N_ASSETS,
    C_N_SYMBOLS,
    C_RESUME_N,
    C_RESUME_POS,
    C_RESUME_SEQ,
    C_SEQ,
    C_WD_HALT,
    MAX_BALANCE,
)

BY_CID = 4
OPERATOR, DISCONNECT = 8, 16  # CmdFlag: who asked for a cancel (its CancelReason)
SCOPE_SYMBOL, SCOPE_ACCOUNT, SCOPE_ACCOUNT_SYMBOL = 1, 2, 3
EV_REJECTED, EV_CANCELED, EV_TRANSFER, EV_ACK = 2, 4, 10, 11
R_UNKNOWN_SYMBOL, R_INSUFFICIENT, R_UNKNOWN_ORDER, R_WD_HALTED, R_BAD, R_UNKNOWN_ACCOUNT = 1, 5, 7, 12, 14, 16
C_USER, C_CANCEL_ALL, C_ADMIN, C_DISCONNECT = 1, 2, 3, 4
CMD_CANCEL_ALL = 3


@kernel
def _bad_account(st, account):
    return account < 1 or account >= st.ctl[C_MAX_ACCOUNTS]


@kernel
def _bad_symbol(st, sym):
    return sym < 1 or sym > st.ctl[C_N_SYMBOLS]


@kernel_inline
def _cancel_reason(st, flags, default):
    """ADMIN for an operator's command (flag, or conn 0), DISCONNECT for cancel-on-disconnect."""
    if flags & OPERATOR or st.ctl[C_CONN] == 0:
        return C_ADMIN
    if flags & DISCONNECT:
        return C_DISCONNECT
    return default


@kernel_inline
def _cancel_one(st, out, s, reason):
    ev_order(st, out, EV_CANCELED, s, st.orders[s].leaves, reason)
    bal_begin(st)
    order_remove(st, s)
    bal_finish(st, out, True)


@kernel_inline
def cancel(st, cmds, i, out):
    c = cmds[i]
    flags = np.int64(c.flags)
    account = np.int64(c.account)
    sym = np.int64(c.symbol)
    c0, c1, c2, c3 = cmd_cid(cmds, i)
    reason = 0
    s = -1
    if flags & ~(BY_CID | OPERATOR | DISCONNECT) or (flags & BY_CID and c0 == 0 and c1 == 0 and c2 == 0 and c3 == 0):
        reason = R_BAD
    elif _bad_account(st, account):
        reason = R_UNKNOWN_ACCOUNT
    elif sym != 0 and _bad_symbol(st, sym):
        reason = R_UNKNOWN_SYMBOL
    else:
        if flags & BY_CID:
            s = cid_find(st.orders, st.cidmap, account, c0, c1, c2, c3)
        else:
            s = id_find(st.orders, st.idmap, c.order_id)
        if s < 0 or st.orders[s].account != account or (sym != 0 and st.orders[s].symbol != sym):
            reason = R_UNKNOWN_ORDER
        else:
            reason = mode_reject(st, np.int64(st.orders[s].symbol), True)
    if reason != 0:
        e = ev_command(st, out, EV_REJECTED, cmds, i, reason)
        out[e].order_id = c.order_id
        out[e].symbol = sym
        return
    _cancel_one(st, out, s, _cancel_reason(st, flags, C_USER))


@kernel
def _collect(st, scope, sym, account):
    ids = st.ca_ids
    n = 0
    if scope == SCOPE_SYMBOL:
        for si in range(2):
            for j in range(st.bk_n[sym, si]):
                m = st.levels[st.bk_lv[sym, si, j]].head
                while m >= 0:
                    ids[n] = st.orders[m].id
                    n += 1
                    m = st.orders[m].next
    else:
        s = st.ahead[account]
        while s >= 0:
            o = st.orders[s]
            if scope == SCOPE_ACCOUNT:
                take = mode_reject(st, np.int64(o.symbol), True) == 0
            else:
                take = o.symbol == sym
            if take:
                ids[n] = o.id
                n += 1
            s = o.anext
    sort_i64(ids, n)
    return n


@kernel
def cancel_all(st, cmds, i, out):
    """Returns False when it stopped for room (resume state saved), True when complete."""
    seq = st.ctl[C_SEQ]
    c = cmds[i]
    if st.ctl[C_RESUME_SEQ] == seq:
        pos = st.ctl[C_RESUME_POS]
        n = st.ctl[C_RESUME_N]
    else:
        scope = np.int64(c.scope)
        sym = np.int64(c.symbol)
        account = np.int64(c.account)
        reason = 0
        if scope < SCOPE_SYMBOL or scope > SCOPE_ACCOUNT_SYMBOL:
            reason = R_BAD
        elif scope != SCOPE_ACCOUNT and _bad_symbol(st, sym):
            reason = R_UNKNOWN_SYMBOL
        elif scope != SCOPE_SYMBOL and _bad_account(st, account):
            reason = R_UNKNOWN_ACCOUNT
        elif scope != SCOPE_ACCOUNT:
            reason = mode_reject(st, sym, True)
        if reason != 0:
            e = ev_command(st, out, EV_REJECTED, cmds, i, reason)
            out[e].symbol = sym
            return True
        n = _collect(st, scope, sym, account)
        pos = 0
        if n == 0:
            e = ev_command(st, out, EV_ACK, cmds, i, CMD_CANCEL_ALL)
            out[e].symbol = sym
            out[e].otype = scope
            return True
    reason = _cancel_reason(st, np.int64(cmds[i].flags), C_CANCEL_ALL)
    cap = out.shape[0]
    while pos < n:
        if cap - st.ctl[C_EVPOS] < 3:
            st.ctl[C_RESUME_SEQ] = seq
            st.ctl[C_RESUME_POS] = pos
            st.ctl[C_RESUME_N] = n
            return False
        _cancel_one(st, out, id_find(st.orders, st.idmap, st.ca_ids[pos]), reason)
        pos += 1
    st.ctl[C_RESUME_SEQ] = 0
    return True


@kernel
def transfer(st, cmds, i, out, withdraw):
    c = cmds[i]
    account = np.int64(c.account)
    asset = np.int64(c.asset)
    amount = c.amount
    ext = st.ctl[C_EXT_ACCT]
    reason = 0
    if _bad_account(st, account):
        reason = R_UNKNOWN_ACCOUNT
    elif account == ext or asset < 1 or asset > st.ctl[C_N_ASSETS] or amount <= 0:
        reason = R_BAD
    elif not withdraw and amount > MAX_BALANCE + st.avail[ext, asset]:
        reason = R_BAD
    elif withdraw and st.ctl[C_WD_HALT] != 0:
        reason = R_WD_HALTED
    elif withdraw and st.avail[account, asset] < amount:
        reason = R_INSUFFICIENT
    if reason != 0:
        e = ev_command(st, out, EV_REJECTED, cmds, i, reason)
        out[e].symbol = 0
        out[e].asset = asset
        out[e].qty = amount
        return
    d = -amount if withdraw else amount
    e = ev_new(st, out, EV_TRANSFER)
    r = out[e]
    r.account = account
    r.asset = asset
    r.qty = d
    bal_begin(st)
    bal_move(st, account, asset, d, 0)
    bal_move(st, ext, asset, -d, 0)
    bal_finish(st, out, True)


@kernel
def ack(st, cmds, i, out):
    c = cmds[i]
    e = ev_command(st, out, EV_ACK, cmds, i, np.int64(c.kind))
    out[e].symbol = c.symbol
    out[e].otype = c.otype


@kernel
def reject_unknown(st, cmds, i, out):
    ev_command(st, out, EV_REJECTED, cmds, i, R_BAD)
