"""Gate G0 (RUNBOOK §5): ``POST /v1/smoke/trades`` crosses two orders between the smoke accounts
on the smoke symbol through the real pipeline and answers once the trade's postings are in Postgres.

Flow: fund the smoke accounts when they run low (audited DEPOSIT admin commands, reason "smoke
funding"); the seller rests a LIMIT GTC SELL of one lot at a fixed price, the buyer sends a LIMIT
IOC BUY at that price; the buyer's answer (durable, matched) carries the trade id and seq; then the
ledger is polled for the postings of that seq (settlement runs downstream of the WAL). Answer:
``{"status": "settled", "tradeId", "seq", "ledgerEntries"}`` — or 504 ``SETTLEMENT_TIMEOUT``-style
``{"status": "pending"}`` if the ledger did not catch up in time (the trade itself stands).

Admin role required: it moves (test) money, even if only between the two smoke accounts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from edge.auth import ApiKey
from edge.errors import ApiError
from edge.rest import ROUTES, RestApp, Route
from pipeline.config import Config

SMOKE_ROUTE = Route("POST", "/v1/smoke/trades", "smoke_trades", "admin",
                    summary="G0 smoke: cross two orders between the smoke accounts and wait until "
                            "the trade's postings are in Postgres", tags=("admin",))
SETTLE_TIMEOUT_S = 15.0
PRICE_TICKS_FROM_TOP = 1  # the smoke trade price, in ticks


class SmokeRestApp(RestApp):
    """RestApp plus the G0 smoke route."""

    def __init__(self, service: Any, auth: Any, limiter: Any, metrics: Any, *, cfg: Config,
                 market: Any = None) -> None:
        super().__init__(service, auth, limiter, metrics, market=market,
                         routes=(*ROUTES, SMOKE_ROUTE))
        self.cfg = cfg
        self._pool: Any = None
        self._lock = asyncio.Lock()

    def op_smoke_trades(self, key: ApiKey | None, p: dict[str, Any], path: dict[str, str]) -> Any:
        if p:
            raise ApiError("BAD_REQUEST", "the smoke trade takes no parameters")
        assert key is not None
        return self._smoke(key)

    async def _smoke(self, admin: ApiKey) -> dict[str, Any]:
        async with self._lock:  # one smoke trade at a time: they share the two accounts
            return await self._smoke_locked(admin)

    async def _smoke_locked(self, admin: ApiKey) -> dict[str, Any]:
        cfg = self.cfg
        sym = cfg.symbol(cfg.smoke_symbol)
        buyer_id, seller_id = cfg.smoke_accounts
        buyer = ApiKey("smoke-buyer", "", buyer_id, "trade")
        seller = ApiKey("smoke-seller", "", seller_id, "trade")
        price = _dec(PRICE_TICKS_FROM_TOP * sym.tick_minor, sym.quote_scale)
        qty = _dec(sym.min_qty_lots * sym.lot_minor, sym.base_scale)
        await self._fund(admin, buyer_id, sym.quote, 10**6 * sym.min_notional_minor + 10**9,
                         cfg.asset(sym.quote).scale)
        await self._fund(admin, seller_id, sym.base, 1000 * sym.min_qty_lots * sym.lot_minor,
                         cfg.asset(sym.base).scale)
        await self.svc.place(seller, {"symbol": sym.name, "side": "SELL", "type": "LIMIT",
                                      "timeInForce": "GTC", "price": price, "quantity": qty,
                                      "stp": "NONE"})
        order = await self.svc.place(buyer, {"symbol": sym.name, "side": "BUY", "type": "LIMIT",
                                             "timeInForce": "IOC", "price": price, "quantity": qty,
                                             "stp": "NONE"})
        fills = order.get("fills") or []
        if not fills:
            raise ApiError("CONFLICT", f"smoke order did not trade: {order.get('status')}")
        trade_id = fills[0]["tradeId"]
        seq = int(order["orderId"])  # an order's id is the seq of its command
        n = await self._await_postings(seq)
        if n == 0:
            return {"status": "pending", "tradeId": trade_id, "seq": seq, "ledgerEntries": 0}
        return {"status": "settled", "tradeId": trade_id, "seq": seq, "ledgerEntries": n}

    async def _fund(self, admin: ApiKey, account: int, asset: str, want_minor: int, scale: int) -> None:
        avail = self._available(account, asset)
        if avail >= want_minor // 10:
            return
        await self.svc.admin(admin, "deposit", {"account": account, "asset": asset,
                                                "amount": _dec(want_minor, scale),
                                                "reason": "smoke funding", "ticket": "G0"})

    def _available(self, account: int, asset: str) -> int:
        a = self.cfg.asset(asset)
        try:
            return int(self.svc.rm.balance(account, a.asset_id)[0])
        except (KeyError, AttributeError):
            return 0

    async def _await_postings(self, seq: int) -> int:
        import asyncpg

        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.cfg.settle.pg_dsn, min_size=0, max_size=2)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                n = await self._pool.fetchval(
                    "SELECT count(*) FROM ledger_entries WHERE shard = $1 AND seq = $2",
                    self.cfg.shard, seq)
            except (OSError, asyncpg.PostgresError):
                n = 0
            if n:
                return int(n)
            await asyncio.sleep(0.05)
        return 0


def _dec(minor: int, scale: int) -> str:
    """Exact decimal string of ``minor`` units of 10**-scale."""
    if scale == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**scale)
    frac = str(r).rjust(scale, "0").rstrip("0")
    return f"{sign}{q}.{frac}" if frac else f"{sign}{q}"
