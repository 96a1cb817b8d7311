"""Exact integer -> decimal string output for market data (DESIGN.md §2; API.md "Conventions").

Prices are shown with the decimals of the symbol's tick (tick 0.01 -> ``"100.25"``), quantities
with the decimals of its lot (lot 0.0001 -> ``"1.5000"``), quote amounts (``quoteQty``,
``quoteVolume``) with the quote asset's full scale. Every value is an exact multiple of its step, so
nothing is ever rounded; the rule is the one ``edge/convert.py`` uses for order responses (kept
apart because ``pipeline`` must not import ``edge``), and a unit test checks the two agree.

Sorting: all prices of one symbol carry the same number of decimals and no sign, so numeric order
is ``(len(s), s)`` order — the fan-out sorts its book copies by that key without parsing.

Price strings are cached per symbol (a book re-uses the same few thousand prices); the cache is
bounded (``PRICE_CACHE_MAX``) and simply cleared when full.
"""

from __future__ import annotations

from edge.convert import format_units  # the one exact formatter (no float, never rounds)
from pipeline.config import Symbol

POW10 = tuple(10**i for i in range(40))
PRICE_CACHE_MAX = 1 << 16


def decimals(step_minor: int, scale: int) -> int:
    """Decimals needed to show every multiple of ``step_minor`` units of ``10**-scale`` exactly."""
    d = scale
    while d > 0 and step_minor % 10 == 0:
        step_minor //= 10
        d -= 1
    return d


def price_key(s: str) -> tuple[int, str]:
    """Sort key of a price string of one symbol (numeric order without parsing)."""
    return (len(s), s)


class SymbolFormat:
    """Per-symbol exact formatting of ticks, lots and quote minor units."""

    __slots__ = ("sym", "name", "price_dec", "qty_dec", "_tick_minor", "_lot_minor",
                 "_qscale", "_bscale", "_pcache", "_pdiv", "_qdiv", "_qtydiv")

    def __init__(self, sym: Symbol) -> None:
        self.sym = sym
        self.name = sym.name
        self.price_dec = decimals(sym.tick_minor, sym.quote_scale)
        self.qty_dec = decimals(sym.lot_minor, sym.base_scale)
        self._tick_minor = sym.tick_minor
        self._lot_minor = sym.lot_minor
        self._qscale = sym.quote_scale
        self._bscale = sym.base_scale
        # ticks -> shown units: multiply by tick_minor, drop (scale - dec) zero digits
        self._pdiv = POW10[sym.quote_scale - self.price_dec]
        self._qdiv = POW10[sym.base_scale - self.qty_dec]
        self._qtydiv = POW10[self.qty_dec]
        self._pcache: dict[int, str] = {}

    def price(self, ticks: int) -> str:
        s = self._pcache.get(ticks)
        if s is None:
            if len(self._pcache) >= PRICE_CACHE_MAX:
                self._pcache.clear()
            s = self._pcache[ticks] = format_units(ticks * self._tick_minor // self._pdiv,
                                                   self.price_dec)
        return s

    def qty(self, lots: int) -> str:
        dec = self.qty_dec
        units = lots * self._lot_minor // self._qdiv
        if dec == 0:
            return str(units)
        q, r = divmod(units, self._qtydiv)
        return f"{q}.{r:0{dec}d}"

    def quote(self, minor: int) -> str:
        return format_units(minor, self._qscale)

    def price_ticks(self, s: str) -> int:
        """Inverse of ``price`` for strings this class produced (cold path: the fan-out's copies)."""
        whole, _, frac = s.partition(".")
        units = int(whole + frac.ljust(self.price_dec, "0")) * self._pdiv
        return units // self._tick_minor
