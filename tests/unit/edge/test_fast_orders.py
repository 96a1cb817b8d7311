"""The straight-line order path (edge.fast_orders) against the general one (edge.orders.Validator).

The fast path may decline (None) anything; whatever it accepts must be byte-for-byte the record the
general path packs, and the general path must accept it too. Generated requests mix valid values
with every kind of wrong one (types, nulls, unknown members, off-tick prices, bad cids).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ApiError
from edge.fast_orders import cancel_fast, place_fast
from edge.orders import Validator
from pipeline import cid as cidmod
from pipeline import config
from pipeline.records import CID_MAX_LEN, cid_decode, cid_pack, cid_unpack

CFG = config.load(env={})
V = Validator(CFG)
SYMS = [s.name for s in CFG.symbols]

_junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**64), st.floats(allow_nan=False),
                  st.text(max_size=6), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
_price = st.one_of(st.sampled_from(["65000.25", "65000.255", "0", "0.01", "1", "100.10", "1e3",
                                    " 5", "5.", ".5", "１", "99999999999.99", "-1", "65000.2"]),
                   st.decimals(min_value=0, max_value=10**7, places=3).map(str), _junk)
_qty = st.one_of(st.sampled_from(["0.5", "0.0001", "0.00001", "1", "1.0000", "0", "1e-4", "10000"]),
                 st.decimals(min_value=0, max_value=1000, places=5).map(str), _junk)
_cid_text = st.text(alphabet="ABCxyz019_-", min_size=1, max_size=CID_MAX_LEN)
_cid = st.one_of(_cid_text, st.text(max_size=40), _junk)


_KEYS = ["symbol", "side", "type", "timeInForce", "price", "quantity", "quoteQuantity", "postOnly",
         "clientOrderId", "stp", "extra"]
_WRONG = {
    "symbol": st.one_of(st.just("NOPE-X"), _junk), "side": st.one_of(st.just("buy"), _junk),
    "type": st.one_of(st.just("MARKET"), _junk),
    "timeInForce": st.one_of(st.sampled_from(["IOC", "FOK", "GTX"]), _junk),
    "price": _price, "quantity": _qty, "quoteQuantity": _qty, "postOnly": _junk,
    "clientOrderId": _cid, "stp": st.one_of(st.just("X"), _junk), "extra": _junk,
    "orderId": st.one_of(st.integers(-1, 2**63 + 1), _junk),
}


def _mutated(valid: st.SearchStrategy[dict[str, Any]], keys: list[str]) -> st.SearchStrategy[Any]:
    """Valid requests with 0..2 members replaced by a wrong value, or dropped."""
    def apply(p: dict[str, Any], muts: list[tuple[str, Any, bool]]) -> dict[str, Any]:
        p = dict(p)
        for k, v, drop in muts:
            if drop:
                p.pop(k, None)
            else:
                p[k] = v
        return p
    mut = st.sampled_from(keys).flatmap(
        lambda k: st.tuples(st.just(k), _WRONG[k], st.booleans()))
    return st.builds(apply, valid, st.lists(mut, max_size=2))


_valid_place = st.fixed_dictionaries(
    {"symbol": st.sampled_from(SYMS), "side": st.sampled_from(["BUY", "SELL"]),
     "type": st.just("LIMIT"), "price": st.sampled_from(["65000.25", "1000", "0.01", "12.5"]),
     "quantity": st.sampled_from(["0.5", "1", "2.0000", "0.0001"])},
    optional={"timeInForce": st.sampled_from(["GTC", "IOC", "FOK"]), "postOnly": st.booleans(),
              "clientOrderId": _cid_text,
              "stp": st.sampled_from(["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE"])})
_place = _mutated(_valid_place, _KEYS)
_valid_cancel = st.one_of(
    st.fixed_dictionaries({"orderId": st.integers(1, 2**63 - 1)},
                          optional={"symbol": st.sampled_from(SYMS)}),
    st.fixed_dictionaries({"symbol": st.sampled_from(SYMS), "clientOrderId": _cid_text}))
_cancel = _mutated(_valid_cancel, ["symbol", "orderId", "clientOrderId", "extra"])


def _general(fn: Any, params: Any) -> bytes | ApiError:
    try:
        return bytes(fn(9, params).tobytes())
    except ApiError as e:
        return e


def _fast_is_general_or_declines(fast_fn: Any, general_fn: Any, raw_fn: Any,
                                 params: dict[str, Any]) -> None:
    general = _general(general_fn, params)
    fast = fast_fn(V, 9, params)
    if fast is not None:
        assert bytes(fast) == general
    if isinstance(general, bytes):
        assert bytes(raw_fn(9, params)) == general


@settings(max_examples=1500, deadline=None)
@given(_place)
def test_place_fast_is_the_general_path_or_declines(params: dict[str, Any]) -> None:
    _fast_is_general_or_declines(place_fast, V.place, V.place_raw, params)


@settings(max_examples=800, deadline=None)
@given(_cancel)
def test_cancel_fast_is_the_general_path_or_declines(params: dict[str, Any]) -> None:
    _fast_is_general_or_declines(cancel_fast, V.cancel, V.cancel_raw, params)


def test_the_common_shapes_take_the_fast_path() -> None:
    base = {"symbol": "BTC-USDT", "side": "SELL", "type": "LIMIT", "price": "65000.25",
            "quantity": "0.5"}
    for extra in ({}, {"postOnly": True, "clientOrderId": "mm-1"}, {"timeInForce": "IOC"},
                  {"stp": "NONE", "postOnly": False}):
        p = {**base, **extra}
        assert place_fast(V, 9, p) is not None and bytes(place_fast(V, 9, p)) == _general(V.place, p)
    assert cancel_fast(V, 1, {"orderId": 77}) is not None
    assert cancel_fast(V, 1, {"symbol": "BTC-USDT", "clientOrderId": "mm-1"}) is not None
    # and the ones it leaves to the general path, which answers them
    assert place_fast(V, 1, {**base, "type": "MARKET"}) is None
    assert place_fast(V, 1, {**base, "price": None}) is None
    assert place_fast(V, 1, {**base, "postOnly": True, "timeInForce": "IOC"}) is None
    assert cancel_fast(V, 1, {"clientOrderId": "mm-1"}) is None


@given(_cid_text)
def test_cid_pack_round_trips_and_matches_the_bit_stream(cid: str) -> None:
    cidmod.CACHE.packed.clear()
    cidmod.CACHE.unpacked.clear()
    raw = cid_pack(cid)  # computed
    assert cid_pack(cid) is raw  # remembered
    assert len(raw) == 28 and cid_unpack(raw) == cid == cid_decode(raw)
    cidmod.CACHE.unpacked.clear()
    assert cid_unpack(raw) == cid  # decoded, not remembered
    # the reference: length symbol then 6 bits a char, MSB first, left-aligned in 224 bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    acc = len(cid)
    for ch in cid:
        acc = (acc << 6) | alphabet.index(ch)
    assert raw == (acc << (224 - 6 * (len(cid) + 1))).to_bytes(28, "big")


def test_the_cid_cache_is_bounded() -> None:
    for i in range(cidmod.CACHE_MAX + 10):
        assert cid_unpack(cid_pack(f"b{i}")) == f"b{i}"
        assert len(cidmod.CACHE.packed) <= cidmod.CACHE_MAX and len(cidmod.CACHE.unpacked) <= cidmod.CACHE_MAX
    with pytest.raises(ValueError):
        cid_pack("not valid!")
    assert "not valid!" not in cidmod.CACHE.packed
