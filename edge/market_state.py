"""REST market data (``/v1/depth``, ``/v1/trades``, ``/v1/candles``, ``/v1/ticker``) from durable
events: the state an edge process keeps, fed by its WAL tail (``apply``) or by its own follower
(``MarketFollower``). Implements ``edge.rest.MarketData`` (``RestApp(market=MarketState(cfg))``);
parameters arrive checked by ``edge.schema`` (integers already ints).

The state is ``pipeline.publisher.derive.MarketDeriver`` on its silent path (no JSON; its books
``flatbook.FlatBooks``, one numba kernel per batch, property-tested equal to the publisher's
``BookDeriver``), so REST and WebSocket derive the same: ``/v1/depth`` ``seq`` is the book seq the
WebSocket deltas chain on (sync rule in docs/MARKET_DATA.md), and rebuilding from the WAL after a restart
gives the same trades and candles. History bounds: ``market.trade_history`` trades and
``market.candle_history`` closed candles per interval per symbol.

Shapes (API.md): depth ``{"symbol","seq","time","bids":[[p,q]..],"asks":..,"checksum"}``
(``limit`` default 100, at most 1000 levels a side); trades oldest first, the last ``limit``
(default 500) ``[{"tradeId","price","qty","quoteQty","takerSide","time","seq"}]``; candles oldest
first ``[{"openTime","open","high","low","close","volume","quoteVolume","trades","closeTime",
"closed"}]`` (with ``startTime``: the first ``limit`` from it; else the last ``limit`` up to
``endTime``; default 500); ticker: the 24 h rolling window (ticker.py) plus best bid / ask.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ApiError
from pipeline.config import Config
from pipeline.publisher.channels import INTERVAL_MS, INTERVALS
from pipeline.publisher.checksum import CHECKSUM_LEVELS, checksum
from pipeline.publisher.derive import SIDE_NAME, MarketDeriver, SymbolMarket
from pipeline.publisher.errors import WalStartError
from pipeline.records import EVENT
from pipeline.wal import FrameKind, WalReader, WalTail

Params = dict[str, Any]
MAX_LIMIT = 1000
PENDING_MAX = 1024  # events queued by apply() before they are folded in


class MarketState:
    def __init__(self, cfg: Config, clock_ms: Callable[[], int] | None = None) -> None:
        self.cfg = cfg
        self._d = MarketDeriver(cfg, silent=True)
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._pending = bytearray()

    # -- feeding ----------------------------------------------------------------------------------
    def apply(self, events: np.ndarray | memoryview | bytes) -> None:
        """Queue durable EVENT records (whole commands, in seq order): an EVENT array or its bytes
        (a WAL frame's payload). Folded in before the next read (module header)."""
        if isinstance(events, np.ndarray):
            self._pending += events.view(np.uint8).data
        else:
            self._pending += events
        if len(self._pending) >= PENDING_MAX * EVENT.itemsize:
            self.flush()

    def flush(self) -> None:
        """Fold every queued event into the state now."""
        if self._pending:
            ev = np.frombuffer(self._pending, EVENT)
            self._pending = bytearray()
            self._d.apply(ev, emit=False)

    @property
    def deriver(self) -> MarketDeriver:
        """The state itself (edge snapshots), every queued event folded in."""
        self.flush()
        return self._d

    @deriver.setter
    def deriver(self, d: MarketDeriver) -> None:
        """Replace the state (restore from an edge snapshot); queued events are dropped with it."""
        self._pending = bytearray()
        self._d = d

    @property
    def seq(self) -> int:
        return self.deriver.seq

    # -- queries (edge.rest.MarketData) -----------------------------------------------------------
    def _sym(self, p: Params) -> SymbolMarket:
        self.flush()
        m = self._d.by_name.get(p.get("symbol", ""))
        if m is None:
            raise ApiError("UNKNOWN_SYMBOL", f"unknown symbol {str(p.get('symbol'))[:40]!r}")
        return m

    @staticmethod
    def _limit(p: Params, default: int) -> int:
        n = p.get("limit", default)
        if type(n) is not int or not 1 <= n <= MAX_LIMIT:
            raise ApiError("BAD_REQUEST", f"limit must be an integer in 1..{MAX_LIMIT}")
        return n

    def depth(self, p: Params) -> dict[str, Any]:
        m = self._sym(p)
        n = self._limit(p, 100)
        b = self._d.books.book(m.sid)
        f = m.fmt
        bids = [[f.price(px), f.qty(q)] for px, q in b.bids.levels(n)]
        asks = [[f.price(px), f.qty(q)] for px, q in b.asks.levels(n)]
        k = min(n, CHECKSUM_LEVELS)
        return {"symbol": f.name, "seq": b.seq, "time": b.ts_ns // 1_000_000, "bids": bids,
                "asks": asks, "checksum": checksum(bids[:k], asks[:k])}

    def trades(self, p: Params) -> list[dict[str, Any]]:
        m = self._sym(p)
        n = self._limit(p, 500)
        f = m.fmt
        rows = list(m.trades)[-n:]
        return [{"tradeId": tid, "price": f.price(px), "qty": f.qty(q), "quoteQty": f.quote(qq),
                 "takerSide": SIDE_NAME.get(side, "?"), "time": ts // 1_000_000, "seq": seq}
                for tid, px, q, qq, side, ts, seq in rows]

    def candles(self, p: Params) -> list[dict[str, Any]]:
        m = self._sym(p)
        iv = p.get("interval")
        if iv not in INTERVALS:
            raise ApiError("BAD_REQUEST", f"interval must be one of {', '.join(INTERVALS)}")
        n = self._limit(p, 500)
        start, end = p.get("startTime"), p.get("endTime")
        if start is not None and end is not None and start > end:
            raise ApiError("BAD_REQUEST", "startTime must not be after endTime")
        i = INTERVALS.index(iv)
        span = INTERVAL_MS[i]
        rows = m.candles[i].all()
        if start is not None:
            rows = [c for c in rows if c.open_ms >= start - start % span]
        if end is not None:
            rows = [c for c in rows if c.open_ms <= end]
        rows = rows[:n] if start is not None else rows[-n:]
        f = m.fmt
        return [{"openTime": c.open_ms, "open": f.price(c.o), "high": f.price(c.h),
                 "low": f.price(c.l), "close": f.price(c.c), "volume": f.qty(c.vol),
                 "quoteVolume": f.quote(c.qvol), "trades": c.n, "closeTime": c.open_ms + span - 1,
                 "closed": c.closed} for c in rows]

    def ticker(self, p: Params) -> dict[str, Any]:
        m = self._sym(p)
        return self._d.ticker_fields(m, self.clock_ms())


class MarketFollower:
    """Keeps a MarketState current by tailing the WAL's EVENTS frames (never past durable)."""

    def __init__(self, state: MarketState, wal_dir: str | os.PathLike[str] | None = None) -> None:
        self.state = state
        self.wal_dir = Path(wal_dir) if wal_dir else Path(state.cfg.data_dir) / "wal"
        self._reader: WalReader | None = None
        self._tail: WalTail | None = None
        self._checked = False

    def poll(self, max_frames: int = 256) -> int:
        """Apply what became durable since the last call; returns the frames read."""
        if self._tail is None:
            if not self.wal_dir.is_dir():
                return 0
            self._reader = WalReader(self.wal_dir)
            self._tail = self._reader.tail(1)  # 1: a gap error if seq 1 was archived
        frames = self._tail.poll(max_frames)
        for fr in frames:
            if not self._checked:
                if fr.first_seq != 1:
                    raise WalStartError(str(self.wal_dir), fr.first_seq)
                self._checked = True
            if fr.kind == FrameKind.EVENTS:
                self.state.apply(np.frombuffer(fr.payload, dtype=EVENT))
        return len(frames)

    def catch_up(self) -> int:
        total = 0
        while True:
            n = self.poll()
            if not n:
                return total
            total += n

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
            self._tail = None
