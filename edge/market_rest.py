"""``handle(path, query) -> (status, body)`` for the REST market-data routes, for a router that
wants bytes rather than the ``MarketData`` protocol of ``edge.rest`` (both answer from a
``MarketState``). Query strings are validated with ``edge.schema`` exactly as ``RestApp`` does;
errors are the API's error bodies.

The process installs its state once (``install(state)``); ``handle`` then serves
``/v1/depth``, ``/v1/trades``, ``/v1/candles`` and ``/v1/ticker`` (404 otherwise, 503 before a
state is installed).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson

from edge import schema
from edge.errors import ApiError
from edge.market_state import MarketState
from edge.schema import F

SYM_Q = (F("symbol", "string", True), F("limit", "integer", lo=1, hi=1000))
CANDLES_Q = (F("symbol", "string", True),
             F("interval", "enum", True, ("1s", "1m", "5m", "15m", "1h", "1d")),
             F("startTime", "integer"), F("endTime", "integer"),
             F("limit", "integer", lo=1, hi=1000))
TICKER_Q = (F("symbol", "string", True),)
ROUTES = {"/v1/depth": ("depth", SYM_Q), "/v1/trades": ("trades", SYM_Q),
          "/v1/candles": ("candles", CANDLES_Q), "/v1/ticker": ("ticker", TICKER_Q)}

_state: MarketState | None = None


def install(state: MarketState | None) -> None:
    global _state
    _state = state


def handle(path: str, query: str | bytes = "", state: MarketState | None = None) -> tuple[int, bytes]:
    """Answer one GET of a market-data route: (HTTP status, JSON body)."""
    st = state or _state
    try:
        route = ROUTES.get(path)
        if route is None:
            raise ApiError("NOT_FOUND", f"no market-data route {path[:60]!r}")
        if st is None:
            raise ApiError("SERVICE_UNAVAILABLE", "market data is not served by this process")
        qs = query.decode("latin-1") if isinstance(query, bytes) else query
        pairs = parse_qsl(qs, keep_blank_values=True)
        params: dict[str, object] = {}
        for k, v in pairs:
            if k in params:
                raise ApiError("BAD_REQUEST", f"duplicate query parameter {k[:40]!r}")
            params[k] = v
        op, spec = route
        checked = schema.check(params, spec, query=True)
        return 200, orjson.dumps(getattr(st, op)(checked))
    except ApiError as e:
        return e.status, orjson.dumps(e.body())
