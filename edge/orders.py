"""Validation: API request parameters -> COMMAND / ADMIN records (the inverse is ``edge.views``).

Every request passes ``edge.schema.check`` (shape: unknown / missing / wrong type -> BAD_REQUEST),
then the semantic rules below, each with its own error, before a record is packed:

order.place / POST /v1/orders
  * ``symbol`` configured, else UNKNOWN_SYMBOL.
  * LIMIT: ``price`` and ``quantity`` required, ``quoteQuantity`` refused; ``timeInForce`` default
    GTC. MARKET: ``price`` refused; exactly one of ``quantity`` / ``quoteQuantity`` (the latter BUY
    only); ``timeInForce`` IOC (default) or FOK.
  * ``postOnly`` only with LIMIT GTC.
  * price: exact tick multiple in (0, maxPrice] (INVALID_PRICE); quantity: exact lot multiple in
    [minQty, maxQty] (INVALID_QUANTITY); LIMIT notional >= minNotional (MIN_NOTIONAL).
  * ``clientOrderId`` packed with ``pipeline.records.cid_pack`` (BAD_REQUEST if outside the
    alphabet); ``stp`` default EXPIRE_TAKER.
cancel: exactly one of ``orderId`` / ``clientOrderId``; a clientOrderId needs ``symbol``.
cancel-all: ``symbol`` optional (absent: every symbol of the account).
admin: ``reason`` and ``ticket`` required; the audit note ``{"actor","action","reason","ticket",
...params}`` (UTF-8 JSON) travels in the ADMIN record, so it is journaled before the command acts.

The caller (the gateway) fills ``conn`` / ``req``; the account always comes from the API key.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson

from edge import schema
from edge.convert import SymbolUnits, amount_minor
from edge.errors import ApiError
from edge.fast_orders import cancel_fast, place_fast
from edge.recio import pack_admin, pack_command
from pipeline.config import Asset, Config
from pipeline.records import (
    ADMIN_NOTE_BYTES,
    GLOBAL_SYMBOL,
    CancelScope,
    Cmd,
    CmdFlag,
    Mode,
    OrdType,
    Side,
    Stp,
    Tif,
    cid_pack,
)

# module constants are Final: compiled, each is a C static, not a module-dict lookup per use
SIDE: Final = {"BUY": int(Side.BUY), "SELL": int(Side.SELL)}
OTYPE: Final = {"LIMIT": int(OrdType.LIMIT), "MARKET": int(OrdType.MARKET)}
TIF: Final = {t.name: int(t) for t in Tif}
STP: Final = {s.name: int(s) for s in Stp}
_QUOTE_QTY: Final = int(CmdFlag.QUOTE_QTY)
_POST_ONLY: Final = int(CmdFlag.POST_ONLY)
_NEW_ORDER: Final = int(Cmd.NEW_ORDER)
MODE: Final = {m.name: int(m) for m in Mode}


class Validator:
    """Turns checked request parameters into records; one per edge process (holds no state)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.units: dict[str, SymbolUnits] = {s.name: SymbolUnits.of(s) for s in cfg.symbols}
        self.units_by_id: dict[int, SymbolUnits] = {u.sym.symbol_id: u for u in self.units.values()}
        self.assets: dict[str, Asset] = {a.name: a for a in cfg.assets}
        self.assets_by_id: dict[int, Asset] = {a.asset_id: a for a in cfg.assets}

    # -- lookups --------------------------------------------------------------------------------
    def symbol(self, name: str) -> SymbolUnits:
        u = self.units.get(name)
        if u is None:
            raise ApiError("UNKNOWN_SYMBOL", f"unknown symbol {name[:40]!r}")
        return u

    def asset(self, name: str) -> Asset:
        a = self.assets.get(name)
        if a is None:
            raise ApiError("UNKNOWN_ASSET", f"unknown asset {name[:40]!r}")
        return a

    def symbol_id(self, p: dict[str, Any]) -> int:
        """The checked ``symbol`` of ``p`` as its id, 0 if absent."""
        name = p.get("symbol")
        return self.symbol(name).sym.symbol_id if name is not None else 0

    # -- trading ------------------------------------------------------------------------------
    def place_raw(self, account: int, params: Any) -> bytearray:
        """``place`` as the record's bytes: the common shapes straight-line (``edge.fast_orders``)."""
        raw = place_fast(self, account, params)
        return raw if raw is not None else bytearray(self.place(account, params).tobytes())

    def cancel_raw(self, account: int, params: Any) -> bytearray:
        raw = cancel_fast(self, account, params)
        return raw if raw is not None else bytearray(self.cancel(account, params).tobytes())

    def place(self, account: int, params: Any) -> np.void:
        p = schema.check(params, schema.PLACE)
        u = self.symbol(p["symbol"])
        side = SIDE[p["side"]]
        otype = OTYPE[p["type"]]
        flags = 0
        qty = 0
        price = 0
        if otype == OrdType.LIMIT:
            tif = TIF[p.get("timeInForce", "GTC")]
            if "quoteQuantity" in p:
                raise ApiError("BAD_REQUEST", "quoteQuantity is only for MARKET BUY orders")
            if "price" not in p:
                raise ApiError("BAD_REQUEST", "LIMIT orders need a price")
            if "quantity" not in p:
                raise ApiError("BAD_REQUEST", "LIMIT orders need a quantity")
            price = u.price_ticks(p["price"])
            qty = u.qty_lots(p["quantity"])
            if price * qty * u.sym.k < u.sym.min_notional_minor:
                raise ApiError("MIN_NOTIONAL", f"notional {u.quote_str(price * qty * u.sym.k)} is "
                               f"below minNotional {u.sym.min_notional}")
        else:
            tif = TIF[p.get("timeInForce", "IOC")]
            if tif == Tif.GTC:
                raise ApiError("BAD_REQUEST", "MARKET orders take timeInForce IOC or FOK")
            if "price" in p:
                raise ApiError("BAD_REQUEST", "MARKET orders take no price")
            if ("quantity" in p) == ("quoteQuantity" in p):
                raise ApiError("BAD_REQUEST", "MARKET orders need exactly one of quantity, quoteQuantity")
            if "quantity" in p:
                qty = u.qty_lots(p["quantity"])
            else:
                if side != Side.BUY:
                    raise ApiError("BAD_REQUEST", "quoteQuantity is only for MARKET BUY orders")
                qty = u.quote_minor(p["quoteQuantity"])
                if qty < u.sym.min_notional_minor:
                    raise ApiError("MIN_NOTIONAL", f"quoteQuantity is below minNotional {u.sym.min_notional}")
                flags |= _QUOTE_QTY
        if p.get("postOnly"):
            if otype != OrdType.LIMIT or tif != Tif.GTC:
                raise ApiError("BAD_REQUEST", "postOnly needs a LIMIT GTC order")
            flags |= _POST_ONLY
        cid = _cid(p.get("clientOrderId"))
        stp = STP[p.get("stp", "EXPIRE_TAKER")]
        return pack_command(_NEW_ORDER, account, price=price, qty=qty, symbol=u.sym.symbol_id,
                            flags=flags, side=side, otype=otype, tif=tif, stp=stp, cid=cid)

    def cancel(self, account: int, params: Any, query: bool = False) -> np.void:
        p = schema.check(params, schema.CANCEL, query)
        symbol = self.symbol_id(p)
        if ("orderId" in p) == ("clientOrderId" in p):
            raise ApiError("BAD_REQUEST", "give exactly one of orderId, clientOrderId")
        if "orderId" in p:
            return pack_command(Cmd.CANCEL, account, price=p["orderId"], symbol=symbol)
        if not symbol:
            raise ApiError("BAD_REQUEST", "cancel by clientOrderId needs symbol")
        return pack_command(Cmd.CANCEL, account, symbol=symbol, flags=int(CmdFlag.BY_CID),
                            cid=_cid(p["clientOrderId"]))

    def cancel_all(self, account: int, params: Any, query: bool = False) -> np.void:
        p = schema.check(params, schema.CANCEL_ALL, query)
        symbol = self.symbol_id(p)
        scope = CancelScope.ACCOUNT_SYMBOL if symbol else CancelScope.ACCOUNT
        return pack_command(Cmd.CANCEL_ALL, account, symbol=symbol, otype=int(scope))

    def withdraw(self, account: int, params: Any) -> np.void:
        p = schema.check(params, schema.WITHDRAW)
        a = self.asset(p["asset"])
        return pack_command(Cmd.WITHDRAW, account, qty=amount_minor(a, p["amount"]),
                            symbol=a.asset_id)

    # -- admin ----------------------------------------------------------------------------------
    def admin_symbol_mode(self, actor: str, symbol: str, params: Any) -> np.void:
        p = schema.check(params, schema.ADMIN_SYMBOL_MODE)
        u = self.symbol(symbol)
        cmd = pack_command(Cmd.SET_MODE, symbol=u.sym.symbol_id, side=MODE[p["mode"]])
        return _admin(cmd, actor, "symbol.mode", p, symbol=symbol, mode=p["mode"])

    def admin_global_mode(self, actor: str, params: Any) -> np.void:
        p = schema.check(params, schema.ADMIN_GLOBAL_MODE)
        cmd = pack_command(Cmd.SET_MODE, symbol=GLOBAL_SYMBOL, side=MODE[p["mode"]])
        return _admin(cmd, actor, "global.mode", p, mode=p["mode"])

    def admin_cancel_all(self, actor: str, symbol: str, params: Any) -> np.void:
        p = schema.check(params, schema.ADMIN_CANCEL_ALL)
        u = self.symbol(symbol)
        cmd = pack_command(Cmd.CANCEL_ALL, symbol=u.sym.symbol_id, otype=int(CancelScope.SYMBOL),
                           flags=int(CmdFlag.OPERATOR))
        return _admin(cmd, actor, "symbol.cancelAll", p, symbol=symbol)

    def admin_withdrawals_halt(self, actor: str, params: Any) -> np.void:
        p = schema.check(params, schema.ADMIN_WITHDRAWALS)
        cmd = pack_command(Cmd.WITHDRAWALS_HALT, side=1 if p["on"] else 0)
        return _admin(cmd, actor, "withdrawals.halt", p, on=p["on"])

    def admin_deposit(self, actor: str, params: Any) -> np.void:
        p = schema.check(params, schema.ADMIN_DEPOSIT)
        a = self.asset(p["asset"])
        cmd = pack_command(Cmd.DEPOSIT, p["account"], qty=amount_minor(a, p["amount"]),
                           symbol=a.asset_id)
        return _admin(cmd, actor, "deposit", p, account=p["account"], asset=p["asset"],
                      amount=p["amount"])


def _cid(value: str | None) -> bytes:
    if value is None:
        return bytes(28)
    try:
        return cid_pack(value)
    except ValueError as e:
        raise ApiError("BAD_REQUEST", str(e)) from None


def _admin(cmd: np.void, actor: str, action: str, p: dict[str, Any], **what: Any) -> np.void:
    reason, ticket = p["reason"].strip(), p["ticket"].strip()
    if not reason or not ticket:
        raise ApiError("BAD_REQUEST", "reason and ticket must not be blank")
    note = orjson.dumps({"actor": actor, "action": action, "reason": reason, "ticket": ticket,
                         **what})
    if len(note) > ADMIN_NOTE_BYTES:
        raise ApiError("BAD_REQUEST", f"audit note is {len(note)} bytes, limit {ADMIN_NOTE_BYTES}:"
                       " shorten reason or ticket")
    return pack_admin(cmd, note)
