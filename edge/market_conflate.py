"""Per-connection conflation while a socket is backlogged (its transport buffer crossed the
high-water mark): what is kept instead of written, and how it is flushed.

* trades (and request responses): an ordered queue, never merged or dropped; past
  ``max_trade_backlog`` messages or ``max_backlog_bytes`` the connection is a slow consumer
  (closed 4008 by the caller);
* book channels: one ``PendingBook`` per channel. Deltas merge into one delta from the first
  ``prevSeq`` to the last ``seq`` (each level keeps its newest quantity, ``"0"`` included: a level
  added then removed in the window is sent as ``"0"``, which a client ignores if absent) with the
  last checksum; a snapshot replaces whatever was pending and later deltas apply onto it. So what
  the client finally receives obeys the same snapshot/delta contract and ends at the same book as a
  fast subscriber;
* candles: the newest frame per (channel, openTime); ticker: the newest frame per channel.

Flushing (``render``) happens when the transport drains below the low-water mark: queued frames
first, then the merged books (serialised here, per connection — the only per-subscriber JSON, and
only for slow sockets), then candles and tickers.
"""

from __future__ import annotations

from typing import Any

import orjson

from edge.market_hub import Channel, ws_frame
from pipeline.publisher.units import price_key


class PendingBook:
    __slots__ = ("snapshot", "prev", "seq", "bids", "asks", "checksum", "merged")

    def __init__(self, snapshot: bool, prev: int, seq: int, checksum: int) -> None:
        self.snapshot = snapshot
        self.prev = prev
        self.seq = seq
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.checksum = checksum
        self.merged = 0

    def render(self, ch: Channel) -> bytes:
        rev = {"bids": True, "asks": False}
        sides = {}
        for name, levels in (("bids", self.bids), ("asks", self.asks)):
            keys = sorted(levels, key=price_key, reverse=rev[name])
            sides[name] = [[p, levels[p]] for p in keys]
        if self.snapshot:
            msg: dict[str, Any] = {"type": "BookSnapshot", "channel": ch.name, "symbol": ch.symbol,
                                   "seq": self.seq}
        else:
            msg = {"type": "BookUpdated", "channel": ch.name, "symbol": ch.symbol, "seq": self.seq,
                   "prevSeq": self.prev}
        msg.update(sides)
        msg["checksum"] = self.checksum
        msg["conflated"] = self.merged
        return ws_frame(orjson.dumps(msg))


def merge_book(pb: PendingBook | None, evs: list[Any]) -> tuple[PendingBook | None, int]:
    """Fold a round's book events ("S"/"D", seq, prev, bids, asks, checksum) into ``pb``.
    Returns the new state and how many messages it absorbed."""
    n = 0
    for kind, seq, prev, bids, asks, ck in evs:
        if kind == "S":
            pb = PendingBook(True, 0, seq, ck)
            pb.bids = {p: q for p, q in bids}
            pb.asks = {p: q for p, q in asks}
            continue
        if pb is None:
            pb = PendingBook(False, prev, seq, ck)
        for side, levels in ((pb.bids, bids), (pb.asks, asks)):
            if pb.snapshot:
                for p, q in levels:
                    if q == "0":
                        side.pop(p, None)
                    else:
                        side[p] = q
            else:
                for p, q in levels:
                    side[p] = q
        pb.seq = seq
        pb.checksum = ck
        pb.merged += 1
        n += 1
    return pb, n
