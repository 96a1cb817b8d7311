"""EVENT records -> API JSON: order state, fills, balances, and the response to one command.

Order state machine (driven only by events, so the read model and a command's response agree):

    ACCEPTED                    -> NEW            (leaves = quantity)
    TRADE (as taker or maker)   -> PARTIALLY_FILLED, or FILLED when leaves reach 0
    EXPIRED (IOC/FOK/MARKET/STP/band/budget remainder)          -> EXPIRED  (final)
    CANCELED (user, cancel-all, admin, disconnect)              -> CANCELED (final)
    REJECTED (a new order refused; kept only if it had a clientOrderId) -> REJECTED (final)

A remainder the engine removes ends EXPIRED whatever was filled before (API.md). A FOK order that
cannot fill is REJECTED by the engine with ``FOK_UNFILLABLE`` and answered as an EXPIRED order.

Formatting: prices with the tick's decimals, quantities with the lot's, notionals and fees with
the quote asset's scale (``edge.convert``). ``price`` is ``null`` for MARKET orders; ``quantity`` is
``null`` and ``quoteQuantity`` set for MARKET BUY by quote budget. Times: ``time`` (ms, creation),
``updateTime`` (ms) and ``timeUs`` (us of the last event).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from edge.convert import SymbolUnits
from edge.errors import REJECT_AS_EXPIRED, ApiError, from_reject
from edge.recio import EvT
from pipeline.records import CmdFlag, Ev, OrdType, Side, Stp, Tif

# module constants are Final: compiled, each is a C static, not a module-dict lookup per use
_QUOTE_QTY: Final = int(CmdFlag.QUOTE_QTY)  # plain ints: IntFlag's & costs ~1 us a call
_POST_ONLY: Final = int(CmdFlag.POST_ONLY)
_MARKET: Final = int(OrdType.MARKET)
SIDE_NAME: Final = {int(Side.BUY): "BUY", int(Side.SELL): "SELL"}
TYPE_NAME: Final = {int(OrdType.LIMIT): "LIMIT", int(OrdType.MARKET): "MARKET"}
TIF_NAME: Final = {int(t): t.name for t in Tif}
STP_NAME: Final = {int(s): s.name for s in Stp}
_ACCEPTED: Final = int(Ev.ACCEPTED)
_REJECTED: Final = int(Ev.REJECTED)
_TRADE: Final = int(Ev.TRADE)
_EXPIRED: Final = int(Ev.EXPIRED)
_CANCELED: Final = int(Ev.CANCELED)
FINAL: Final = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED"})


class Fill(NamedTuple):
    trade_id: int
    order_id: int
    symbol: int
    side: int  # the side of *this* order
    price: int  # ticks
    qty: int  # lots
    quote_qty: int  # quote minor units
    fee: int  # quote minor units
    maker: bool
    ts_ns: int


_ORDER_FIELDS = ("order_id", "account", "symbol", "side", "otype", "tif", "flags", "stp", "price",
                 "qty", "quote", "cid", "time_ns", "executed", "cum_quote", "leaves", "status",
                 "update_ns", "reject")


# The JSON pieces of an order that never change over its life (``edge.views_text._pieces``): its
# id, clientOrderId, symbol, side, type, time in force, price, quantity, flags, stp, creation time.
Pieces = tuple[str, str, str, str, str, str]


class OrderState:
    __slots__ = (*_ORDER_FIELDS, "text", "stext", "s_upd", "s_exec", "s_cq", "s_status", "s_rej")

    def __init__(self, ev: EvT, status: str = "NEW") -> None:
        self.order_id = ev.order_id
        self.account = ev.account
        self.symbol = ev.symbol
        self.side = ev.side
        self.otype = ev.otype
        self.tif = ev.tif
        self.flags = ev.flags
        self.stp = ev.stp
        self.price = ev.price
        quote = bool(ev.flags & _QUOTE_QTY)
        self.qty = 0 if quote else ev.qty
        self.quote = ev.qty if quote else 0
        self.cid = ev.cid
        self.time_ns = ev.ts_ns
        self.executed = 0
        self.cum_quote = 0
        self.leaves = 0 if quote else ev.qty
        self.status = status
        self.update_ns = ev.ts_ns
        self.reject: str | None = None
        self.text: Pieces | None = None  # built on first use; not pickled (derived)
        # the changing members as text (``views_text._state``) and the values it was made from:
        # valid while they are the order's (the OrderUpdate of a change and the answer of the
        # request that made it share it); derived, not pickled
        self.stext: str | None = None
        self.s_upd = 0
        self.s_exec = 0
        self.s_cq = 0
        self.s_status = ""
        self.s_rej: str | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickled the same compiled or not
        return _order_state, tuple([getattr(self, k) for k in _ORDER_FIELDS])

    def trade(self, ev: EvT, maker: bool) -> Fill:
        self.executed += ev.qty
        self.cum_quote += ev.quote_qty
        self.leaves = ev.maker_leaves if maker else ev.leaves
        self.status = "FILLED" if self.leaves == 0 else "PARTIALLY_FILLED"
        self.update_ns = ev.ts_ns
        return Fill(ev.trade_id, self.order_id, self.symbol, self.side, ev.price, ev.qty,
                    ev.quote_qty, ev.maker_fee if maker else ev.taker_fee, maker, ev.ts_ns)

    def close(self, status: str, ts_ns: int) -> None:
        self.status = status
        self.leaves = 0
        self.update_ns = ts_ns

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL

    def adopt_text(self, o: OrderState) -> None:
        """Take ``o``'s formatted text (the same order as the read model holds it): the fixed
        pieces always, the changing ones wherever they still match (``views_text._state``)."""
        self.text = o.text
        self.stext, self.s_upd, self.s_exec, self.s_cq, self.s_status, self.s_rej = (
            o.stext, o.s_upd, o.s_exec, o.s_cq, o.s_status, o.s_rej)


_BLANK = EvT.make((0,) * 25 + (None,))


def _order_state(*values: Any) -> OrderState:
    o = OrderState(_BLANK)  # (a compiled class has no bare __new__)
    for k, v in zip(_ORDER_FIELDS, values, strict=True):
        setattr(o, k, v)
    return o


def fill_json(f: Fill, u: SymbolUnits) -> dict[str, Any]:
    return {"tradeId": f.trade_id, "price": u.price_str(f.price), "qty": u.qty_str(f.qty),
            "quoteQty": u.quote_str(f.quote_qty), "fee": u.quote_str(f.fee),
            "feeAsset": u.sym.quote, "liquidity": "MAKER" if f.maker else "TAKER"}


def fill_row_json(f: Fill, u: SymbolUnits) -> dict[str, Any]:
    """A row of GET /v1/fills."""
    d = fill_json(f, u)
    d.update(orderId=f.order_id, symbol=u.sym.name, side=SIDE_NAME.get(f.side, "?"),
             time=f.ts_ns // 1_000_000)
    return d


def order_json(o: OrderState, u: SymbolUnits, fills: list[Fill] | None = None) -> dict[str, Any]:
    market = o.otype == _MARKET
    d: dict[str, Any] = {
        "orderId": o.order_id or None,
        "clientOrderId": o.cid,
        "symbol": u.sym.name,
        "side": SIDE_NAME.get(o.side, "?"),
        "type": TYPE_NAME.get(o.otype, "?"),
        "timeInForce": TIF_NAME.get(o.tif, "?"),
        "price": None if market else u.price_str(o.price),
        "quantity": u.qty_str(o.qty) if o.qty or not o.quote else None,
        "executedQty": u.qty_str(o.executed),
        "cumQuoteQty": u.quote_str(o.cum_quote),
        "status": o.status,
        "postOnly": bool(o.flags & _POST_ONLY),
        "stp": STP_NAME.get(o.stp, "?"),
        "time": o.time_ns // 1_000_000,
        "updateTime": o.update_ns // 1_000_000,
        "timeUs": o.update_ns // 1_000,
    }
    if o.quote:
        d["quoteQuantity"] = u.quote_str(o.quote)
    if o.reject is not None:
        d["rejectReason"] = o.reject
    if fills is not None:
        d["fills"] = [fill_json(f, u) for f in fills]
    return d


def place_outcome(evs: list[EvT], units: dict[int, SymbolUnits]
                  ) -> tuple[OrderState, SymbolUnits, list[Fill]]:
    """The order, its units and entry fills after the events of one NEW_ORDER command; raises
    ApiError if it was rejected (a FOK that could not fill is answered as an EXPIRED order)."""
    state: OrderState | None = None
    fills: list[Fill] = []
    for e in evs:
        k = e.kind
        if k == _ACCEPTED and state is None:
            state = OrderState(e)
        elif k == _REJECTED:
            if e.reason in REJECT_AS_EXPIRED and e.symbol in units:
                state = OrderState(e, "EXPIRED")
                state.leaves = 0
                return state, units[e.symbol], []
            raise from_reject(e.reason)
        elif state is None:
            continue
        elif k == _TRADE and e.order_id == state.order_id:
            fills.append(state.trade(e, maker=False))
        elif k == _EXPIRED and e.order_id == state.order_id:
            state.close("EXPIRED", e.ts_ns)
        elif k == _CANCELED and e.order_id == state.order_id:
            state.close("CANCELED", e.ts_ns)
    if state is None:
        raise ApiError("INTERNAL", "engine answered a new order without ACCEPTED or REJECTED")
    u = units.get(state.symbol)
    if u is None:
        raise ApiError("INTERNAL", f"engine answered with unknown symbol id {state.symbol}")
    return state, u, fills


def place_response(evs: list[EvT], units: dict[int, SymbolUnits]) -> dict[str, Any]:
    """The order JSON for the events of one NEW_ORDER command; raises ApiError if rejected."""
    return order_json(*place_outcome(evs, units))


def first_reject(evs: list[EvT]) -> ApiError | None:
    for e in evs:
        if e.kind == _REJECTED:
            return from_reject(e.reason)
    return None
