"""``FlatBooks``: the silent L2 books (no delta tracking) folded by one numba kernel per batch.

Why. Every edge process keeps the market state its REST routes answer from (``edge.market_state``),
folded from every durable event. With ``BookDeriver`` (book.py: dicts, lists and a Python loop
over the events) that fold was 7 % of a saturated edge's CPU (perf, closed loop 64x16): about
0.6 us an event. The edge never emits deltas, so it needs the books, not their tracking: the same
event semantics over int64 arrays, one kernel call per batch (``_flat_kernels.fold``).

Contract: after ``apply(ev)`` the books (levels, seq, time), ``touched``, ``last_seq`` and every
error equal ``BookDeriver.apply(ev, track=False)`` on the same stream (property test:
tests/property/test_flatbook.py). ``track=True`` is refused: the publisher, which emits deltas,
keeps ``BookDeriver``.

Read side, what ``MarketDeriver`` and ``MarketState`` use: ``book(sid)`` -> ``.bids`` / ``.asks``
(``levels(n)``, ``top(n)``, ``best()``, ``qty[price]``), ``.seq``, ``.ts_ns``; ``touched`` (symbol ->
book, changed in this batch, until ``end_batch()``); ``last_seq``. Pickles as arrays (edge
snapshots).

Sizes: levels per side start at 64 and double when a batch could overflow them (each event adds
at most one level); the order table (open addressing, power of two) is rebuilt at twice the live
orders plus the batch whenever live + deleted slots + the batch would pass half of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from pipeline.publisher import _flat_kernels as K
from pipeline.publisher.errors import BookInconsistency
from pipeline.records import EVENT, Ev, OrdType, Side

assert (K.EV_ACCEPTED, K.EV_TRADE, K.EV_CANCELED, K.EV_EXPIRED, K.BUY, K.LIMIT) == (
    int(Ev.ACCEPTED), int(Ev.TRADE), int(Ev.CANCELED), int(Ev.EXPIRED), int(Side.BUY),
    int(OrdType.LIMIT))


_READ = ("seq", "ts_ns", "order_id", "price", "qty", "maker_order_id", "symbol", "kind", "side",
         "otype", "maker_leaves", "leaves")  # the fields the kernel reads, in its order


def _layout() -> np.ndarray:
    """(word, shift) per field the kernel reads, in its order; shift -1: a whole int64 word, >= 64:
    a uint16 at shift - 64, else a uint8 (``_flat_kernels._field``)."""
    out = []
    fields = EVENT.fields
    assert fields is not None
    for name in _READ:
        dt, off = fields[name][:2]
        if dt.itemsize == 8:
            assert off % 8 == 0, name
            out += [off // 8, -1]
        else:
            assert off // 8 == (off + dt.itemsize - 1) // 8, name  # inside one word
            shift = (off % 8) * 8
            out += [off // 8, shift + 64 if dt.itemsize == 2 else shift]
    return np.array(out, np.int64)


LAYOUT = _layout()


def _as_event(ev: np.ndarray) -> np.ndarray:
    """A contiguous EVENT copy of the fields the kernel reads. Not ``astype``: numpy packs EVENT's
    overlapping aliases apart when it concatenates (192-byte records), and a cast by field name
    lets an alias (``mode``) overwrite the field it shares bytes with (``side``)."""
    out = np.zeros(len(ev), EVENT)
    for name in _READ:
        out[name] = ev[name]
    return out


_WORDS = EVENT.itemsize // 8
_ERR_TEXT = {
    K.ERR_NOT_RESTING: lambda e: f"trade {e[3]}x{e[4]}: maker is not resting",
    K.ERR_MAKER_MISMATCH: lambda e: (f"maker {e[3]} rests at {e[4]} side {e[5]}, trade at {e[6]} "
                                     f"with taker side {e[7]}"),
    K.ERR_LEAVES: lambda e: f"maker {e[3]}: {e[4]} - {e[5]} != leaves {e[6]}",
    K.ERR_BELOW_ZERO: lambda e: f"level {e[3]} below zero",
    K.ERR_RESTS_TWICE: lambda e: f"order {e[3]} rests twice",
    K.ERR_UNKNOWN_SYMBOL: lambda e: f"symbol {e[1]} is not configured",
    K.ERR_BAD_ID: lambda e: f"order id {e[3]} is not positive",
}


class _Qty:
    """``side.qty[price]`` of one side (the lots at a price; KeyError if no level)."""

    __slots__ = ("_side",)

    def __init__(self, side: FlatSide) -> None:
        self._side = side

    def __getitem__(self, price: int) -> int:
        q = self.get(price)
        if q is None:
            raise KeyError(price)
        return q

    def get(self, price: int, default: int | None = None) -> int | None:
        s = self._side
        o, b = s._o, s._b
        n = int(o.cnt[b])
        row = o.px[b, :n]
        i = int(np.searchsorted(row, price))
        return int(o.qt[b, i]) if i < n and row[i] == price else default


class FlatSide:
    __slots__ = ("_o", "_b", "bid")

    def __init__(self, owner: FlatBooks, b: int, bid: bool) -> None:
        self._o, self._b, self.bid = owner, b, bid

    def top(self, n: int) -> list[int]:
        """The best ``n`` prices, best first."""
        o, b = self._o, self._b
        c = int(o.cnt[b])
        k = min(n, c)
        return o.px[b, c - k:c][::-1].tolist() if self.bid else o.px[b, :k].tolist()

    def levels(self, n: int) -> list[tuple[int, int]]:
        o, b = self._o, self._b
        c = int(o.cnt[b])
        k = min(n, c)
        sl = slice(c - k, c) if self.bid else slice(0, k)
        px, q = o.px[b, sl].tolist(), o.qt[b, sl].tolist()
        lv = list(zip(px, q, strict=True))
        return lv[::-1] if self.bid else lv

    def best(self) -> int:
        o, b = self._o, self._b
        c = int(o.cnt[b])
        if not c:
            return 0
        return int(o.px[b, c - 1]) if self.bid else int(o.px[b, 0])

    @property
    def qty(self) -> _Qty:
        return _Qty(self)

    @property
    def prices(self) -> list[int]:
        """Every price with lots, ascending (as ``SideBook.prices``)."""
        o, b = self._o, self._b
        return o.px[b, :int(o.cnt[b])].tolist()


class FlatBook:
    __slots__ = ("_o", "_k", "symbol", "bids", "asks")

    def __init__(self, owner: FlatBooks, k: int, symbol: int) -> None:
        self._o, self._k, self.symbol = owner, k, symbol
        self.bids = FlatSide(owner, 2 * k, True)
        self.asks = FlatSide(owner, 2 * k + 1, False)

    @property
    def seq(self) -> int:
        return int(self._o.bseq[self._k])

    @property
    def ts_ns(self) -> int:
        return int(self._o.bts[self._k])

    def side(self, side: int) -> FlatSide:
        return self.bids if side == K.BUY else self.asks


class FlatBooks:
    """Silent L2 books of the configured ``symbols`` (see the module header)."""

    def __init__(self, symbols: Iterable[int] = (), level_cap: int = 64, table: int = 1024) -> None:
        ids = [int(s) for s in symbols]
        if len(set(ids)) != len(ids) or any(not 0 <= s < 1 << 16 for s in ids):
            raise ValueError(f"symbol ids must be distinct uint16 values, got {ids}")
        if table & (table - 1):
            raise ValueError("table must be a power of two")
        s = len(ids)
        self.book_ids = np.array(ids, np.int64)
        self.sidx = np.full(1 << 16, -1, np.int64)
        self.sidx[self.book_ids] = np.arange(s)
        self.px = np.zeros((2 * s, level_cap), np.int64)
        self.qt = np.zeros((2 * s, level_cap), np.int64)
        self.cnt = np.zeros(2 * s, np.int64)
        self.bseq = np.zeros(s, np.int64)
        self.bts = np.zeros(s, np.int64)
        self.flags = np.zeros(s, np.int64)  # touched in the open batch
        self.keys = np.zeros(table, np.int64)
        self.o_book = np.zeros(table, np.int64)
        self.o_side = np.zeros(table, np.int64)
        self.o_px = np.zeros(table, np.int64)
        self.o_lots = np.zeros(table, np.int64)
        self.meta = np.zeros(4, np.int64)
        self.err = np.zeros(8, np.int64)
        self.books = {sid: FlatBook(self, k, sid) for k, sid in enumerate(ids)}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        live = self.keys > 0
        return _flat_books, (self.book_ids.tolist(), self.px, self.qt, self.cnt, self.bseq,
                             self.bts, self.keys[live], self.o_book[live], self.o_side[live],
                             self.o_px[live], self.o_lots[live], int(self.meta[K.M_LAST_SEQ]))

    def with_symbols(self, symbols: Iterable[int]) -> FlatBooks:
        """These books plus empty ones for the ids of ``symbols`` not here yet (appended, so
        every existing book keeps its index); ``self`` if there are none."""
        extra = [int(s) for s in symbols if int(s) not in self.books]
        if not extra:
            return self
        _, (ids, px, qt, cnt, bseq, bts, keys, ob, osd, opx, olots, last) = self.__reduce__()
        k = len(extra)
        pad2 = np.zeros((2 * k, px.shape[1]), np.int64)
        return _flat_books(ids + extra, np.vstack([px, pad2]), np.vstack([qt, pad2]),
                           np.concatenate([cnt, np.zeros(2 * k, np.int64)]),
                           np.concatenate([bseq, np.zeros(k, np.int64)]),
                           np.concatenate([bts, np.zeros(k, np.int64)]), keys, ob, osd, opx,
                           olots, last)

    # -- BookDeriver's interface -------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return int(self.meta[K.M_LAST_SEQ])

    @property
    def touched(self) -> dict[int, FlatBook]:
        books = self.books
        return {int(self.book_ids[k]): books[int(self.book_ids[k])]
                for k in np.flatnonzero(self.flags)}

    @property
    def orders(self) -> dict[int, list[int]]:
        """Every resting order: id -> [symbol, side, price, lots] (as ``BookDeriver.orders``)."""
        live = np.flatnonzero(self.keys > 0)
        ids = self.book_ids
        return {int(self.keys[h]): [int(ids[self.o_book[h]]), int(self.o_side[h]),
                                    int(self.o_px[h]), int(self.o_lots[h])] for h in live}

    def book(self, symbol: int) -> FlatBook:
        b = self.books.get(symbol)
        if b is None:
            raise BookInconsistency(symbol, self.last_seq, f"symbol {symbol} is not configured")
        return b

    def end_batch(self) -> None:
        self.flags[:] = 0

    def apply(self, ev: np.ndarray, track: bool = False) -> None:
        """Fold EVENT records (whole commands, in seq order); raises BookInconsistency."""
        if track:
            raise ValueError("FlatBooks does not track deltas: use BookDeriver")
        n = len(ev)
        if n == 0:
            return
        if ev.dtype != EVENT or not ev.flags.c_contiguous:
            ev = _as_event(ev)
        self._room(n)
        w = ev.view(np.int64).reshape(n, _WORDS)
        r = K.fold(w, LAYOUT, self.sidx, self.px, self.qt, self.cnt, self.bseq, self.bts,
                   self.flags, self.keys, self.o_book, self.o_side, self.o_px, self.o_lots,
                   self.meta, self.book_ids, self.err)
        if r:
            e = self.err.tolist()
            raise BookInconsistency(e[1], e[2], _ERR_TEXT[r](e))

    def _room(self, n: int) -> None:
        """Grow what a batch of ``n`` events could overflow (module header)."""
        cap = self.px.shape[1]
        if len(self.cnt) and int(self.cnt.max()) + n > cap:
            new = cap
            while int(self.cnt.max()) + n > new:
                new *= 2
            for name in ("px", "qt"):
                old = getattr(self, name)
                grown = np.zeros((old.shape[0], new), np.int64)
                grown[:, :cap] = old
                setattr(self, name, grown)
        size = len(self.keys)
        live, deleted = int(self.meta[K.M_LIVE]), int(self.meta[K.M_DELETED])
        if 2 * (live + deleted + n) > size:
            new = size
            while 2 * (live + n) > new // 2:  # after the rebuild: at most a quarter full
                new *= 2
            self._rebuild(new)

    def _rebuild(self, size: int) -> None:
        t = [np.zeros(size, np.int64) for _ in range(5)]
        rehash: Any = K.rehash
        live = rehash(self.keys, self.o_book, self.o_side, self.o_px, self.o_lots, *t)
        self.keys, self.o_book, self.o_side, self.o_px, self.o_lots = t
        self.meta[K.M_LIVE], self.meta[K.M_DELETED] = live, 0


def _flat_books(ids: list[int], px: np.ndarray, qt: np.ndarray, cnt: np.ndarray, bseq: np.ndarray,
                bts: np.ndarray, keys: np.ndarray, o_book: np.ndarray, o_side: np.ndarray,
                o_px: np.ndarray, o_lots: np.ndarray, last_seq: int) -> FlatBooks:
    size = 1024
    while 4 * len(keys) > size:
        size *= 2
    b = FlatBooks(ids, level_cap=px.shape[1], table=size)
    b.px, b.qt, b.cnt, b.bseq, b.bts = px.copy(), qt.copy(), cnt.copy(), bseq.copy(), bts.copy()
    rehash: Any = K.rehash
    rehash(keys, o_book, o_side, o_px, o_lots, b.keys, b.o_book, b.o_side, b.o_px, b.o_lots)
    b.meta[K.M_LIVE] = len(keys)
    b.meta[K.M_LAST_SEQ] = last_seq
    return b


def warm() -> float:
    """Compile (or load from numba's cache) the kernels on a throwaway state: a process calls it
    before it reports ready, so the first live batch does not pay the compile (~3 s cold here).
    Returns the seconds it took."""
    import time

    t0 = time.perf_counter()
    ev = np.zeros(4, EVENT)
    ev["seq"] = [1, 2, 2, 3]
    ev["symbol"] = 1
    ev["kind"] = [K.EV_ACCEPTED, K.EV_ACCEPTED, K.EV_TRADE, K.EV_CANCELED]
    ev["order_id"] = [1, 2, 2, 1]
    ev["maker_order_id"] = [0, 0, 1, 0]
    ev["side"] = [K.BUY, 3 - K.BUY, 3 - K.BUY, K.BUY]
    ev["otype"] = K.LIMIT
    ev["price"] = 10
    ev["qty"] = [5, 2, 2, 3]
    ev["maker_leaves"] = [0, 0, 3, 0]
    books = FlatBooks([1], table=8)
    books.apply(ev)
    books._rebuild(16)
    if books.orders or books.book(1).seq != 3:
        raise AssertionError("flatbook warm-up stream did not fold as expected")
    return time.perf_counter() - t0
