# mypy: ignore-errors
"""numba kernel of ``edge.recio.unpack_chunk``: a durable batch's BALANCE events as rows, not
objects.

Why. Half of a market maker's events are BALANCE (one per order placed or canceled). Each became an
``EvT`` (25 ints unpacked, 26 attributes set), then went through the read model's loop and the
dispatcher's, only to leave the newest (available, locked) of its (account, asset) behind: the read
model keeps one pair per key and pushes one ``BalanceUpdate`` per key and batch (its header). Here
one pass over the records leaves that newest state per key as a row and copies out only the records
that still need an object.

``balance_lane(rec, q, w, lay, lo, hi, out, rows)`` over records ``lo..hi`` of ``rec`` (uint8, one
128-byte EVENT per row; ``q`` / ``w`` the same memory as int64 / uint32 rows; ``lay`` the byte
offsets of kind, last, and the word indexes of seq, ts_ns, available, locked (int64) and account,
asset (uint32), from ``pipeline.records.EVENT``):

* every record that is not a BALANCE is copied to ``out`` in order;
* a BALANCE record is dropped, except one that ends its command (``last``) when the record copied
  just before it is not of the same command (same seq): it is copied too, since the dispatcher
  answers a command at its last event. When that record is of the same command it takes ``last``
  instead (a command's events are contiguous and share its seq: only its final one has ``last``);
* ``rows`` gets, per (account, asset) with a BALANCE in the range, in the order of their first
  BALANCE: account, asset, available, locked, seq and ts_ns of the newest one;

and returns (records copied, rows, the highest seq in the range). Nothing else changes: the copied
records are byte for byte the input's but for the moved ``last``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

BALANCE = 6  # pipeline.records.Ev.BALANCE (recio asserts it)
# lay: kind byte, last byte, int64 words seq, ts_ns, available, locked, uint32 words account, asset
L_KIND, L_LAST, L_SEQ, L_TS, L_AVAIL, L_LOCKED, L_ACCT, L_ASSET = range(8)



def _arr(dtype: object, dims: int, readonly: bool = False) -> object:
    return nb.types.Array(dtype, dims, "C", readonly=readonly)


# an explicit signature: any other array type is a TypeError at the call, never a compile mid-load;
# the records are read-only (``recio.event_rows`` hands them so, whatever their source)
SIGNATURE = nb.types.UniTuple(nb.int64, 3)(
    _arr(nb.uint8, 2, True), _arr(nb.int64, 2, True), _arr(nb.uint32, 2, True),
    _arr(nb.int64, 1), nb.int64, nb.int64, _arr(nb.uint8, 2), _arr(nb.int64, 2))


@nb.njit(SIGNATURE, cache=True, nogil=True)
def balance_lane(rec, q, w, lay, lo, hi, out, rows):
    kind_b, last_b = lay[L_KIND], lay[L_LAST]
    seq_q, ts_q, av_q, lk_q = lay[L_SEQ], lay[L_TS], lay[L_AVAIL], lay[L_LOCKED]
    ac_w, as_w = lay[L_ACCT], lay[L_ASSET]
    size = 16
    while size < 2 * (hi - lo):
        size <<= 1
    slot_key = np.empty(size, np.int64)
    slot_row = np.full(size, -1, np.int64)  # row index, -1: free
    mask = size - 1
    k = 0
    m = 0
    top = np.int64(0)
    prev = np.int64(-1)  # seq of the record copied last
    width = rec.shape[1]
    for i in range(lo, hi):
        seq = q[i, seq_q]
        if seq > top:
            top = seq
        if rec[i, kind_b] != BALANCE:
            for b in range(width):
                out[k, b] = rec[i, b]
            k += 1
            prev = seq
            continue
        if rec[i, last_b]:
            if k > 0 and prev == seq:
                out[k - 1, last_b] = 1
            else:
                for b in range(width):
                    out[k, b] = rec[i, b]
                k += 1
                prev = seq
        key = (np.int64(w[i, ac_w]) << 32) | np.int64(w[i, as_w])
        h = (key * np.int64(-7046029254386353131)) >> 40
        s = h & mask
        while slot_row[s] >= 0 and slot_key[s] != key:
            s = (s + 1) & mask
        r = slot_row[s]
        if r < 0:
            r = m
            m += 1
            slot_row[s] = r
            slot_key[s] = key
            rows[r, 0] = w[i, ac_w]
            rows[r, 1] = w[i, as_w]
        rows[r, 2] = q[i, av_q]
        rows[r, 3] = q[i, lk_q]
        rows[r, 4] = seq
        rows[r, 5] = q[i, ts_q]
    return k, m, top
