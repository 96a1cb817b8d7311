"""Reference client of the book channels: applies BookSnapshot + BookUpdated exactly as
docs/MARKET_DATA.md tells clients to, and checks seq chains and checksums.

Rules: a ``BookSnapshot`` replaces the book and sets ``seq``; a ``BookUpdated`` whose ``seq`` is
not above the client's is already contained in its snapshot and is ignored (only possible when the
snapshot came from elsewhere, e.g. REST ``/v1/depth``); otherwise it applies only if its
``prevSeq`` equals the client's ``seq`` (else ``BookGap``: the client must resubscribe, which
brings a fresh snapshot); each level sets the quantity at its price, ``"0"`` deletes it; after each
message the book's checksum (checksum.py format, over the top ``min(depth, 10)`` levels) must equal
the message's ``checksum`` (else ``ChecksumMismatch``: resubscribe). Used by the tests and the
bench; pure Python, no I/O.
"""

from __future__ import annotations

from typing import Any

from pipeline.publisher.checksum import CHECKSUM_LEVELS, checksum
from pipeline.publisher.units import price_key


class BookGap(Exception):
    """A delta's prevSeq does not follow the client's seq."""


class ChecksumMismatch(Exception):
    """The client's book does not hash to the message's checksum."""


class BookClient:
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq: int | None = None
        self.snapshots = 0
        self.deltas = 0
        self.stale = 0

    def top(self) -> tuple[list[list[str]], list[list[str]]]:
        b = sorted(self.bids, key=price_key, reverse=True)
        a = sorted(self.asks, key=price_key)
        return [[p, self.bids[p]] for p in b], [[p, self.asks[p]] for p in a]

    def apply(self, msg: dict[str, Any]) -> None:
        t = msg.get("type")
        if t == "BookSnapshot":
            self.bids = {p: q for p, q in msg["bids"]}
            self.asks = {p: q for p, q in msg["asks"]}
            self.snapshots += 1
        elif t == "BookUpdated":
            if self.seq is not None and msg["seq"] <= self.seq:
                self.stale += 1
                return  # already in the snapshot this client started from
            if self.seq is None or msg["prevSeq"] != self.seq:
                raise BookGap(f"prevSeq {msg['prevSeq']} after seq {self.seq}")
            for side, levels in ((self.bids, msg["bids"]), (self.asks, msg["asks"])):
                for p, q in levels:
                    if q == "0":
                        side.pop(p, None)
                    else:
                        side[p] = q
            self.deltas += 1
        else:
            raise ValueError(f"not a book message: {t!r}")
        self.seq = int(msg["seq"])
        if len(self.bids) > self.depth or len(self.asks) > self.depth:
            raise ChecksumMismatch(f"more than {self.depth} levels a side after seq {self.seq}")
        bids, asks = self.top()
        k = min(self.depth, CHECKSUM_LEVELS)
        if checksum(bids[:k], asks[:k]) != msg["checksum"]:
            raise ChecksumMismatch(f"checksum differs at seq {self.seq}")
