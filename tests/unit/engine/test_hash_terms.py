"""The kernel hash terms (engine/_hash.py) and the reference's plain-Python copy agree, including
negative words (the external account) and the order term read from a pool record."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import _hash as K
from engine import reference_hash as P
from engine.layout import ORDER
from engine.queries import cid_bytes

i64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 100), i64, i64)
def test_balance_term(account: int, asset: int, av: int, lk: int) -> None:
    assert int(K.bal_term(account, asset, av, lk)) == P.balance_term(account, asset, av, lk)


@settings(max_examples=100, deadline=None)
@given(st.lists(i64, min_size=14, max_size=14), st.binary(min_size=28, max_size=28))
def test_order_term(w: list[int], cid: bytes) -> None:
    orders = np.zeros(1, ORDER)
    o = orders[0]
    o["id"], o["price"], o["qty"], o["leaves"], o["locked"], o["cum"], o["ts"] = w[:7]
    o["account"], o["symbol"] = w[7] & 0x7FFFFFFF, w[8] & 0xFFFF
    o["side"], o["stp"], o["flags"], o["tif"], o["otype"] = (x & 0xFF for x in w[9:14])
    c = P.cid_words(cid)
    o["c0"], o["c1"], o["c2"], o["c3"] = c[0], c[1], c[2], c[3] & 0xFFFFFFFF
    assert cid_bytes(o["c0"], o["c1"], o["c2"], o["c3"]) == cid
    want = P.order_term(int(o["id"]), int(o["account"]), int(o["symbol"]), int(o["side"]),
                        int(o["price"]), int(o["qty"]), int(o["leaves"]), int(o["locked"]),
                        int(o["cum"]), int(o["stp"]), int(o["flags"]), int(o["tif"]),
                        int(o["otype"]), int(o["ts"]), cid)
    o["h0"] = K.order_static(orders, 0)
    assert int(K.order_term(orders, 0)) == want


def test_mode_and_global_terms() -> None:
    assert int(K.mode_term(3, 2, 1)) == P.mode_term(3, 2, 1)
    assert int(K.global_term(1, 0, 1, 99)) == P.global_term(1, 0, 1, 99)
    assert P.mode_term(3, 2, 1) != P.mode_term(3, 1, 2)
