# mypy: ignore-errors
"""State-hash terms (README §7). Pure kernels, uint64 arithmetic only.

A term is ``fmix64(fold(... fold(TAG, w0) ..., wk))`` with ``fold(h, w) = (h ^ w) * PRIME mod 2**64``
over the int64 words of one item (reinterpreted as uint64). The state hash is the sum mod 2**64 of
the terms of every live item plus the globals term; a mutation subtracts the item's old term and
adds its new one (O(1)). ``engine.reference`` restates these functions in plain Python; a unit test
checks both agree.
"""

from __future__ import annotations

import numpy as np

from engine._numba import kernel

PRIME = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
TAG_BAL = np.uint64(0xB1)
TAG_ORD = np.uint64(0x0D)
TAG_MODE = np.uint64(0x3D)
TAG_GLOBAL = np.uint64(0x61)


@kernel
def fmix(z):
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


@kernel
def fold(h, w):
    return (h ^ np.uint64(w)) * PRIME


@kernel
def bal_term(account, asset, av, lk):
    h = fold(TAG_BAL, account)
    h = fold(h, asset)
    h = fold(h, av)
    return fmix(fold(h, lk))


@kernel
def order_static(orders, s):
    """The fold over an order's fields that never change while it rests (stored in ``h0``)."""
    o = orders[s]
    h = fold(TAG_ORD, o.id)
    h = fold(h, o.account)
    h = fold(h, o.symbol)
    h = fold(h, o.side)
    h = fold(h, o.price)
    h = fold(h, o.qty)
    h = fold(h, o.stp)
    h = fold(h, o.flags)
    h = fold(h, o.tif)
    h = fold(h, o.otype)
    h = fold(h, o.ts)
    h = fold(h, o.c0)
    h = fold(h, o.c1)
    h = fold(h, o.c2)
    return fold(h, o.c3)


@kernel
def order_term(orders, s):
    """The order's term: its static fold ``h0`` continued over the fields a fill changes."""
    o = orders[s]
    h = fold(o.h0, o.leaves)
    h = fold(h, o.locked)
    return fmix(fold(h, o.cum))


@kernel
def mode_term(symbol, mode, lag):
    return fmix(fold(fold(fold(TAG_MODE, symbol), mode), lag))


@kernel
def global_term(global_mode, global_lag, wd_halt, next_trade):
    h = fold(TAG_GLOBAL, global_mode)
    h = fold(h, global_lag)
    h = fold(h, wd_halt)
    return fmix(fold(h, next_trade))
