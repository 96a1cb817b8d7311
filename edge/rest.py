"""The REST app: route table, auth, rate limits, parameters, metrics (API.md "REST").

Transport: ``edge.http`` (httptools on uvloop; the measurement behind that choice is in its
header). This module is the application on top: one ``ROUTES`` table drives routing, the role
check, the rate-limit weight, ``/openapi.json`` and the metrics' route label.

Request path:
  route lookup (static dict, then templates) -> 404 NOT_FOUND / 405 METHOD_NOT_ALLOWED
  signed routes: ``Authenticator.verify_rest`` over the exact target and body bytes -> role ->
  ``KeyLimiter.charge(weight, order)``; parameters: POST -> the JSON body (a query string is
  refused), GET/DELETE -> the query string (a body is refused; duplicates refused) plus path
  parameters; then ``TradingService``.
Every response to a request that carried ``X-API-KEY`` has ``X-RateLimit-Limit`` /
``X-RateLimit-Remaining`` (auth failures report the key's bucket without charging it); refusals
add ``Retry-After``. Latency is observed per route template (``"POST /v1/orders"``), errors per name.

Market data (``/v1/depth``, ``/v1/trades``, ``/v1/candles``, ``/v1/ticker``) is in the table and the
OpenAPI document; it answers from a ``MarketData`` provider given to ``RestApp(market=...)`` (the
publisher's, later) and, without one, 503 ``SERVICE_UNAVAILABLE``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

from edge import schema
from edge.auth import ApiKey, Authenticator
from edge.errors import ApiError
from edge.http import Request, Response
from edge.metrics import EdgeMetrics
from edge.ratelimit import KeyLimiter, Quota
from edge.schema import F
from edge.service import TradingService

Params = dict[str, Any]


class MarketData(Protocol):
    def depth(self, params: Params) -> Any: ...
    def trades(self, params: Params) -> Any: ...
    def candles(self, params: Params) -> Any: ...
    def ticker(self, params: Params) -> Any: ...


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    op: str  # RestApp method name: op_<op>
    auth: str = "public"  # public | read | trade | admin
    weight: int = 1
    order: bool = False  # charges the orders/s bucket
    summary: str = ""
    body: tuple[F, ...] | None = None  # JSON body fields (POST)
    query: tuple[F, ...] = ()
    tags: tuple[str, ...] = field(default=("public",))

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


_SYM_Q = (F("symbol", "string", True), F("limit", "integer", lo=1, hi=1000))
_CANDLES_Q = (F("symbol", "string", True),
              F("interval", "enum", True, ("1s", "1m", "5m", "15m", "1h", "1d")),
              F("startTime", "integer"), F("endTime", "integer"), F("limit", "integer", lo=1, hi=1000))
_TICKER_Q = (F("symbol", "string", True),)
ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/time", "time", summary="server time (ms)"),
    Route("GET", "/v1/symbols", "symbols", summary="trading rules and modes of every symbol"),
    Route("GET", "/healthz", "healthz", summary="process alive"),
    Route("GET", "/readyz", "readyz", summary="engine reachable and ready"),
    Route("GET", "/openapi.json", "openapi", summary="this document"),
    Route("GET", "/v1/depth", "depth", summary="order book snapshot", query=_SYM_Q, tags=("market",)),
    Route("GET", "/v1/trades", "trades", summary="recent trades", query=_SYM_Q, tags=("market",)),
    Route("GET", "/v1/candles", "candles", summary="candles", query=_CANDLES_Q, tags=("market",)),
    Route("GET", "/v1/ticker", "ticker", summary="24 h ticker", query=_TICKER_Q, tags=("market",)),
    Route("POST", "/v1/orders", "place", "trade", 1, True, "place an order", body=schema.PLACE,
          tags=("trade",)),
    Route("DELETE", "/v1/orders/{orderId}", "cancel_id", "trade", 1, True, "cancel an order by id",
          tags=("trade",)),
    Route("DELETE", "/v1/orders", "cancel_q", "trade", 1, True,
          "cancel by clientOrderId (with symbol), else cancel all open orders (of symbol if given)",
          query=(F("symbol", "string"), F("clientOrderId", "string", max_len=36)), tags=("trade",)),
    Route("GET", "/v1/orders/{orderId}", "order_id", "read", 1, summary="one order by id",
          tags=("trade",)),
    Route("GET", "/v1/orders", "orders_q", "read", 2,
          summary="one order by clientOrderId, else the open orders (of symbol if given)",
          query=(F("symbol", "string"), F("status", "enum", enum=("open",)),
                 F("clientOrderId", "string", max_len=36), F("orderId", "integer", lo=1)),
          tags=("trade",)),
    Route("GET", "/v1/fills", "fills", "read", 5, summary="recent fills", query=schema.FILLS,
          tags=("trade",)),
    Route("GET", "/v1/balances", "balances", "read", 5, summary="balances", tags=("trade",)),
    Route("POST", "/v1/withdrawals", "withdraw", "trade", 1, summary="withdraw",
          body=schema.WITHDRAW, tags=("trade",)),
    Route("POST", "/v1/admin/symbols/{symbol}/mode", "adm_symbol_mode", "admin",
          summary="set a symbol's mode", body=schema.ADMIN_SYMBOL_MODE, tags=("admin",)),
    Route("POST", "/v1/admin/mode", "adm_global_mode", "admin", summary="global SOFT_HALT / NORMAL",
          body=schema.ADMIN_GLOBAL_MODE, tags=("admin",)),
    Route("POST", "/v1/admin/symbols/{symbol}/cancel-all", "adm_cancel_all", "admin",
          summary="cancel every open order on a symbol", body=schema.ADMIN_CANCEL_ALL,
          tags=("admin",)),
    Route("POST", "/v1/admin/withdrawals/halt", "adm_withdrawals", "admin",
          summary="halt or resume withdrawals", body=schema.ADMIN_WITHDRAWALS, tags=("admin",)),
    Route("POST", "/v1/admin/deposits", "adm_deposit", "admin", summary="credit an account",
          body=schema.ADMIN_DEPOSIT, tags=("admin",)),
    Route("GET", "/v1/admin/audit", "adm_audit", "admin", summary="the audit trail, newest first",
          query=schema.AUDIT, tags=("admin",)),
)


class RestApp:
    def __init__(self, service: TradingService, auth: Authenticator, limiter: KeyLimiter,
                 metrics: EdgeMetrics, market: MarketData | None = None,
                 routes: tuple[Route, ...] = ROUTES) -> None:
        self.svc = service
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.market = market
        self.routes = routes
        self._static: dict[str, dict[str, Route]] = {}
        self._templates: list[tuple[list[str], dict[str, Route]]] = []
        for r in routes:
            if "{" in r.template:
                parts = r.template.strip("/").split("/")
                for tparts, by_method in self._templates:
                    if tparts == parts:
                        by_method[r.method] = r
                        break
                else:
                    self._templates.append((parts, {r.method: r}))
            else:
                self._static.setdefault(r.template, {})[r.method] = r
        self._openapi: bytes | None = None

    # -- routing ----------------------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        by_method = self._static.get(path)
        params: dict[str, str] = {}
        if by_method is None:
            segs = path.strip("/").split("/")
            for tparts, bm in self._templates:
                if len(tparts) != len(segs):
                    continue
                got: dict[str, str] = {}
                for t, s in zip(tparts, segs, strict=True):
                    if t[0] == "{":
                        got[t[1:-1]] = s
                    elif t != s:
                        break
                else:
                    by_method, params = bm, got
                    break
        if by_method is None:
            raise ApiError("NOT_FOUND", f"no route {path[:80]}")
        r = by_method.get(method)
        if r is None:
            raise ApiError("METHOD_NOT_ALLOWED", f"{method} is not allowed on {path[:80]}; "
                           f"allowed: {', '.join(sorted(by_method))}")
        return r, params

    # -- entry ------------------------------------------------------------------------------------
    def __call__(self, req: Request) -> Response | Awaitable[Response]:
        label = "UNMATCHED"
        headers: list[tuple[str, str]] | None = None
        try:
            route, pparams = self.match(req.method, req.path)
            label = route.label
            key: ApiKey | None = None
            if route.auth != "public":
                headers = self._peek_quota(req)
                key = self.auth.verify_rest(req.method, req.target, req.body, req.headers)
                self.auth.require(key, route.auth)
                headers = self.limiter.charge(key.key_id, route.weight, route.order).headers()
            params = self._params(req)
            op: Callable[[ApiKey | None, Params, dict[str, str]], Any] = getattr(self, "op_" + route.op)
            result = op(key, params, pparams)
        except ApiError as e:
            return self._error(req, label, e, headers)
        if isinstance(result, Response):
            self.metrics.observe_http(label, time.perf_counter() - req.t0)
            return result
        if hasattr(result, "__await__"):
            return self._finish(req, label, result, headers)
        self.metrics.observe_http(label, time.perf_counter() - req.t0)
        return Response.json(result, headers=headers)

    async def _finish(self, req: Request, label: str, aw: Awaitable[Any],
                      headers: list[tuple[str, str]] | None) -> Response:
        try:
            result = await aw
        except ApiError as e:
            return self._error(req, label, e, headers)
        self.metrics.observe_http(label, time.perf_counter() - req.t0)
        return Response.json(result, headers=headers)

    def _error(self, req: Request, label: str, e: ApiError,
               headers: list[tuple[str, str]] | None) -> Response:
        self.metrics.error(e.name)
        self.metrics.observe_http(label, time.perf_counter() - req.t0)
        q = e.fields.get("quota")
        if isinstance(q, Quota):
            headers = q.headers()
        ra = e.fields.get("retry_after_s")
        if ra is None and e.name == "CAPACITY_EXHAUSTED":
            ra = 1
        if ra is not None:
            headers = [*(headers or []), ("Retry-After", str(ra))]
        return Response.error(e, headers)

    def _peek_quota(self, req: Request) -> list[tuple[str, str]] | None:
        return self.error_headers(req.headers)

    def error_headers(self, headers: dict[str, str]) -> list[tuple[str, str]] | None:
        """Rate-limit headers for a signed request answered without charging (also used by
        ``edge.http`` for the 413 / 400 it answers itself)."""
        kid = headers.get("x-api-key")
        return self.limiter.peek(kid).headers() if kid else None

    def _params(self, req: Request) -> Params:
        if req.method == "POST":
            if req.query:
                raise ApiError("BAD_REQUEST", "POST parameters go in the JSON body, not the query")
            if not req.body:
                return {}
            try:
                body = orjson.loads(req.body)
            except orjson.JSONDecodeError:
                raise ApiError("BAD_REQUEST", "body is not valid JSON") from None
            if type(body) is not dict:
                raise ApiError("BAD_REQUEST", "body must be a JSON object")
            return dict(body)
        if req.body:
            raise ApiError("BAD_REQUEST", f"{req.method} takes no body")
        out: Params = {}
        if req.query:
            try:
                pairs = parse_qsl(req.query, keep_blank_values=True, strict_parsing=True,
                                  max_num_fields=32)
            except ValueError:
                raise ApiError("BAD_REQUEST", "malformed query string") from None
            for k, v in pairs:
                if k in out:
                    raise ApiError("BAD_REQUEST", f"duplicate query parameter {k[:40]!r}")
                out[k] = v
        return out

    # -- public -----------------------------------------------------------------------------------
    def op_time(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        schema.check(p, schema.EMPTY, query=True)
        return {"serverTime": time.time_ns() // 1_000_000}

    def op_symbols(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        schema.check(p, schema.EMPTY, query=True)
        return self.svc.symbols()

    def op_healthz(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        return {"status": "ok"}

    def op_readyz(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        if not self.svc.gw.ready():
            raise ApiError("ENGINE_UNAVAILABLE", "engine not ready")
        return {"status": "ready", "seq": self.svc.rm.last_seq}

    def op_openapi(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Response:
        if self._openapi is None:
            from edge.openapi import openapi

            self._openapi = orjson.dumps(openapi(self.routes))
        return Response(200, self._openapi)

    def _market(self, name: str, p: Params, spec: tuple[F, ...]) -> Any:
        checked = schema.check(p, spec, query=True)
        if self.market is None:
            raise ApiError("SERVICE_UNAVAILABLE", "market data is not served by this edge yet")
        return getattr(self.market, name)(checked)

    def op_depth(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        return self._market("depth", p, _SYM_Q)

    def op_trades(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        return self._market("trades", p, _SYM_Q)

    def op_candles(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        return self._market("candles", p, _CANDLES_Q)

    def op_ticker(self, key: ApiKey | None, p: Params, path: dict[str, str]) -> Any:
        return self._market("ticker", p, _TICKER_Q)

    # -- signed -----------------------------------------------------------------------------------
    def op_place(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.place(key, p)

    def op_cancel_id(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.cancel(key, {**p, "orderId": path["orderId"]}, query=True)

    def op_cancel_q(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        if "clientOrderId" in p:
            return self.svc.cancel(key, p, query=True)
        return self.svc.cancel_all(key, p, query=True)

    def op_order_id(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.order_status(key, {**p, "orderId": path["orderId"]}, query=True)

    def op_orders_q(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        if "clientOrderId" in p or "orderId" in p:
            if p.pop("status", "open") != "open":
                raise ApiError("BAD_REQUEST", "status must be open")
            return self.svc.order_status(key, p, query=True)
        return self.svc.open_orders(key, p, query=True)

    def op_fills(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.fills(key, p, query=True)

    def op_balances(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.balances(key, p, query=True)

    def op_withdraw(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.withdraw(key, p)

    # -- admin ------------------------------------------------------------------------------------
    def op_adm_symbol_mode(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.admin(key, "symbol.mode", p, path["symbol"])

    def op_adm_global_mode(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.admin(key, "global.mode", p)

    def op_adm_cancel_all(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.admin(key, "symbol.cancelAll", p, path["symbol"])

    def op_adm_withdrawals(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.admin(key, "withdrawals.halt", p)

    def op_adm_deposit(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.admin(key, "deposit", p)

    def op_adm_audit(self, key: ApiKey, p: Params, path: dict[str, str]) -> Any:
        return self.svc.audit(p, query=True)
