"""The fan-out's routing core: channels, their state, and one delivery round per ring read.

A round (``dispatch``) takes the whole md messages read from the ring (record.MdAssembler) and:

1. per message, updates its channel: trades and candles/tickers are framed once (WebSocket text
   frame, server side, unmasked) and queued on the channel; a book channel parses its message once
   (orjson) to keep its own copy of the view — that is what answers a subscribe with a BookSnapshot
   consistent with the next delta's ``prevSeq``. A delta whose ``prevSeq`` is not the copy's seq
   (publisher gap, or records lost to a lap) makes the channel *stale*: nothing more is sent on it
   until the next BookSnapshot from the publisher, which is then sent to every subscriber (a
   snapshot on a subscribed channel means "replace your book"). A snapshot whose seq equals the
   copy's is the publisher's periodic one and is dropped unparsed.
2. per channel with frames, joins them into one chunk and hands it to each subscriber: a
   connection that keeps up appends the shared chunk to its output (one ``write`` per connection
   per round); a backlogged one merges the round's messages into its conflation state instead
   (market_conflate.py).

So per round the cost is O(messages) for parsing/framing plus O(subscriptions) list appends plus
one write per connection: JSON is never produced per subscriber on the normal path.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from pipeline.config import Config
from pipeline.publisher.channels import DEPTHS, ChannelNames, Ctype, chan_parts
from pipeline.publisher.record import MdMessage, Msg
from pipeline.publisher.units import price_key

_TRADE, _DELTA, _SNAP = int(Msg.TRADE), int(Msg.BOOK_DELTA), int(Msg.BOOK_SNAPSHOT)
_CANDLE, _TICKER = int(Msg.CANDLE), int(Msg.TICKER)


def ws_frame(payload: bytes) -> bytes:
    """A final, unmasked WebSocket text frame (server -> client) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


class Subscriber(Protocol):
    backlogged: bool
    queued: bool
    out: list[bytes]
    nout: int

    def conflate(self, ch: Channel, evs: list[Any]) -> None: ...
    def flush_out(self) -> None: ...
    def resync_notice(self, ch: Channel) -> None: ...


class Channel:
    __slots__ = ("cid", "name", "ctype", "symbol", "depth", "subs", "frames", "evs", "bids",
                 "asks", "seq", "checksum", "time", "ready", "snap", "last", "last_key")

    def __init__(self, cid: int, name: str) -> None:
        ctype, _sid, sub = chan_parts(cid)
        self.cid = cid
        self.name = name
        self.ctype = ctype
        self.symbol = name.split(":", 1)[1].split("@", 1)[0]
        self.depth = DEPTHS[sub] if ctype == Ctype.BOOK else 0
        self.subs: dict[Subscriber, None] = {}
        self.frames: list[bytes] = []  # this round's frames
        self.evs: list[Any] = []  # this round's messages in conflatable form
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = 0
        self.checksum = 0
        self.time = 0
        self.ready = False  # book: the copy is valid (has a snapshot and an unbroken chain)
        self.snap: bytes | None = None  # cached BookSnapshot frame of the copy
        self.last: bytes | None = None  # candles / ticker: the latest frame
        self.last_key = 0  # candles: openTime of ``last``; trades: the last trade id sent

    def snapshot_payload(self) -> bytes:
        b = sorted(self.bids, key=price_key, reverse=True)
        a = sorted(self.asks, key=price_key)
        return orjson.dumps({
            "type": "BookSnapshot", "channel": self.name, "symbol": self.symbol, "seq": self.seq,
            "time": self.time, "bids": [[p, self.bids[p]] for p in b],
            "asks": [[p, self.asks[p]] for p in a], "checksum": self.checksum})

    def snapshot_frame(self) -> bytes:
        if self.snap is None:
            self.snap = ws_frame(self.snapshot_payload())
        return self.snap


class HubStats:
    __slots__ = ("frames", "bytes", "rounds", "messages", "resyncs", "laps", "oldest_pub_ns")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.rounds = 0
        self.messages = 0
        self.resyncs = 0
        self.laps = 0
        self.oldest_pub_ns = 0


class MarketHub:
    def __init__(self, cfg: Config) -> None:
        self.names = ChannelNames(cfg)
        self.channels: dict[int, Channel] = {}
        self.stats = HubStats()
        self._touched: list[Channel] = []
        self._conns: list[Subscriber] = []

    def channel(self, cid: int) -> Channel:
        ch = self.channels.get(cid)
        if ch is None:
            ch = self.channels[cid] = Channel(cid, self.names.name(cid))  # ChannelError if bad
        return ch

    # -- a round ----------------------------------------------------------------------------------
    def dispatch(self, msgs: list[MdMessage]) -> None:
        if not msgs:
            return
        st = self.stats
        st.rounds += 1
        st.messages += len(msgs)
        st.oldest_pub_ns = msgs[0].pub_ns
        touched = self._touched
        channels = self.channels
        for m in msgs:
            ch = channels.get(m.chan)
            if ch is None:
                if m.kind == int(Msg.HELLO):
                    continue
                try:
                    ch = self.channel(m.chan)
                except ValueError:
                    continue  # a symbol this config does not know
            k = m.kind
            if k == _TRADE:
                if m.prev_seq <= ch.last_key:
                    continue  # already sent: a restarted publisher re-published it
                ch.last_key = m.prev_seq
                if ch.subs:
                    f = ws_frame(m.payload)
                    if not ch.frames:
                        touched.append(ch)
                    ch.frames.append(f)
                    ch.evs.append(f)
            elif k == _DELTA:
                if not ch.ready:
                    continue
                if m.prev_seq != ch.seq:
                    self._stale(ch)
                    continue
                d = orjson.loads(m.payload)
                for side, levels in ((ch.bids, d["bids"]), (ch.asks, d["asks"])):
                    for p, q in levels:
                        if q == "0":
                            side.pop(p, None)
                        else:
                            side[p] = q
                ch.seq = m.seq
                ch.checksum = d["checksum"]
                ch.time = d.get("time", 0)
                ch.snap = None
                if ch.subs:
                    if not ch.frames:
                        touched.append(ch)
                    ch.frames.append(ws_frame(m.payload))
                    ch.evs.append(("D", m.seq, m.prev_seq, d["bids"], d["asks"], d["checksum"]))
            elif k == _SNAP:
                if ch.ready and m.seq == ch.seq:
                    continue
                d = orjson.loads(m.payload)
                ch.bids = {p: q for p, q in d["bids"]}
                ch.asks = {p: q for p, q in d["asks"]}
                ch.seq = m.seq
                ch.checksum = d["checksum"]
                ch.time = d.get("time", 0)
                ch.ready = True
                ch.snap = ws_frame(m.payload)
                if ch.subs:
                    if not ch.frames:
                        touched.append(ch)
                    ch.frames.append(ch.snap)
                    ch.evs.append(("S", m.seq, 0, d["bids"], d["asks"], d["checksum"]))
            elif k == _CANDLE or k == _TICKER:
                f = ws_frame(m.payload)
                if k == _CANDLE and ch.last is not None and m.prev_seq < ch.last_key:
                    pass  # an older candle re-sent (late trade): do not regress the latest
                else:
                    ch.last = f
                    ch.last_key = m.prev_seq
                if ch.subs:
                    if not ch.frames:
                        touched.append(ch)
                    ch.frames.append(f)
                    ch.evs.append((m.prev_seq, f))
        self._deliver()

    def _stale(self, ch: Channel) -> None:
        ch.ready = False
        ch.snap = None
        self.stats.resyncs += 1

    def _deliver(self) -> None:
        conns = self._conns
        for ch in self._touched:
            frames = ch.frames
            n = len(frames)
            chunk = frames[0] if n == 1 else b"".join(frames)
            for c in tuple(ch.subs):  # a slow consumer may be closed (and detached) on the way
                if c.backlogged:
                    c.conflate(ch, ch.evs)
                    continue
                c.out.append(chunk)
                c.nout += n
                if not c.queued:
                    c.queued = True
                    conns.append(c)
            ch.frames = []
            ch.evs = []
        self._touched = []
        for c in conns:
            c.flush_out()
        conns.clear()

    # -- resync -----------------------------------------------------------------------------------
    def lapped(self) -> None:
        """The ring overran this process: every book copy is stale until its next snapshot, and
        trade subscribers are told that trades may be missing (they can backfill from REST)."""
        self.stats.laps += 1
        for ch in self.channels.values():
            if ch.ctype == Ctype.BOOK and ch.ready:
                self._stale(ch)
            elif ch.ctype == Ctype.TRADES:
                for c in list(ch.subs):
                    c.resync_notice(ch)
