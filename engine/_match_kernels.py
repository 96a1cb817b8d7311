# mypy: ignore-errors
"""NEW_ORDER: validation, hold, FOK dry run, matching, rest or expire (README §2-§4). Kernels.

One call handles one command and writes its events; nothing changes before validation passed.
Work per command: O(1) validation and hold, O(makers touched) matching (at most
``ctl[C_MAX_TOUCH]``), O(d) to insert a new level d levels behind the best. The taker is not in
the pool while it matches; it takes a slot only if it rests (room was checked up front).
"""

from __future__ import annotations

import numpy as np

from engine._bal import bal_begin, bal_finish, bal_move
from engine._book import best_level, can_rest
from engine._events import cmd_cid, ev_cid, ev_command, ev_new, ev_order
from engine._hash import order_term
from engine._maps import cid_find
from engine._modes import mode_reject
from engine._numba import kernel, kernel_inline
from engine._orders import order_remove, order_rest
from engine.fees import bps_floor, fee_ceil, fee_step, quote_spend_cap
from engine.layout import (
    C_FEE_ACCT,
    C_MAX_ACCOUNTS,
    C_MAX_TOUCH,
    C_N_SYMBOLS,
    C_NEXT_TRADE,
    C_SEQ,
    C_TS,
    P_BAND,
    P_BASE,
    P_K,
    P_LOT,
    P_MAKER,
    P_MAX_BUDGET,
    P_MAX_PRICE,
    P_MAX_QTY,
    P_MIN_NOTIONAL,
    P_MIN_QTY,
    P_QUOTE,
    P_TAKER,
)

BUY, SELL = 1, 2
LIMIT, MARKET = 1, 2
GTC, IOC, FOK = 1, 2, 3
EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH, STP_NONE = 1, 2, 3, 4
POST_ONLY, QUOTE_QTY = 1, 2
EV_ACCEPTED, EV_REJECTED, EV_TRADE, EV_EXPIRED = 1, 2, 3, 5
R_UNKNOWN_SYMBOL, R_INVALID_PRICE, R_INVALID_QUANTITY, R_MIN_NOTIONAL = 1, 2, 3, 4
R_INSUFFICIENT, R_WOULD_TAKE, R_DUP_CID, R_CAPACITY, R_BAD, R_UNKNOWN_ACCOUNT = 5, 6, 8, 13, 14, 16
X_IOC, X_FOK, X_NO_LIQ, X_BAND, X_STP_TAKER, X_STP_MAKER, X_BUDGET, X_MATCH_LIMIT = 1, 2, 3, 4, 5, 6, 7, 8
S_NONE, S_NO_LIQ, S_LIMIT, S_MATCH_LIMIT, S_STP, S_BUDGET = 0, 1, 2, 3, 4, 5


@kernel
def _malformed(side, otype, tif, stp, flags, price):
    if side != BUY and side != SELL:
        return True
    if otype != LIMIT and otype != MARKET:
        return True
    if tif < GTC or tif > FOK or stp < EXPIRE_TAKER or stp > STP_NONE:
        return True
    if flags & ~(POST_ONLY | QUOTE_QTY):
        return True
    if flags & POST_ONLY and (otype != LIMIT or tif != GTC):
        return True
    if flags & QUOTE_QTY and (otype != MARKET or side != BUY or tif == FOK):
        return True
    return otype == MARKET and (tif == GTC or price != 0)


@kernel
def _limit_hold(N, tif, flags, mb, tb):
    if flags & POST_ONLY:
        return N + fee_ceil(N, mb)
    if tif != GTC:
        return N + fee_ceil(N, tb)
    extra = 1 if (mb > 0 and tb > 0) else 0
    return N + fee_ceil(N, mb if mb > tb else tb) + extra


@kernel
def _fok_fillable(st, sym, osi, side, lim, qty, account, stp):
    """Dry run of the matching loop (README §3.1): would ``qty`` lots fill completely?"""
    n = st.bk_n[sym, osi]
    got = 0
    touched = 0
    max_touch = st.ctl[C_MAX_TOUCH]
    for j in range(n - 1, -1, -1):
        L = st.levels[st.bk_lv[sym, osi, j]]
        p = L.price
        if (side == BUY and p > lim) or (side == SELL and p < lim):
            return got >= qty
        m = L.head
        while m >= 0:
            if got >= qty:
                return True
            if touched == max_touch:
                return False
            mo = st.orders[m]
            if mo.account == account and stp != STP_NONE:
                if stp != EXPIRE_MAKER:
                    return False
            else:
                got += mo.leaves
            touched += 1
            m = mo.next
    return got >= qty


@kernel_inline
def _validate(st, cmds, i):
    """(reason, hold, band limit) for NEW_ORDER ``cmds[i]``; reason 0 = accept."""
    c = cmds[i]
    sym = np.int64(c.symbol)
    if sym < 1 or sym > st.ctl[C_N_SYMBOLS]:
        return R_UNKNOWN_SYMBOL, 0, 0
    side = np.int64(c.side)
    otype = np.int64(c.otype)
    tif = np.int64(c.tif)
    flags = np.int64(c.flags)
    price = c.price
    qty = c.qty
    if _malformed(side, otype, tif, np.int64(c.stp), flags, price):
        return R_BAD, 0, 0
    account = np.int64(c.account)
    if account < 1 or account >= st.ctl[C_MAX_ACCOUNTS]:
        return R_UNKNOWN_ACCOUNT, 0, 0
    mr = mode_reject(st, sym, False)
    if mr != 0:
        return mr, 0, 0
    sp = st.sp[sym]
    if otype == LIMIT and (price < 1 or price > sp[P_MAX_PRICE]):
        return R_INVALID_PRICE, 0, 0
    quote = flags & QUOTE_QTY
    if quote:
        if qty < 1 or qty > sp[P_MAX_BUDGET]:
            return R_INVALID_QUANTITY, 0, 0
        if qty < sp[P_MIN_NOTIONAL]:
            return R_MIN_NOTIONAL, 0, 0
    else:
        if qty < sp[P_MIN_QTY] or qty > sp[P_MAX_QTY]:
            return R_INVALID_QUANTITY, 0, 0
        if otype == LIMIT and price * qty * sp[P_K] < sp[P_MIN_NOTIONAL]:
            return R_MIN_NOTIONAL, 0, 0
    c0, c1, c2, c3 = cmd_cid(cmds, i)
    if (c0 != 0 or c1 != 0 or c2 != 0 or c3 != 0) and \
            cid_find(st.orders, st.cidmap, account, c0, c1, c2, c3) >= 0:
        return R_DUP_CID, 0, 0
    si = side - 1
    osi = 1 - si
    lv = best_level(st, sym, osi)
    if flags & POST_ONLY and lv >= 0:
        bp = st.levels[lv].price
        if (side == BUY and price >= bp) or (side == SELL and price <= bp):
            return R_WOULD_TAKE, 0, 0
    lim = price
    if otype == MARKET:
        if lv >= 0:
            b = st.levels[lv].price
            if side == BUY:
                lim = b + bps_floor(b, sp[P_BAND])
                if lim > sp[P_MAX_PRICE]:
                    lim = sp[P_MAX_PRICE]
            else:
                lim = b - bps_floor(b, sp[P_BAND])
                if lim < 1:
                    lim = 1
    if side == SELL:
        hold = qty * sp[P_LOT]
        asset = sp[P_BASE]
    else:
        asset = sp[P_QUOTE]
        if quote:
            hold = qty
        elif otype == LIMIT:
            hold = _limit_hold(price * qty * sp[P_K], tif, flags, sp[P_MAKER], sp[P_TAKER])
        elif lv >= 0:
            M = lim * qty * sp[P_K]
            hold = M + fee_ceil(M, sp[P_TAKER])
        else:
            hold = 0
    if st.avail[account, asset] < hold:
        return R_INSUFFICIENT, 0, 0
    if tif == GTC and otype == LIMIT and not can_rest(st, sym, si, price):
        return R_CAPACITY, 0, 0
    return 0, hold, lim


@kernel
def _trade_event(st, out, seq, account, side, otype, tif, flags, stp, sym, p, q, n, tf, mf, mo,
                 leaves):
    tid = st.ctl[C_NEXT_TRADE]
    st.ctl[C_NEXT_TRADE] = tid + 1
    e = ev_new(st, out, EV_TRADE)
    r = out[e]
    r.order_id = seq
    r.account = account
    r.side = side
    r.otype = otype
    r.tif = tif
    r.flags = flags
    r.stp = stp
    r.symbol = sym
    r.price = p
    r.qty = q
    r.trade_id = tid
    r.maker_order_id = mo.id
    r.maker_account = mo.account
    r.quote_qty = n
    r.taker_fee = tf
    r.maker_fee = mf
    r.maker_leaves = mo.leaves
    r.leaves = leaves


@kernel_inline
def new_order(st, cmds, i, out):
    reason, hold, lim = _validate(st, cmds, i)
    if reason != 0:
        e = ev_command(st, out, EV_REJECTED, cmds, i, reason)
        c = cmds[i]
        r = out[e]
        r.symbol = c.symbol
        r.price = c.price
        r.qty = c.qty
        return
    c = cmds[i]
    seq = st.ctl[C_SEQ]
    sym = np.int64(c.symbol)
    side = np.int64(c.side)
    otype = np.int64(c.otype)
    tif = np.int64(c.tif)
    flags = np.int64(c.flags)
    stp = np.int64(c.stp)
    account = np.int64(c.account)
    price = c.price
    qty = c.qty
    c0, c1, c2, c3 = cmd_cid(cmds, i)
    sp = st.sp[sym]
    K = sp[P_K]
    lot = sp[P_LOT]
    base = sp[P_BASE]
    quote_asset = sp[P_QUOTE]
    mb = sp[P_MAKER]
    tb = sp[P_TAKER]
    fee_acct = st.ctl[C_FEE_ACCT]
    quote = flags & QUOTE_QTY
    hasset = quote_asset if side == BUY else base
    osi = 2 - side  # opposite side index: BUY (1) -> asks (1), SELL (2) -> bids (0)

    bal_begin(st)
    bal_move(st, account, hasset, -hold, hold)
    lock = hold
    e = ev_new(st, out, EV_ACCEPTED)
    r = out[e]
    r.order_id = seq
    r.account = account
    r.symbol = sym
    r.side = side
    r.otype = otype
    r.tif = tif
    r.flags = flags
    r.stp = stp
    r.price = price
    r.qty = qty
    r.leaves = qty
    ev_cid(out, e, c0, c1, c2, c3)

    rem = qty  # lots, or unspent budget for QUOTE_QTY
    stop = S_NONE
    if tif == FOK and not _fok_fillable(st, sym, osi, side, lim, qty, account, stp):
        stop = S_LIMIT
    else:
        spend_cap = quote_spend_cap(qty, tb) if quote else 0
        cum = 0
        touched = 0
        max_touch = st.ctl[C_MAX_TOUCH]
        while True:
            if not quote and rem == 0:
                break
            lv = best_level(st, sym, osi)
            if lv < 0:
                stop = S_NO_LIQ
                break
            L = st.levels[lv]
            p = L.price
            if (side == BUY and p > lim) or (side == SELL and p < lim):
                stop = S_LIMIT
                break
            unit = p * K
            if quote and spend_cap - cum < unit:
                stop = S_BUDGET
                break
            if touched == max_touch:
                stop = S_MATCH_LIMIT
                break
            m = L.head
            mo = st.orders[m]
            if mo.account == account and stp != STP_NONE:
                if stp == EXPIRE_TAKER:
                    stop = S_STP
                    break
                ev_order(st, out, EV_EXPIRED, m, mo.leaves, X_STP_MAKER)
                order_remove(st, m)
                touched += 1
                if stp == EXPIRE_BOTH:
                    stop = S_STP
                    break
                continue
            if quote:
                q = (spend_cap - cum) // unit
                if q > mo.leaves:
                    q = mo.leaves
            else:
                q = rem if rem < mo.leaves else mo.leaves
            n = unit * q
            tf = fee_step(cum, n, tb)
            mf = fee_step(mo.cum, n, mb)
            cum += n
            st.hs[0] -= order_term(st.orders, m)
            mo.cum += n
            mo.leaves -= q
            L.qty -= q
            bq = q * lot
            if side == BUY:
                bal_move(st, account, quote_asset, 0, -(n + tf))
                lock -= n + tf
                bal_move(st, account, base, bq, 0)
                bal_move(st, mo.account, base, 0, -bq)
                mo.locked -= bq
                bal_move(st, mo.account, quote_asset, n - mf, 0)
            else:
                bal_move(st, account, base, 0, -bq)
                lock -= bq
                bal_move(st, account, quote_asset, n - tf, 0)
                bal_move(st, mo.account, quote_asset, 0, -(n + mf))
                mo.locked -= n + mf
                bal_move(st, mo.account, base, bq, 0)
            if tf + mf != 0:
                bal_move(st, fee_acct, quote_asset, tf + mf, 0)
            if quote:
                rem = qty - cum - fee_ceil(cum, tb)
            else:
                rem -= q
            st.hs[0] += order_term(st.orders, m)
            _trade_event(st, out, seq, account, side, otype, tif, flags, stp, sym, p, q, n, tf, mf,
                         mo, rem)
            touched += 1
            if mo.leaves == 0:
                order_remove(st, m)

    if rem > 0 and otype == LIMIT and tif == GTC and (stop == S_NO_LIQ or stop == S_LIMIT):
        if side == BUY:
            R = price * rem * K
            keep = R + fee_ceil(R, mb)
        else:
            keep = rem * lot
        if lock != keep:
            bal_move(st, account, hasset, lock - keep, keep - lock)
        order_rest(st, seq, st.ctl[C_TS], account, sym, side, otype, tif, flags, stp, price, qty,
                   rem, keep, c0, c1, c2, c3)
    else:
        if rem > 0:
            if tif == FOK:
                xr = X_FOK
            elif stop == S_STP:
                xr = X_STP_TAKER
            elif stop == S_MATCH_LIMIT:
                xr = X_MATCH_LIMIT
            elif otype == LIMIT:
                xr = X_IOC
            elif stop == S_BUDGET:
                xr = X_BUDGET
            elif stop == S_NO_LIQ:
                xr = X_NO_LIQ
            else:
                xr = X_BAND
            e = ev_new(st, out, EV_EXPIRED)
            r = out[e]
            r.order_id = seq
            r.account = account
            r.symbol = sym
            r.side = side
            r.otype = otype
            r.tif = tif
            r.flags = flags
            r.stp = stp
            r.price = price
            r.qty = rem
            r.reason = xr
            ev_cid(out, e, c0, c1, c2, c3)
        if lock != 0:
            bal_move(st, account, hasset, lock, -lock)
    bal_finish(st, out, True)

