"""Read-only queries over an engine state (cold path: tests, reconciliation, snapshots served at
subscribe). They read the arrays directly and never mutate; call them between batches only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.layout import State
from pipeline.records import cid_decode


@dataclasses.dataclass(frozen=True)
class OpenOrder:
    order_id: int
    account: int
    symbol: int
    side: int
    price: int  # ticks
    qty: int  # lots, as placed
    leaves: int  # lots still resting
    locked: int  # minor units of the hold asset still held for this order
    maker_notional: int  # cumulative maker notional (fee rule, README §4)
    stp: int
    flags: int
    tif: int
    otype: int
    ts_ns: int
    cid: str | None


@dataclasses.dataclass(frozen=True)
class Level:
    price: int
    qty: int
    orders: int


@dataclasses.dataclass(frozen=True)
class Book:
    symbol: int
    bids: list[Level]  # best (highest) first
    asks: list[Level]  # best (lowest) first


def cid_bytes(c0: int, c1: int, c2: int, c3: int) -> bytes:
    words = (int(c0), int(c1), int(c2), int(c3))
    raw = b"".join(w.to_bytes(8, "little", signed=True) for w in words)
    return raw[:28]


def cid_words(raw: bytes | np.ndarray) -> tuple[int, int, int, int]:
    """The four little-endian int64 words the kernels keep for a 28-byte cid."""
    b = bytes(raw) + bytes(4)
    return tuple(int.from_bytes(b[8 * k:8 * k + 8], "little", signed=True) for k in range(4))  # type: ignore[return-value]


def open_order(st: State, slot: int) -> OpenOrder:
    o = st.orders[slot]
    raw = cid_bytes(o["c0"], o["c1"], o["c2"], o["c3"])
    return OpenOrder(
        order_id=int(o["id"]), account=int(o["account"]), symbol=int(o["symbol"]),
        side=int(o["side"]), price=int(o["price"]), qty=int(o["qty"]), leaves=int(o["leaves"]),
        locked=int(o["locked"]), maker_notional=int(o["cum"]), stp=int(o["stp"]),
        flags=int(o["flags"]), tif=int(o["tif"]), otype=int(o["otype"]), ts_ns=int(o["ts"]),
        cid=cid_decode(raw))


def open_orders(st: State, account: int, symbol: int | None = None) -> list[OpenOrder]:
    """The account's open orders (optionally one symbol), ascending order id."""
    out: list[OpenOrder] = []
    if not 0 <= account < st.ahead.shape[0]:
        return out
    s = int(st.ahead[account])
    while s >= 0:
        o = st.orders[s]
        if symbol is None or int(o["symbol"]) == symbol:
            out.append(open_order(st, s))
        s = int(o["anext"])
    out.sort(key=lambda x: x.order_id)
    return out


def all_open_orders(st: State) -> list[OpenOrder]:
    live = np.flatnonzero(st.orders["live"])
    return sorted((open_order(st, int(s)) for s in live), key=lambda x: x.order_id)


def book(st: State, symbol: int, depth: int = 10) -> Book:
    """Aggregated levels of ``symbol``: (price, total lots, order count), best first."""
    sides: list[list[Level]] = []
    for si in (0, 1):
        n = int(st.bk_n[symbol, si])
        levels = []
        for j in range(n - 1, max(n - 1 - depth, -1), -1):
            L = st.levels[int(st.bk_lv[symbol, si, j])]
            levels.append(Level(int(L["price"]), int(L["qty"]), int(L["count"])))
        sides.append(levels)
    return Book(symbol, sides[0], sides[1])


def balances(st: State, account: int) -> dict[int, tuple[int, int]]:
    """asset id -> (available, locked) for every asset of the config."""
    return {a: (int(st.avail[account, a]), int(st.locked[account, a]))
            for a in range(1, st.avail.shape[1])}


def asset_totals(st: State) -> np.ndarray:
    """Per asset, the sum of available + locked over every account (0 when conserved)."""
    return st.avail.sum(axis=0) + st.locked.sum(axis=0)
