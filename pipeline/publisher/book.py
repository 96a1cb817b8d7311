"""L2 book derivation: aggregated price levels per symbol, rebuilt from durable engine events.

Event contract used (pipeline/records.py; the engine's semantics, proven against
``engine.book()`` by tests/property/test_book_feed.py):

* ``ACCEPTED`` opens a *taker*: the new order (id, symbol, side, limit price, lots) of the command.
* ``TRADE`` fills the resting maker ``maker_order_id`` at ``price`` for ``qty`` lots (its level on
  the side opposite the taker's ``side`` shrinks) and leaves it ``maker_leaves``; ``leaves`` is the
  taker's remainder.
* ``CANCELED`` / ``EXPIRED`` remove ``qty`` lots (the remainder) of a resting order (user / admin
  cancel, STP expiring a maker), or mark the taker as removed (IOC / FOK / MARKET / STP taker /
  price band): a removed taker never rests.
* The command's final event (``last = 1``) ends it: a LIMIT taker with lots left that was not
  removed now rests at its price.

State: ``orders`` maps every resting order id to ``[symbol, side, price_ticks, lots]``; each side
of each symbol keeps ``qty`` (price -> total lots) and ``prices`` (sorted ascending; bids are read
from the end). A level is created by its first resting lot and deleted when it reaches 0. Costs:
O(1) dict work per event plus O(levels) list insert/delete when a level appears or disappears.

Batch tracking (``track=True``): the first time a level is touched in a batch its old quantity is
kept in ``before`` and the side's old top ``TRACK_DEPTH`` prices in ``old_top``, so the caller can
compute net deltas for the full book and every depth view after the batch (views.py), then
``end_batch()``. An event that does not fit the book raises BookInconsistency (never a silent
wrong book).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Final

import numpy as np

from pipeline.publisher.channels import FULL_DEPTH
from pipeline.publisher.errors import BookInconsistency
from pipeline.records import Ev, OrdType, Side

TRACK_DEPTH = FULL_DEPTH
# Final: compiled, each is a C static, not a module-dict lookup per use
_ACC: Final = int(Ev.ACCEPTED)
_TRADE: Final = int(Ev.TRADE)
_CXL: Final = int(Ev.CANCELED)
_EXP: Final = int(Ev.EXPIRED)
_BUY: Final = int(Side.BUY)
_SELL: Final = int(Side.SELL)
_LIMIT: Final = int(OrdType.LIMIT)


class SideBook:
    __slots__ = ("bid", "qty", "prices", "before", "old_top")

    def __init__(self, bid: bool) -> None:
        self.bid = bid
        self.qty: dict[int, int] = {}
        self.prices: list[int] = []
        self.before: dict[int, int] = {}
        self.old_top: list[int] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickled the same compiled or not
        return _side_book, (self.bid, self.qty, self.prices, self.before, self.old_top)

    def top(self, n: int) -> list[int]:
        """The best ``n`` prices, best first."""
        p = self.prices
        return p[-1:-n - 1:-1] if self.bid else p[:n]

    def levels(self, n: int) -> list[tuple[int, int]]:
        q = self.qty
        return [(p, q[p]) for p in self.top(n)]

    def best(self) -> int:
        p = self.prices
        return (p[-1] if self.bid else p[0]) if p else 0

    def add(self, price: int, dq: int, track: bool) -> int:
        """Change the level at ``price`` by ``dq`` lots; returns the new quantity (< 0: caller
        raises)."""
        q = self.qty
        old = q.get(price, 0)
        if track and price not in self.before:
            if self.old_top is None:
                self.old_top = self.top(TRACK_DEPTH)
            self.before[price] = old
        new = old + dq
        if new > 0:
            q[price] = new
            if old == 0:
                insort(self.prices, price)
        elif new == 0 and old:
            del q[price]
            p = self.prices
            del p[bisect_left(p, price)]
        return new

    def net_changes(self) -> dict[int, int]:
        """price -> new lots (0 = gone) for levels whose quantity differs from before the batch."""
        q = self.qty
        return {p: q.get(p, 0) for p, old in self.before.items() if q.get(p, 0) != old}

    def end_batch(self) -> None:
        if self.before:
            self.before = {}
        self.old_top = None


class SymbolBook:
    __slots__ = ("symbol", "bids", "asks", "seq", "ts_ns")

    def __init__(self, symbol: int) -> None:
        self.symbol = symbol
        self.bids = SideBook(True)
        self.asks = SideBook(False)
        self.seq = 0  # engine seq of the last command that changed this book
        self.ts_ns = 0

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _symbol_book, (self.symbol, self.bids, self.asks, self.seq, self.ts_ns)

    def side(self, side: int) -> SideBook:
        return self.bids if side == _BUY else self.asks


class BookDeriver:
    def __init__(self, symbols: list[int] | tuple[int, ...] = ()) -> None:
        self.books: dict[int, SymbolBook] = {s: SymbolBook(s) for s in symbols}
        self.orders: dict[int, list[int]] = {}
        self.touched: dict[int, SymbolBook] = {}
        self.last_seq = 0
        # the open command's new order: [oid, symbol, side, price, lots, may_rest, seq]
        self._taker: list[int] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _book_deriver, (self.books, self.orders, self.touched, self.last_seq, self._taker)

    def book(self, symbol: int) -> SymbolBook:
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = SymbolBook(symbol)
        return b

    def _bad(self, symbol: int, seq: int, why: str) -> BookInconsistency:
        return BookInconsistency(symbol, seq, why)

    def _finish_taker(self, track: bool) -> None:
        """The command that placed the open new order has no more events: it rests (if it may)."""
        t = self._taker
        self._taker = None
        if t is None:
            return
        oid, sym, side, price, lots, may_rest, seq, ts = t
        b = self.book(sym)
        b.ts_ns = ts
        if not may_rest or lots <= 0:
            return
        if oid in self.orders:
            raise self._bad(sym, seq, f"order {oid} rests twice")
        self.orders[oid] = [sym, side, price, lots]
        b.side(side).add(price, lots, track)
        b.seq = seq
        self.touched[sym] = b

    def apply(self, ev: np.ndarray, track: bool = True) -> None:
        """Apply EVENT records in order (a whole number of commands, e.g. one WAL EVENTS frame).

        Only the kinds that move a book are looked at (not BALANCE, half of a market maker's
        events): a new order rests once its command has no more events, i.e. at the next event of
        another command (every event of a command carries its seq) or at the end of the batch."""
        if len(ev) == 0:
            return
        k = ev["kind"]
        sub = ev[(k == _ACC) | (k == _TRADE) | (k == _CXL) | (k == _EXP)]
        if len(sub) == 0:
            self.last_seq = max(self.last_seq, int(ev["seq"][-1]))
            return
        orders = self.orders
        touched = self.touched
        cols = zip(sub["kind"].tolist(), sub["seq"].tolist(), sub["ts_ns"].tolist(),
                   sub["order_id"].tolist(), sub["price"].tolist(), sub["qty"].tolist(),
                   sub["maker_order_id"].tolist(), sub["symbol"].tolist(), sub["side"].tolist(),
                   sub["otype"].tolist(), sub["maker_leaves"].tolist(), sub["leaves"].tolist(),
                   strict=True)
        for kind, seq, ts, oid, price, qty, moid, sym, side, otype, mleaves, leaves in cols:
            t = self._taker
            if t is not None and t[6] != seq:
                self._finish_taker(track)
                t = None
            if kind == _TRADE:
                b = self.book(sym)
                o = orders.get(moid)
                if o is None:
                    raise self._bad(sym, seq, f"trade {oid}x{moid}: maker is not resting")
                if o[2] != price or o[1] == side:
                    raise self._bad(sym, seq, f"maker {moid} rests at {o[2]} side {o[1]}, trade at "
                                              f"{price} with taker side {side}")
                if o[3] - qty != mleaves or mleaves < 0:
                    raise self._bad(sym, seq, f"maker {moid}: {o[3]} - {qty} != leaves {mleaves}")
                if b.side(o[1]).add(price, -qty, track) < 0:
                    raise self._bad(sym, seq, f"level {price} below zero")
                if mleaves == 0:
                    del orders[moid]
                else:
                    o[3] = mleaves
                if t is not None and t[0] == oid:
                    t[4] = leaves
                b.seq = seq
                b.ts_ns = ts
                touched[sym] = b
            elif kind == _ACC:
                lots = leaves if leaves > 0 else qty
                self._taker = [oid, sym, side, price, lots, int(otype == _LIMIT), seq, ts]
            elif kind == _CXL or kind == _EXP:
                o = orders.get(oid)
                if o is not None:
                    removed = qty if 0 < qty < o[3] else o[3]
                    b = self.book(o[0])
                    if b.side(o[1]).add(o[2], -removed, track) < 0:
                        raise self._bad(o[0], seq, f"level {o[2]} below zero")
                    if removed == o[3]:
                        del orders[oid]
                    else:
                        o[3] -= removed
                    b.seq = seq
                    b.ts_ns = ts
                    touched[o[0]] = b
                elif t is not None and t[0] == oid:
                    t[5] = 0
        self._finish_taker(track)  # whole commands: the batch's last one has no more events
        self.last_seq = max(self.last_seq, int(ev["seq"][-1]))

    def end_batch(self) -> None:
        for b in self.touched.values():
            b.bids.end_batch()
            b.asks.end_batch()
        self.touched = {}


# Unpickling (edge snapshots pickle the market state): explicit rebuilders, because a class compiled
# by mypyc (pipeline.native) has no bare __new__ for pickle's default path.
def _side_book(bid: bool, qty: dict[int, int], prices: list[int], before: dict[int, int],
               old_top: list[int] | None) -> SideBook:
    b = SideBook(bid)
    b.qty, b.prices, b.before, b.old_top = qty, prices, before, old_top
    return b


def _symbol_book(symbol: int, bids: SideBook, asks: SideBook, seq: int, ts_ns: int) -> SymbolBook:
    b = SymbolBook(symbol)
    b.bids, b.asks, b.seq, b.ts_ns = bids, asks, seq, ts_ns
    return b


def _book_deriver(books: dict[int, SymbolBook], orders: dict[int, list[int]],
                  touched: dict[int, SymbolBook], last_seq: int,
                  taker: list[int] | None) -> BookDeriver:
    d = BookDeriver()
    d.books, d.orders, d.touched, d.last_seq, d._taker = books, orders, touched, last_seq, taker
    return d
