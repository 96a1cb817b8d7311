"""``/v1/ws/market`` on picows: subscriptions, per-connection output, backlog and limits.

Protocol (API.md "WebSocket market data"; docs/MARKET_DATA.md): requests
``{"op": "subscribe" | "unsubscribe", "id": <int|str>, "channels": [...]}`` answered by
``{"id", "result": "subscribed" | "unsubscribed", "channels": [canonical names]}`` or
``{"id", "status": <http-like>, "error": {"code", "error", "message"}}``. A request is all or
nothing. Subscribing to a book channel (again: that is the resync) sends its BookSnapshot right
after the answer; candles and ticker send their latest message. Channel data arrives in publisher
order per channel.

Output. On the normal path the hub appends shared, pre-framed chunks to ``out`` and ``flush_out``
writes them with one ``transport.write`` per round (picows is bypassed for data frames: the frames
are final and unmasked, built once per channel; picows still owns control frames and the read
side). The transport's write buffer has a high-water mark (``high_water_bytes``): crossing it calls
``pause_writing`` and the connection switches to conflation (market_conflate.py) until
``resume_writing``; trades queued past ``max_trade_backlog`` / ``max_backlog_bytes`` close it with
4008 ``SLOW_CONSUMER`` (the close frame follows whatever the socket still holds; the socket is
aborted after ``close_grace_s`` if the peer never drains).

Limits per connection: ``max_subscriptions`` channels, ``messages_per_second`` requests (token
bucket, burst ``burst``; a refusal is answered 429 ``RATE_LIMITED``; ``max_refusals`` refusals in a
row close the socket with 1008), frames up to ``max_frame_bytes`` (picows closes bigger ones with
1009). ``sndbuf_bytes`` caps the kernel's share of a socket's backlog (SO_SNDBUF), so a stalled
peer reaches the high-water mark after a bounded amount of data. Liveness: the server pings every ``ping_interval_s`` and closes (1001 ``PING_TIMEOUT``) a
socket from which nothing (no pong, no request) arrived for ``ping_timeout_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from edge.errors import ApiError
from edge.market_conflate import PendingBook, merge_book
from edge.market_hub import Channel, MarketHub, ws_frame
from edge.market_metrics import FanoutMetrics
from pipeline.config import MarketConfig
from pipeline.publisher.channels import Ctype
from pipeline.publisher.errors import ChannelError, UnknownSymbol

_TOP = frozenset(("op", "id", "channels"))
_TRADES, _BOOK, _CANDLES = int(Ctype.TRADES), int(Ctype.BOOK), int(Ctype.CANDLES)


@dataclasses.dataclass(frozen=True)
class FanoutLimits:
    max_subscriptions: int = 64
    channels_per_request: int = 64
    messages_per_second: float = 10.0
    burst: int = 20
    max_refusals: int = 50
    max_frame_bytes: int = 16384
    high_water_bytes: int = 256 << 10
    low_water_bytes: int = 64 << 10
    max_trade_backlog: int = 10_000
    max_backlog_bytes: int = 8 << 20
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 60.0
    close_grace_s: float = 5.0
    sndbuf_bytes: int = 0  # SO_SNDBUF of each socket (0: kernel autotuning)

    @classmethod
    def from_config(cls, m: MarketConfig, **over: Any) -> FanoutLimits:
        base: dict[str, Any] = {"max_subscriptions": m.max_subscriptions, "ping_interval_s": float(m.ping_interval_s),
                "ping_timeout_s": float(m.ping_timeout_s)}
        base.update(over)
        return cls(**base)


class MarketServer:
    def __init__(self, hub: MarketHub, metrics: FanoutMetrics, limits: FanoutLimits,
                 path: str = "/v1/ws/market") -> None:
        self.hub = hub
        self.metrics = metrics
        self.limits = limits
        self.path = path.encode()
        self.conns: set[MarketConn] = set()
        self.frames = 0  # frames and bytes handed to transports (data + responses)
        self.bytes = 0
        self._reported = (0, 0)
        self.closes: dict[str, int] = {}

    def factory(self, request: WSUpgradeRequest) -> WSListener | None:
        if request.path.split(b"?", 1)[0] != self.path:
            return None
        return MarketConn(self)

    async def start(self, host: str, port: int, reuse_port: bool = False) -> asyncio.Server:
        return await ws_create_server(self.factory, host, port,
                                      max_frame_size=self.limits.max_frame_bytes,
                                      enable_auto_ping=False, reuse_port=reuse_port or None,
                                      logger_name="spotx.ws_market", backlog=4096)

    def report(self) -> None:
        """Move the frame/byte totals into the metrics (once per round, not per frame)."""
        f, b = self.frames, self.bytes
        pf, pb = self._reported
        if f != pf:
            self.metrics.sent.inc(f - pf)
            self.metrics.sent_bytes.inc(b - pb)
            self._reported = (f, b)

    def tick(self) -> None:
        """Once a second: pings, silent-socket timeouts, backlog samples."""
        now = time.monotonic()
        lim = self.limits
        backlog = self.metrics.backlog
        for c in list(self.conns):
            if c.closing:
                continue
            if now - c.last_rx >= lim.ping_timeout_s:
                c.close(1001, "PING_TIMEOUT")
                continue
            if now - c.last_ping >= lim.ping_interval_s:
                c.last_ping = now
                c.t.send_ping(b"spotx")
            backlog.observe(c.backlog_bytes())
        self.report()

    def shutdown(self) -> None:
        for c in list(self.conns):
            c.close(1001, "SERVER_SHUTDOWN")

    def closed(self, reason: str) -> None:
        self.closes[reason] = self.closes.get(reason, 0) + 1
        self.metrics.closes[reason].inc()


class MarketConn(WSListener):
    def __init__(self, srv: MarketServer) -> None:
        self.srv = srv
        self.lim = srv.limits
        self.t: WSTransport = None  # type: ignore[assignment]  # set in on_ws_connected
        self.ut: Any = None
        self.subs: dict[int, Channel] = {}
        self.out: list[bytes] = []
        self.nout = 0
        self.queued = False
        self.backlogged = False
        self.q: list[bytes] = []  # backlogged: ordered frames (trades, responses)
        self.q_bytes = 0
        self.pend_book: dict[int, PendingBook] = {}
        self.pend_other: dict[tuple[int, int], bytes] = {}
        self.closing = False
        self.reason = ""
        self.counted = False  # the close reason went into ws_close_total
        now = time.monotonic()
        self.last_rx = now
        self.last_ping = now
        self.tokens = float(self.lim.burst)
        self.t_tokens = now
        self.refusals = 0

    # -- picows callbacks -------------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.t = transport
        self.ut = transport.underlying_transport
        self.ut.set_write_buffer_limits(high=self.lim.high_water_bytes, low=self.lim.low_water_bytes)
        if self.lim.sndbuf_bytes:
            sock = self.ut.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.lim.sndbuf_bytes)
        self.srv.conns.add(self)
        self.srv.metrics.clients.inc()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._detach()
        if self in self.srv.conns:
            self.srv.conns.discard(self)
            self.srv.metrics.clients.dec()
        if self.backlogged:
            self.backlogged = False
            self.srv.metrics.backlogged.dec()
        if not self.counted:
            self.counted = True
            self.srv.closed(self.reason or "DISCONNECT")
        self.closing = True

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.last_rx = time.monotonic()
        mt = frame.msg_type
        if mt == WSMsgType.TEXT and frame.fin:
            self._request(frame.get_payload_as_memoryview())
        elif mt == WSMsgType.CLOSE:
            if not self.reason:
                self.reason = "CLIENT_CLOSE"
            self._detach()
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif mt in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            self.send_json(_err(None, ApiError("BAD_REQUEST", "send each request as one final "
                                                             "text frame")))

    def pause_writing(self) -> None:
        if not self.backlogged and not self.closing:
            self.backlogged = True
            self.srv.metrics.backlogged.inc()

    def resume_writing(self) -> None:
        if not self.backlogged:
            return
        self.backlogged = False
        self.srv.metrics.backlogged.dec()
        if self.closing:
            return
        parts = self.q
        n = len(parts)
        m = self.srv.metrics
        for cid, pb in self.pend_book.items():
            ch = self.subs.get(cid)
            if ch is not None:
                parts.append(pb.render(ch))
                if pb.merged > 1:
                    m.conflated["book"].inc(pb.merged - 1)
        parts.extend(self.pend_other.values())
        n = len(parts)
        self.q = []
        self.q_bytes = 0
        self.pend_book = {}
        self.pend_other = {}
        if parts:
            self._write(b"".join(parts), n)

    # -- output -----------------------------------------------------------------------------------
    def _write(self, data: bytes, n: int) -> None:
        self.ut.write(data)
        srv = self.srv
        srv.frames += n
        srv.bytes += len(data)

    def flush_out(self) -> None:
        out = self.out
        data = out[0] if len(out) == 1 else b"".join(out)
        n = self.nout
        self.out = []
        self.nout = 0
        self.queued = False
        if not self.closing:
            self._write(data, n)

    def send_frame(self, frame: bytes) -> None:
        if self.closing:
            return
        if self.backlogged:
            self.q.append(frame)
            self.q_bytes += len(frame)
        else:
            self._write(frame, 1)

    def send_json(self, obj: Any) -> None:
        self.send_frame(ws_frame(orjson.dumps(obj)))

    def conflate(self, ch: Channel, evs: list[Any]) -> None:
        ct = ch.ctype
        if ct == _TRADES:
            q = self.q
            q.extend(evs)
            self.q_bytes += sum(len(f) for f in evs)
            if len(q) > self.lim.max_trade_backlog or self.q_bytes > self.lim.max_backlog_bytes:
                self.slow_consumer()
        elif ct == _BOOK:
            pb, _ = merge_book(self.pend_book.get(ch.cid), evs)
            if pb is not None:
                self.pend_book[ch.cid] = pb
        else:
            po = self.pend_other
            kind = "candle" if ct == _CANDLES else "ticker"
            for key, f in evs:
                k = (ch.cid, key if ct == _CANDLES else 0)
                if k in po:
                    self.srv.metrics.conflated[kind].inc()
                po[k] = f

    def resync_notice(self, ch: Channel) -> None:
        self.send_json({"type": "Resync", "channel": ch.name, "reason": "fanout_lapped"})

    def backlog_bytes(self) -> int:
        ut = self.ut
        return (ut.get_write_buffer_size() if ut is not None else 0) + self.q_bytes

    # -- closing ----------------------------------------------------------------------------------
    def _detach(self) -> None:
        for ch in self.subs.values():
            ch.subs.pop(self, None)
        self.subs = {}
        self.q = []
        self.q_bytes = 0
        self.pend_book = {}
        self.pend_other = {}
        self.out = []
        self.nout = 0

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.reason = reason
        self.counted = True
        self.srv.closed(reason)
        self._detach()
        t = self.t
        t.send_close(code, reason.encode())  # type: ignore[arg-type]  # picows takes any int code
        t.disconnect(True)
        asyncio.get_running_loop().call_later(self.lim.close_grace_s, self._abort)

    def _abort(self) -> None:
        if not self.t.is_disconnected:
            self.ut.abort()

    def slow_consumer(self) -> None:
        self.close(4008, "SLOW_CONSUMER")

    # -- requests ---------------------------------------------------------------------------------
    def _allow(self) -> bool:
        now = time.monotonic()
        lim = self.lim
        self.tokens = min(float(lim.burst), self.tokens + (now - self.t_tokens) * lim.messages_per_second)
        self.t_tokens = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.refusals = 0
            return True
        self.refusals += 1
        return False

    def _request(self, data: memoryview) -> None:
        if self.closing:
            return
        if not self._allow():
            if self.refusals > self.lim.max_refusals:
                self.close(1008, "RATE_LIMITED")
                return
            self.send_json(_err(None, ApiError(
                "RATE_LIMITED", f"over {self.lim.messages_per_second:g} requests/s on this "
                                "connection", retry_after_s=1)))
            return
        rid: Any = None
        try:
            try:
                msg = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise ApiError("BAD_REQUEST", "request is not valid JSON") from None
            if type(msg) is not dict:
                raise ApiError("BAD_REQUEST", "request must be a JSON object")
            rid = msg.get("id")
            if not (rid is None or type(rid) is int or (type(rid) is str and len(rid) <= 64)):
                rid = None
                raise ApiError("BAD_REQUEST", "id must be an integer or a string of <= 64 chars")
            extra = msg.keys() - _TOP
            if extra:
                raise ApiError("BAD_REQUEST", f"unknown member {sorted(extra)[0][:40]!r}")
            op = msg.get("op")
            names = msg.get("channels")
            if op not in ("subscribe", "unsubscribe"):
                raise ApiError("BAD_REQUEST", "op must be subscribe or unsubscribe")
            if type(names) is not list or not 1 <= len(names) <= self.lim.channels_per_request:
                raise ApiError("BAD_REQUEST", f"channels must be a list of 1.."
                                              f"{self.lim.channels_per_request} channel names")
            cids = self._parse(names)
            if op == "subscribe":
                self._subscribe(rid, cids)
            else:
                self._unsubscribe(rid, cids)
        except ApiError as e:
            self.send_json(_err(rid, e))

    def _parse(self, names: list[Any]) -> list[int]:
        hub = self.srv.hub
        out: list[int] = []
        for n in names:
            try:
                cid = hub.names.parse(n)
            except UnknownSymbol as e:
                raise ApiError("UNKNOWN_SYMBOL", str(e)) from None
            except ChannelError as e:
                raise ApiError("BAD_REQUEST", str(e)) from None
            if cid not in out:
                out.append(cid)
        return out

    def _subscribe(self, rid: Any, cids: list[int]) -> None:
        new = [c for c in cids if c not in self.subs]
        if len(self.subs) + len(new) > self.lim.max_subscriptions:
            raise ApiError("BAD_REQUEST", f"at most {self.lim.max_subscriptions} subscriptions "
                                          f"per connection ({len(self.subs)} already)")
        hub = self.srv.hub
        chans = [hub.channel(c) for c in cids]
        self.send_json({"id": rid, "result": "subscribed", "channels": [ch.name for ch in chans]})
        for ch in chans:
            ch.subs[self] = None
            self.subs[ch.cid] = ch
            if ch.ctype == _BOOK:
                if ch.ready:
                    self._initial_snapshot(ch)
            elif ch.ctype != _TRADES and ch.last is not None:
                self.send_frame(ch.last)

    def _initial_snapshot(self, ch: Channel) -> None:
        if self.backlogged:
            pb = PendingBook(True, 0, ch.seq, ch.checksum)
            pb.bids = dict(ch.bids)
            pb.asks = dict(ch.asks)
            self.pend_book[ch.cid] = pb
        else:
            self.send_frame(ch.snapshot_frame())

    def _unsubscribe(self, rid: Any, cids: list[int]) -> None:
        names = []
        for cid in cids:
            ch = self.subs.pop(cid, None)
            name = self.srv.hub.names.name(cid)
            names.append(name)
            if ch is not None:
                ch.subs.pop(self, None)
                self.pend_book.pop(cid, None)
                for k in [k for k in self.pend_other if k[0] == cid]:
                    del self.pend_other[k]
        self.send_json({"id": rid, "result": "unsubscribed", "channels": names})


def _err(rid: Any, e: ApiError) -> dict[str, Any]:
    d: dict[str, Any] = {"id": rid, "status": e.status, "error": e.body()}
    ra = e.fields.get("retry_after_s")
    if ra is not None:
        d["retryAfter"] = ra
    return d
