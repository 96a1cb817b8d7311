"""Request field tables: one definition used by validation (``check``) and by ``/openapi.json``.

A request is a JSON object (REST body, REST query string, or WS ``params``). ``check`` refuses, with
``BAD_REQUEST`` and a message naming the field: a non-object, an unknown field, a missing required
field, a value of the wrong JSON type, an enum value outside its set, an integer out of range.
``null`` counts as absent (many client serialisers emit it for unset options). Values from a query
string are strings; ``check(..., query=True)`` reads integers and booleans from their text forms.
Semantic checks (tick multiples, limits, combinations) come after, in ``edge.orders``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.errors import ApiError

INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class F:
    name: str
    kind: str  # string | decimal | boolean | integer | enum
    required: bool = False
    enum: tuple[str, ...] = ()
    lo: int = 0
    hi: int = INT64_MAX
    max_len: int = 64
    doc: str = ""


SIDES = ("BUY", "SELL")
TYPES = ("LIMIT", "MARKET")
TIFS = ("GTC", "IOC", "FOK")
STPS = ("EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE")
MODES = ("NORMAL", "CANCEL_ONLY", "SOFT_HALT", "HARD_HALT")

_SYMBOL = F("symbol", "string", True, doc="BASE-QUOTE, e.g. BTC-USDT")
_SYMBOL_OPT = F("symbol", "string", doc="BASE-QUOTE; absent = every symbol")
_CID = F("clientOrderId", "string", max_len=36, doc="1-36 chars of [A-Za-z0-9_-]")
_ORDER_ID = F("orderId", "integer", lo=1, doc="engine order id")
_REASON = F("reason", "string", True, max_len=200, doc="why (audited)")
_TICKET = F("ticket", "string", True, max_len=64, doc="ticket id (audited)")

PLACE = (
    _SYMBOL,
    F("side", "enum", True, SIDES),
    F("type", "enum", True, TYPES),
    F("timeInForce", "enum", enum=TIFS, doc="default GTC for LIMIT, IOC for MARKET"),
    F("price", "decimal", doc="LIMIT only; a multiple of the tick size"),
    F("quantity", "decimal", doc="base quantity; a multiple of the lot size"),
    F("quoteQuantity", "decimal", doc="MARKET BUY only, instead of quantity: quote budget"),
    F("postOnly", "boolean", doc="LIMIT GTC only; rejected with WOULD_TAKE if it would cross"),
    _CID,
    F("stp", "enum", enum=STPS, doc="self-trade prevention, default EXPIRE_TAKER"),
)
CANCEL = (_SYMBOL_OPT, _ORDER_ID, _CID)
CANCEL_ALL = (_SYMBOL_OPT,)
ORDER_QUERY = (_SYMBOL_OPT, _ORDER_ID, _CID)
OPEN_ORDERS = (_SYMBOL_OPT, F("status", "enum", enum=("open",), doc="only open is listed"))
FILLS = (_SYMBOL_OPT, F("limit", "integer", lo=1, hi=1000, doc="default 100"))
EMPTY: tuple[F, ...] = ()
WITHDRAW = (F("asset", "string", True), F("amount", "decimal", True))
ADMIN_SYMBOL_MODE = (F("mode", "enum", True, MODES), _REASON, _TICKET)
ADMIN_GLOBAL_MODE = (F("mode", "enum", True, ("SOFT_HALT", "NORMAL")), _REASON, _TICKET)
ADMIN_CANCEL_ALL = (_REASON, _TICKET)
ADMIN_WITHDRAWALS = (F("on", "boolean", True), _REASON, _TICKET)
ADMIN_DEPOSIT = (F("account", "integer", True, lo=1, hi=2**32 - 1), F("asset", "string", True),
                 F("amount", "decimal", True), _REASON, _TICKET)
AUDIT = (F("limit", "integer", lo=1, hi=1000, doc="default 100"),)
LOGON = (F("apiKey", "string", True), F("timestamp", "integer", True, doc="ms (or its string)"),
         F("signature", "string", True, max_len=128), F("recvWindow", "integer", lo=1))
CANCEL_ON_DISCONNECT = (F("enabled", "boolean", True),)


# id(spec) -> (spec, fields by name, required names); holding spec keeps its id from being reused
_INDEX: dict[int, tuple[tuple[F, ...], dict[str, F], tuple[str, ...]]] = {}


def check(params: Any, spec: tuple[F, ...], query: bool = False) -> dict[str, Any]:
    """Validate ``params`` against ``spec``; returns the present (non-null) fields."""
    if params is None:
        params = {}
    if type(params) is not dict:
        raise ApiError("BAD_REQUEST", "parameters must be a JSON object")
    ix = _INDEX.get(id(spec))
    if ix is None or ix[0] is not spec:
        ix = _INDEX[id(spec)] = (spec, {f.name: f for f in spec},
                                 tuple(f.name for f in spec if f.required))
    _, names, required = ix
    out: dict[str, Any] = {}
    for k, v in params.items():
        f = names.get(k)
        if f is None:
            raise ApiError("BAD_REQUEST", f"unknown field {_clip(k)!r}")
        if v is None:
            continue
        out[k] = _value(f, v, query)
    for name in required:
        if name not in out:
            raise ApiError("BAD_REQUEST", f"missing field {name!r}")
    return out


def _value(f: F, v: Any, query: bool) -> Any:
    t = type(v)
    if f.kind == "string" or f.kind == "decimal":
        if t is not str:
            raise ApiError("BAD_REQUEST", f"{f.name} must be a "
                           + ("decimal string" if f.kind == "decimal" else "string"))
        if f.kind == "string" and not 0 < len(v) <= f.max_len:
            raise ApiError("BAD_REQUEST", f"{f.name} must be 1..{f.max_len} chars")
        return v
    if f.kind == "enum":
        if t is not str or v not in f.enum:
            raise ApiError("BAD_REQUEST", f"{f.name} must be one of {', '.join(f.enum)}")
        return v
    if f.kind == "boolean":
        if t is bool:
            return v
        if query and t is str and v in ("true", "false"):
            return v == "true"
        raise ApiError("BAD_REQUEST", f"{f.name} must be true or false")
    if f.kind == "integer":
        if t is str and (query or f.name == "timestamp") and v.isascii() and v.isdigit() \
                and len(v) <= 19:
            v = int(v)
        elif t is not int:
            raise ApiError("BAD_REQUEST", f"{f.name} must be an integer")
        if not f.lo <= v <= f.hi:
            raise ApiError("BAD_REQUEST", f"{f.name} must be in {f.lo}..{f.hi}")
        return v
    raise ApiError("INTERNAL", f"field {f.name} has unknown kind {f.kind}")


def _clip(k: Any) -> str:
    s = str(k)
    return s if len(s) <= 40 else s[:37] + "..."


def json_schema(spec: tuple[F, ...]) -> dict[str, Any]:
    """The JSON-schema object for a field table (OpenAPI)."""
    props: dict[str, Any] = {}
    for f in spec:
        if f.kind == "enum":
            p: dict[str, Any] = {"type": "string", "enum": list(f.enum)}
        elif f.kind == "decimal":
            p = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}
        elif f.kind == "integer":
            p = {"type": "integer", "minimum": f.lo, "maximum": f.hi}
        elif f.kind == "boolean":
            p = {"type": "boolean"}
        else:
            p = {"type": "string", "minLength": 1, "maxLength": f.max_len}
        if f.doc:
            p["description"] = f.doc
        props[f.name] = p
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    req = [f.name for f in spec if f.required]
    if req:
        schema["required"] = req
    return schema
