"""Market-data channels: names as clients write them, ids as the md ring carries them.

Names (API.md "WebSocket market data")::

    trades:<SYMBOL>              every TradeExecuted
    book:<SYMBOL>@<N>            BookSnapshot then BookUpdated deltas of the top N levels a side,
                                 N in DEPTHS; ``book:<SYMBOL>`` is ``@FULL_DEPTH``
    candles:<SYMBOL>@<interval>  CandleUpdated, interval in INTERVALS
    ticker:<SYMBOL>              rolling 24 h Ticker

Ids: ``ctype << 24 | symbol_id << 8 | sub`` (u32) where ``sub`` is the index of the depth in
DEPTHS or of the interval in INTERVALS (0 otherwise). Symbol ids are the config's (1..65535).
"""

from __future__ import annotations

import enum

from pipeline.config import Config
from pipeline.publisher.errors import ChannelError, UnknownSymbol


class Ctype(enum.IntEnum):
    TRADES = 1
    BOOK = 2
    CANDLES = 3
    TICKER = 4


DEPTHS: tuple[int, ...] = (5, 10, 20, 50, 100, 1000)
FULL_DEPTH = DEPTHS[-1]
INTERVALS: tuple[str, ...] = ("1s", "1m", "5m", "15m", "1h", "1d")
INTERVAL_MS: tuple[int, ...] = (1_000, 60_000, 300_000, 900_000, 3_600_000, 86_400_000)
_PREFIX = {"trades": Ctype.TRADES, "book": Ctype.BOOK, "candles": Ctype.CANDLES,
           "ticker": Ctype.TICKER}
_NAME = {v: k for k, v in _PREFIX.items()}


def chan_id(ctype: int, symbol_id: int, sub: int = 0) -> int:
    return (ctype << 24) | (symbol_id << 8) | sub


def chan_parts(cid: int) -> tuple[int, int, int]:
    """(ctype, symbol_id, sub)."""
    return cid >> 24, (cid >> 8) & 0xFFFF, cid & 0xFF


class ChannelNames:
    """Name <-> id for one config's symbols (both directions cached)."""

    def __init__(self, cfg: Config) -> None:
        self.by_symbol = {s.name: s.symbol_id for s in cfg.symbols}
        self.symbol_name = {s.symbol_id: s.name for s in cfg.symbols}
        self._names: dict[int, str] = {}

    def parse(self, name: str) -> int:
        """The id of channel ``name``; ChannelError with a reason if it is not one."""
        if not isinstance(name, str) or len(name) > 64:
            raise ChannelError("channel must be a string of at most 64 chars")
        kind, sep, rest = name.partition(":")
        ctype = _PREFIX.get(kind)
        if not sep or ctype is None:
            raise ChannelError(f"unknown channel type in {name!r}; expected one of "
                               f"{sorted(_PREFIX)}")
        sym, at, arg = rest.partition("@")
        sid = self.by_symbol.get(sym)
        if sid is None:
            raise UnknownSymbol(f"unknown symbol {sym!r} in channel {name!r}")
        if ctype == Ctype.BOOK:
            if not at:
                return chan_id(ctype, sid, len(DEPTHS) - 1)
            if not (arg.isascii() and arg.isdigit()) or int(arg) not in DEPTHS:
                raise ChannelError(f"book depth must be one of {list(DEPTHS)}, got {arg!r}")
            return chan_id(ctype, sid, DEPTHS.index(int(arg)))
        if ctype == Ctype.CANDLES:
            if arg not in INTERVALS:
                raise ChannelError(f"candle interval must be one of {list(INTERVALS)}, got {arg!r}")
            return chan_id(ctype, sid, INTERVALS.index(arg))
        if at:
            raise ChannelError(f"channel {name!r} takes no @ argument")
        return chan_id(ctype, sid)

    def name(self, cid: int) -> str:
        """The canonical name of ``cid`` (book channels always with their @depth)."""
        s = self._names.get(cid)
        if s is None:
            ctype, sid, sub = chan_parts(cid)
            sym = self.symbol_name.get(sid)
            if sym is None or ctype not in _NAME:
                raise ChannelError(f"no channel with id {cid:#x}")
            s = f"{_NAME[Ctype(ctype)]}:{sym}"
            if ctype == Ctype.BOOK:
                s += f"@{DEPTHS[sub]}"
            elif ctype == Ctype.CANDLES:
                s += f"@{INTERVALS[sub]}"
            self._names[cid] = s
        return s
