"""Kafka message schema v1 (documented in settle/SCHEMA.md): WAL batches -> messages -> postings.

One message per engine event, plus one per admin note (WAL BLOB frame). Key: the symbol name for
events on a symbol, ``_account`` for account events without one (TRANSFER, BALANCE, ACK, a reject
of an unknown symbol), ``_admin`` for admin notes and venue-wide events (global mode change,
withdrawals halt, checkpoints). Headers: ``shard``, ``seq``, ``fencing``, ``schema`` (= "1"),
``type``. Value: UTF-8 JSON, integers for every amount (int64 minor units / ticks / lots: parse
them as 64-bit integers, not IEEE doubles), names next to ids for humans.

``decode_many`` turns a consumed batch of values back into what the ledger writer needs: EVENT
records for TRADE/TRANSFER, their ordinals (``ix``), fencing tokens, the ``settled_batches`` rows
(carried by the last message of each WAL batch) and audit rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import orjson

from pipeline.records import (
    EVENT,
    GLOBAL_SYMBOL,
    CancelReason,
    Ev,
    ExpireReason,
    Mode,
    RejectReason,
    Side,
    cid_decode,
)
from settle.catalog import Catalog
from settle.errors import SchemaError
from settle.ledger import AuditRow
from settle.postings import postings
from settle.walbatch import WalBatch

SCHEMA_VERSION = 1
KEY_ACCOUNT = b"_account"
KEY_ADMIN = b"_admin"
ADMIN_NOTE = "ADMIN_NOTE"

Headers = list[tuple[str, str | bytes | None]]
Message = tuple[bytes, bytes, Headers]  # key, value, headers


def _name(enum_cls: Any, v: int) -> str | int:
    try:
        return str(enum_cls(v).name)
    except ValueError:
        return v


def encode_batch(b: WalBatch, catalog: Catalog, wal_id: int = 0) -> list[Message]:
    """The messages of one WAL batch, in WAL order: admin notes first, then the events.
    ``wal_id``: the id of the WAL they come from (``wal`` in each message and header)."""
    shard = catalog.shard
    out: list[Message] = []
    legs = len(postings(b.events, b.ords, b.fencing_events, catalog))
    info = {"first_seq": b.first_seq, "last_seq": b.last_seq, "events": len(b.events), "legs": legs}
    for a in b.audit:
        doc = {"v": SCHEMA_VERSION, "type": ADMIN_NOTE, "shard": shard, "seq": a.seq,
               "ts_ns": a.ts_ns, "fencing": a.fencing, "actor": a.actor, "action": a.action,
               "symbol": a.symbol, "reason": a.reason, "ticket": a.ticket,
               "note": orjson.loads(a.note), "wal": wal_id}
        out.append((KEY_ADMIN, orjson.dumps(doc), _headers(shard, a.seq, a.fencing, ADMIN_NOTE,
                                                           wal_id)))
    rows = b.events
    n = len(rows)
    cols = {f: rows[f].tolist() for f in (
        "seq", "ts_ns", "order_id", "price", "qty", "trade_id", "maker_order_id", "quote_qty",
        "taker_fee", "maker_fee", "account", "maker_account", "conn", "req", "symbol", "kind",
        "reason", "side", "otype", "tif", "flags", "stp", "last", "maker_leaves", "leaves")}
    ords = b.ords.tolist()
    for i in range(n):
        kind = cols["kind"][i]
        seq = cols["seq"][i]
        doc = {"v": SCHEMA_VERSION, "type": _name(Ev, kind), "shard": shard, "seq": seq,
               "ix": ords[i], "ts_ns": cols["ts_ns"][i], "fencing": b.fencing_events,
               "conn": cols["conn"][i], "req": cols["req"][i], "last": cols["last"][i],
               "wal": wal_id}
        if i == n - 1:
            doc["batch"] = info
        key = _fill(doc, kind, cols, i, rows[i], catalog)
        out.append((key, orjson.dumps(doc), _headers(shard, seq, b.fencing_events, str(doc["type"]),
                                                     wal_id)))
    return out


def _headers(shard: int, seq: int, fencing: int, typ: str, wal_id: int) -> Headers:
    return [("shard", str(shard).encode()), ("seq", str(seq).encode()),
            ("fencing", str(fencing).encode()), ("schema", b"1"), ("type", typ.encode()),
            ("wal", str(wal_id).encode())]


def _fill(doc: dict[str, Any], kind: int, c: dict[str, list[Any]], i: int, rec: Any,
          catalog: Catalog) -> bytes:
    sym_id = c["symbol"][i]
    sym = catalog.symbol_name(sym_id)
    if kind == Ev.TRADE:
        doc.update(symbol=sym, symbol_id=sym_id, trade_id=c["trade_id"][i], price_ticks=c["price"][i],
                   qty_lots=c["qty"][i], quote_qty=c["quote_qty"][i],
                   taker_account=c["account"][i], taker_order_id=c["order_id"][i],
                   taker_side=_name(Side, c["side"][i]), taker_fee=c["taker_fee"][i],
                   taker_leaves=c["leaves"][i], maker_account=c["maker_account"][i],
                   maker_order_id=c["maker_order_id"][i], maker_fee=c["maker_fee"][i],
                   maker_leaves=c["maker_leaves"][i])
    elif kind == Ev.TRANSFER:
        asset = int(rec["asset"])
        doc.update(account=c["account"][i], asset=catalog.asset_name(asset), asset_id=asset,
                   amount=c["qty"][i])
        return KEY_ACCOUNT
    elif kind in (Ev.ACCEPTED, Ev.REJECTED, Ev.CANCELED, Ev.EXPIRED):
        doc.update(symbol=sym, symbol_id=sym_id, account=c["account"][i], order_id=c["order_id"][i])
        if kind == Ev.ACCEPTED:
            doc.update(side=_name(Side, c["side"][i]), otype=c["otype"][i], tif=c["tif"][i],
                       stp=c["stp"][i], flags=c["flags"][i], price_ticks=c["price"][i],
                       qty_lots=c["qty"][i], quote_qty=c["quote_qty"][i],
                       client_order_id=_cid(rec))
        elif kind == Ev.REJECTED:
            doc.update(reason=_name(RejectReason, c["reason"][i]), client_order_id=_cid(rec))
        else:
            doc.update(qty_lots=c["qty"][i], leaves=c["leaves"][i], reason=_name(
                CancelReason if kind == Ev.CANCELED else ExpireReason, c["reason"][i]))
    elif kind == Ev.BALANCE:
        asset = int(rec["asset"])
        doc.update(account=c["account"][i], asset=catalog.asset_name(asset), asset_id=asset,
                   available=int(rec["available"]), locked=int(rec["locked"]))
        return KEY_ACCOUNT
    elif kind == Ev.MODE_CHANGED:
        glob = sym_id == GLOBAL_SYMBOL
        doc.update(symbol="*" if glob else sym, symbol_id=sym_id, mode=_name(Mode, int(rec["mode"])))
        return KEY_ADMIN if glob or sym is None else sym.encode()
    elif kind == Ev.WITHDRAWALS:
        doc.update(halted=bool(int(rec["mode"])))
        return KEY_ADMIN
    elif kind == Ev.CHECKPOINT:
        doc.update(state_hash=f"{int(rec['state_hash']):016x}")
        return KEY_ADMIN
    else:
        doc.update(account=c["account"][i], order_id=c["order_id"][i])
        return KEY_ACCOUNT
    return sym.encode() if sym is not None else KEY_ACCOUNT


def _cid(rec: Any) -> str | None:
    try:
        return cid_decode(rec["cid"])
    except ValueError:
        return None


@dataclasses.dataclass
class Decoded:
    events: np.ndarray  # EVENT records of TRADE / TRANSFER messages
    ords: np.ndarray
    fencing: np.ndarray
    ts_ns: np.ndarray  # of every event message (settlement lag)
    ranges: list[tuple[int, int, int]]
    audit: list[AuditRow]
    last_seq: int
    fencing_min: int
    fencing_max: int
    skipped: int  # messages of another shard
    wal_ids: set[int] = dataclasses.field(default_factory=set)  # WALs the shard's messages came from


def decode_many(values: list[bytes], shard: int) -> Decoded:
    """Decode consumed message values (any order of types) for the ledger writer of ``shard``."""
    docs = []
    for raw in values:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise SchemaError(f"message is not JSON: {e}") from None
        if not isinstance(d, dict) or d.get("v") != SCHEMA_VERSION:
            raise SchemaError(f"unsupported schema version {d.get('v') if isinstance(d, dict) else d!r}")
        docs.append(d)
    settle = [d for d in docs if d.get("shard") == shard and d.get("type") in ("TRADE", "TRANSFER")]
    ev = np.zeros(len(settle), EVENT)
    try:
        for j, d in enumerate(settle):
            r = ev[j]
            r["seq"], r["ts_ns"] = d["seq"], d["ts_ns"]
            if d["type"] == "TRADE":
                r["kind"] = Ev.TRADE
                r["symbol"], r["trade_id"], r["price"], r["qty"] = (
                    d["symbol_id"], d["trade_id"], d["price_ticks"], d["qty_lots"])
                r["quote_qty"], r["account"], r["maker_account"] = (
                    d["quote_qty"], d["taker_account"], d["maker_account"])
                r["side"] = Side[d["taker_side"]]
                r["taker_fee"], r["maker_fee"] = d["taker_fee"], d["maker_fee"]
            else:
                r["kind"] = Ev.TRANSFER
                r["account"], r["asset"], r["qty"] = d["account"], d["asset_id"], d["amount"]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise SchemaError(f"bad {d.get('type')} message at seq {d.get('seq')}: {e!r}") from None
    mine = [d for d in docs if d.get("shard") == shard]
    ranges = [(d["batch"]["first_seq"], d["batch"]["last_seq"], d["batch"]["legs"])
              for d in mine if "batch" in d]
    audit = [AuditRow(d["seq"], d.get("actor"), d.get("action"), d.get("symbol"), d.get("reason"),
                      d.get("ticket"), orjson.dumps(d.get("note", {})).decode(), d["fencing"],
                      d["ts_ns"]) for d in mine if d.get("type") == ADMIN_NOTE]
    fencings = [int(d["fencing"]) for d in mine]
    return Decoded(
        events=ev, ords=np.array([d["ix"] for d in settle], np.int64),
        fencing=np.array([d["fencing"] for d in settle], np.int64),
        ts_ns=np.array([d["ts_ns"] for d in mine if d.get("type") != ADMIN_NOTE], np.int64),
        ranges=ranges, audit=audit, last_seq=max((int(d["seq"]) for d in mine), default=0),
        fencing_min=min(fencings, default=0), fencing_max=max(fencings, default=0),
        skipped=len(docs) - len(mine), wal_ids={int(d["wal"]) for d in mine if d.get("wal")})
