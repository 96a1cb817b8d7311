"""Candles (OHLCV) per symbol and interval, from trades; bounded history.

A candle covers ``[openTime, openTime + interval)`` in ms since the epoch, aligned to the interval
in UTC (``openTime = t - t % interval``; 1d candles start at 00:00 UTC); ``closeTime`` is
``openTime + interval - 1``. A trade belongs to the candle of its engine timestamp (the command's
sequencing time). Only intervals that had trades have a candle: a quiet interval has none (no
carried-forward zero-volume candles). So OHLCV is exactly a recomputation from the trade list:
open/close = first/last trade by engine seq, high/low = max/min price, volume = sum of lots,
quoteVolume = sum of quote minor units, trades = count.

A candle is *closed* when a trade of a later interval arrives or when time passes its end
(``roll(now_ms)``: the publisher calls it with wall-clock time minus a small grace, and with every
event's time). A trade whose timestamp falls in an already closed candle (the engine clock stepped
back) still updates that candle, which is sent again with ``closed: true``.

History: the last ``history`` closed candles per (symbol, interval) plus the open one
(``market.candle_history``, default 1440: a day of 1m candles, 24 minutes of 1s candles).
"""

from __future__ import annotations

from collections import deque


class Candle:
    __slots__ = ("open_ms", "o", "h", "l", "c", "vol", "qvol", "n", "seq", "closed")

    def __init__(self, open_ms: int, price: int, seq: int) -> None:
        self.open_ms = open_ms
        self.o = self.h = self.l = self.c = price
        self.vol = 0
        self.qvol = 0
        self.n = 0
        self.seq = seq
        self.closed = False

    def add(self, price: int, lots: int, quote: int, seq: int) -> None:
        self.merge(price, price, price, lots, quote, 1, seq)

    def merge(self, h: int, low: int, c: int, lots: int, quote: int, n: int, seq: int) -> None:
        """Fold a run of ``n`` trades (high, low, close, lots, quote) that follows this candle's."""
        if h > self.h:
            self.h = h
        if low < self.l:
            self.l = low
        self.c = c
        self.vol += lots
        self.qvol += quote
        self.n += n
        self.seq = seq

    def row(self) -> tuple[int, int, int, int, int, int, int, int, bool]:
        return (self.open_ms, self.o, self.h, self.l, self.c, self.vol, self.qvol, self.n,
                self.closed)


class CandleSeries:
    """One (symbol, interval): the open candle and the closed history."""

    __slots__ = ("interval_ms", "cur", "hist", "changed")

    def __init__(self, interval_ms: int, history: int) -> None:
        self.interval_ms = interval_ms
        self.cur: Candle | None = None
        self.hist: deque[Candle] = deque(maxlen=max(1, history))
        self.changed: list[Candle] = []  # candles to (re)send, in order, since the last take()

    def _close(self) -> None:
        c = self.cur
        if c is not None:
            c.closed = True
            self.hist.append(c)
            self._mark(c)
            self.cur = None

    def _mark(self, c: Candle) -> None:
        if not self.changed or self.changed[-1] is not c:
            if c in self.changed:
                self.changed.remove(c)
            self.changed.append(c)

    def trade(self, ts_ms: int, price: int, lots: int, quote: int, seq: int) -> None:
        self.run(ts_ms, price, price, price, price, lots, quote, 1, seq)

    def run(self, ts_ms: int, o: int, h: int, low: int, c: int, lots: int, quote: int, n: int,
            seq: int) -> None:
        """Fold ``n`` consecutive trades with the same timestamp (open, high, low, close, lots,
        quote): one call per batch and symbol when the engine stamps a batch with one time."""
        iv = self.interval_ms
        start = ts_ms - ts_ms % iv
        cur = self.cur
        if cur is None or start > cur.open_ms:
            if cur is not None:
                self._close()
            last = self.hist[-1] if self.hist else None
            if last is not None and start <= last.open_ms:
                self._late(start, o, h, low, c, lots, quote, n, seq)
                return
            cur = self.cur = Candle(start, o, seq)
        elif start < cur.open_ms:
            self._late(start, o, h, low, c, lots, quote, n, seq)
            return
        cur.merge(h, low, c, lots, quote, n, seq)
        self._mark(cur)

    def _late(self, start: int, o: int, h: int, low: int, c: int, lots: int, quote: int, n: int,
              seq: int) -> None:
        hist = self.hist
        for i in range(len(hist) - 1, -1, -1):
            old = hist[i]
            if old.open_ms == start:
                old.merge(h, low, c, lots, quote, n, seq)
                self._mark(old)
                return
            if old.open_ms < start:
                new = Candle(start, o, seq)
                new.closed = True
                new.merge(h, low, c, lots, quote, n, seq)
                if len(hist) == hist.maxlen:
                    hist.popleft()
                    i -= 1
                hist.insert(i + 1, new)
                self._mark(new)
                return
        if len(hist) < (hist.maxlen or 0):  # older than everything kept, and there is room
            new = Candle(start, o, seq)
            new.closed = True
            new.merge(h, low, c, lots, quote, n, seq)
            hist.appendleft(new)
            self._mark(new)

    def roll(self, now_ms: int) -> None:
        """Close the open candle if ``now_ms`` is past its end."""
        c = self.cur
        if c is not None and now_ms >= c.open_ms + self.interval_ms:
            self._close()

    def take(self) -> list[Candle]:
        out = self.changed
        if out:
            self.changed = []
        return out

    def all(self) -> list[Candle]:
        """History then the open candle, oldest first."""
        out = list(self.hist)
        if self.cur is not None:
            out.append(self.cur)
        return out
