"""Transport-independent operations of the edge: what REST routes and WS methods both call.

Each operation takes the authenticated ``ApiKey`` (the account is always the key's) and the request
parameters (a JSON object), validates them (``edge.orders`` / ``edge.schema``), submits the record
through the ``EngineGateway`` or reads the ``ReadModel``, and returns a JSON-able result or raises
``ApiError``. Writes resolve once their events are durable; reads are answered from the read model,
which already holds every event of this caller's completed writes (read-your-writes).

Pre-checks at the edge are only conveniences (a clear error without a round trip); the engine
decides: a symbol's mode, balances and duplicate clientOrderIds are checked there.
"""

from __future__ import annotations

from typing import Any, Final

from edge import schema
from edge.auth import ApiKey
from edge.convert import SymbolUnits, amount_str
from edge.errors import ApiError
from edge.gateway import Done, EngineGateway, Events
from edge.orders import Validator
from edge.readmodel import ReadModel
from edge.recio import Command, EvT
from edge.views import OrderState, first_reject, order_json, place_outcome, place_response
from edge.views_text import order_text
from pipeline.config import Config
from pipeline.records import CmdFlag, Ev, Mode

_DISCONNECT: Final = int(CmdFlag.DISCONNECT)
_CANCELED: Final = int(Ev.CANCELED)
_ACCEPTED: Final = int(Ev.ACCEPTED)

MODE_NAME = {int(m): m.name for m in Mode}


class TradingService:
    def __init__(self, cfg: Config, gateway: EngineGateway) -> None:
        self.cfg = cfg
        self.gw = gateway
        self.v = Validator(cfg)
        self.units = self.v.units_by_id

    @property
    def rm(self) -> ReadModel:
        return self.gw.readmodel

    # -- public -----------------------------------------------------------------------------------
    def symbols(self) -> list[dict[str, Any]]:
        out = []
        for s in self.cfg.symbols:
            out.append({
                "symbol": s.name, "base": s.base, "quote": s.quote,
                "mode": MODE_NAME.get(self.rm.symbol_mode(s.symbol_id), "NORMAL"),
                "tickSize": s.tick, "lotSize": s.lot, "minQty": s.min_qty, "maxQty": s.max_qty,
                "minNotional": s.min_notional, "maxPrice": s.max_price,
                "makerFeeBps": s.maker_fee_bps, "takerFeeBps": s.taker_fee_bps,
                "baseScale": s.base_scale, "quoteScale": s.quote_scale,
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": list(schema.TIFS),
                "stpModes": list(schema.STPS)})
        return out

    # -- trading ----------------------------------------------------------------------------------
    async def place(self, key: ApiKey, params: Any, slot: int = 0) -> dict[str, Any]:
        return await self.place_cmd(self.v.place_raw(key.account, params), slot)

    async def place_cmd(self, cmd: Command, slot: int = 0) -> dict[str, Any]:
        """``place`` of an already validated command."""
        return place_response(await self.gw.submit(cmd, slot), self.units)

    async def cancel(self, key: ApiKey, params: Any, slot: int = 0,
                     query: bool = False) -> dict[str, Any]:
        return await self.cancel_cmd(key, self.v.cancel(key.account, params, query), slot)

    async def cancel_cmd(self, key: ApiKey, cmd: Command, slot: int = 0) -> dict[str, Any]:
        """``cancel`` of an already validated command."""
        return self._cancel_result(key, await self.gw.submit(cmd, slot))

    def _cancel_result(self, key: ApiKey, evs: Events) -> dict[str, Any]:
        return order_json(*self._canceled(key, evs))

    def _canceled(self, key: ApiKey, evs: Events) -> tuple[OrderState, SymbolUnits]:
        rej = first_reject(evs)
        if rej is not None:
            raise rej
        for e in evs:
            if e.kind == _CANCELED and e.account == key.account:
                return self._closed_state(key.account, e)
        raise ApiError("UNKNOWN_ORDER", "no open order matched")

    # The same two without a coroutine (the WS order path): validate now (ApiError raised here)
    # and send; ``done(events, None)`` or ``done(None, error)`` follows when the events are durable
    # (``edge.gateway.Done``), and the caller builds the answer with ``placed_text`` /
    # ``canceled_text``. They return None once sent, or the validated command when the gateway
    # could not take it at once (inbound ring full): the caller then awaits ``place_cmd`` /
    # ``cancel_cmd`` with it.
    def send_place(self, key: ApiKey, params: Any, slot: int, done: Done) -> Command | None:
        cmd = self.v.place_raw(key.account, params)
        return None if self.gw.send(cmd, slot, done) else cmd

    def send_cmd(self, cmd: Command, slot: int, done: Done) -> bool:
        """Send an already built record (``edge.wire_fast``); False when it must wait for room."""
        return self.gw.send(cmd, slot, done)

    def send_cancel(self, key: ApiKey, params: Any, slot: int, done: Done) -> Command | None:
        cmd = self.v.cancel_raw(key.account, params)
        return None if self.gw.send(cmd, slot, done) else cmd

    def placed_text(self, evs: Events) -> tuple[str, int]:
        """A place's answer as JSON text (``edge.views_text``) and the order id while the order
        rests (0 once it is closed); raises ApiError when it was rejected.

        A resting order whose only event is its ACCEPTED (the common post-only quote: its BALANCE
        event never becomes an object, ``Dispatcher.feed_records``) is answered from the read
        model's ``OrderState`` while that still is NEW and unfilled, i.e. exactly what
        ``place_outcome`` would rebuild from the event; no second ``OrderState`` is made."""
        if len(evs) == 1:
            e = evs[0]
            if e.kind == _ACCEPTED:
                known = self.rm.open_index.get(e.order_id)
                if (known is not None and known.executed == 0 and known.status == "NEW"
                        and known.account == e.account):
                    ku = self.units.get(known.symbol)
                    if ku is not None:
                        return order_text(known, ku, []), known.order_id
        st, u, fills = place_outcome(evs, self.units)
        if st.order_id:  # the read model formatted the order's fixed members already (its push)
            known = self.rm.order(st.account, st.order_id)
            if known is not None:
                st.adopt_text(known)
        return order_text(st, u, fills), st.order_id if st.is_open else 0

    def canceled_text(self, key: ApiKey, evs: Events) -> str:
        """A cancel's answer as JSON text; raises ApiError when it was rejected."""
        return order_text(*self._canceled(key, evs))

    async def cancel_all(self, key: ApiKey, params: Any, slot: int = 0,
                         query: bool = False) -> list[dict[str, Any]]:
        cmd = self.v.cancel_all(key.account, params, query)
        evs = await self.gw.submit(cmd, slot)
        rej = first_reject(evs)
        if rej is not None:
            raise rej
        return [order_json(*self._closed_state(key.account, e)) for e in evs
                if e.kind == _CANCELED and e.account == key.account]

    async def cancel_orders(self, key: ApiKey, order_ids: list[int], slot: int = 0) -> int:
        """Cancel-on-disconnect: cancel each still-open order; returns how many were canceled."""
        n = 0
        for oid in order_ids:
            st = self.rm.order(key.account, oid)
            if st is None or not st.is_open:
                continue
            cmd = self.v.cancel(key.account, {"orderId": oid})
            cmd["flags"] = int(cmd["flags"]) | _DISCONNECT  # canceled with reason DISCONNECT
            try:
                evs = await self.gw.submit(cmd, slot)
            except ApiError:
                continue
            n += sum(1 for e in evs if e.kind == Ev.CANCELED)
        return n

    def _closed_state(self, account: int, e: EvT) -> tuple[OrderState, SymbolUnits]:
        st = self.rm.order(account, e.order_id)
        if st is None:  # evicted already (tiny closed cache): answer from the event alone
            st = OrderState(e, "CANCELED")
        return st, self._units(st.symbol)

    async def withdraw(self, key: ApiKey, params: Any, slot: int = 0) -> dict[str, Any]:
        cmd = self.v.withdraw(key.account, params)
        evs = await self.gw.submit(cmd, slot)
        rej = first_reject(evs)
        if rej is not None:
            raise rej
        asset = self.v.assets_by_id[int(cmd["asset"])]
        return {"asset": asset.name, "amount": amount_str(asset, int(cmd["amount"])),
                "status": "COMPLETED", "seq": evs[-1].seq if evs else 0}

    # -- reads ------------------------------------------------------------------------------------
    def order_status(self, key: ApiKey, params: Any, query: bool = False) -> dict[str, Any]:
        p = schema.check(params, schema.ORDER_QUERY, query)
        symbol = self.v.symbol_id(p)
        if ("orderId" in p) == ("clientOrderId" in p):
            raise ApiError("BAD_REQUEST", "give exactly one of orderId, clientOrderId")
        if "orderId" in p:
            st = self.rm.order(key.account, p["orderId"])
        else:
            st = self.rm.order_by_cid(key.account, p["clientOrderId"])
        if st is None or (symbol and st.symbol != symbol):
            raise ApiError("UNKNOWN_ORDER")
        return self.rm.order_json(st)

    def open_orders(self, key: ApiKey, params: Any, query: bool = False) -> list[dict[str, Any]]:
        p = schema.check(params, schema.OPEN_ORDERS, query)
        return [self.rm.order_json(o) for o in self.rm.open_orders(key.account, self.v.symbol_id(p))]

    def fills(self, key: ApiKey, params: Any, query: bool = False) -> list[dict[str, Any]]:
        p = schema.check(params, schema.FILLS, query)
        return self.rm.fills_json(key.account, self.v.symbol_id(p), p.get("limit", 100))

    def balances(self, key: ApiKey, params: Any, query: bool = False) -> list[dict[str, str]]:
        schema.check(params, schema.EMPTY, query)
        return self.rm.balances_json(key.account)

    # -- admin ------------------------------------------------------------------------------------
    async def admin(self, key: ApiKey, action: str, params: Any,
                    symbol: str = "") -> dict[str, Any]:
        v = self.v
        if action == "symbol.mode":
            rec = v.admin_symbol_mode(key.key_id, symbol, params)
        elif action == "global.mode":
            rec = v.admin_global_mode(key.key_id, params)
        elif action == "symbol.cancelAll":
            rec = v.admin_cancel_all(key.key_id, symbol, params)
        elif action == "withdrawals.halt":
            rec = v.admin_withdrawals_halt(key.key_id, params)
        elif action == "deposit":
            rec = v.admin_deposit(key.key_id, params)
        else:
            raise ApiError("NOT_FOUND", f"no admin action {action}")
        evs = await self.gw.submit_admin(rec)
        rej = first_reject(evs)
        if rej is not None:
            raise rej
        return self._admin_result(action, evs)

    def _admin_result(self, action: str, evs: Events) -> dict[str, Any]:
        seq = evs[-1].seq if evs else 0
        out: dict[str, Any] = {"action": action, "seq": seq, "status": "APPLIED"}
        for e in evs:
            if e.kind == Ev.MODE_CHANGED:
                out["mode"] = MODE_NAME.get(e.mode, str(e.mode))
            elif e.kind == Ev.WITHDRAWALS:
                out["withdrawalsHalted"] = bool(e.mode)
        if action == "symbol.cancelAll":
            out["canceled"] = sum(1 for e in evs if e.kind == Ev.CANCELED)
        return out

    async def audit(self, params: Any, query: bool = False) -> list[dict[str, Any]]:
        p = schema.check(params, schema.AUDIT, query)
        return await self.gw.audit(p.get("limit", 100))

    def _units(self, symbol: int) -> SymbolUnits:
        u = self.units.get(symbol)
        if u is None:
            raise ApiError("INTERNAL", f"unknown symbol id {symbol}")
        return u
