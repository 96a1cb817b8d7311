# mypy: ignore-errors
"""Resting-order lifecycle: rest (enter the book) and remove (end, releasing the lock). Kernels.

Both keep every index in step: the level FIFO and sorted level array, the id map, the cid map, the
account list, the pool, the state hash (an order's term is in the hash exactly while it is live),
and the lock (whatever remains of ``locked`` returns to available when the order ends, README §4).
"""

from __future__ import annotations

from engine._bal import bal_move
from engine._book import (
    account_link,
    account_unlink,
    book_insert,
    book_unlink,
    order_alloc,
    order_free,
)
from engine._hash import order_static, order_term
from engine._maps import map_delete, map_insert
from engine._numba import kernel, kernel_inline
from engine.layout import P_BASE, P_QUOTE

BUY = 1


@kernel
def hold_asset(st, sym, side):
    return st.sp[sym, P_QUOTE] if side == BUY else st.sp[sym, P_BASE]


@kernel_inline
def order_rest(st, seq, ts, account, sym, side, otype, tif, flags, stp, price, qty, leaves, lock,
               c0, c1, c2, c3):
    """A new resting order (room was checked up front). Returns its slot."""
    s = order_alloc(st)
    o = st.orders[s]
    o.id = seq
    o.price = price
    o.qty = qty
    o.leaves = leaves
    o.locked = lock
    o.cum = 0
    o.ts = ts
    o.c0 = c0
    o.c1 = c1
    o.c2 = c2
    o.c3 = c3
    o.account = account
    o.symbol = sym
    o.side = side
    o.stp = stp
    o.flags = flags
    o.tif = tif
    o.otype = otype
    o.live = 1
    o.h0 = order_static(st.orders, s)
    book_insert(st, s)
    map_insert(st.orders, st.idmap, s, False)
    if c0 != 0 or c1 != 0 or c2 != 0 or c3 != 0:
        map_insert(st.orders, st.cidmap, s, True)
    account_link(st, s)
    st.hs[0] += order_term(st.orders, s)
    return s


@kernel_inline
def order_remove(st, s):
    """End live order ``s``: out of every index, its remaining lock back to available."""
    o = st.orders[s]
    st.hs[0] -= order_term(st.orders, s)
    lk = o.locked
    if lk != 0:
        bal_move(st, o.account, hold_asset(st, o.symbol, o.side), lk, -lk)
        o.locked = 0
    book_unlink(st, s)
    map_delete(st.orders, st.idmap, s, False)
    if o.c0 != 0 or o.c1 != 0 or o.c2 != 0 or o.c3 != 0:
        map_delete(st.orders, st.cidmap, s, True)
    account_unlink(st, s)
    order_free(st, s)
