# mypy: ignore-errors
"""Order books: the order pool, price levels and per-side sorted level arrays. Kernels.

Per symbol and side (si = side - 1: 0 bids, 1 asks) ``bk_key[sym, si, :bk_n]`` holds level sort keys
ascending (bids: price, asks: -price) so the best level is the last one: best price O(1), removing
the best level O(1), inserting / removing a level d places behind the best O(d) (the entries better
than it shift by one). Search: a linear probe of the 8 best levels (near-touch traffic), then binary
search. Within a level orders form a FIFO doubly linked through ``orders.prev/next`` (head = oldest).
Each account's open orders form a doubly linked list (``ahead``, ``aprev``/``anext``), newest first.
Pools (orders, levels) keep free slots in a stack threaded through ``next`` / ``next_free``.
"""

from __future__ import annotations

from engine._numba import kernel, kernel_inline
from engine.layout import C_FREE_LEVEL, C_FREE_ORDER, C_MAX_LEVELS, C_N_ORDERS


@kernel
def side_key(si, price):
    return price if si == 0 else -price


@kernel
def lower_bound(keys, n, key):
    """Number of keys < key in ``keys[:n]`` (ascending)."""
    j = n
    lim = n - 8 if n > 8 else 0
    while j > lim and keys[j - 1] >= key:
        j -= 1
    if j > lim or j == 0:
        return j
    lo = 0
    hi = lim
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def best_level(st, sym, si):
    n = st.bk_n[sym, si]
    if n == 0:
        return -1
    return st.bk_lv[sym, si, n - 1]


@kernel
def level_exists(st, sym, si, price):
    key = side_key(si, price)
    n = st.bk_n[sym, si]
    keys = st.bk_key[sym, si]
    p = lower_bound(keys, n, key)
    return p < n and keys[p] == key


@kernel
def can_rest(st, sym, si, price):
    """Room for one more resting order at ``price`` (a free slot, and its level or room for one)."""
    if st.ctl[C_FREE_ORDER] < 0:
        return False
    if st.bk_n[sym, si] < st.ctl[C_MAX_LEVELS] and st.ctl[C_FREE_LEVEL] >= 0:
        return True
    return level_exists(st, sym, si, price)


@kernel
def order_alloc(st):
    s = st.ctl[C_FREE_ORDER]
    st.ctl[C_FREE_ORDER] = st.orders[s].next
    st.ctl[C_N_ORDERS] += 1
    return s


@kernel
def order_free(st, s):
    o = st.orders[s]
    o.live = 0
    o.next = st.ctl[C_FREE_ORDER]
    st.ctl[C_FREE_ORDER] = s
    st.ctl[C_N_ORDERS] -= 1


@kernel_inline
def book_insert(st, s):
    """Append live order ``s`` (price, side, symbol, leaves set) at the tail of its level."""
    o = st.orders[s]
    sym = o.symbol
    si = o.side - 1
    key = side_key(si, o.price)
    n = st.bk_n[sym, si]
    keys = st.bk_key[sym, si]
    lvs = st.bk_lv[sym, si]
    p = lower_bound(keys, n, key)
    if p < n and keys[p] == key:
        lv = lvs[p]
    else:
        lv = st.ctl[C_FREE_LEVEL]
        L = st.levels[lv]
        st.ctl[C_FREE_LEVEL] = L.next_free
        L.price = o.price
        L.qty = 0
        L.head = -1
        L.tail = -1
        L.count = 0
        L.next_free = -1
        for j in range(n, p, -1):
            keys[j] = keys[j - 1]
            lvs[j] = lvs[j - 1]
        keys[p] = key
        lvs[p] = lv
        st.bk_n[sym, si] = n + 1
    L = st.levels[lv]
    o.level = lv
    o.prev = L.tail
    o.next = -1
    if L.tail >= 0:
        st.orders[L.tail].next = s
    else:
        L.head = s
    L.tail = s
    L.count += 1
    L.qty += o.leaves
    st.bk_orders[sym, si] += 1


@kernel_inline
def book_unlink(st, s):
    """Take order ``s`` out of its level (its remaining leaves leave the level's quantity)."""
    o = st.orders[s]
    sym = o.symbol
    si = o.side - 1
    lv = o.level
    L = st.levels[lv]
    if o.prev >= 0:
        st.orders[o.prev].next = o.next
    else:
        L.head = o.next
    if o.next >= 0:
        st.orders[o.next].prev = o.prev
    else:
        L.tail = o.prev
    L.count -= 1
    L.qty -= o.leaves
    st.bk_orders[sym, si] -= 1
    o.level = -1
    if L.count > 0:
        return
    n = st.bk_n[sym, si]
    keys = st.bk_key[sym, si]
    lvs = st.bk_lv[sym, si]
    key = side_key(si, L.price)
    p = n - 1
    if keys[p] != key:
        p = lower_bound(keys, n, key)
    for j in range(p, n - 1):
        keys[j] = keys[j + 1]
        lvs[j] = lvs[j + 1]
    st.bk_n[sym, si] = n - 1
    L.next_free = st.ctl[C_FREE_LEVEL]
    st.ctl[C_FREE_LEVEL] = lv


@kernel
def account_link(st, s):
    o = st.orders[s]
    a = o.account
    h = st.ahead[a]
    o.aprev = -1
    o.anext = h
    if h >= 0:
        st.orders[h].aprev = s
    st.ahead[a] = s


@kernel
def account_unlink(st, s):
    o = st.orders[s]
    if o.aprev >= 0:
        st.orders[o.aprev].anext = o.anext
    else:
        st.ahead[o.account] = o.anext
    if o.anext >= 0:
        st.orders[o.anext].aprev = o.aprev
