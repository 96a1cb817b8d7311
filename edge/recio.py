"""Fast packing of COMMAND / ADMIN records and unpacking of EVENT records at the edge.

Why. Assigning fields one by one on a numpy ``void`` costs ~0.7 us per field here (7 us per order);
packing the 64 bytes with one precompiled ``struct.Struct`` and viewing them as a ``COMMAND`` record
costs ~1 us in all. Likewise events are decoded with ``Struct.iter_unpack`` over the array's bytes
into ``EvT`` objects instead of per-field numpy access. The layouts below restate
``pipeline/records.py`` without its aliases; ``tests/unit/edge/test_recio.py`` checks them against
the numpy dtypes field by field, so a change there fails here loudly.

Aliases. ``Ev`` exposes the canonical names; an alias of a field is the same tuple slot
(``order_id``/``state_hash``, ``trade_id``/``available``, ``maker_order_id``/``locked``,
``maker_account``/``asset``, ``side``/``mode``). ``cid`` (bytes 40..68) is decoded only for ACCEPTED
and REJECTED events (the kinds that carry it); elsewhere it is ``None``, and on those two kinds the
four ints whose bytes hold the cid (``trade_id``, ``maker_order_id``, ``quote_qty``, ``taker_fee``)
are 0.

The dispatcher's feed (``unpack_chunk``) leaves BALANCE events out of the objects: one kernel pass
(``edge._event_kernels.balance_lane``) returns them as rows, newest per (account, asset).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, ClassVar, Final

import numpy as np

from edge._event_kernels import BALANCE as _LANE_BALANCE
from edge._event_kernels import SIGNATURE as _LANE_SIGNATURE
from edge._event_kernels import balance_lane
from edge._wire_kernels import cid_texts
from pipeline.cid import CID_MAX_LEN
from pipeline.records import ADMIN, ADMIN_NOTE_BYTES, CID_BYTES, COMMAND, EVENT, Ev

# COMMAND: price|order_id, qty|amount, account, conn, req, symbol|asset, kind, flags,
#          side|mode, otype|scope, tif, stp, cid[28]
CMD_STRUCT: Final = struct.Struct("<qqIIIHBBBBBB28s")
_CONN_REQ: Final = struct.Struct("<II")  # conn, req at bytes 20..28
_CONN_OFF: Final = 20
_KIND_BYTE: Final = 30
# A command on its way to the engine: a numpy COMMAND record, or its 64 bytes as a bytearray (the
# hot path packs bytes directly: ``edge.fast_orders``). Both are stamped and sent the same way.
Command = np.void | bytearray
_NO_CID: Final = bytes(CID_BYTES)
_ADMIN_TAIL: Final = struct.Struct(f"<I{ADMIN_NOTE_BYTES}s")

# EVENT (128 B) without aliases; in ACCEPTED / REJECTED events bytes 40..68 hold the cid instead
# of the four ints decoded there (sliced out of the record and decoded by cid_unpack).
_EV: Final = struct.Struct("<Qqqqqqqqqq IIIIHBBBBBBBB2x4xqq".replace(" ", ""))  # pad bytes skipped
_KIND_FIELD: Final = 15  # kind's index in an _EV tuple (and in EvT)
_CID_OFF: Final = 40
_ACCEPTED: Final = int(Ev.ACCEPTED)
_REJECTED: Final = int(Ev.REJECTED)
_CID_KINDS: Final = frozenset({_ACCEPTED, _REJECTED})
_CID_KIND_MASK: Final = np.zeros(256, np.uint8)
_CID_KIND_MASK[list(_CID_KINDS)] = 1
_KIND_BYTE_EV: Final[int] = EVENT.fields["kind"][1]  # type: ignore[index]  # kind's byte offset
_cid_texts: Final[Any] = cid_texts
_balance_lane: Final[Any] = balance_lane
# its compiled entry, called without numba's dispatch (which types all 8 arguments at every call);
# only with arrays built as ``unpack_chunk`` builds them (see there)
_LANE_ENTRY: Final[Any] = balance_lane.overloads[_LANE_SIGNATURE.args].entry_point
_EVENT_SIZE: Final = EVENT.itemsize
_CID_MAX_LEN: Final = CID_MAX_LEN
assert _LANE_BALANCE == int(Ev.BALANCE)


def _offset(name: str) -> int:
    off: int = EVENT.fields[name][1]  # type: ignore[index]
    return off


# balance_lane's layout: kind and last as byte offsets, then int64 and uint32 word indexes
_LANE_LAYOUT: Final = np.array([_offset("kind"), _offset("last"), _offset("seq") // 8,
                         _offset("ts_ns") // 8, _offset("available") // 8, _offset("locked") // 8,
                         _offset("account") // 4, _offset("asset") // 4], np.int64)
assert all(_offset(f) % 8 == 0 for f in ("seq", "ts_ns", "available", "locked"))
assert all(_offset(f) % 4 == 0 for f in ("account", "asset"))
# a BalanceRow: account, asset, available, locked, seq, ts_ns of the newest BALANCE of its key
BalanceRow = list[int]


EV_FIELDS = (
    "seq", "ts_ns", "order_id", "price", "qty", "trade_id", "maker_order_id", "quote_qty",
    "taker_fee", "maker_fee", "account", "maker_account", "conn", "req", "symbol", "kind",
    "reason", "side", "otype", "tif", "flags", "stp", "last", "maker_leaves", "leaves", "cid")


class EvT:
    """One EVENT record as Python ints (see the module header for aliases).

    A plain class, compiled with the edge (``pipeline.native``): its fields are read a dozen times
    per event by the read model, the dispatcher and the answers, which costs a C struct read here
    and a descriptor call on a NamedTuple. Built from the record's ``_EV`` tuple ``t`` (25 ints) and
    the decoded ``cid``; ``cid_kind`` zeroes the four ints whose bytes hold the cid.
    """

    __slots__ = EV_FIELDS
    _fields: ClassVar[tuple[str, ...]] = EV_FIELDS

    def __init__(self, t: tuple[int, ...], cid: str | None = None, cid_kind: bool = False) -> None:
        self.seq: int = t[0]
        self.ts_ns: int = t[1]
        self.order_id: int = t[2]  # CHECKPOINT: state_hash
        self.price: int = t[3]
        self.qty: int = t[4]
        self.trade_id: int = 0 if cid_kind else t[5]  # BALANCE: available
        self.maker_order_id: int = 0 if cid_kind else t[6]  # BALANCE: locked
        self.quote_qty: int = 0 if cid_kind else t[7]
        self.taker_fee: int = 0 if cid_kind else t[8]
        self.maker_fee: int = t[9]
        self.account: int = t[10]
        self.maker_account: int = t[11]  # BALANCE: asset
        self.conn: int = t[12]
        self.req: int = t[13]
        self.symbol: int = t[14]
        self.kind: int = t[15]
        self.reason: int = t[16]
        self.side: int = t[17]  # MODE_CHANGED / WITHDRAWALS: mode
        self.otype: int = t[18]
        self.tif: int = t[19]
        self.flags: int = t[20]
        self.stp: int = t[21]
        self.last: int = t[22]
        self.maker_leaves: int = t[23]
        self.leaves: int = t[24]
        self.cid: str | None = cid

    @classmethod
    def make(cls, values: Iterable[object]) -> EvT:
        """From the 26 field values in order (tests, blanks)."""
        v = tuple(values)
        return cls(v[:25], v[25])  # type: ignore[arg-type]

    def replace(self, **changes: int) -> EvT:
        """A copy with ``changes`` (tests)."""
        e = EvT(self.astuple()[:25], self.cid)  # type: ignore[arg-type]
        for k, val in changes.items():
            setattr(e, k, val)
        return e

    def astuple(self) -> tuple[object, ...]:
        return tuple([getattr(self, k) for k in EV_FIELDS])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EvT) and self.astuple() == other.astuple()

    def __hash__(self) -> int:
        return hash(self.astuple())

    def __repr__(self) -> str:
        return "EvT(" + ", ".join([f"{k}={getattr(self, k)!r}" for k in EV_FIELDS]) + ")"

    @property
    def available(self) -> int:
        return self.trade_id

    @property
    def locked(self) -> int:
        return self.maker_order_id

    @property
    def asset(self) -> int:
        return self.maker_account

    @property
    def mode(self) -> int:
        return self.side


def pack_command(kind: int, account: int = 0, *, price: int = 0, qty: int = 0, symbol: int = 0,
                 flags: int = 0, side: int = 0, otype: int = 0, tif: int = 0, stp: int = 0,
                 cid: bytes = _NO_CID, conn: int = 0, req: int = 0) -> np.void:
    """A writable COMMAND record. Aliases: order_id=price, amount=qty, asset=symbol, mode=side,
    scope=otype."""
    buf = bytearray(CMD_STRUCT.pack(price, qty, account, conn, req, symbol, kind, flags, side, otype,
                              tif, stp, cid))
    rec: np.void = np.frombuffer(buf, COMMAND)[0]
    return rec


def cmd_kind(cmd: Command) -> int:
    return cmd[_KIND_BYTE] if isinstance(cmd, bytearray) else int(cmd["kind"])


def cmd_req(cmd: Command) -> int:
    if isinstance(cmd, bytearray):
        req: int = _CONN_REQ.unpack_from(cmd, _CONN_OFF)[1]
        return req
    return int(cmd["req"])


def stamp(cmd: Command, conn: int, req: int) -> None:
    """Set ``conn`` and ``req`` (the gateway's routing) in place."""
    if isinstance(cmd, bytearray):
        _CONN_REQ.pack_into(cmd, _CONN_OFF, conn, req)
    else:
        cmd["conn"] = conn
        cmd["req"] = req


def cmd_bytes(cmd: Command) -> bytes:
    return bytes(cmd) if isinstance(cmd, bytearray) else cmd.tobytes()


def pack_admin(cmd: np.void, note: bytes) -> np.void:
    """An ADMIN record: ``cmd`` plus the UTF-8 JSON audit ``note`` (<= ADMIN_NOTE_BYTES)."""
    if len(note) > ADMIN_NOTE_BYTES:
        raise ValueError(f"admin note is {len(note)} bytes, limit {ADMIN_NOTE_BYTES}")
    buf = bytearray(cmd.tobytes() + _ADMIN_TAIL.pack(len(note), note))
    rec: np.void = np.frombuffer(buf, ADMIN)[0]
    return rec


def admin_note(rec: np.void) -> bytes:
    n = int(rec["note_len"])
    return bytes(rec["note"][:n])


def unpack_events(events: np.ndarray) -> list[EvT]:
    """Decode an EVENT array (any length, C-contiguous or not) into ``EvT`` objects. The cids of
    the batch are decoded by one kernel call (``_wire_kernels.cid_texts``: ``cid_unpack``'s result
    for each, None where that refuses the field), sliced from one str."""
    if events.dtype != EVENT:
        raise TypeError(f"expected EVENT records, got {events.dtype}")
    raw = events.tobytes()
    return _objects(raw, np.frombuffer(raw, np.uint8).reshape(len(events), EVENT.itemsize))


def _objects(raw: bytes, rec: np.ndarray) -> list[EvT]:
    """``EvT`` objects of the records ``raw`` (``rec``: the same bytes as uint8 rows)."""
    n = len(rec)
    out: list[EvT] = []
    chars = np.empty(_CID_MAX_LEN * n, np.uint8)
    spans = np.empty((n, 2), np.int64)
    used: int = _cid_texts(rec, _KIND_BYTE_EV, _CID_OFF, _CID_KIND_MASK, chars, spans)
    text = chars[:used].tobytes().decode("ascii")
    sp: list[int] = spans.reshape(-1).tolist()  # one flat list: no list per event
    i = 0
    for t in _EV.iter_unpack(raw):
        k: int = t[_KIND_FIELD]
        if k == _ACCEPTED or k == _REJECTED:  # bytes 40..68 are the cid, not the 4 ints there
            length = sp[i + 1]
            out.append(EvT(t, text[sp[i]:sp[i] + length] if length > 0 else None, True))
        else:
            out.append(EvT(t))
        i += 2
    return out


def event_rows(events: np.ndarray) -> np.ndarray:
    """An EVENT array as what ``unpack_chunk`` reads: read-only uint8 rows of 128 bytes,
    C-contiguous and 8-byte aligned (a view when it already is, else a copy)."""
    if events.dtype != EVENT:
        raise TypeError(f"expected EVENT records, got {events.dtype}")
    if not events.flags.c_contiguous or events.ctypes.data % 8:
        events = np.array(events, copy=True)
    rows = events.view(np.uint8).reshape(len(events), EVENT.itemsize)
    rows.flags.writeable = False  # one array type for the kernel, whatever the source
    return rows


def wal_rows(payload: memoryview) -> np.ndarray:
    """An EVENTS frame's payload as ``event_rows`` hands them: the WAL's payloads are read-only
    views at 8-byte aligned offsets of a page-aligned mapping (``pipeline.wal.format``), so a view
    (~0.4 us) does what ``event_rows(np.frombuffer(payload, EVENT))`` checks and copies for (~2.5
    us, once per durable batch)."""
    return np.frombuffer(payload, np.uint8).reshape(-1, _EVENT_SIZE)


def row_views(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int64 and uint32 views of ``rec`` that ``unpack_chunk`` reads (made once per batch);
    TypeError unless ``rec`` is rows of EVENT bytes (``event_rows`` / ``wal_rows``)."""
    if rec.ndim != 2 or rec.itemsize != 1 or rec.shape[1] != _EVENT_SIZE:
        raise TypeError(f"expected EVENT rows of {_EVENT_SIZE} bytes, got {rec.dtype} {rec.shape}")
    return rec.view(np.int64), rec.view(np.uint32)


def unpack_chunk(rec: np.ndarray, lo: int, hi: int, views: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[list[EvT], list[BalanceRow], int]:
    """Records ``lo..hi`` of ``rec`` (``event_rows``) for the dispatcher: the ``EvT`` objects of all
    but the BALANCE events, the newest state per (account, asset) of those as ``BalanceRow``s, and
    the highest seq in the range (``_event_kernels.balance_lane``: a BALANCE that is the last event
    of its command passes its ``last`` to the event before it, or is kept when there is none).

    ``views``: ``row_views(rec)``, made once for all chunks of a batch; with them the kernel is
    called through its compiled entry (every argument's type is fixed by how they are made), without
    them through numba's dispatcher, which checks the types."""
    n = hi - lo
    out = np.empty((n, _EVENT_SIZE), np.uint8)
    rows = np.empty((n, 6), np.int64)
    if views is None:
        kept, m, top = _balance_lane(rec, rec.view(np.int64), rec.view(np.uint32), _LANE_LAYOUT, lo,
                                     hi, out, rows)
    else:
        kept, m, top = _LANE_ENTRY(rec, views[0], views[1], _LANE_LAYOUT, lo, hi, out, rows)
    kept_rec = out[:kept]
    evs = _objects(kept_rec.tobytes(), kept_rec) if kept else []
    return evs, rows[:m].tolist() if m else [], top


def one_event(rec: np.void) -> EvT:
    return unpack_events(np.frombuffer(rec.tobytes(), EVENT))[0]
