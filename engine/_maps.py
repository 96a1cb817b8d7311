# mypy: ignore-errors
"""Open-addressing id maps: order id -> slot and (account, cid) -> slot. Kernels.

Layout: ``int32[size]`` with ``size`` a power of two >= 2 * max_orders, -1 = empty; an entry is an
order slot and its key is read from ``orders[slot]`` (no key copies). Order ids map by identity
(``id & mask``: ids are consecutive seqs, so neighbours share cache lines and live ids collide only
with an id ``size`` seqs older); (account, cid) keys are hashed. Linear probing; deletion by
backward shift (no tombstones), so probe lengths stay short forever and the table can never fill:
it holds at most max_orders entries, load <= 1/2.
"""

from __future__ import annotations

import numpy as np

from engine._hash import fmix, fold
from engine._numba import kernel


@kernel
def _id_home(oid, mask):
    # identity: order ids are consecutive seqs, so new orders fill consecutive entries and a
    # cancel of a recent order finds a warm cache line (a hashed id missed the cache every time)
    return oid & mask


@kernel
def cid_home(account, c0, c1, c2, c3, mask):
    h = fold(np.uint64(0xC1D), account)
    h = fold(h, c0)
    h = fold(h, c1)
    h = fold(h, c2)
    return np.int64(fmix(fold(h, c3)) & np.uint64(mask))


@kernel
def _home(orders, slot, is_cid, mask):
    o = orders[slot]
    if is_cid:
        return cid_home(o.account, o.c0, o.c1, o.c2, o.c3, mask)
    return _id_home(o.id, mask)


@kernel
def id_find(orders, tab, oid):
    mask = tab.shape[0] - 1
    i = _id_home(oid, mask)
    while True:
        s = tab[i]
        if s < 0:
            return -1
        if orders[s].id == oid:
            return np.int64(s)
        i = (i + 1) & mask


@kernel
def cid_find(orders, tab, account, c0, c1, c2, c3):
    mask = tab.shape[0] - 1
    i = cid_home(account, c0, c1, c2, c3, mask)
    while True:
        s = tab[i]
        if s < 0:
            return -1
        o = orders[s]
        if o.account == account and o.c0 == c0 and o.c1 == c1 and o.c2 == c2 and o.c3 == c3:
            return np.int64(s)
        i = (i + 1) & mask


@kernel
def map_insert(orders, tab, slot, is_cid):
    mask = tab.shape[0] - 1
    i = _home(orders, slot, is_cid, mask)
    while tab[i] >= 0:
        i = (i + 1) & mask
    tab[i] = slot


@kernel
def map_delete(orders, tab, slot, is_cid):
    mask = tab.shape[0] - 1
    i = _home(orders, slot, is_cid, mask)
    while tab[i] != slot:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        s = tab[j]
        if s < 0:
            break
        k = _home(orders, s, is_cid, mask)
        # the entry at j may move to the hole at i unless its home lies cyclically in (i, j]
        if i <= j:
            stays = i < k <= j
        else:
            stays = k > i or k <= j
        if not stays:
            tab[i] = s
            i = j
    tab[i] = -1
