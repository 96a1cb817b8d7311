"""PostgreSQL binary COPY encoding of ``POSTING`` rows, done with one numpy structured array.

Every ledger column the writer sends is fixed width, so a COPY row is a fixed-size big-endian
record: int16 field count, then per field an int32 length and the value. Filling a structured array
and calling ``tobytes`` encodes tens of thousands of rows in a millisecond, with no per-row Python.
``timestamptz`` is int64 microseconds since 2000-01-01 UTC (integer datetimes, PG >= 10 default).
"""

from __future__ import annotations

import numpy as np

from settle.postings import POSTING

# (posting field, SQL column, big-endian dtype)
_FIELDS = (
    ("shard", "shard", ">i2"), ("seq", "seq", ">i8"), ("leg", "leg", ">i4"),
    ("account", "account", ">i8"), ("asset", "asset", ">i2"), ("amount", "amount", ">i8"),
    ("kind", "kind", ">i2"), ("symbol", "symbol", ">i4"), ("trade_id", "trade_id", ">i8"),
    ("fencing", "fencing_token", ">i8"), ("ts_ns", "event_time", ">i8"),
)
COLUMNS = tuple(f[1] for f in _FIELDS)
ROW = np.dtype([("nfields", ">i2")] + [
    item for _p, col, t in _FIELDS for item in ((f"{col}__len", ">i4"), (col, t))])
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds


def encode(rows: np.ndarray) -> bytes:
    """The complete binary COPY stream (header, rows, trailer) for POSTING ``rows``."""
    if rows.dtype != POSTING:
        raise TypeError(f"expected POSTING rows, got {rows.dtype}")
    out = np.empty(len(rows), ROW)
    out["nfields"] = len(_FIELDS)
    for field, col, t in _FIELDS:
        out[f"{col}__len"] = np.dtype(t).itemsize
        if field == "ts_ns":
            out[col] = rows["ts_ns"] // 1000 - PG_EPOCH_US
        else:
            out[col] = rows[field]
    return HEADER + out.tobytes() + TRAILER
