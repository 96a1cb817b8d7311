"""The common order shapes, validated straight-line into raw COMMAND bytes (the WS/REST hot path).

Why. The general path (``edge.schema.check`` over the field table, then ``edge.orders.Validator``,
then a numpy record) cost ~6 us per order.place on this box; a market maker's traffic is almost
all one shape — a LIMIT order with string price and quantity, or a cancel by id or clientOrderId —
and checking that shape directly, with the price and quantity strings looked up in per-symbol caches
of already-accepted values, costs ~2 us.

Contract. ``place_fast`` / ``cancel_fast`` return the 64 bytes of the COMMAND (``conn``/``req``
still 0) exactly as the general path would pack them, or None whenever the request is anything
but a plainly valid common shape: an unknown, null or extra field, a wrong type, a MARKET order, a
value the general path would refuse. None is never an answer: the caller then runs the general path,
which either packs the same record or raises the precise error. So the fast path changes speed, not
behaviour: ``tests/unit/edge/test_fast_orders.py`` checks fast == general on generated requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from edge import schema
from edge.recio import CMD_STRUCT
from pipeline.records import CID_BYTES, Cmd, CmdFlag, OrdType, Side, Stp, Tif, cid_pack

if TYPE_CHECKING:
    from edge.orders import Validator

# module constants are Final: compiled, each is a C static, not a module-dict lookup per use
_SIDE: Final = {"BUY": int(Side.BUY), "SELL": int(Side.SELL)}
_TIF: Final = {name: int(Tif[name]) for name in schema.TIFS}
_STP: Final = {name: int(Stp[name]) for name in schema.STPS}
_LIMIT: Final = int(OrdType.LIMIT)
_GTC: Final = int(Tif.GTC)
_EXPIRE_TAKER: Final = int(Stp.EXPIRE_TAKER)
_NEW_ORDER: Final = int(Cmd.NEW_ORDER)
_CANCEL: Final = int(Cmd.CANCEL)
_POST_ONLY: Final = int(CmdFlag.POST_ONLY)
_BY_CID: Final = int(CmdFlag.BY_CID)
_NO_CID: Final = bytes(CID_BYTES)
_ID_MAX: Final = schema.INT64_MAX
_pack: Final = CMD_STRUCT.pack


def place_fast(v: Validator, account: int, p: Any) -> bytearray | None:
    """A LIMIT order.place as COMMAND bytes, or None (see the module header)."""
    if type(p) is not dict:
        return None
    d: dict[str, Any] = p  # typed: d.get compiles to a C dict lookup, p.get to a method call
    try:
        u = v.units[d.get("symbol")]  # type: ignore[index]  # KeyError / TypeError below
        side = _SIDE[d.get("side")]  # type: ignore[index]
        if d.get("type") != "LIMIT":
            return None
        t = d.get("timeInForce")
        s = d.get("stp")
        tif = _GTC if t is None else _TIF[t]
        stp = _EXPIRE_TAKER if s is None else _STP[s]
        n = 5 + (t is not None) + (s is not None)  # symbol, side, type, price, quantity + these
    except (KeyError, TypeError):  # absent, unknown or unhashable: the general path says which
        return None
    price = u.ticks_of(d.get("price"))
    qty = u.lots_of(d.get("quantity"))
    if price is None or qty is None:
        return None
    sym = u.sym
    if price * qty * sym.k < sym.min_notional_minor:
        return None
    flags = 0
    po = d.get("postOnly")
    if po is not None:
        if type(po) is not bool or (po and tif != _GTC):
            return None
        if po:
            flags = _POST_ONLY
        n += 1
    c = d.get("clientOrderId")
    if c is None:
        cid = _NO_CID
    else:
        if type(c) is not str:
            return None
        try:
            cid = cid_pack(c)
        except ValueError:
            return None
        n += 1
    if len(p) != n:  # an extra, unknown or null member
        return None
    return bytearray(_pack(price, qty, account, 0, 0, sym.symbol_id, _NEW_ORDER, flags, side,
                           _LIMIT, tif, stp, cid))


def cancel_fast(v: Validator, account: int, p: Any) -> bytearray | None:
    """An order.cancel by orderId or by (symbol, clientOrderId) as COMMAND bytes, or None."""
    if type(p) is not dict:
        return None
    d: dict[str, Any] = p
    symbol = 0
    n = 1
    s = d.get("symbol")
    if s is not None:
        if type(s) is not str:
            return None
        u = v.units.get(s)
        if u is None:
            return None
        symbol = u.sym.symbol_id
        n = 2
    oid = d.get("orderId")
    c = d.get("clientOrderId")
    if len(p) != n:
        return None
    if oid is not None:
        if c is not None or type(oid) is not int or not 1 <= oid <= _ID_MAX:
            return None
        return bytearray(_pack(oid, 0, account, 0, 0, symbol, _CANCEL, 0, 0, 0, 0, 0, _NO_CID))
    if c is None or not symbol or type(c) is not str:
        return None
    try:
        cid = cid_pack(c)
    except ValueError:
        return None
    return bytearray(_pack(0, 0, account, 0, 0, symbol, _CANCEL, _BY_CID, 0, 0, 0, 0, cid))
