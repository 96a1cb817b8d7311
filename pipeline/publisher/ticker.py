"""Rolling 24 h ticker per symbol, from trades, at minute granularity.

The window is the current minute plus the previous 1439 whole minutes (UTC-aligned minute
buckets), so it spans between 23 h 59 min and 24 h. Each bucket keeps open/high/low/close, lots,
quote minor units and the trade count; the ticker keeps running sums and the window's high/low,
recomputed from the (at most 1440) buckets only when a bucket leaves the window. ``last`` is the
last trade price ever seen (it survives a quiet window); ``open``/``high``/``low`` are None when
the window has no trade.
"""

from __future__ import annotations

from collections import deque

MINUTE_MS = 60_000
WINDOW_MINUTES = 1440


class Ticker:
    __slots__ = ("buckets", "vol", "qvol", "n", "high", "low", "last", "last_ms", "last_seq")

    def __init__(self) -> None:
        # [minute_ms, open, high, low, close, lots, quote, count]
        self.buckets: deque[list[int]] = deque()
        self.vol = 0
        self.qvol = 0
        self.n = 0
        self.high = 0
        self.low = 0
        self.last = 0
        self.last_ms = 0
        self.last_seq = 0

    def trade(self, ts_ms: int, price: int, lots: int, quote: int, seq: int) -> None:
        self.run(ts_ms, price, price, price, price, lots, quote, 1, seq)

    def run(self, ts_ms: int, o: int, h: int, low: int, c: int, lots: int, quote: int, n: int,
            seq: int) -> None:
        """Fold ``n`` consecutive trades with the same timestamp."""
        m = ts_ms - ts_ms % MINUTE_MS
        b = self.buckets[-1] if self.buckets else None
        if b is None or m > b[0]:
            self.buckets.append([m, o, h, low, c, lots, quote, n])
        elif m == b[0]:
            if h > b[2]:
                b[2] = h
            if low < b[3]:
                b[3] = low
            b[4] = c
            b[5] += lots
            b[6] += quote
            b[7] += n
        else:  # the engine clock stepped back: fold into the bucket of that minute if present
            for x in self.buckets:
                if x[0] == m:
                    x[2], x[3] = max(x[2], h), min(x[3], low)
                    x[5] += lots
                    x[6] += quote
                    x[7] += n
                    break
            else:
                return
        first = self.n == 0
        self.vol += lots
        self.qvol += quote
        self.n += n
        if first or h > self.high:
            self.high = h
        if first or low < self.low:
            self.low = low
        if ts_ms >= self.last_ms:
            self.last = c
            self.last_ms = ts_ms
            self.last_seq = seq
        self.expire(max(ts_ms, self.last_ms))

    def expire(self, now_ms: int) -> bool:
        """Drop buckets that left the window ending at ``now_ms``; True if any did."""
        first = now_ms - now_ms % MINUTE_MS - (WINDOW_MINUTES - 1) * MINUTE_MS
        bk = self.buckets
        if not bk or bk[0][0] >= first:
            return False
        while bk and bk[0][0] < first:
            b = bk.popleft()
            self.vol -= b[5]
            self.qvol -= b[6]
            self.n -= b[7]
        if bk:
            self.high = max(b[2] for b in bk)
            self.low = min(b[3] for b in bk)
        else:
            self.high = self.low = 0
        return True

    def window(self, now_ms: int) -> dict[str, int | None]:
        """Integer fields of the window ending at ``now_ms`` (expires old buckets first)."""
        self.expire(now_ms)
        has = bool(self.buckets)
        return {
            "open": self.buckets[0][1] if has else None,
            "high": self.high if has else None,
            "low": self.low if has else None,
            "last": self.last or None,
            "volume": self.vol,
            "quoteVolume": self.qvol,
            "trades": self.n,
            "openTime": now_ms - now_ms % MINUTE_MS - (WINDOW_MINUTES - 1) * MINUTE_MS,
        }
