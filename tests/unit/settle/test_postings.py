"""settle.postings: exact legs for hand-built events, ordinals, errors, and properties over random
streams checked against a plain-Python reference (balanced per asset, stable under replay)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.records import EVENT, Ev, Side
from settle.catalog import Catalog
from settle.errors import PostingError
from settle.postings import LEGS_PER_EVENT, Kind, concat_events, ordinals, postings
from settle.synth import event as other
from settle.synth import trade_event as trade
from settle.synth import transfer_event as transfer


def events(*parts: np.ndarray) -> np.ndarray:
    return concat_events(list(parts))

BTC_USDT = 1  # base BTC (asset 2), quote USDT (asset 1), lot_minor 10_000


def rows(p: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    return [(int(r["seq"]), int(r["leg"]), int(r["account"]), int(r["asset"]), int(r["amount"]))
            for r in p]


def test_taker_buy_trade_legs(catalog: Catalog) -> None:
    ev = trade(5, taker=10, maker=20, side=Side.BUY, qty=3, price=100, taker_fee=7, maker_fee=2)
    p = postings(ev, np.zeros(1, np.int64), 9, catalog)
    assert rows(p) == [
        (5, 0, 10, 2, 30_000),  # buyer (taker) +3 lots * 10_000 BTC minor
        (5, 1, 20, 2, -30_000),  # seller (maker)
        (5, 2, 10, 1, -(300 + 7)),  # buyer pays notional + taker fee
        (5, 3, 20, 1, 300 - 2),  # seller gets notional - maker fee
        (5, 4, catalog.fee_account, 1, 9),  # both fees
    ]
    assert p["kind"].tolist() == [Kind.TRADE] * 4 + [Kind.FEE]
    assert set(p["fencing"].tolist()) == {9} and set(p["trade_id"].tolist()) == {1}
    assert set(p["symbol"].tolist()) == {BTC_USDT}


def test_taker_sell_trade_swaps_buyer_and_fees(catalog: Catalog) -> None:
    ev = trade(5, taker=10, maker=20, side=Side.SELL, qty=1, price=50, taker_fee=4, maker_fee=1)
    assert rows(postings(ev, np.zeros(1, np.int64), 0, catalog)) == [
        (5, 0, 20, 2, 10_000), (5, 1, 10, 2, -10_000),
        (5, 2, 20, 1, -(50 + 1)), (5, 3, 10, 1, 50 - 4), (5, 4, catalog.fee_account, 1, 5)]


def test_zero_fee_leg_is_skipped_but_slots_stay(catalog: Catalog) -> None:
    ev = trade(5, taker_fee=0, maker_fee=0)
    assert [r[1] for r in rows(postings(ev, np.array([2]), 0, catalog))] == [16, 17, 18, 19]


def test_transfers_post_against_the_external_account(catalog: Catalog) -> None:
    ev = events(transfer(1, account=10, asset=3, amount=500), transfer(2, account=10, asset=3, amount=-200))
    p = postings(ev, np.zeros(2, np.int64), 1, catalog)
    ext = catalog.external_account
    assert rows(p) == [(1, 0, 10, 3, 500), (1, 1, ext, 3, -500), (2, 0, 10, 3, -200), (2, 1, ext, 3, 200)]
    assert p["kind"].tolist() == [Kind.DEPOSIT] * 2 + [Kind.WITHDRAWAL] * 2
    assert set(p["symbol"].tolist()) == {0} and set(p["trade_id"].tolist()) == {0}


def test_non_settling_events_post_nothing_but_take_an_ordinal(catalog: Catalog) -> None:
    ev = events(other(7, Ev.ACCEPTED), trade(7, trade_id=1), trade(7, trade_id=2), other(7, Ev.BALANCE))
    o, carry = ordinals(ev["seq"])
    assert o.tolist() == [0, 1, 2, 3] and carry == (7, 4)
    p = postings(ev, o, 0, catalog)
    assert sorted({int(x) // LEGS_PER_EVENT for x in p["leg"]}) == [1, 2]
    assert len(set(p["leg"].tolist())) == len(p)


def test_ordinals_continue_across_calls() -> None:
    a, carry = ordinals(np.array([3, 3, 4, 4, 4], np.uint64))
    b, carry2 = ordinals(np.array([4, 5, 5], np.uint64), carry)
    assert a.tolist() == [0, 1, 0, 1, 2] and b.tolist() == [3, 0, 1] and carry2 == (5, 2)
    assert ordinals(np.zeros(0, np.uint64), (9, 1)) [1] == (9, 1)


@pytest.mark.parametrize("seqs, carry", [([3, 2], (0, 0)), ([5], (6, 1))])
def test_ordinals_refuse_seqs_going_backwards(seqs: list[int], carry: tuple[int, int]) -> None:
    with pytest.raises(PostingError, match="backwards|before"):
        ordinals(np.array(seqs, np.uint64), carry)


@pytest.mark.parametrize("bad, match", [
    (trade(1, symbol=99), "unknown symbol"),
    (trade(1, symbol=0), "unknown symbol"),
    (trade(1, side=0), "side"),
    (trade(1, qty=0), "qty_lots"),
    (trade(1, quote_qty=0), "quote_qty"),
    (trade(1, taker_fee=-1), "fees"),
    (transfer(1, asset=77), "unknown asset"),
    (transfer(1, amount=0), "amount is 0"),
])
def test_bad_events_are_refused_with_their_seq(catalog: Catalog, bad: np.ndarray, match: str) -> None:
    ev = events(trade(1), bad)
    with pytest.raises(PostingError, match=match):
        postings(ev, np.array([0, 1]), 0, catalog)


def test_wrong_dtype_is_refused(catalog: Catalog) -> None:
    with pytest.raises(PostingError, match="EVENT"):
        postings(np.zeros(1, np.int64), np.zeros(1, np.int64), 0, catalog)


# --- properties ------------------------------------------------------------------------------------


def reference(ev: np.ndarray, catalog: Catalog) -> list[tuple[int, int, int, int, int]]:
    """The posting rules written out one event at a time, in plain Python."""
    out = []
    counts: dict[int, int] = defaultdict(int)
    sym = {s.symbol_id: s for s in catalog.symbols}
    for r in ev:
        seq = int(r["seq"])
        ix = counts[seq]
        counts[seq] += 1
        kind = int(r["kind"])
        legs: list[tuple[int, int, int]] = []
        if kind == Ev.TRADE:
            s = sym[int(r["symbol"])]
            taker, maker = int(r["account"]), int(r["maker_account"])
            buyer, seller = (taker, maker) if r["side"] == Side.BUY else (maker, taker)
            tf, mf = int(r["taker_fee"]), int(r["maker_fee"])
            bf, sf = (tf, mf) if r["side"] == Side.BUY else (mf, tf)
            base = int(r["qty"]) * s.lot_minor
            n = int(r["quote_qty"])
            legs = [(buyer, s.base_id, base), (seller, s.base_id, -base),
                    (buyer, s.quote_id, -(n + bf)), (seller, s.quote_id, n - sf),
                    (catalog.fee_account, s.quote_id, tf + mf)]
        elif kind == Ev.TRANSFER:
            a, amt = int(r["asset"]), int(r["qty"])
            legs = [(int(r["account"]), a, amt), (catalog.external_account, a, -amt)]
        for slot, (acct, asset, amount) in enumerate(legs):
            if amount:
                out.append((seq, ix * LEGS_PER_EVENT + slot, acct, asset, amount))
    return out


@st.composite
def streams(draw: st.DrawFn) -> np.ndarray:
    n_cmds = draw(st.integers(1, 25))
    parts = []
    seq = draw(st.integers(1, 1000))
    for _ in range(n_cmds):
        for _ in range(draw(st.integers(1, 4))):
            k = draw(st.sampled_from(["trade", "trade", "transfer", "other"]))
            if k == "trade":
                q = draw(st.integers(1, 10**6))
                parts.append(trade(seq, symbol=draw(st.sampled_from([1, 2, 3])),
                                   taker=draw(st.integers(3, 9)), maker=draw(st.integers(3, 9)),
                                   side=draw(st.sampled_from([Side.BUY, Side.SELL])), qty=q,
                                   price=draw(st.integers(1, 10**6)),
                                   taker_fee=draw(st.integers(0, 10**4)),
                                   maker_fee=draw(st.integers(0, 10**4))))
            elif k == "transfer":
                amt = draw(st.integers(-10**12, 10**12).filter(bool))
                parts.append(transfer(seq, account=draw(st.integers(3, 9)),
                                      asset=draw(st.integers(1, 4)), amount=amt))
            else:
                parts.append(other(seq, Ev.ACCEPTED))
        seq += 1
    return concat_events(parts)


@settings(max_examples=150, deadline=None)
@given(ev=streams(), split=st.integers(0, 100))
def test_property_balanced_stable_and_equal_to_reference(catalog: Catalog, ev: np.ndarray,
                                                         split: int) -> None:
    o, _ = ordinals(ev["seq"])
    p = postings(ev, o, 4, catalog)
    assert rows(p) == reference(ev, catalog)
    # every trade / transfer balances per asset
    per: dict[tuple[int, int, int], int] = defaultdict(int)
    for seq, leg, _acct, asset, amount in rows(p):
        per[(seq, leg // LEGS_PER_EVENT, asset)] += amount
    assert all(v == 0 for v in per.values())
    # keys unique; replay (in two arbitrary pieces, ordinals carried) yields identical rows
    assert len({(r[0], r[1]) for r in rows(p)}) == len(p)
    cut = split * len(ev) // 100
    o1, carry = ordinals(ev["seq"][:cut])
    o2, _ = ordinals(ev["seq"][cut:], carry)
    again = np.concatenate([postings(ev[:cut], o1, 4, catalog), postings(ev[cut:], o2, 4, catalog)])
    assert again.tobytes() == p.tobytes()


def test_dtype_is_the_event_record() -> None:
    assert EVENT.itemsize == 128
