"""Depth views of a symbol's book (channels ``book:<SYM>@N``, N in DEPTHS) and their messages.

Each view is its own message stream: a BookSnapshot of the top N levels a side, then BookUpdated
deltas carrying every level of the view whose quantity changed, appeared (entered the top N) or
disappeared (left it: quantity ``"0"``). ``seq`` of a delta is the symbol's book seq (the engine
seq of the last command that changed the book); ``prevSeq`` is the seq of the previous message of
*that view*, so a view that did not change in a batch sends nothing and its chain stays unbroken.
A snapshot carries the view's last seq: the next delta's ``prevSeq`` equals it.

Deltas are computed after a batch from the book's tracking (book.py): per side the net changes
and the old top ``TRACK_DEPTH`` prices. When a view's price list is unchanged (the common case:
quantities move inside, or changes happen deeper) the delta is the net changes inside it, O(changes);
otherwise the two price lists are compared, O(N).

The checksum of a view covers its top ``min(N, 10)`` levels a side (checksum.py).
"""

from __future__ import annotations

import orjson

from pipeline.publisher.book import TRACK_DEPTH, SideBook, SymbolBook
from pipeline.publisher.channels import DEPTHS, Ctype, chan_id
from pipeline.publisher.checksum import CHECKSUM_LEVELS, checksum
from pipeline.publisher.units import SymbolFormat

Diff = list[tuple[int, int]]


def view_diff(side: SideBook, old_top: list[int], new_top: list[int], n: int,
              net: dict[int, int]) -> Diff:
    """Levels of the top-``n`` view of ``side`` that a client must set (lots 0 = delete)."""
    o = old_top[:n]
    w = new_top[:n]
    if o == w:
        if not w:
            return []
        edge = w[-1]
        if side.bid:
            out = [(p, q) for p, q in net.items() if q and p >= edge]
        else:
            out = [(p, q) for p, q in net.items() if q and p <= edge]
    else:
        ws = set(w)
        os_ = set(o)
        qty = side.qty
        out = [(p, 0) for p in o if p not in ws]
        out += [(p, qty[p]) for p in w if p not in os_ or p in net]
    out.sort(reverse=side.bid)
    return out


class SymbolViews:
    """The view chains (last seq per depth) and message builders of one symbol."""

    __slots__ = ("fmt", "symbol", "name", "chans", "names", "last")

    def __init__(self, fmt: SymbolFormat, symbol_id: int) -> None:
        self.fmt = fmt
        self.symbol = symbol_id
        self.name = fmt.name
        self.chans = [chan_id(Ctype.BOOK, symbol_id, i) for i in range(len(DEPTHS))]
        self.names = [f"book:{fmt.name}@{d}" for d in DEPTHS]
        self.last = [0] * len(DEPTHS)

    def _levels(self, diff: Diff, memo: dict[tuple[int, int], list[str]]) -> list[list[str]]:
        """Levels as strings; ``memo`` shares them between the views of one batch."""
        out = []
        for lv in diff:
            s = memo.get(lv)
            if s is None:
                p, q = lv
                s = memo[lv] = [self.fmt.price(p), self.fmt.qty(q) if q else "0"]
            out.append(s)
        return out

    def _top_strings(self, b: SymbolBook, n: int) -> tuple[list[list[str]], list[list[str]]]:
        price, qty = self.fmt.price, self.fmt.qty
        return ([[price(p), qty(q)] for p, q in b.bids.levels(n)],
                [[price(p), qty(q)] for p, q in b.asks.levels(n)])

    def _checksums(self, b: SymbolBook) -> list[int]:
        bids, asks = self._top_strings(b, CHECKSUM_LEVELS)
        by_levels: dict[int, int] = {}
        out = []
        for d in DEPTHS:
            k = min(d, CHECKSUM_LEVELS)
            c = by_levels.get(k)
            if c is None:
                c = by_levels[k] = checksum(bids[:k], asks[:k])
            out.append(c)
        return out

    def deltas(self, b: SymbolBook) -> list[tuple[int, int, int, bytes]]:
        """(chan, seq, prev_seq, JSON) for every view that changed in the batch just applied."""
        per_side: list[list[Diff] | None] = []
        for side in (b.bids, b.asks):
            net = side.net_changes()
            if not net or side.old_top is None:
                per_side.append(None)
                continue
            new_top = side.top(TRACK_DEPTH)
            per_side.append([view_diff(side, side.old_top, new_top, d, net) for d in DEPTHS])
        bd, ad = per_side
        if bd is None and ad is None:
            return []
        out = []
        cks: list[int] | None = None
        memo: dict[tuple[int, int], list[str]] = {}
        ms = b.ts_ns // 1_000_000
        for i in range(len(DEPTHS)):
            bi = bd[i] if bd is not None else []
            ai = ad[i] if ad is not None else []
            if not bi and not ai:
                continue
            if cks is None:
                cks = self._checksums(b)
            prev = self.last[i]
            self.last[i] = b.seq
            out.append((self.chans[i], b.seq, prev, orjson.dumps({
                "type": "BookUpdated", "channel": self.names[i], "symbol": self.name,
                "seq": b.seq, "prevSeq": prev, "time": ms, "bids": self._levels(bi, memo),
                "asks": self._levels(ai, memo), "checksum": cks[i]})))
        return out

    def snapshot(self, b: SymbolBook, i: int) -> tuple[int, int, bytes]:
        """(chan, seq, JSON) of the BookSnapshot of view ``i`` (its last seq)."""
        d = DEPTHS[i]
        bids, asks = self._top_strings(b, d)
        k = min(d, CHECKSUM_LEVELS)
        return self.chans[i], self.last[i], orjson.dumps({
            "type": "BookSnapshot", "channel": self.names[i], "symbol": self.name,
            "seq": self.last[i], "time": b.ts_ns // 1_000_000, "bids": bids, "asks": asks,
            "checksum": checksum(bids[:k], asks[:k])})

    def align(self, b: SymbolBook) -> None:
        """After a silent catch-up: every view continues from the book's seq."""
        self.last = [b.seq] * len(DEPTHS)
