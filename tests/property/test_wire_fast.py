"""Property: ``edge.wire_fast`` (one numba call from a WS request's bytes to its COMMAND record) is
the general path or silent. For generated requests — valid, near-valid, garbage; serialised
compactly, with whitespace, with escapes, with duplicate members; mutated byte by byte and
truncated — whatever the kernel returns equals what ``TradeSession.message``'s envelope checks plus
``Validator.place_raw`` / ``cancel_raw`` make of the same bytes, and every plainly written common
request is taken by the kernel (so the test cannot pass by the kernel declining everything)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge.errors import ApiError
from edge.orders import Validator
from edge.wire_fast import WireFast
from pipeline.config import Config, load

ACCOUNT = 4242
_cfg = load(None, env={})
V = Validator(_cfg)
NAMES = [s.name for s in _cfg.symbols]
WIRE = WireFast(V.units)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def reference(raw: bytes) -> tuple[int, Any, bytearray] | None:
    """What the general path makes of ``raw`` if it becomes an order record, else None."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict or set(d) - {"id", "method", "params"}:
        return None
    rid = d.get("id")
    if not ((type(rid) is int and -2**63 <= rid < 2**63) or (type(rid) is str and len(rid) <= 64)):
        return None
    m = d.get("method")
    if m not in ("order.place", "order.cancel"):
        return None
    try:
        cmd = (V.place_raw(ACCOUNT, d.get("params")) if m == "order.place"
               else V.cancel_raw(ACCOUNT, d.get("params")))
    except (ApiError, ValueError):
        return None
    return (1 if m == "order.place" else 2), rid, cmd


def check(raw: bytes) -> tuple[int, Any, bytearray] | None:
    got = WIRE.parse(raw, ACCOUNT)
    also = WIRE.parse(memoryview(raw), ACCOUNT)  # picows hands the payload as a memoryview
    entry = WIRE.parse(memoryview(raw), ACCOUNT, view=True)  # ... and ws_trade says so
    assert got == also == entry
    if got is not None:
        want = reference(raw)
        assert want is not None, raw
        assert (got[0], got[1], bytes(got[2])) == (want[0], want[1], bytes(want[2])), raw
        assert type(got[1]) is type(want[1])
    return got


decimals = st.one_of(
    st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{1,9})?\Z"),
    st.sampled_from(["100", "99.50", "0.01", "0.0001", "0.1000", "1", "0", "00.5", "007.50",
                     "1e2", ".5", "5.", "-1", " 1", "1 ", "1..2", "", "12345678901234567890",
                     "999999999999999999", "0.00000000000000000001", "100000", "100000.01",
                     "1.000000000", "٣"]),
    st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.none())
cids = st.one_of(st.text(ALPHABET, min_size=1, max_size=36), st.text(ALPHABET, min_size=37, max_size=40),
                 st.sampled_from(["", "a b", "é", "x\"y", "x\\y", "tab\t"]), st.integers(), st.none())
words = {
    "symbol": st.one_of(st.sampled_from(NAMES), st.sampled_from(["NOPE", "btc-usdt", ""]),
                        st.integers(), st.none()),
    "side": st.sampled_from(["BUY", "SELL", "buy", "HOLD", 1, None]),
    "type": st.sampled_from(["LIMIT", "LIMIT", "MARKET", "STOP", None]),
    "price": decimals,
    "quantity": decimals,
    "timeInForce": st.sampled_from(["GTC", "IOC", "FOK", "DAY", None, 3]),
    "stp": st.sampled_from(["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE", "ALL", None]),
    "postOnly": st.sampled_from([True, False, None, "true", 1, 0]),
    "clientOrderId": cids,
    "orderId": st.one_of(st.integers(-3, 2**63 + 5), st.sampled_from([True, "7", 1.5, None])),
    "quoteQuantity": decimals,
    "extra": st.integers(),
}
params = st.dictionaries(st.sampled_from(sorted(words)), st.none(), max_size=8).flatmap(
    lambda keys: st.fixed_dictionaries({k: words[k] for k in keys}))
rids = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-10**18 + 1, 10**18 - 1),
                 st.integers(2**63, 2**64), st.text(max_size=70), st.floats(allow_nan=False), st.none())
methods = st.sampled_from(["order.place", "order.cancel", "order.cancel", "orders.open",
                           "order.place ", 5])


MEMBERS = {"id": rids, "method": methods, "params": params, "extra": st.integers()}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Envelopes in any member order; id / method / params usually there, an extra rarely."""
    d: dict[str, Any] = {}
    for k in draw(st.permutations(list(MEMBERS))):
        if draw(st.integers(0, 9)) > (8 if k == "extra" else 0):
            d[k] = draw(MEMBERS[k])
    return d


def render(d: Any, style: int) -> bytes:
    if style == 0:
        return orjson.dumps(d)
    if style == 1:
        return json.dumps(d, indent=2).encode()
    if style == 2:
        return json.dumps(d, separators=(" , ", " : "), ensure_ascii=True).encode()
    return (" \t\r\n" + json.dumps(d, ensure_ascii=False) + "\n ").encode()


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=requests(), style=st.integers(0, 3))
def test_whatever_the_kernel_takes_the_general_path_takes_the_same(d: dict[str, Any],
                                                                   style: int) -> None:
    try:
        raw = render(d, style)
    except (TypeError, ValueError, OverflowError):
        assume(False)
        return
    check(raw)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=requests(), pos=st.integers(0, 10_000), byte=st.integers(0, 255),
       cut=st.booleans(), dup=st.booleans())
def test_mutated_truncated_and_duplicated_requests(d: dict[str, Any], pos: int, byte: int,
                                                   cut: bool, dup: bool) -> None:
    try:
        raw = bytearray(orjson.dumps(d))
    except (TypeError, orjson.JSONEncodeError):
        assume(False)
        return
    i = pos % len(raw)
    if dup and b'"params":{' in raw:  # a member written twice: orjson keeps the last one
        j = raw.index(b'"params":{') + len(b'"params":{')
        raw[j:j] = b'"side":"SELL",' if b'"side"' in raw else b'"stp":"NONE",'
    elif cut:
        raw = raw[:i]
    else:
        raw[i] = byte
    check(bytes(raw))


@st.composite
def common(draw: st.DrawFn) -> dict[str, Any]:
    """A plainly written valid order.place / order.cancel (what market makers send)."""
    sym = draw(st.sampled_from(_cfg.symbols))
    u = V.units[sym.name]
    rid = draw(st.one_of(st.integers(-10**18 + 1, 10**18 - 1), st.text(ALPHABET + " .:", max_size=64)))
    if draw(st.booleans()):
        lots = draw(st.integers(u.sym.min_qty_lots, min(u.sym.max_qty_lots, 10**6)))
        lo = -(-u.sym.min_notional_minor // (lots * u.sym.k))
        ticks = draw(st.integers(max(1, lo), u.sym.max_price_ticks))
        p: dict[str, Any] = {"symbol": sym.name, "side": draw(st.sampled_from(["BUY", "SELL"])),
                             "type": "LIMIT", "price": u.price_str(ticks), "quantity": u.qty_str(lots)}
        tif = draw(st.sampled_from([None, "GTC", "IOC", "FOK"]))
        if tif:
            p["timeInForce"] = tif
        if draw(st.booleans()):
            p["stp"] = draw(st.sampled_from(["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE"]))
        if tif in (None, "GTC") and draw(st.booleans()):
            p["postOnly"] = draw(st.booleans())
        if draw(st.booleans()):
            p["clientOrderId"] = draw(st.text(ALPHABET, min_size=1, max_size=36))
        return {"id": rid, "method": "order.place", "params": p}
    if draw(st.booleans()):
        p = {"orderId": draw(st.integers(1, 10**18 - 1))}
        if draw(st.booleans()):
            p["symbol"] = sym.name
    else:
        p = {"symbol": sym.name, "clientOrderId": draw(st.text(ALPHABET, min_size=1, max_size=36))}
    return {"method": "order.cancel", "params": p, "id": rid}


@settings(max_examples=800, deadline=None)
@given(d=common(), style=st.integers(0, 3))
def test_every_common_request_takes_the_kernel(d: dict[str, Any], style: int) -> None:
    raw = render(d, style)
    got = check(raw)
    assert got is not None, raw


@st.composite
def near_common(draw: st.DrawFn) -> dict[str, Any]:
    """A common request with one or two params changed, dropped or added, or its notional just
    under the symbol's minimum: the boundaries where the kernel and the general path could part."""
    d = draw(common())
    p = d["params"]
    for _ in range(draw(st.integers(1, 2))):
        k = draw(st.sampled_from(sorted(words)))
        how = draw(st.integers(0, 2))
        if how == 0 and k in p:
            del p[k]
        else:
            p[k] = draw(words[k])
    u = V.units[p["symbol"]] if p.get("symbol") in V.units else None
    if d["method"] == "order.place" and u is not None:
        edge = draw(st.integers(0, 5))
        if edge == 1 and u.sym.min_notional_minor > u.sym.k:  # notional at / just under the minimum
            lots = u.sym.min_qty_lots
            ticks = max(1, -(-u.sym.min_notional_minor // (lots * u.sym.k)) - draw(st.integers(0, 1)))
            p["price"], p["quantity"] = u.price_str(ticks), u.qty_str(lots)
        elif edge == 2:  # quantity at / just over the bounds
            p["quantity"] = u.qty_str(draw(st.sampled_from([
                u.sym.max_qty_lots, u.sym.max_qty_lots + 1, u.sym.min_qty_lots,
                max(0, u.sym.min_qty_lots - 1)])))
        elif edge == 3:  # price at / just over the bounds
            p["price"] = u.price_str(draw(st.sampled_from([u.sym.max_price_ticks,
                                                           u.sym.max_price_ticks + 1, 1, 0])))
        elif edge == 4:  # off the tick / lot grid: one more digit, where the scale allows one
            k = draw(st.sampled_from(["price", "quantity"]))
            v = p.get(k)
            if isinstance(v, str):
                p[k] = (v if "." in v else v + ".") + str(draw(st.integers(1, 9)))
    return d


@settings(max_examples=800, deadline=None)
@given(d=near_common(), style=st.integers(0, 3))
def test_near_common_requests(d: dict[str, Any], style: int) -> None:
    try:
        raw = render(d, style)
    except (TypeError, ValueError, OverflowError):  # orjson: ints beyond 64 bits
        assume(False)
        return
    check(raw)


def _place(**change: Any) -> bytes:
    u = V.units[NAMES[0]]
    p: dict[str, Any] = {"symbol": NAMES[0], "side": "BUY", "type": "LIMIT",
                         "price": u.price_str(u.sym.max_price_ticks // 2),
                         "quantity": u.qty_str(u.sym.min_qty_lots * 3)}
    p.update(change)
    return orjson.dumps({"id": 9, "method": "order.place", "params": {k: v for k, v in p.items()
                                                                       if v is not None}})


_U = V.units[NAMES[0]]
_LOT_DIGITS = len(_U.qty_str(1).split(".")[1]) if "." in _U.qty_str(1) else 0
_TICK_DIGITS = len(_U.price_str(1).split(".")[1]) if "." in _U.price_str(1) else 0


@pytest.mark.parametrize("raw, taken", [
    (_place(), True),
    (_place(postOnly=True), True),
    (_place(postOnly=True, timeInForce="IOC"), False),
    (_place(postOnly=False, timeInForce="IOC"), True),
    (_place(quantity=_U.qty_str(_U.sym.max_qty_lots)), True),
    (_place(quantity=_U.qty_str(_U.sym.max_qty_lots + 1)), False),
    (_place(quantity=_U.qty_str(_U.sym.min_qty_lots - 1)), False),
    (_place(price=_U.price_str(_U.sym.max_price_ticks)), True),
    (_place(price=_U.price_str(_U.sym.max_price_ticks + 1)), False),
    (_place(price=_U.price_str(3) + ("" if _TICK_DIGITS else ".") + "1"), False),
    (_place(quantity=_U.qty_str(_U.sym.min_qty_lots * 3) + ("" if _LOT_DIGITS else ".") + "1"), False),
    (_place(price="0"), False),
])
def test_boundaries(raw: bytes, taken: bool) -> None:
    """The kernel agrees with the general path at each limit, and takes exactly the valid ones."""
    assert (check(raw) is not None) == taken == (reference(raw) is not None), raw


@pytest.mark.parametrize("raw", [
    b"", b"{", b"{}", b"[]", b'{"id":1}', b'{"id":1,"method":"order.cancel","params":{}}',
    b'{"id":1,"method":"order.cancel","params":{"orderId":7}} x',
    b'{"id":1,"method":"order.cancel","params":{"orderId":7},}',
    b'{"id":1,"method":"order.cancel","params":{"orderId":7,}}',
    b'{"id":01,"method":"order.cancel","params":{"orderId":7}}',
    b'{"id":1.0,"method":"order.cancel","params":{"orderId":7}}',
    b'{"id":1,"method":"order.cancel","params":{"orderId":7e0}}',
    b'{"id":1,"method":"order.cancel","params":{"orderId":0}}',
    b'{"id":1,"method":"order.cancel","params":{"orderId":7},"id":2}',
    b'{"id":"\\u0041","method":"order.cancel","params":{"orderId":7}}',
])
def test_edge_cases_the_kernel_declines(raw: bytes) -> None:
    assert WIRE.parse(raw, ACCOUNT) is None


def test_a_symbol_missing_from_the_table_takes_the_general_path() -> None:
    cfg: Config = _cfg
    assert WireFast({}).parse(b'{"id":1,"method":"order.place","params":{"symbol":"'
                              + cfg.symbols[0].name.encode() + b'","side":"BUY","type":"LIMIT",'
                              b'"price":"1","quantity":"1"}}', 1) is None


def test_the_view_entry_is_compiled_and_refuses_other_types() -> None:
    """picows' payloads skip numba's dispatch: ``view_kernel`` is the compiled entry itself."""
    assert WIRE.view_kernel is not WIRE.kernel
    with pytest.raises(TypeError):  # typed for memoryviews: a list is no buffer
        WIRE.view_kernel([1, 2], ACCOUNT, WIRE.tab, WIRE.cmd, WIRE.sc)
