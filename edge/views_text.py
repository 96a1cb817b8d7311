"""The hot JSON views written straight to text: an order, its fills, ``OrderUpdate``, ``BalanceUpdate``.

Why. Every order.place / order.cancel answers with its order and pushes an ``OrderUpdate`` and a
``BalanceUpdate``; building each as a dict (``edge.views``) and serialising it with orjson cost
~3 us an order at load. Written with one f-string each they cost about a third of that. The WS path
embeds the text in its response with ``orjson.Fragment``; REST and the read routes keep the dicts.

Equality. ``orjson.loads`` of every function here equals its dict twin in ``edge.views`` /
``edge.readmodel`` (same keys, same order); ``tests/unit/edge/test_views_text.py`` checks it on
generated orders. Strings are inserted without escaping only where their alphabet needs none:
clientOrderIds (``[A-Za-z0-9_-]``, enforced when packed), decimal strings, enum names; symbol and
asset names go through ``orjson.dumps`` once per process (``_name``).
"""

from __future__ import annotations

from typing import Final

import orjson

from edge.convert import SymbolUnits, format_units
from edge.views import SIDE_NAME, STP_NAME, TIF_NAME, TYPE_NAME, Fill, OrderState, Pieces
from pipeline.config import Asset
from pipeline.records import CmdFlag, OrdType

# module constants are Final: compiled, each is a C static, not a module-dict lookup per use
_POST_ONLY: Final = int(CmdFlag.POST_ONLY)
_MARKET: Final = int(OrdType.MARKET)
_NAMES: Final[dict[str, str]] = {}


def _table(names: dict[int, str]) -> tuple[str, ...]:
    """An enum's names indexed by value ("?" for gaps): a tuple index instead of a dict lookup."""
    return tuple(names.get(i, "?") for i in range(max(names) + 1))


_SIDES: Final = _table(SIDE_NAME)
_TYPES: Final = _table(TYPE_NAME)
_TIFS: Final = _table(TIF_NAME)
_STPS: Final = _table(STP_NAME)
_TYPE_PIECE: Final = tuple(f'"type":"{n}",' for n in _TYPES)  # the two pieces an order type fixes
_ORDER_TYPE_PIECE: Final = tuple(f',"orderType":"{n}"' for n in _TYPES)


def _nm(table: tuple[str, ...], value: int) -> str:
    return table[value] if 0 <= value < len(table) else "?"


def _name(s: str) -> str:
    """``s`` as a JSON string literal (memoised: symbol and asset names are few)."""
    j = _NAMES.get(s)
    if j is None:
        j = _NAMES[s] = orjson.dumps(s).decode()
    return j


def fill_text(f: Fill, u: SymbolUnits) -> str:
    return (f'{{"tradeId":{f.trade_id},"price":"{u.price_str(f.price)}","qty":"{u.qty_str(f.qty)}",'
            f'"quoteQty":"{u.quote_str(f.quote_qty)}","fee":"{u.quote_str(f.fee)}",'
            f'"feeAsset":{u.quote_json},"liquidity":"{"MAKER" if f.maker else "TAKER"}"}}')


def _pieces(o: OrderState, u: SymbolUnits) -> Pieces:
    """The members of ``o`` that never change, as text, built once per order: every later answer or
    ``OrderUpdate`` of the order formats only its fills, status and times."""
    p = o.text
    if p is None:
        cid = o.cid
        t = o.otype
        price = "null" if t == _MARKET else '"' + u.price_str(o.price) + '"'
        q = o.quote
        qty = '"' + u.qty_str(o.qty) + '"' if o.qty or not q else "null"
        oid = str(o.order_id) if o.order_id else "null"
        side = _nm(_SIDES, o.side)
        known = 0 <= t < len(_TYPES)
        p = o.text = (
            f'"orderId":{oid},"clientOrderId":null,"symbol":{u.name_json},"side":"{side}",'
            if cid is None else
            f'"orderId":{oid},"clientOrderId":"{cid}","symbol":{u.name_json},"side":"{side}",',
            _TYPE_PIECE[t] if known else '"type":"?",',
            f'"timeInForce":"{_nm(_TIFS, o.tif)}","price":{price},"quantity":{qty},',
            f',"postOnly":{"true" if o.flags & _POST_ONLY else "false"},'
            f'"stp":"{_nm(_STPS, o.stp)}","time":{o.time_ns // 1_000_000},',
            f',"quoteQuantity":"{u.quote_str(q)}"' if q else "",
            _ORDER_TYPE_PIECE[t] if known else ',"orderType":"?"')
    return p


def _state(o: OrderState, u: SymbolUnits, flags: str, quote: str) -> str:
    """The members that change (fills, status, times) and what follows them, without ``orderType``:
    ``"executedQty":..,"cumQuoteQty":..,"status":..,"postOnly":..,..,"timeUs":..[,"quoteQuantity"]
    [,"rejectReason"]`` (``flags``, ``quote``: the order's pieces)."""
    s = o.stext  # the last text, if made from the values the order has now
    upd = o.update_ns
    if (s is not None and o.s_upd == upd and o.s_exec == o.executed and o.s_cq == o.cum_quote
            and o.s_status == o.status and o.s_rej == o.reject):
        return s
    rej = "" if o.reject is None else ',"rejectReason":"' + o.reject + '"'
    s = o.stext = (
        f'"executedQty":"{u.qty_str(o.executed)}","cumQuoteQty":"{u.quote_str(o.cum_quote)}",'
        f'"status":"{o.status}"{flags}"updateTime":{upd // 1_000_000},"timeUs":{upd // 1_000}'
        f'{quote}{rej}')
    o.s_upd, o.s_exec, o.s_cq, o.s_status, o.s_rej = (upd, o.executed, o.cum_quote, o.status,
                                                       o.reject)
    return s


# Each text is built by one f-string (one allocation of the result) over the order's pieces.
def order_text(o: OrderState, u: SymbolUnits, fills: list[Fill] | None = None) -> str:
    """``views.order_json`` as JSON text (the members of the order, then ``fills`` if given)."""
    head, type_, mid, flags, quote, _ = _pieces(o, u)
    state = _state(o, u, flags, quote)
    if fills is None:
        return f"{{{head}{type_}{mid}{state}}}"
    return (f'{{{head}{type_}{mid}{state},"fills":['
            f'{",".join([fill_text(f, u) for f in fills])}]}}')


def order_update_text(o: OrderState, u: SymbolUnits, seq: int, fill: Fill | None) -> str:
    """The private ``OrderUpdate`` event (API.md) of ``o`` after event ``seq``: the order's members
    with ``type`` renamed ``orderType`` and moved last."""
    head, _, mid, flags, quote, order_type = _pieces(o, u)
    last = "null" if fill is None else fill_text(fill, u)
    return (f'{{"type":"OrderUpdate",{head}{mid}{_state(o, u, flags, quote)}{order_type},"seq":{seq},'
            f'"lastFill":{last}}}')


def balance_update_text(asset: Asset, available: int, locked: int, seq: int, ts_ns: int) -> str:
    """The private ``BalanceUpdate`` event (API.md)."""
    sc = asset.scale
    return (f'{{"type":"BalanceUpdate","asset":{_name(asset.name)},'
            f'"available":"{format_units(available, sc)}","locked":"{format_units(locked, sc)}",'
            f'"seq":{seq},"timeUs":{ts_ns // 1000}}}')
