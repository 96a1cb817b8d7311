# mypy: ignore-errors
"""Balance mutations with per-command change tracking. Kernels.

A command (or one CANCEL_ALL step) brackets its balance changes with ``bal_begin`` /
``bal_finish``. The first touch of a row (account, asset) in the bracket records its old value in
``bold`` and subtracts its hash term; ``bal_finish`` adds the new terms back and, when asked, emits
one BALANCE event per row whose value changed, sorted by (account, asset), skipping the fee and
external accounts (README §6). Rows are keyed ``account * (n_assets + 1) + asset``; ``bmark`` holds
the stamp of the bracket that last touched a row, so a touch is O(1) and nothing needs clearing.
"""

from __future__ import annotations

import numpy as np

from engine._events import ev_new
from engine._hash import bal_term
from engine._numba import kernel
from engine.layout import C_EXT_ACCT, C_FEE_ACCT, C_N_ASSETS, C_NTOUCH, C_STAMP

EV_BALANCE = 6


@kernel
def sort_i64(a, n):
    """Sort ``a[:n]`` in place without allocating: insertion sort when short, else heapsort."""
    if n <= 16:
        for j in range(1, n):
            k = a[j]
            m = j - 1
            while m >= 0 and a[m] > k:
                a[m + 1] = a[m]
                m -= 1
            a[m + 1] = k
        return
    for start in range(n // 2 - 1, -1, -1):
        _sift(a, start, n)
    for end in range(n - 1, 0, -1):
        t = a[0]
        a[0] = a[end]
        a[end] = t
        _sift(a, 0, end)


@kernel
def _sift(a, root, n):
    while True:
        c = 2 * root + 1
        if c >= n:
            return
        if c + 1 < n and a[c + 1] > a[c]:
            c += 1
        if a[root] >= a[c]:
            return
        t = a[root]
        a[root] = a[c]
        a[c] = t
        root = c


@kernel
def bal_begin(st):
    st.ctl[C_STAMP] += 1
    st.ctl[C_NTOUCH] = 0


@kernel
def bal_move(st, a, asset, d_avail, d_locked):
    idx = a * (st.ctl[C_N_ASSETS] + 1) + asset
    stamp = st.ctl[C_STAMP]
    if st.bmark[idx] != stamp:
        st.bmark[idx] = stamp
        av = st.avail[a, asset]
        lk = st.locked[a, asset]
        st.bold[idx, 0] = av
        st.bold[idx, 1] = lk
        n = st.ctl[C_NTOUCH]
        st.tkeys[n] = idx
        st.ctl[C_NTOUCH] = n + 1
        if av != 0 or lk != 0:
            st.hs[0] -= bal_term(a, asset, av, lk)
    st.avail[a, asset] += d_avail
    st.locked[a, asset] += d_locked


@kernel
def bal_finish(st, out, emit):
    n = st.ctl[C_NTOUCH]
    keys = st.tkeys
    sort_i64(keys, n)
    a1 = st.ctl[C_N_ASSETS] + 1
    fee = st.ctl[C_FEE_ACCT]
    ext = st.ctl[C_EXT_ACCT]
    for j in range(n):
        idx = keys[j]
        a = idx // a1
        asset = idx - a * a1
        av = st.avail[a, asset]
        lk = st.locked[a, asset]
        if av != 0 or lk != 0:
            st.hs[0] += bal_term(a, asset, av, lk)
        if emit and a != fee and a != ext and (av != st.bold[idx, 0] or lk != st.bold[idx, 1]):
            e = ev_new(st, out, EV_BALANCE)
            r = out[e]
            r.account = a
            r.asset = asset
            r.available = av
            r.locked = lk
    st.ctl[C_NTOUCH] = 0
    return np.int64(n)
