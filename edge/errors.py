"""The one table of API errors (API.md "Errors", CONVENTIONS.md habit 6).

Every error a client can see is a row of ``ERRORS``: a stable name, a stable numeric code, the HTTP
status and a default message. Codes are grouped by class and never reused or renumbered (clients
switch on them):

    1000-1099  malformed request (bad JSON, unknown field, wrong type, route, size)
    1100-1199  bad values (symbol, price, quantity, amount, notional, asset, account)
    1200-1299  refused by book / balance state (balance, post-only, unknown order, duplicate id)
    1300-1399  refused by a mode (cancel-only, halts)
    2000-2099  authentication and permission
    3000-3099  throttling and capacity
    4000-4099  availability (outcome unknown: the client queries by clientOrderId)

The JSON body is always ``{"code": int, "error": NAME, "message": text}``. On WebSocket the same
object is the ``error`` member of the response and ``status`` is the HTTP status below.

``REJECT_TO_ERROR`` maps each engine ``RejectReason`` to its API error. ``FOK_UNFILLABLE`` is not an
error for the client: a FOK order that cannot fill completely is answered as an order with status
``EXPIRED`` (API.md), so it is listed in ``REJECT_AS_EXPIRED`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.records import RejectReason


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    name: str
    code: int
    status: int
    message: str


_ROWS: tuple[tuple[str, int, int, str], ...] = (
    # malformed request
    ("BAD_REQUEST", 1000, 400, "the request is malformed"),
    ("NOT_FOUND", 1001, 404, "no such route"),
    ("METHOD_NOT_ALLOWED", 1002, 405, "method not allowed on this route"),
    ("PAYLOAD_TOO_LARGE", 1003, 413, "request body or frame exceeds the size limit"),
    # bad values
    ("UNKNOWN_SYMBOL", 1100, 404, "unknown symbol"),
    ("INVALID_PRICE", 1101, 400, "price is not a valid multiple of the tick size"),
    ("INVALID_QUANTITY", 1102, 400, "quantity is not a valid multiple of the lot size"),
    ("INVALID_AMOUNT", 1103, 400, "amount is not a valid amount of the asset"),
    ("MIN_NOTIONAL", 1104, 400, "order notional is below the symbol's minimum"),
    ("UNKNOWN_ASSET", 1105, 404, "unknown asset"),
    ("UNKNOWN_ACCOUNT", 1106, 404, "unknown account"),
    # book / balance state
    ("INSUFFICIENT_BALANCE", 1200, 400, "insufficient available balance"),
    ("WOULD_TAKE", 1201, 409, "post-only order would take liquidity"),
    ("UNKNOWN_ORDER", 1202, 404, "unknown order"),
    ("DUPLICATE_CLIENT_ORDER_ID", 1203, 409, "clientOrderId is already used by an open order"),
    ("CONFLICT", 1204, 409, "the request conflicts with the current state"),
    # modes
    ("SYMBOL_CANCEL_ONLY", 1300, 403, "symbol is in cancel-only mode"),
    ("SYMBOL_HALTED", 1301, 403, "symbol is halted"),
    ("MARKET_HALTED", 1302, 403, "the market is halted"),
    ("WITHDRAWALS_HALTED", 1303, 403, "withdrawals are halted"),
    # auth
    ("AUTH_MISSING", 2000, 401, "authentication required"),
    ("AUTH_BAD_SIGNATURE", 2001, 401, "unknown API key or bad signature"),
    ("AUTH_TIMESTAMP", 2002, 401, "timestamp outside the receive window"),
    ("AUTH_REPLAY", 2003, 401, "signature already used"),
    ("FORBIDDEN", 2004, 403, "the API key's role does not allow this"),
    # throttling and capacity
    ("RATE_LIMITED", 3000, 429, "rate limit exceeded"),
    ("CAPACITY_EXHAUSTED", 3001, 429, "the engine is at capacity; retry later"),
    # availability: outcome unknown
    ("NOT_LEADER", 4000, 503, "this node is not the leader"),
    ("FENCING_TOKEN", 4001, 503, "stale fencing token"),
    ("ENGINE_UNAVAILABLE", 4002, 503, "the engine did not answer in time; the outcome is unknown"),
    ("INTERNAL", 4003, 500, "internal error; the outcome is unknown"),
    ("SERVICE_UNAVAILABLE", 4004, 503, "this service is not available on this node"),
)

ERRORS: dict[str, ErrorSpec] = {r[0]: ErrorSpec(*r) for r in _ROWS}
BY_CODE: dict[int, ErrorSpec] = {r[1]: ERRORS[r[0]] for r in _ROWS}

REJECT_AS_EXPIRED = frozenset({RejectReason.FOK_UNFILLABLE})
REJECT_TO_ERROR: dict[RejectReason, ErrorSpec] = {
    r: ERRORS[r.name] for r in RejectReason if r not in REJECT_AS_EXPIRED
}


class EdgeError(Exception):
    """Base of every exception raised by the ``edge`` package."""


class ApiError(EdgeError):
    """An error answered to a client. ``fields`` carries extras (e.g. ``retry_after_s``)."""

    __slots__ = ("spec", "message", "fields")

    def __init__(self, name: str, message: str | None = None, **fields: Any) -> None:
        try:
            self.spec = ERRORS[name]
        except KeyError:
            raise KeyError(f"ApiError: {name!r} is not in edge.errors.ERRORS") from None
        self.message = message or self.spec.message
        self.fields = fields
        super().__init__(f"{name}: {self.message}")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def code(self) -> int:
        return self.spec.code

    @property
    def status(self) -> int:
        return self.spec.status

    def body(self) -> dict[str, Any]:
        return {"code": self.spec.code, "error": self.spec.name, "message": self.message}


def from_reject(reason: int, message: str | None = None) -> ApiError:
    """The API error for an engine REJECTED event's ``reason``."""
    try:
        spec = REJECT_TO_ERROR[RejectReason(reason)]
    except (ValueError, KeyError):
        return ApiError("INTERNAL", f"engine rejected with unmapped reason {reason}")
    return ApiError(spec.name, message)


def markdown_table() -> str:
    """The error table as it appears in docs/API.md (a test keeps the two identical)."""
    rows = ["| code | error | HTTP | default message |", "|---:|---|---:|---|"]
    rows += [f"| {e.code} | `{e.name}` | {e.status} | {e.message} |"
             for e in sorted(ERRORS.values(), key=lambda e: e.code)]
    return "\n".join(rows)
