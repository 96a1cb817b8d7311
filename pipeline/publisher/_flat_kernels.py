# mypy: ignore-errors
"""numba kernels of ``pipeline.publisher.flatbook``: the silent L2 fold over plain int64 arrays.

Same semantics as ``BookDeriver.apply(ev, track=False)`` (book.py's header is the contract), event
by event, without Python objects: one call per batch of whole commands. Hot path: no allocation
except the probe of a fresh order slot; every kernel returns an integer status (0 = ok, else an
error code with its facts in ``err``; the wrapper raises BookInconsistency).

State (all owned by the wrapper, sized by it before each call so nothing here grows):
  lay   [12]         word index / shift of each EVENT field read (see flatbook.LAYOUT)
  sidx  [65536]      symbol id -> dense book index (-1: not configured)
  px, qt [2*S, cap]  per book side (index 2*book + 0 bids / 1 asks) its levels, prices ascending
  cnt   [2*S]        levels in use per side
  bseq, bts, touched [S]  book seq / time of the last change; touched in this batch (0/1)
  keys  [H]          open-addressing table of resting order ids (0 empty, -1 deleted), H a power
                     of two; o_book, o_side, o_px, o_lots [H] the order at the same slot
  meta  [4]          live orders, deleted slots, last seq applied
"""

from __future__ import annotations

import numba as nb
import numpy as np

EV_ACCEPTED, EV_TRADE, EV_CANCELED, EV_EXPIRED = 1, 3, 4, 5  # pipeline.records.Ev (flatbook asserts it)
BUY, LIMIT = 1, 1
EMPTY, DELETED = 0, -1
# error codes (err[0]); err[1] symbol, err[2] seq, err[3:] the facts of the message
ERR_NOT_RESTING, ERR_MAKER_MISMATCH, ERR_LEAVES, ERR_BELOW_ZERO, ERR_RESTS_TWICE = 1, 2, 3, 4, 5
ERR_UNKNOWN_SYMBOL, ERR_BAD_ID = 6, 7
M_LIVE, M_DELETED, M_LAST_SEQ = 0, 1, 2
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: Fibonacci hashing


@nb.njit(cache=True, nogil=True, inline="always")
def _field(w, i, lay, f):
    """Field ``f`` of event ``i``: word ``lay[2f]``, shifted right ``lay[2f+1]`` bits and masked
    to 8 / 16 bits (small fields) or whole (int64 fields, shift -1)."""
    v = w[i, lay[2 * f]]
    s = lay[2 * f + 1]
    if s < 0:
        return v
    if s >= 64:  # uint16 at shift s - 64
        return (v >> (s - 64)) & 0xFFFF
    return (v >> s) & 0xFF


@nb.njit(cache=True, nogil=True)
def _probe(keys, oid):
    """(slot of ``oid`` or -1, where it would go: the first deleted slot on its probe, else the
    empty one that ends it)."""
    mask = keys.shape[0] - 1
    h = ((oid * _GOLDEN) >> 20) & mask
    free = -1
    while True:
        k = keys[h]
        if k == oid:
            return h, free
        if k == EMPTY:
            return -1, (h if free < 0 else free)
        if k == DELETED and free < 0:
            free = h
        h = (h + 1) & mask


@nb.njit(cache=True, nogil=True)
def _level_add(px, qt, cnt, b, price, dq):
    """Change side ``b``'s level at ``price`` by ``dq``; the new quantity (< 0: nothing changed,
    the caller reports it)."""
    n = cnt[b]
    row = px[b]
    i = np.searchsorted(row[:n], price)
    if i < n and row[i] == price:
        new = qt[b, i] + dq
        if new > 0:
            qt[b, i] = new
        elif new == 0:
            for j in range(i, n - 1):
                px[b, j] = px[b, j + 1]
                qt[b, j] = qt[b, j + 1]
            cnt[b] = n - 1
        return new
    new = dq
    if new > 0:
        for j in range(n, i, -1):
            px[b, j] = px[b, j - 1]
            qt[b, j] = qt[b, j - 1]
        px[b, i] = price
        qt[b, i] = new
        cnt[b] = n + 1
    return new


@nb.njit(cache=True, nogil=True)
def _rest(t, keys, o_book, o_side, o_px, o_lots, meta, px, qt, cnt, bseq, bts, touched, sidx, err):
    """The open command's new order ``t`` has no more events: it rests if it may (book.py)."""
    oid, sym, side, price, lots, may_rest, seq, ts = t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]
    bk = sidx[sym]
    bts[bk] = ts
    if may_rest == 0 or lots <= 0:
        return 0
    found, h = _probe(keys, oid)
    if found >= 0:
        err[0], err[1], err[2], err[3] = ERR_RESTS_TWICE, sym, seq, oid
        return ERR_RESTS_TWICE
    if keys[h] == DELETED:
        meta[M_DELETED] -= 1
    keys[h] = oid
    o_book[h], o_side[h], o_px[h], o_lots[h] = bk, side, price, lots
    meta[M_LIVE] += 1
    _level_add(px, qt, cnt, 2 * bk + (0 if side == BUY else 1), price, lots)
    bseq[bk] = seq
    touched[bk] = 1
    return 0


@nb.njit(cache=True, nogil=True)
def fold(w, lay, sidx, px, qt, cnt, bseq, bts, touched, keys, o_book, o_side, o_px, o_lots,
         meta, book_ids, err):
    """Apply EVENT records ``w`` (int64 words, whole commands, seq order); 0 or an error code."""
    n = w.shape[0]
    if n == 0:
        return 0
    # every symbol a book event names must be configured: checked before anything changes
    for i in range(n):
        k = _field(w, i, lay, 7)
        if k == EV_TRADE or k == EV_ACCEPTED:
            s = _field(w, i, lay, 6)
            if sidx[s] < 0:
                err[0], err[1], err[2] = ERR_UNKNOWN_SYMBOL, s, _field(w, i, lay, 0)
                return ERR_UNKNOWN_SYMBOL
    t = np.zeros(8, np.int64)  # oid, symbol, side, price, lots, may_rest, seq, ts
    has_t = False
    for i in range(n):
        kind = _field(w, i, lay, 7)
        if kind != EV_TRADE and kind != EV_ACCEPTED and kind != EV_CANCELED and kind != EV_EXPIRED:
            continue
        seq = _field(w, i, lay, 0)
        if has_t and t[6] != seq:
            has_t = False
            r = _rest(t, keys, o_book, o_side, o_px, o_lots, meta, px, qt, cnt, bseq, bts,
                      touched, sidx, err)
            if r:
                return r
        ts = _field(w, i, lay, 1)
        oid = _field(w, i, lay, 2)
        price = _field(w, i, lay, 3)
        qty = _field(w, i, lay, 4)
        sym = _field(w, i, lay, 6)
        side = _field(w, i, lay, 8)
        if kind == EV_TRADE:
            moid = _field(w, i, lay, 5)
            mleaves = _field(w, i, lay, 10)
            leaves = _field(w, i, lay, 11)
            h = _probe(keys, moid)[0] if moid > 0 else -1
            if h < 0:
                err[0], err[1], err[2], err[3], err[4] = ERR_NOT_RESTING, sym, seq, oid, moid
                return ERR_NOT_RESTING
            if o_px[h] != price or o_side[h] == side:
                err[0], err[1], err[2], err[3], err[4] = ERR_MAKER_MISMATCH, sym, seq, moid, o_px[h]
                err[5], err[6], err[7] = o_side[h], price, side
                return ERR_MAKER_MISMATCH
            if o_lots[h] - qty != mleaves or mleaves < 0:
                err[0], err[1], err[2], err[3], err[4] = ERR_LEAVES, sym, seq, moid, o_lots[h]
                err[5], err[6] = qty, mleaves
                return ERR_LEAVES
            bk = sidx[sym]
            if _level_add(px, qt, cnt, 2 * bk + (0 if o_side[h] == BUY else 1), price, -qty) < 0:
                err[0], err[1], err[2], err[3] = ERR_BELOW_ZERO, sym, seq, price
                return ERR_BELOW_ZERO
            if mleaves == 0:
                keys[h] = DELETED
                meta[M_LIVE] -= 1
                meta[M_DELETED] += 1
            else:
                o_lots[h] = mleaves
            if has_t and t[0] == oid:
                t[4] = leaves
            bseq[bk] = seq
            bts[bk] = ts
            touched[bk] = 1
        elif kind == EV_ACCEPTED:
            if oid <= 0:
                err[0], err[1], err[2], err[3] = ERR_BAD_ID, sym, seq, oid
                return ERR_BAD_ID
            leaves = _field(w, i, lay, 11)
            t[0], t[1], t[2], t[3] = oid, sym, side, price
            t[4] = leaves if leaves > 0 else qty
            t[5] = 1 if _field(w, i, lay, 9) == LIMIT else 0
            t[6], t[7] = seq, ts
            has_t = True
        else:  # CANCELED / EXPIRED
            h = _probe(keys, oid)[0] if oid > 0 else -1
            if h >= 0:
                lots = o_lots[h]
                removed = qty if 0 < qty < lots else lots
                bk = o_book[h]
                if _level_add(px, qt, cnt, 2 * bk + (0 if o_side[h] == BUY else 1), o_px[h],
                              -removed) < 0:
                    err[0], err[1], err[2], err[3] = ERR_BELOW_ZERO, book_ids[bk], seq, o_px[h]
                    return ERR_BELOW_ZERO
                if removed == lots:
                    keys[h] = DELETED
                    meta[M_LIVE] -= 1
                    meta[M_DELETED] += 1
                else:
                    o_lots[h] = lots - removed
                bseq[bk] = seq
                bts[bk] = ts
                touched[bk] = 1
            elif has_t and t[0] == oid:
                t[5] = 0
    if has_t:  # whole commands: the batch's last one has no more events
        r = _rest(t, keys, o_book, o_side, o_px, o_lots, meta, px, qt, cnt, bseq, bts, touched,
                  sidx, err)
        if r:
            return r
    last = _field(w, n - 1, lay, 0)
    if last > meta[M_LAST_SEQ]:
        meta[M_LAST_SEQ] = last
    return 0


@nb.njit(cache=True, nogil=True)
def rehash(keys, o_book, o_side, o_px, o_lots, nkeys, n_book, n_side, n_px, n_lots):
    """Copy every live order into the (empty, larger or same-size) table ``n*``; its live count."""
    live = 0
    for h in range(keys.shape[0]):
        oid = keys[h]
        if oid > 0:
            g = _probe(nkeys, oid)[1]
            nkeys[g] = oid
            n_book[g], n_side[g], n_px[g], n_lots[g] = o_book[h], o_side[h], o_px[h], o_lots[h]
            live += 1
    return live
