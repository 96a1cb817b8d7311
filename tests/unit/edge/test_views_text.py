"""The text views (edge.views_text) say exactly what the dict views (edge.views) say.

Generated orders cover every branch of the order view: MARKET (price null), quote-budget orders
(quantity null, quoteQuantity), rejects, absent/present clientOrderIds, fills as maker and taker,
and odd enum values ("?").
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.orders import Validator
from edge.recio import EvT
from edge.views import _ORDER_FIELDS, FINAL, Fill, OrderState, fill_json, order_json
from edge.views_text import balance_update_text, fill_text, order_text, order_update_text
from pipeline import config

CFG = config.load(env={})
UNITS = Validator(CFG).units_by_id
ASSETS = list(CFG.assets)
I64 = st.integers(0, 2**62)


@st.composite
def orders(draw: Any) -> tuple[OrderState, Any]:
    o = OrderState(EvT.make((0,) * 25 + (None,)))
    u = draw(st.sampled_from(list(UNITS.values())))
    s = u.sym
    o.order_id = draw(st.one_of(st.just(0), I64))
    o.account = draw(st.integers(1, 2**32 - 1))
    o.symbol = s.symbol_id
    o.side = draw(st.integers(0, 3))
    o.otype = draw(st.integers(0, 3))
    o.tif = draw(st.integers(0, 4))
    o.flags = draw(st.integers(0, 255))
    o.stp = draw(st.integers(0, 5))
    o.price = draw(st.integers(0, s.max_price_ticks))
    o.qty = draw(st.one_of(st.just(0), st.integers(1, s.max_qty_lots)))
    o.quote = draw(st.one_of(st.just(0), st.integers(1, 10**15)))
    o.cid = draw(st.one_of(st.none(), st.text("AZaz09_-", min_size=1, max_size=36)))
    o.time_ns = draw(I64)
    o.executed = draw(st.integers(0, s.max_qty_lots))
    o.cum_quote = draw(st.integers(0, 10**15))
    o.leaves = draw(st.integers(0, s.max_qty_lots))
    o.status = draw(st.sampled_from(sorted(FINAL | {"NEW", "PARTIALLY_FILLED"})))
    o.update_ns = draw(I64)
    o.reject = draw(st.one_of(st.none(), st.sampled_from(["INSUFFICIENT_BALANCE", "WOULD_TAKE"])))
    return o, u


@st.composite
def fills(draw: Any, u: Any) -> Fill:
    s = u.sym
    return Fill(draw(I64), draw(I64), s.symbol_id, draw(st.integers(0, 2)),
                draw(st.integers(1, s.max_price_ticks)), draw(st.integers(1, s.max_qty_lots)),
                draw(st.integers(0, 10**15)), draw(st.integers(0, 10**12)), draw(st.booleans()),
                draw(I64))


@settings(max_examples=400, deadline=None)
@given(orders(), st.data())
def test_order_text_is_order_json(ou: tuple[OrderState, Any], data: Any) -> None:
    o, u = ou
    assert orjson.loads(order_text(o, u)) == order_json(o, u)
    fs = data.draw(st.lists(fills(u), max_size=3))
    text = order_text(o, u, fs)
    assert orjson.loads(text) == order_json(o, u, fs)
    assert list(orjson.loads(text)) == list(order_json(o, u, fs))  # and in the same order
    for f in fs:
        assert orjson.loads(fill_text(f, u)) == fill_json(f, u)


@settings(max_examples=300, deadline=None)
@given(orders(), st.integers(1, 2**62), st.data())
def test_order_update_text_is_the_order_update_event(ou: tuple[OrderState, Any], seq: int,
                                                     data: Any) -> None:
    o, u = ou
    fill = data.draw(st.one_of(st.none(), fills(u)))
    d = order_json(o, u)
    d["orderType"] = d.pop("type")  # API.md: "type" names the event
    want = {"type": "OrderUpdate", **d, "seq": seq,
            "lastFill": fill_json(fill, u) if fill is not None else None}
    got = orjson.loads(order_update_text(o, u, seq, fill))
    assert got == want and list(got) == list(want)


@settings(max_examples=300, deadline=None)
@given(orders(), orders(), st.integers(1, 2**62))
def test_an_order_formatted_again_after_it_changed_shows_the_change(
        ou: tuple[OrderState, Any], later: tuple[OrderState, Any], seq: int) -> None:
    """The fixed members are formatted once per order (``views_text._pieces``, kept on the order):
    after fills, a close or a reject (what events change) both views still equal the dict view."""
    o, u = ou
    order_text(o, u)
    assert o.text is not None
    n, _ = later
    o.executed, o.cum_quote, o.leaves, o.status, o.update_ns, o.reject = (
        n.executed, n.cum_quote, n.leaves, n.status, n.update_ns, n.reject)
    assert orjson.loads(order_text(o, u)) == order_json(o, u)
    d = order_json(o, u)
    d["orderType"] = d.pop("type")
    got = orjson.loads(order_update_text(o, u, seq, None))
    assert got == {"type": "OrderUpdate", **d, "seq": seq, "lastFill": None}
    copy = OrderState(EvT.make((0,) * 25 + (None,)))
    for k in _ORDER_FIELDS:
        setattr(copy, k, getattr(o, k))
    copy.adopt_text(o)  # what TradingService.placed_text does with the read model's order
    assert order_text(copy, u) == order_text(o, u)
    copy.executed += 1  # the answer's order moved on from the read model's: its own text
    copy.update_ns += 1
    assert orjson.loads(order_text(copy, u)) == order_json(copy, u)
    assert orjson.loads(order_text(o, u)) == order_json(o, u)


@given(st.sampled_from(ASSETS), st.integers(-2**62, 2**62), st.integers(0, 2**62),
       st.integers(1, 2**62), I64)
def test_balance_update_text(asset: Any, avail: int, locked: int, seq: int, ts: int) -> None:
    from edge.convert import format_units
    assert orjson.loads(balance_update_text(asset, avail, locked, seq, ts)) == {
        "type": "BalanceUpdate", "asset": asset.name,
        "available": format_units(avail, asset.scale), "locked": format_units(locked, asset.scale),
        "seq": seq, "timeUs": ts // 1000}


@settings(max_examples=300, deadline=None)
@given(rid=st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=64)), o=orders())
def test_ws_answer_with_text_result_is_the_dict_answer(rid: Any, o: tuple[OrderState, Any]) -> None:
    """The WS order path's answer bytes (result already JSON text) equal orjson's of the dict
    answer with the text embedded as a Fragment: ids of every range, strings needing escapes."""
    from edge.ws_session import _ok, _ok_text

    text = order_text(*o)
    assert _ok_text(rid, text) == _ok(rid, orjson.Fragment(text))
    assert orjson.loads(_ok_text(rid, text)) == {"id": rid, "status": 200, "result": orjson.loads(text)}


@settings(max_examples=100, deadline=None)
@given(orders())
def test_a_change_within_one_command_time_is_shown(ou: tuple[OrderState, Any]) -> None:
    """Events of one command share its time: an order expired (STP) or rejected at the time of its
    last change must not show its earlier text (the kept ``_state`` text is checked against every
    value it shows, not only the time)."""
    o, u = ou
    for change in ("close", "reject", "trade"):
        order_text(o, u)
        if change == "close":
            o.close("EXPIRED", o.update_ns)
        elif change == "reject":
            o.reject = "PRICE_BAND"
        else:
            o.executed += 1
        assert orjson.loads(order_text(o, u)) == order_json(o, u), change
        d = order_json(o, u)
        d["orderType"] = d.pop("type")
        assert orjson.loads(order_update_text(o, u, 7, None)) == {
            "type": "OrderUpdate", **d, "seq": 7, "lastFill": None}
