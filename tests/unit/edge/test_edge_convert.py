import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.convert import INT64_MAX, SymbolUnits, amount_minor, format_units, parse_units
from edge.errors import ApiError
from pipeline import config

CFG = config.load(env={})
BTC = SymbolUnits.of(CFG.symbol("BTC-USDT"))
SMK = SymbolUnits.of(CFG.symbol("SMK-USDT"))
GRAMMAR = re.compile(r"[0-9]+(\.[0-9]+)?")


@pytest.mark.parametrize("s,scale,units", [
    ("0", 2, 0), ("1", 2, 100), ("100.25", 2, 10025), ("0.01", 2, 1), ("007.5", 1, 75),
    ("92233720368547758.07", 2, INT64_MAX),
])
def test_parse_examples(s: str, scale: int, units: int) -> None:
    assert parse_units(s, scale, "INVALID_PRICE", "price") == units


@pytest.mark.parametrize("s", [
    "", " 1", "1 ", "+1", "-1", "1e3", "1E3", "1_000", ".5", "5.", "1.2.3", "0x10", "١٢",
    "1,5", "NaN", "inf", "1.001", "92233720368547758.08", "9" * 41, "½",
])
def test_parse_rejects(s: str) -> None:
    with pytest.raises(ApiError) as ei:
        parse_units(s, 2, "INVALID_PRICE", "price")
    assert ei.value.name == "INVALID_PRICE"


@pytest.mark.parametrize("v", [1, 1.5, None, True, ["1"], {"a": 1}])
def test_non_strings_are_bad_request(v: object) -> None:
    with pytest.raises(ApiError) as ei:
        parse_units(v, 2, "INVALID_PRICE", "price")
    assert ei.value.name == "BAD_REQUEST"


@given(st.integers(min_value=-INT64_MAX, max_value=INT64_MAX), st.integers(0, 18))
def test_format_then_parse_round_trips(units: int, scale: int) -> None:
    s = format_units(units, scale)
    assert Decimal(s) == Decimal(units).scaleb(-scale)
    if units >= 0:
        assert parse_units(s, scale, "INVALID_AMOUNT", "amount") == units


@given(st.text(alphabet="0123456789.-+eE _", max_size=24), st.integers(0, 18))
def test_parse_never_accepts_an_inexact_or_malformed_value(s: str, scale: int) -> None:
    try:
        units = parse_units(s, scale, "INVALID_QUANTITY", "quantity")
    except ApiError as e:
        assert e.name == "INVALID_QUANTITY"
        return
    assert GRAMMAR.fullmatch(s)
    assert Decimal(s).scaleb(scale) == units  # exact, never rounded
    assert 0 <= units <= INT64_MAX


@given(st.integers(1, BTC.sym.max_price_ticks))
def test_price_round_trip(ticks: int) -> None:
    s = BTC.price_str(ticks)
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", s)
    assert BTC.price_ticks(s) == ticks


@given(st.integers(BTC.sym.min_qty_lots, BTC.sym.max_qty_lots))
def test_qty_round_trip(lots: int) -> None:
    assert BTC.qty_lots(BTC.qty_str(lots)) == lots


def test_symbol_rules() -> None:
    assert BTC.price_ticks("65000.25") == 6_500_025
    for bad in ("65000.255", "0", "0.00", "10000000.01"):
        with pytest.raises(ApiError, match="price") as ei:
            BTC.price_ticks(bad)
        assert ei.value.name == "INVALID_PRICE"
    assert BTC.qty_lots("0.5") == 5000
    for bad in ("0.00005", "0", "1000.0001"):
        with pytest.raises(ApiError) as ei:
            BTC.qty_lots(bad)
        assert ei.value.name == "INVALID_QUANTITY"
    assert SMK.qty_str(3) == "3" and SMK.price_str(150) == "1.50"
    assert BTC.quote_minor("100.5") == 100_500_000
    usdt = CFG.asset("USDT")
    assert amount_minor(usdt, "0.000001") == 1
    with pytest.raises(ApiError, match="positive"):
        amount_minor(usdt, "0")


def test_format_refuses_to_round() -> None:
    with pytest.raises(ValueError):
        format_units(101, 2, 1)
    assert format_units(100, 2, 1) == "1.0"
    assert format_units(-5, 2) == "-0.05"
