"""The md record: the slot of the publisher -> fan-out broadcast ring ``spotx-<instance>-md``.

Layout (512 bytes, little-endian, one definition used by the writer, every reader and the tests)::

     0 pub_ns   i8   wall-clock ns when the publisher wrote the message (publish-to-send lag)
     8 seq      u8   book: the symbol's book seq after this message; trades, candles, ticker:
                     the engine seq of the command that produced it
    16 prev_seq u8   BookUpdated: seq of the previous book message on the same channel;
                     CandleUpdated: the candle's openTime (ms); TradeExecuted: the tradeId
                     (the fan-out drops a trade id it already sent: publisher restarts are
                     idempotent); else 0
    24 chan     u4   channel id (channels.chan_id)
    28 total    u4   bytes of the whole message
    32 off      u4   offset of this slot's chunk in the message
    36 n        u2   bytes of the chunk in this slot (<= 464)
    38 kind     u1   Msg
    39 flags    u1   FIRST (1) on a message's first slot, LAST (2) on its last
    40 epoch    u4   random id of the publisher run (changes when the publisher restarts)
    44 -        u4
    48 data     464  the chunk: UTF-8 JSON, exactly the text subscribers receive

A message is serialised once by the publisher (JSON, orjson) and spans ``ceil(total / 464)``
consecutive slots (at most ``MAX_MESSAGE_BYTES``). The fan-out only routes these bytes (plus its
own BookSnapshot / conflated deltas, which it derives from them). A reader that joins or resumes in
the middle of a message skips to the next FIRST slot.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable

import numpy as np

MD_RECORD_BYTES = 512
MD_HEADER_BYTES = 48
MD_DATA_BYTES = MD_RECORD_BYTES - MD_HEADER_BYTES
MAX_MESSAGE_BYTES = 1 << 20
FIRST, LAST = 1, 2


class Msg(enum.IntEnum):
    TRADE = 1  # TradeExecuted
    BOOK_DELTA = 2  # BookUpdated
    BOOK_SNAPSHOT = 3  # BookSnapshot (periodic, and after the publisher starts)
    CANDLE = 4  # CandleUpdated
    TICKER = 5  # Ticker
    HELLO = 6  # publisher started (chan 0, payload {"epoch", "seq"}): informational


MD = np.dtype({
    "names": ["pub_ns", "seq", "prev_seq", "chan", "total", "off", "n", "kind", "flags", "epoch",
              "pad", "data"],
    "formats": ["<i8", "<u8", "<u8", "<u4", "<u4", "<u4", "<u2", "u1", "u1", "<u4", "<u4",
                ("u1", MD_DATA_BYTES)],
    "offsets": [0, 8, 16, 24, 28, 32, 36, 38, 39, 40, 44, 48],
    "itemsize": MD_RECORD_BYTES,
})
_HDR = struct.Struct("<qQQIIIHBBII")
assert _HDR.size == MD_HEADER_BYTES and MD.itemsize == MD_RECORD_BYTES  # import-time layout check


class MdEncoder:
    """Packs messages into md records in a preallocated batch; ``sink(records)`` publishes a full
    batch (called by ``add`` when the next message does not fit, and by ``flush``)."""

    def __init__(self, sink: Callable[[np.ndarray], object], capacity: int = 4096,
                 epoch: int = 0) -> None:
        if capacity * MD_DATA_BYTES < MAX_MESSAGE_BYTES:
            raise ValueError(f"encoder capacity {capacity} cannot hold a {MAX_MESSAGE_BYTES} B message")
        self.sink = sink
        self.capacity = capacity
        self.epoch = epoch
        self.arr = np.zeros(capacity, MD)
        self._mv = self.arr.view(np.uint8).reshape(-1).data
        self.n = 0
        self.messages = 0
        self.records = 0

    def add(self, kind: int, chan: int, seq: int, prev_seq: int, payload: bytes,
            pub_ns: int) -> None:
        total = len(payload)
        if total > MAX_MESSAGE_BYTES:
            from pipeline.publisher.errors import MessageTooLarge

            raise MessageTooLarge(f"md message of {total} B > {MAX_MESSAGE_BYTES} B")
        slots = (total + MD_DATA_BYTES - 1) // MD_DATA_BYTES or 1
        if self.n + slots > self.capacity:
            self.flush()
        mv, pack, epoch = self._mv, _HDR.pack_into, self.epoch
        pos = self.n * MD_RECORD_BYTES
        if slots == 1:
            pack(mv, pos, pub_ns, seq, prev_seq, chan, total, 0, total, kind, FIRST | LAST, epoch, 0)
            mv[pos + MD_HEADER_BYTES: pos + MD_HEADER_BYTES + total] = payload
        else:
            src = memoryview(payload)
            for i in range(slots):
                a = i * MD_DATA_BYTES
                b = min(total, a + MD_DATA_BYTES)
                flags = (FIRST if i == 0 else 0) | (LAST if i == slots - 1 else 0)
                pack(mv, pos, pub_ns, seq, prev_seq, chan, total, a, b - a, kind, flags, epoch, 0)
                mv[pos + MD_HEADER_BYTES: pos + MD_HEADER_BYTES + b - a] = src[a:b]
                pos += MD_RECORD_BYTES
        self.n += slots
        self.messages += 1

    def flush(self) -> int:
        n = self.n
        if n:
            self.sink(self.arr[:n])
            self.records += n
            self.n = 0
        return n


class MdMessage:
    __slots__ = ("kind", "chan", "seq", "prev_seq", "pub_ns", "epoch", "payload")

    def __init__(self, kind: int, chan: int, seq: int, prev_seq: int, pub_ns: int, epoch: int,
                 payload: bytes) -> None:
        self.kind = kind
        self.chan = chan
        self.seq = seq
        self.prev_seq = prev_seq
        self.pub_ns = pub_ns
        self.epoch = epoch
        self.payload = payload

    def __repr__(self) -> str:
        return (f"MdMessage(kind={Msg(self.kind).name}, chan={self.chan:#x}, seq={self.seq}, "
                f"prev_seq={self.prev_seq}, {len(self.payload)} B)")


class MdAssembler:
    """Reader side: turns md records back into whole messages, across read calls."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._have = 0
        self._meta: tuple[int, int, int, int, int, int, int] | None = None
        self.skipped = 0

    def reset(self) -> None:
        """Forget a partly read message (after a lap)."""
        self._parts = []
        self._have = 0
        self._meta = None

    def feed(self, recs: np.ndarray, n: int) -> list[MdMessage]:
        out: list[MdMessage] = []
        if n <= 0:
            return out
        r = recs[:n]
        mv = r.view(np.uint8).reshape(-1).data
        cols = zip(r["kind"].tolist(), r["flags"].tolist(), r["chan"].tolist(), r["seq"].tolist(),
                   r["prev_seq"].tolist(), r["pub_ns"].tolist(), r["epoch"].tolist(),
                   r["total"].tolist(), r["off"].tolist(), r["n"].tolist(), strict=True)
        pos = MD_HEADER_BYTES
        for kind, flags, chan, seq, prev, pub, epoch, total, off, ln in cols:
            chunk = mv[pos: pos + ln]
            pos += MD_RECORD_BYTES
            if flags == 3:  # FIRST | LAST: the common one-slot message
                if self._meta is not None:
                    self.skipped += 1
                    self.reset()
                out.append(MdMessage(kind, chan, seq, prev, pub, epoch, bytes(chunk)))
                continue
            if flags & FIRST:
                if self._meta is not None:
                    self.skipped += 1
                self._parts = [bytes(chunk)]
                self._have = ln
                self._meta = (kind, chan, seq, prev, pub, epoch, total)
            else:
                m = self._meta
                if m is None or off != self._have or m[1] != chan or m[6] != total:
                    if m is not None:
                        self.skipped += 1
                    self.reset()
                    continue  # joined mid-message: wait for the next FIRST
                self._parts.append(bytes(chunk))
                self._have += ln
            if flags & LAST:
                m = self._meta
                if m is not None and self._have == m[6]:
                    out.append(MdMessage(m[0], m[1], m[2], m[3], m[4], m[5], b"".join(self._parts)))
                elif m is not None:
                    self.skipped += 1
                self.reset()
        return out
