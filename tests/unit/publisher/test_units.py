"""Exact decimal output: agrees with the edge's converter (the order API) for every default symbol
and sorts numerically by ``price_key``."""

from __future__ import annotations

import numpy as np
import pytest

from edge.convert import SymbolUnits
from pipeline import config
from pipeline.publisher.units import SymbolFormat, format_units, price_key

CFG = config.load(env={})


@pytest.mark.parametrize("sym", CFG.symbols, ids=lambda s: s.name)
def test_same_strings_as_the_order_api(sym: config.Symbol) -> None:
    f, u = SymbolFormat(sym), SymbolUnits.of(sym)
    rng = np.random.default_rng(sym.symbol_id)
    ticks = [1, 2, 9, 10, 99, 100, 101, sym.max_price_ticks] + rng.integers(1, sym.max_price_ticks, 300).tolist()
    lots = [1, 10, sym.max_qty_lots] + rng.integers(1, sym.max_qty_lots, 300).tolist()
    for t in ticks:
        assert f.price(t) == u.price_str(t)
        assert f.price(t) == f.price(t)  # cached
        assert f.price_ticks(f.price(t)) == t
    for q in lots:
        assert f.qty(q) == u.qty_str(q)
    for m in (0, 1, 999_999, 10**15 + 7):
        assert f.quote(m) == u.quote_str(m)


def test_price_key_is_numeric_order() -> None:
    f = SymbolFormat(CFG.symbol("BTC-USDT"))
    rng = np.random.default_rng(3)
    ticks = sorted(set(rng.integers(1, 10**9, 2000).tolist()))
    strs = [f.price(t) for t in ticks]
    assert sorted(reversed(strs), key=price_key) == strs


def test_format_never_rounds() -> None:
    with pytest.raises(ValueError):
        format_units(12345, 4, 2)
    assert format_units(12300, 4, 2) == "1.23"
    assert format_units(-5, 2) == "-0.05"
    assert format_units(7, 0) == "7"
