"""MarketDeriver: everything market data derives from durable events, for one config's symbols.

``apply(events, emit)`` folds a batch (one WAL EVENTS frame: whole commands) into the L2 books
(book.py), the trade logs, the candles of every interval (candles.py) and the 24 h tickers
(ticker.py). With ``emit=True`` it returns the batch's messages, each serialised once (orjson) as
``(Msg kind, channel id, seq, prev_seq, JSON bytes)`` (for candles ``prev_seq`` carries the
candle's openTime, the fan-out's conflation key; for trades the trade id, its dedupe key): every TradeExecuted in engine order, then
one BookUpdated per depth view that changed, then the CandleUpdated of every candle the batch
touched or closed. Tickers are not per batch: ``tickers()`` gives the ones changed since the
last call (the publisher sends them at most every ``ticker_interval_ms``).

``emit=False`` is the silent path used to catch up from the WAL on start and by the REST state:
no tracking, no JSON. After a silent catch-up ``align_views()`` starts every view chain at the
book's seq. A deriver built ``silent=True`` (the edge's REST state) never emits: its books are
``flatbook.FlatBooks`` (one numba kernel per batch) instead of ``BookDeriver``.

Memory (bounded): resting orders (bounded by the engine's ``max_orders``), book levels, the last
``trade_history`` trades and ``candle_history`` closed candles per interval per symbol, <= 1440
minute buckets per ticker.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import orjson

from pipeline.config import Config
from pipeline.publisher.book import BookDeriver, SymbolBook
from pipeline.publisher.candles import Candle, CandleSeries
from pipeline.publisher.channels import DEPTHS, INTERVAL_MS, INTERVALS, Ctype, chan_id
from pipeline.publisher.flatbook import FlatBooks
from pipeline.publisher.record import Msg
from pipeline.publisher.ticker import Ticker
from pipeline.publisher.units import SymbolFormat
from pipeline.publisher.views import SymbolViews
from pipeline.records import Ev, Side

Out = tuple[int, int, int, int, bytes]
_TRADE = int(Ev.TRADE)
SIDE_NAME = {int(Side.BUY): "BUY", int(Side.SELL): "SELL"}
# (trade_id, price ticks, lots, quote minor, taker side, ts_ns, engine seq)
TradeRow = tuple[int, int, int, int, int, int, int]


class SymbolMarket:
    __slots__ = ("sid", "fmt", "views", "trades", "candles", "ticker", "ticker_dirty",
                 "best", "trade_chan", "ticker_chan", "candle_chans", "candle_names")

    def __init__(self, fmt: SymbolFormat, sid: int, trade_history: int, candle_history: int) -> None:
        self.sid = sid
        self.fmt = fmt
        self.views = SymbolViews(fmt, sid)
        self.trades: deque[TradeRow] = deque(maxlen=max(1, trade_history))
        self.candles = [CandleSeries(iv, candle_history) for iv in INTERVAL_MS]
        self.ticker = Ticker()
        self.ticker_dirty = False
        self.best = (0, 0)
        self.trade_chan = chan_id(Ctype.TRADES, sid)
        self.ticker_chan = chan_id(Ctype.TICKER, sid)
        self.candle_chans = [chan_id(Ctype.CANDLES, sid, i) for i in range(len(INTERVALS))]
        self.candle_names = [f"candles:{fmt.name}@{iv}" for iv in INTERVALS]


class MarketDeriver:
    def __init__(self, cfg: Config, trade_history: int | None = None,
                 candle_history: int | None = None, silent: bool = False) -> None:
        th = cfg.market.trade_history if trade_history is None else trade_history
        ch = cfg.market.candle_history if candle_history is None else candle_history
        self.cfg = cfg
        self.syms: dict[int, SymbolMarket] = {
            s.symbol_id: SymbolMarket(SymbolFormat(s), s.symbol_id, th, ch) for s in cfg.symbols}
        self.by_name = {m.fmt.name: m for m in self.syms.values()}
        self.books: BookDeriver | FlatBooks = (FlatBooks(self.syms) if silent
                                               else BookDeriver(list(self.syms)))
        self.seq = 0  # last engine seq applied
        self.time_ms = 0  # latest event time seen

    def adopt(self, cfg: Config) -> None:
        """Carry this state (from a snapshot) over to ``cfg``, which appends symbols to the
        config it was built under or changes the history bounds (``pipeline.edge_snapshot``
        checks that): the new symbols start with empty books, trades, candles and tickers; a
        smaller bound drops the oldest trades and candles now, a larger one fills up from here
        (a full rebuild would show more history until then)."""
        th, ch = max(1, cfg.market.trade_history), max(1, cfg.market.candle_history)
        for m in self.syms.values():
            if m.trades.maxlen != th:
                m.trades = deque(m.trades, maxlen=th)
            for c in m.candles:
                if c.hist.maxlen != ch:
                    c.hist = deque(c.hist, maxlen=ch)
        for s in cfg.symbols:
            if s.symbol_id not in self.syms:
                self.syms[s.symbol_id] = SymbolMarket(SymbolFormat(s), s.symbol_id, th, ch)
        self.by_name = {m.fmt.name: m for m in self.syms.values()}
        if isinstance(self.books, FlatBooks):
            self.books = self.books.with_symbols(list(self.syms))
        self.cfg = cfg  # a BookDeriver adds a symbol's book at its first event

    # -- feeding ----------------------------------------------------------------------------------
    def apply(self, ev: np.ndarray, emit: bool = True) -> list[Out]:
        out: list[Out] = []
        if len(ev) == 0:
            return out
        books = self.books
        books.apply(ev, track=emit)
        tr = ev[ev["kind"] == _TRADE]
        touched_candles: dict[int, SymbolMarket] = {}
        if len(tr):
            self._trades(tr, emit, out, touched_candles)
        last_ts = int(ev["ts_ns"].max())
        if last_ts // 1_000_000 > self.time_ms:
            self.time_ms = last_ts // 1_000_000
        for sid, b in books.touched.items():
            m = self.syms.get(sid)
            if m is None:
                continue
            best = (b.bids.best(), b.asks.best())
            if best != m.best:
                m.best = best
                m.ticker_dirty = True
            if emit:
                assert isinstance(b, SymbolBook)  # emit: apply(track=True) refused FlatBooks
                for chan, seq, prev, js in m.views.deltas(b):
                    out.append((Msg.BOOK_DELTA, chan, seq, prev, js))
        books.end_batch()
        self.seq = max(self.seq, books.last_seq)
        out.extend(self.roll(self.time_ms, emit, touched_candles))
        return out

    def _trades(self, tr: np.ndarray, emit: bool, out: list[Out],
                touched: dict[int, SymbolMarket]) -> None:
        """Trade log and messages per trade; candles and ticker per run of trades of one symbol
        with one timestamp (numpy aggregates: a batch is usually one run per symbol)."""
        syms, tss = tr["symbol"], tr["ts_ns"]
        px, lots, quote, seqs = tr["price"], tr["qty"], tr["quote_qty"], tr["seq"]
        for sid in np.unique(syms).tolist():
            m = self.syms.get(sid)
            if m is None:
                continue
            idx = np.flatnonzero(syms == sid)
            ts = tss[idx]
            cuts = np.flatnonzero(ts[1:] != ts[:-1]) + 1
            bounds = [0, *cuts.tolist(), len(idx)]
            p, q, qq, sq = px[idx], lots[idx], quote[idx], seqs[idx]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                ms = int(ts[a]) // 1_000_000
                run = (int(p[a]), int(p[a:b].max()), int(p[a:b].min()), int(p[b - 1]),
                       int(q[a:b].sum()), int(qq[a:b].sum()), b - a, int(sq[b - 1]))
                for cs in m.candles:
                    cs.run(ms, *run)
                m.ticker.run(ms, *run)
            m.ticker_dirty = True
            touched[sid] = m
            rows = tr[idx]
            cols = zip(rows["trade_id"].tolist(), rows["price"].tolist(), rows["qty"].tolist(),
                       rows["quote_qty"].tolist(), rows["side"].tolist(),
                       rows["ts_ns"].tolist(), rows["seq"].tolist(), strict=True)
            f = m.fmt
            app = m.trades.append
            for tid, price, lo, quo, side, t, seq in cols:
                app((tid, price, lo, quo, side, t, seq))
                if emit:
                    out.append((Msg.TRADE, m.trade_chan, seq, tid, orjson.dumps({
                        "type": "TradeExecuted", "symbol": f.name, "tradeId": tid,
                        "price": f.price(price), "qty": f.qty(lo), "quoteQty": f.quote(quo),
                        "takerSide": SIDE_NAME.get(side, "?"), "time": t // 1_000_000,
                        "timeUs": t // 1000, "seq": seq})))

    def roll(self, now_ms: int, emit: bool = True,
             extra: dict[int, SymbolMarket] | None = None) -> list[Out]:
        """Close candles whose interval ended before ``now_ms``; messages of every candle changed."""
        out: list[Out] = []
        for m in self.syms.values():
            for cs in m.candles:
                cs.roll(now_ms)
            if extra is None or m.sid in extra or any(cs.changed for cs in m.candles):
                for i, cs in enumerate(m.candles):
                    changed = cs.take()
                    if emit:
                        for c in changed:
                            out.append((Msg.CANDLE, m.candle_chans[i], c.seq, c.open_ms,
                                        self.candle_json(m, i, c)))
        return out

    # -- messages ---------------------------------------------------------------------------------
    def candle_json(self, m: SymbolMarket, i: int, c: Candle) -> bytes:
        f = m.fmt
        iv = INTERVAL_MS[i]
        return orjson.dumps({
            "type": "CandleUpdated", "channel": m.candle_names[i], "symbol": f.name,
            "interval": INTERVALS[i], "openTime": c.open_ms, "closeTime": c.open_ms + iv - 1,
            "open": f.price(c.o), "high": f.price(c.h), "low": f.price(c.l), "close": f.price(c.c),
            "volume": f.qty(c.vol), "quoteVolume": f.quote(c.qvol), "trades": c.n,
            "closed": c.closed})

    def ticker_fields(self, m: SymbolMarket, now_ms: int) -> dict[str, object]:
        f = m.fmt
        w = m.ticker.window(now_ms)
        b = self.books.book(m.sid)
        bb, ba = b.bids.best(), b.asks.best()

        def px(v: int | None) -> str | None:
            return f.price(v) if v else None

        return {"symbol": f.name, "open": px(w["open"]), "high": px(w["high"]),
                "low": px(w["low"]), "last": px(w["last"]), "volume": f.qty(w["volume"] or 0),
                "quoteVolume": f.quote(w["quoteVolume"] or 0), "trades": w["trades"],
                "bestBid": px(bb), "bestBidQty": f.qty(b.bids.qty[bb]) if bb else None,
                "bestAsk": px(ba), "bestAskQty": f.qty(b.asks.qty[ba]) if ba else None,
                "openTime": w["openTime"], "closeTime": now_ms, "seq": max(b.seq, m.ticker.last_seq)}

    def tickers(self, now_ms: int, everything: bool = False) -> list[Out]:
        """Ticker messages of symbols changed since the last call (or of every symbol); a ticker
        whose window lost a minute counts as changed."""
        out: list[Out] = []
        for m in self.syms.values():
            if m.ticker.expire(now_ms):
                m.ticker_dirty = True
            if not (m.ticker_dirty or everything):
                continue
            m.ticker_dirty = False
            d = self.ticker_fields(m, now_ms)
            seq = int(d["seq"])  # type: ignore[call-overload]
            d = {"type": "Ticker", "channel": f"ticker:{m.fmt.name}", **d}
            out.append((Msg.TICKER, m.ticker_chan, seq, 0, orjson.dumps(d)))
        return out

    def snapshots(self, sids: list[int] | None = None) -> list[Out]:
        """BookSnapshot of every depth view of ``sids`` (default: all symbols)."""
        out: list[Out] = []
        for sid in (sids if sids is not None else list(self.syms)):
            m = self.syms[sid]
            b = self._tracked().book(sid)
            for i in range(len(DEPTHS)):
                chan, seq, js = m.views.snapshot(b, i)
                out.append((Msg.BOOK_SNAPSHOT, chan, seq, 0, js))
        return out

    def current_candles(self) -> list[Out]:
        """The open candle of every (symbol, interval): sent once after start."""
        out: list[Out] = []
        for m in self.syms.values():
            for i, cs in enumerate(m.candles):
                if cs.cur is not None:
                    out.append((Msg.CANDLE, m.candle_chans[i], cs.cur.seq, cs.cur.open_ms,
                                self.candle_json(m, i, cs.cur)))
        return out

    def align_views(self) -> None:
        for sid, m in self.syms.items():
            m.views.align(self._tracked().book(sid))

    def _tracked(self) -> BookDeriver:
        """The books of a deriver that emits (not ``silent``)."""
        if not isinstance(self.books, BookDeriver):
            raise TypeError("a silent MarketDeriver has no depth views")
        return self.books
