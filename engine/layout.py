"""Engine state layout: the arrays the kernels work on, their dtypes and named indices.

Layout. ``State`` is a NamedTuple of preallocated numpy arrays (numba passes it as one struct):

* ``orders``  ORDER[max_orders]      the order pool; free slots chained through ``next`` (stack).
                                     A live order sits in its level's FIFO (``prev``/``next``), in
                                     its account's list (``aprev``/``anext``), in ``idmap`` and, with
                                     a cid, in ``cidmap``.
* ``levels``  LEVEL[n_sym*2*max_levels] price-level pool, free slots chained through ``next_free``.
* ``bk_key``  int64[n_sym+1, 2, max_levels]  per symbol and side (0 = bids, 1 = asks) the sort key
  of each level (bids: price, asks: -price), ascending, so the best level is at index ``bk_n-1``;
  ``bk_lv`` int32 the same shape: level slot of each key. ``bk_n`` int64[n_sym+1, 2] level counts,
  ``bk_orders`` int64[n_sym+1, 2] resting order counts.
* ``sp``      int64[n_sym+1, NP]     symbol parameters (P_* columns), row 0 unused.
* ``smode``   int64[n_sym+1, 2]      operator mode, lag flag per symbol.
* ``avail``, ``locked`` int64[max_accounts, n_assets+1]  balances (column 0 unused).
* ``idmap``, ``cidmap`` int32[2*pow2 >= 2*max_orders]   linear-probing tables of order slots
  (-1 = empty) keyed by order id / (account, cid); the key is read from the order itself.
* ``ahead``   int32[max_accounts]    head of each account's open-order list.
* ``ctl``     int64[64]              counters and scalars (C_* indices).
* ``hs``      uint64[2]              running multiset hash (index 0).
* scratch, not persisted: ``bmark``/``bold`` (balance rows touched by the current command and their
  values before it), ``tkeys`` (touched rows), ``ca_ids`` (order ids of a CANCEL_ALL in progress).

Invariants: slot / level index -1 means none. Every live order has ``leaves > 0``; every level in a
book has ``count > 0``. Sizes: ORDER 128 B, LEVEL 32 B.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np


def _padded(fields: list[tuple[str, str]], itemsize: int) -> np.dtype:
    """An aligned struct of ``fields`` padded to ``itemsize`` bytes."""
    packed = np.dtype(fields, align=True)
    names = list(packed.names or ())
    layout: Mapping[str, Any] = packed.fields or {}
    return np.dtype({"names": names, "formats": [layout[n][0] for n in names],
                     "offsets": [layout[n][1] for n in names], "itemsize": itemsize}, align=True)


ORDER = _padded([
    ("id", "<i8"), ("price", "<i8"), ("qty", "<i8"), ("leaves", "<i8"), ("locked", "<i8"),
    ("cum", "<i8"),  # cumulative maker notional (fee rule, README §4)
    ("ts", "<i8"), ("c0", "<i8"), ("c1", "<i8"), ("c2", "<i8"), ("c3", "<i8"),  # cid words
    ("h0", "<u8"),  # hash of the fields that never change (README §7), set when it rests
    ("account", "<i4"), ("prev", "<i4"), ("next", "<i4"), ("aprev", "<i4"), ("anext", "<i4"),
    ("level", "<i4"), ("symbol", "<u2"),
    ("side", "u1"), ("stp", "u1"), ("flags", "u1"), ("tif", "u1"), ("otype", "u1"), ("live", "u1"),
], 128)

LEVEL = np.dtype([("price", "<i8"), ("qty", "<i8"), ("head", "<i4"), ("tail", "<i4"),
                  ("count", "<i4"), ("next_free", "<i4")], align=True)

# symbol parameter columns
P_VALID, P_BASE, P_QUOTE, P_LOT, P_K, P_MIN_QTY, P_MAX_QTY, P_MAX_PRICE = 0, 1, 2, 3, 4, 5, 6, 7
P_MIN_NOTIONAL, P_MAKER, P_TAKER, P_BAND, P_MAX_BUDGET = 8, 9, 10, 11, 12
NP = 13

# ctl indices
C_LAST_SEQ, C_NEXT_TRADE, C_FREE_ORDER, C_FREE_LEVEL, C_N_ORDERS = 0, 1, 2, 3, 4
C_GLOBAL_MODE, C_GLOBAL_LAG, C_WD_HALT = 5, 6, 7
C_FEE_ACCT, C_EXT_ACCT, C_CKPT_EVERY, C_MAX_TOUCH = 8, 9, 10, 11
C_N_ASSETS, C_N_SYMBOLS, C_MAX_LEVELS, C_MAX_ACCOUNTS, C_MAP_MASK, C_MAX_ORDERS = 12, 13, 14, 15, 16, 17
C_STAMP, C_NTOUCH, C_EVPOS = 18, 19, 20
C_RESUME_SEQ, C_RESUME_POS, C_RESUME_N = 21, 22, 23
C_SEQ, C_TS, C_CONN, C_REQ, C_ACCOUNT = 24, 25, 26, 27, 28
C_VERSION = 29
NCTL = 64
LAYOUT_VERSION = 2

# status codes of apply_batch (info[1])
OK, FULL, SEQ_GAP = 0, 1, -1

MAX_BALANCE = 1 << 62  # total deposits of an asset may not exceed this (no balance can overflow)
DEFAULT_MAX_MAKERS = 1000  # makers one taker may touch (trade or STP-expire) in one command


def max_events_per_command(max_makers: int) -> int:
    """Worst-case events of one command, CHECKPOINT included (README §1)."""
    return 5 + 3 * max_makers


class State(NamedTuple):
    orders: np.ndarray
    levels: np.ndarray
    bk_key: np.ndarray
    bk_lv: np.ndarray
    bk_n: np.ndarray
    bk_orders: np.ndarray
    sp: np.ndarray
    smode: np.ndarray
    avail: np.ndarray
    locked: np.ndarray
    idmap: np.ndarray
    cidmap: np.ndarray
    ahead: np.ndarray
    ctl: np.ndarray
    hs: np.ndarray
    bmark: np.ndarray
    bold: np.ndarray
    tkeys: np.ndarray
    ca_ids: np.ndarray


PERSISTED = ("orders", "levels", "bk_key", "bk_lv", "bk_n", "bk_orders", "sp", "smode", "avail",
             "locked", "idmap", "cidmap", "ahead", "ctl", "hs")
SCRATCH = ("bmark", "bold", "tkeys", "ca_ids")
