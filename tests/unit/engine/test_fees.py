"""The one fee rounding rule (engine/fees.py) against exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.fees import bps_floor, fee_ceil, fee_step, quote_spend_cap

BIG = 2**62
amounts = st.one_of(st.integers(0, 10**6), st.integers(0, BIG))
rates = st.integers(0, 1000)


@settings(max_examples=300, deadline=None)
@given(amounts, rates)
def test_fee_ceil_is_the_exact_ceiling(x: int, bps: int) -> None:
    assert fee_ceil(x, bps) == ceil(Fraction(x * bps, 10_000))


@settings(max_examples=300, deadline=None)
@given(amounts, rates)
def test_bps_floor_is_the_exact_floor(x: int, bps: int) -> None:
    assert bps_floor(x, bps) == floor(Fraction(x * bps, 10_000))


@pytest.mark.parametrize(("x", "bps", "fee"), [
    (0, 5, 0), (1, 5, 1), (1999, 5, 1), (2000, 5, 1), (2001, 5, 2), (10_000, 1, 1),
    (9_999, 1, 1), (10_000, 0, 0), (BIG, 1000, BIG // 10 + 1),
])
def test_fee_ceil_rounds_up_in_the_venues_favour(x: int, bps: int, fee: int) -> None:
    assert fee_ceil(x, bps) == fee


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=20), rates)
def test_cumulative_fees_sum_to_the_fee_of_the_total(fills: list[int], bps: int) -> None:
    cum = 0
    total = 0
    for n in fills:
        step = fee_step(cum, n, bps)
        assert 0 <= step <= fee_ceil(n, bps)  # never more than charging the fill alone
        total += step
        cum += n
    assert total == fee_ceil(cum, bps)


def test_per_fill_ceilings_would_overcharge() -> None:
    # two fills of 1000 at 5 bps: 0.5 + 0.5 -> per-fill ceilings charge 2, the cumulative rule 1
    assert fee_ceil(1000, 5) + fee_ceil(1000, 5) == 2
    assert fee_step(0, 1000, 5) + fee_step(1000, 1000, 5) == 1 == fee_ceil(2000, 5)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, BIG), rates)
def test_quote_spend_cap_is_the_largest_affordable_notional(budget: int, bps: int) -> None:
    x = quote_spend_cap(budget, bps)
    assert 0 <= x <= budget
    assert x + fee_ceil(x, bps) <= budget
    assert (x + 1) + fee_ceil(x + 1, bps) > budget
