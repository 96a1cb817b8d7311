"""Hot-path record layouts: the one definition of every command and event (DESIGN.md §3).

Layout. Little-endian numpy structured dtypes with explicit offsets, used unchanged as ring slots,
WAL payloads, numba record types and the export schema:

* ``COMMAND`` — 64 bytes, one cache line: what an edge (or the operator) asks the engine to do.
* ``EVENT`` — 128 bytes, two cache lines: what the engine did, in order, per command seq.
* ``ADMIN`` — 512 bytes: an operator command plus its audit note (actor, reason, ticket as UTF-8
  JSON). Rare; travels on a separate control ring so the order ring stays at 64-byte slots. The
  engine journals the note as a WAL BLOB frame under the command's seq: the WAL is the audit trail.

Unions. A few fields share bytes with fields of the same record that never apply to the same kind
(like a C union). Each alias is listed in ``COMMAND_ALIASES`` / ``EVENT_ALIASES`` and the record
kinds that use it; a test checks that no two fields used by one kind overlap.

Client order ids. ``clientOrderId`` is 1..36 chars of ``[A-Za-z0-9_-]`` (API.md) — exactly a
64-symbol alphabet, so it packs exactly in 6 bits a char. The 28-byte ``cid`` field holds the
length (one 6-bit symbol) followed by the chars (MSB first bit stream): 37 symbols = 222 bits.
An all-zero ``cid`` means "none". Packing is exact and reversible; ``cid_encode`` rejects anything
else with ``ValueError``.

Invariants. Money, prices and quantities are int64 ticks / lots / minor units; time is int64 ns.
No float column anywhere. Enum values below are stable: they are written to the WAL.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

# the clientOrderId codec lives in pipeline.cid (compiled with the edge); re-exported here
from pipeline.cid import CID_ALPHABET as CID_ALPHABET
from pipeline.cid import CID_BYTES as CID_BYTES
from pipeline.cid import CID_MAX_LEN as CID_MAX_LEN
from pipeline.cid import cid_pack as cid_pack
from pipeline.cid import cid_unpack as cid_unpack


def _dtype(fields: list[tuple[str, Any, int]], itemsize: int) -> np.dtype:
    names = [f[0] for f in fields]
    formats = [f[1] for f in fields]
    offsets = [f[2] for f in fields]
    # align=True marks the struct aligned (every offset here is a multiple of its field's size):
    # numba then types the arrays as aligned records and emits plain aligned loads and stores.
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize},
                    align=True)



# --------------------------------------------------------------------------------------------
# Commands (64 bytes)
# --------------------------------------------------------------------------------------------


class Cmd(enum.IntEnum):
    NEW_ORDER = 1
    CANCEL = 2  # by order_id, or by cid with CmdFlag.BY_CID
    CANCEL_ALL = 3  # scope in `scope`: CancelScope
    SET_MODE = 4  # symbol (GLOBAL_SYMBOL for all) -> `mode`
    DEPOSIT = 5  # account, asset, amount
    WITHDRAW = 6  # account, asset, amount
    WITHDRAWALS_HALT = 7  # mode: 1 = halt on, 0 = off
    SNAPSHOT = 8  # ask the engine to write a snapshot now
    HEARTBEAT = 9  # no-op, sequenced (liveness / latency probe)
    SET_LAG_HALT = 10  # settlement-lag policy: mode 1 = SOFT_HALT set by policy, 0 = lift (symbol or global)


class Side(enum.IntEnum):
    BUY = 1
    SELL = 2


class OrdType(enum.IntEnum):
    LIMIT = 1
    MARKET = 2


class Tif(enum.IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3


class Stp(enum.IntEnum):
    EXPIRE_TAKER = 1
    EXPIRE_MAKER = 2
    EXPIRE_BOTH = 3
    NONE = 4


class CmdFlag(enum.IntFlag):
    POST_ONLY = 1
    QUOTE_QTY = 2  # MARKET BUY by quote budget: `qty` holds quote minor units
    BY_CID = 4  # CANCEL by client order id
    OPERATOR = 8  # CANCEL / CANCEL_ALL by an operator: canceled with reason ADMIN
    DISCONNECT = 16  # CANCEL by a session's cancel-on-disconnect: canceled with reason DISCONNECT


class CancelScope(enum.IntEnum):
    SYMBOL = 1  # every open order on `symbol`
    ACCOUNT = 2  # every open order of `account`
    ACCOUNT_SYMBOL = 3  # every open order of `account` on `symbol`


class Mode(enum.IntEnum):
    NORMAL = 0
    CANCEL_ONLY = 1
    SOFT_HALT = 2
    HARD_HALT = 3


GLOBAL_SYMBOL = 0xFFFF  # `symbol` value of a SET_MODE that applies to every symbol

COMMAND = _dtype(
    [
        ("price", "<i8", 0),  # NEW_ORDER: limit price in ticks (0 for MARKET)
        ("order_id", "<i8", 0),  # alias of price — CANCEL by id
        ("qty", "<i8", 8),  # NEW_ORDER: lots (or quote minor units with QUOTE_QTY)
        ("amount", "<i8", 8),  # alias of qty — DEPOSIT / WITHDRAW, minor units
        ("account", "<u4", 16),
        ("conn", "<u4", 20),  # route: edge id << 24 | connection slot (0 = operator / none)
        ("req", "<u4", 24),  # request token chosen by the edge, echoed in events
        ("symbol", "<u2", 28),
        ("asset", "<u2", 28),  # alias of symbol — DEPOSIT / WITHDRAW
        ("kind", "u1", 30),
        ("flags", "u1", 31),
        ("side", "u1", 32),
        ("mode", "u1", 32),  # alias of side — SET_MODE / WITHDRAWALS_HALT / SET_LAG_HALT
        ("otype", "u1", 33),
        ("scope", "u1", 33),  # alias of otype — CANCEL_ALL
        ("tif", "u1", 34),
        ("stp", "u1", 35),
        ("cid", ("u1", CID_BYTES), 36),
    ],
    64,
)

COMMAND_ALIASES = {"order_id": "price", "amount": "qty", "asset": "symbol", "mode": "side",
                   "scope": "otype"}

# --------------------------------------------------------------------------------------------
# Events (128 bytes)
# --------------------------------------------------------------------------------------------


class Ev(enum.IntEnum):
    ACCEPTED = 1  # order entered the engine (it may then trade, rest, or expire)
    REJECTED = 2  # command refused: `reason` is a RejectReason; nothing changed
    TRADE = 3  # one fill: taker = order_id/account/side, maker = maker_order_id/maker_account
    CANCELED = 4  # resting order removed on request: `qty` = quantity removed, `reason` CancelReason
    EXPIRED = 5  # remainder removed by the engine (IOC/FOK/MARKET/STP/band): `qty` removed
    BALANCE = 6  # absolute balance after a change: account, asset, available, locked
    MODE_CHANGED = 7  # symbol (or GLOBAL_SYMBOL) now in `mode`
    CHECKPOINT = 8  # rolling state hash at seq: `state_hash`
    WITHDRAWALS = 9  # withdrawals halt flag now `mode`
    TRANSFER = 10  # DEPOSIT / WITHDRAW applied: account, asset, `qty` = signed amount (minor units,
    #               + deposit, - withdrawal) against the external account; settlement posts it
    ACK = 11  # a command with nothing else to report (cancel-all of zero orders, SNAPSHOT, HEARTBEAT)


class RejectReason(enum.IntEnum):
    """Engine-side reject reasons; the edge maps each to its API error (edge/errors.py)."""

    UNKNOWN_SYMBOL = 1
    INVALID_PRICE = 2
    INVALID_QUANTITY = 3
    MIN_NOTIONAL = 4
    INSUFFICIENT_BALANCE = 5
    WOULD_TAKE = 6
    UNKNOWN_ORDER = 7
    DUPLICATE_CLIENT_ORDER_ID = 8
    SYMBOL_CANCEL_ONLY = 9
    SYMBOL_HALTED = 10
    MARKET_HALTED = 11
    WITHDRAWALS_HALTED = 12
    CAPACITY_EXHAUSTED = 13
    BAD_REQUEST = 14
    FENCING_TOKEN = 15
    UNKNOWN_ACCOUNT = 16
    FOK_UNFILLABLE = 17  # surfaced as EXPIRED by the API, kept distinct for forensics


class CancelReason(enum.IntEnum):
    USER = 1
    CANCEL_ALL = 2
    ADMIN = 3
    DISCONNECT = 4


class ExpireReason(enum.IntEnum):
    IOC = 1
    FOK = 2
    MARKET_NO_LIQUIDITY = 3
    PRICE_BAND = 4
    STP_TAKER = 5
    STP_MAKER = 6
    QUOTE_BUDGET = 7
    MATCH_LIMIT = 8  # the taker touched engine max_makers_per_order makers; remainder expired


EVENT = _dtype(
    [
        ("seq", "<u8", 0),  # seq of the command that produced the event
        ("ts_ns", "<i8", 8),  # the command's sequencing time
        ("order_id", "<i8", 16),
        ("state_hash", "<u8", 16),  # alias — CHECKPOINT
        ("price", "<i8", 24),
        ("qty", "<i8", 32),
        ("trade_id", "<i8", 40),  # TRADE
        ("available", "<i8", 40),  # alias — BALANCE
        ("maker_order_id", "<i8", 48),  # TRADE
        ("locked", "<i8", 48),  # alias — BALANCE
        ("quote_qty", "<i8", 56),  # TRADE: notional in quote minor units (QUOTE_QTY budget: `qty`)
        ("taker_fee", "<i8", 64),  # TRADE (quote minor units)
        ("maker_fee", "<i8", 72),  # TRADE (quote minor units)
        ("cid", ("u1", CID_BYTES), 40),  # alias over 40..68 — ACCEPTED / REJECTED / CANCELED / EXPIRED
        ("account", "<u4", 80),
        ("maker_account", "<u4", 84),  # TRADE
        ("asset", "<u4", 84),  # alias — BALANCE
        ("conn", "<u4", 88),
        ("req", "<u4", 92),
        ("symbol", "<u2", 96),
        ("kind", "u1", 98),
        ("reason", "u1", 99),
        ("side", "u1", 100),  # order side; TRADE: taker side
        ("mode", "u1", 100),  # alias — MODE_CHANGED / WITHDRAWALS
        ("otype", "u1", 101),
        ("tif", "u1", 102),
        ("flags", "u1", 103),  # CmdFlag of the order
        ("stp", "u1", 104),
        ("last", "u1", 105),  # 1 on the final event a command produced (routing: response complete)
        ("pad0", "<u2", 106),
        ("pad1", "<u4", 108),
        ("maker_leaves", "<i8", 112),  # TRADE: maker's remaining lots after the fill
        ("leaves", "<i8", 120),  # order's remaining lots after this event (TRADE: taker's)
    ],
    128,
)

EVENT_ALIASES = {"state_hash": "order_id", "available": "trade_id", "locked": "maker_order_id",
                 "cid": "trade_id..taker_fee", "asset": "maker_account",
                 "mode": "side"}

# Records of the control ring: an operator command and its audit note (UTF-8 JSON:
# {"actor": key id, "action": ..., "reason": ..., "ticket": ...}).
ADMIN_NOTE_BYTES = 512 - 64 - 4
ADMIN = _dtype(
    [
        ("cmd", COMMAND, 0),
        ("note_len", "<u4", 64),
        ("note", ("u1", ADMIN_NOTE_BYTES), 68),
    ],
    512,
)

assert COMMAND.itemsize == 64 and EVENT.itemsize == 128 and ADMIN.itemsize == 512  # import-time layout check

# --------------------------------------------------------------------------------------------
# clientOrderId as a record field (the codec itself: pipeline.cid)
# --------------------------------------------------------------------------------------------

def cid_encode(cid: str) -> np.ndarray:
    """``cid_pack`` as a uint8 array (for record fields). Raises ValueError."""
    return np.frombuffer(cid_pack(cid), dtype=np.uint8).copy()


def cid_decode(raw: np.ndarray | bytes) -> str | None:
    """Inverse of cid_encode; None for the all-zero (absent) cid."""
    return cid_unpack(bytes(raw))


def route(edge_id: int, slot: int) -> int:
    """The `conn` value for connection `slot` on edge `edge_id` (1..255)."""
    return ((edge_id & 0xFF) << 24) | (slot & 0xFFFFFF)


def route_edge(conn: int) -> int:
    return (conn >> 24) & 0xFF
