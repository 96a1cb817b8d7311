# mypy: ignore-errors
"""EVENT writers. Kernels.

``ev_new`` claims the next record of ``out`` (position ``ctl[C_EVPOS]``), zeroes its 128 bytes and
stamps seq / ts_ns / conn / req of the command being applied (``ctl[C_SEQ..C_REQ]``). The caller
checked room before the command started (README §1), so writers never check bounds.

cid words: the 28-byte cid as four little-endian int64 words (the last holds 4 bytes). In a COMMAND
the cid starts at byte 36 (uint32 words 9..15); in an EVENT at byte 40 (int64 words 5..8; word 8's
upper half is taker_fee's upper half, zero for the kinds that carry a cid).
"""

from __future__ import annotations

import numpy as np

from engine._numba import kernel
from engine.layout import C_ACCOUNT, C_CONN, C_EVPOS, C_REQ, C_SEQ, C_TS

EV_WORDS = 16


@kernel
def cmd_cid(cmds, i):
    u = cmds.view(np.uint32)
    b = i * 16 + 9
    c0 = np.int64(u[b]) | (np.int64(u[b + 1]) << 32)
    c1 = np.int64(u[b + 2]) | (np.int64(u[b + 3]) << 32)
    c2 = np.int64(u[b + 4]) | (np.int64(u[b + 5]) << 32)
    c3 = np.int64(u[b + 6])
    return c0, c1, c2, c3


@kernel
def ev_new(st, out, kind):
    e = st.ctl[C_EVPOS]
    st.ctl[C_EVPOS] = e + 1
    w = out.view(np.int64)
    b = e * EV_WORDS
    for k in range(EV_WORDS):
        w[b + k] = 0
    r = out[e]
    r.seq = st.ctl[C_SEQ]
    r.ts_ns = st.ctl[C_TS]
    r.conn = st.ctl[C_CONN]
    r.req = st.ctl[C_REQ]
    r.kind = kind
    return e


@kernel
def ev_cid(out, e, c0, c1, c2, c3):
    w = out.view(np.int64)
    b = e * EV_WORDS
    w[b + 5] = c0
    w[b + 6] = c1
    w[b + 7] = c2
    w[b + 8] = c3


@kernel
def ev_order(st, out, kind, s, qty, reason):
    """A CANCELED / EXPIRED event for live order ``s`` removing ``qty``."""
    o = st.orders[s]
    e = ev_new(st, out, kind)
    r = out[e]
    r.order_id = o.id
    r.account = o.account
    r.symbol = o.symbol
    r.side = o.side
    r.otype = o.otype
    r.tif = o.tif
    r.flags = o.flags
    r.stp = o.stp
    r.price = o.price
    r.qty = qty
    r.reason = reason
    ev_cid(out, e, o.c0, o.c1, o.c2, o.c3)
    return e


@kernel
def ev_command(st, out, kind, cmds, i, reason):
    """A command-level event: ``account``, ``reason``, and for REJECTED the echo of README §6."""
    c = cmds[i]
    e = ev_new(st, out, kind)
    r = out[e]
    r.account = st.ctl[C_ACCOUNT]
    r.reason = reason
    if kind != 2:  # only REJECTED echoes the command's order fields and cid
        return e
    r.symbol = c.symbol
    r.side = c.side
    r.otype = c.otype
    r.tif = c.tif
    r.flags = c.flags
    r.stp = c.stp
    c0, c1, c2, c3 = cmd_cid(cmds, i)
    ev_cid(out, e, c0, c1, c2, c3)
    return e
