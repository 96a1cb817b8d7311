"""WebSocket order entry on picows: ``/v1/ws/trade`` (API.md "WebSocket order entry").

Split. This module is the socket side (``WsTradeServer``, and ``TradeListener``: picows'
listener, fragments, CLOSE); ``edge.ws_session.TradeSession`` is what a session does with whole
messages, kept free of picows so that it runs compiled (``pipeline.native``).

Frames. picows hands each frame to ``on_ws_frame`` as a zero-copy view into its read buffer, valid
only during that call: the payload is parsed there and nothing keeps the view. The listener binds
the session's compiled ``TradeSession.frame`` as its ``on_ws_frame`` (picows looks the method up on
the instance): whole messages never run interpreted code here; fragments, CLOSE and the rest go to
``TradeListener.slow_frame``. After logon an
``order.place`` / ``order.cancel`` of the common shapes goes from the bytes to its record in one
numba call (``edge.wire_fast``); everything else, and anything that kernel is not sure of, is
parsed by ``orjson.loads`` and checked in full. Fragmented messages are reassembled up to ``max_frame_bytes``; a frame over it is
refused by picows itself (close 1009 MESSAGE_TOO_BIG). PING is answered by picows; the server pings
a socket idle for ``ping_idle_s`` (20 s) and drops it if no PONG comes within ``ping_reply_s``
(20 s; picows requires reply <= idle, and refuses every connection otherwise, so the constructor
checks it): a silent peer is gone after at most 40 s; a socket that has not logged on within ``logon_timeout_s`` is closed (1008 LOGON_TIMEOUT).

Requests ``{"id": int|str, "method", "params"}``; responses ``{"id", "status": 200, "result"}`` or
``{"id", "status", "error": {"code","error","message"}}`` (plus ``retryAfter`` on 429). Malformed
input of any kind gets an error response (``id`` null when it could not be read), never a close.

Ordering (decided here, and tested): responses go out in request order per connection. Many
requests are in flight at once: writes (``order.place``, ``order.cancel``, ``orders.cancelAll``)
are submitted to the engine as they arrive, so they batch and sequence in arrival order; reads
(``order.status``, ``orders.open``, ``balances.get``) are evaluated when every earlier request of the
connection has been answered, so a read sees the connection's own earlier writes. In-flight
requests are capped at ``max_inflight``: beyond it the socket stops being read until answers drain.
Private events (``OrderUpdate``, ``BalanceUpdate``) are pushed as they become durable, independent of
responses: the OrderUpdate of a new order may arrive before the order's response.

Output is coalesced: responses and pushes produced while handling one loop iteration's input are
queued per session and written once, at the end of the iteration, as one buffer of pre-built WS
frames (server frames are unmasked: header + payload). One ``write`` per session per iteration
instead of one ``send()`` syscall per message: the syscalls were 30 % of the edge's CPU at load
(py-spy). Order is preserved: everything for a socket goes through the same transport buffer.

Limits: ``messages_per_second`` frames per connection (before or after logon; refused with 429 and
counted as ``rate_limit_drops_total{reason="ws_messages"}``); after logon every request is also
charged to the API key's buckets exactly as its REST twin. A connection whose unsent output exceeds
``max_backlog_bytes`` is closed with 4008 SLOW_CONSUMER.

Cancel on disconnect: ``session.cancelOnDisconnect {"enabled": true}`` makes the session cancel,
when the socket drops for any reason, every order *this session* placed that is still open
(including those whose placement was in flight at the drop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from edge.auth import Authenticator
from edge.metrics import EdgeMetrics
from edge.ratelimit import KeyLimiter
from edge.service import TradingService
from edge.wire_fast import WireFast
from edge.ws_session import METHODS, TradeSession, _frame_header

__all__ = ["METHODS", "TradeListener", "TradeSession", "WsTradeServer", "_frame_header"]
_TEXT, _BINARY, _CONTINUATION, _CLOSE = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION,
                                        WSMsgType.CLOSE)


class WsTradeServer:
    def __init__(self, service: TradingService, auth: Authenticator, limiter: KeyLimiter,
                 metrics: EdgeMetrics, path: str = "/v1/ws/trade",
                 max_frame_bytes: int = 65536, messages_per_second: int = 10_000,
                 max_inflight: int = 256, max_backlog_bytes: int = 4 << 20,
                 ping_idle_s: float = 20.0, ping_reply_s: float = 20.0,
                 logon_timeout_s: float = 30.0) -> None:
        if not 0 < ping_reply_s <= ping_idle_s:
            raise ValueError("ping_reply_s must be in (0, ping_idle_s]")
        self.svc = service
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.path = path.encode()
        self.max_frame_bytes = max_frame_bytes
        self.messages_per_second = messages_per_second
        self.max_inflight = max_inflight
        self.max_backlog_bytes = max_backlog_bytes
        self.ping_idle_s = ping_idle_s
        self.ping_reply_s = ping_reply_s
        self.logon_timeout_s = logon_timeout_s
        self.sessions: dict[int, TradeSession] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self._slot = 0
        self._dirty: list[TradeSession] = []  # sessions with queued output this iteration
        self.wire: WireFast | None = WireFast(service.v.units)  # None: every request parsed in full

    @staticmethod
    def close_code(code: int) -> WSCloseCode:
        return WSCloseCode(code)

    def want_write(self, sess: TradeSession) -> None:
        if not self._dirty:
            sess.loop.call_soon(self._write_all)
        self._dirty.append(sess)

    def write_pending(self) -> None:
        """Write every session's queued output now (``Dispatcher.progress``, mid-batch)."""
        if self._dirty:
            self._write_all()

    def _write_all(self) -> None:
        dirty, self._dirty = self._dirty, []
        for sess in dirty:
            sess.write_out()

    def _next_slot(self) -> int:
        s = self._slot
        while True:
            s = s + 1 if s < 0xFFFFFF else 1
            if s not in self.sessions:
                self._slot = s
                return s

    def _factory(self, request: WSUpgradeRequest) -> WSListener | None:
        if request.path.split(b"?", 1)[0] != self.path:
            return None
        return TradeListener(TradeSession(self, self._next_slot()), self.max_frame_bytes)

    async def start(self, host: str, port: int, reuse_port: bool = False) -> asyncio.Server:
        return await ws_create_server(
            self._factory, host, port, max_frame_size=self.max_frame_bytes,
            enable_auto_ping=True, auto_ping_idle_timeout=self.ping_idle_s,
            auto_ping_reply_timeout=self.ping_reply_s,
            auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
            reuse_port=reuse_port or None, logger_name="spotx.ws_trade")

    def spawn(self, aw: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(aw)
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    async def drain(self) -> None:
        """Wait for background work (cancel-on-disconnect) to finish (shutdown, tests)."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)


class TradeListener(WSListener):
    """picows' side of one connection: frames in, whole messages to the ``TradeSession``."""

    def __init__(self, session: TradeSession, max_frame_bytes: int) -> None:
        self.sess = session
        self.max_frame_bytes = max_frame_bytes
        self.frag: list[bytes] = []
        self.frag_size = 0
        # picows looks ``on_ws_frame`` up on the instance (a cpdef method overridden in Python):
        # this attribute makes it call the session's compiled ``frame``, which handles a whole
        # message itself and hands everything else to ``slow_frame``
        session.text_type, session.binary_type = _TEXT, _BINARY
        session.slow_frame = self.slow_frame
        self.on_ws_frame = session.frame  # type: ignore[method-assign]

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.sess.connected(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.sess.disconnected()
        self.sess.slow_frame = None  # no frame follows; and no cycle session <-> listener left

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Shadowed per instance by ``TradeSession.frame`` (see ``__init__``), which calls
        ``slow_frame``; kept so the listener stays whole without it."""
        self.slow_frame(transport, frame)

    def slow_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        try:
            self._frame(frame)
        finally:
            self.sess.fragments = bool(self.frag)

    def _frame(self, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is _TEXT or mt is _BINARY:  # enum members are singletons: no attribute lookups
            if frame.fin and not self.frag:
                self.sess.message(frame.get_payload_as_memoryview(), True)  # WireFast.view_kernel
                return
            self.frag = [frame.get_payload_as_bytes()]
            self.frag_size = frame.payload_size
        elif mt is _CONTINUATION:
            if not self.frag:
                self.sess.refuse("continuation without a first frame")
                return
            self.frag.append(frame.get_payload_as_bytes())
            self.frag_size += frame.payload_size
        elif mt is _CLOSE:
            self.sess.peer_closed(frame.get_close_code(), frame.get_close_message())
            return
        else:
            return  # PING is auto-answered; PONG needs nothing
        if self.frag_size > self.max_frame_bytes:
            self.frag = []
            self.sess.close(1009, "message too big")
            return
        if frame.fin:
            data = b"".join(self.frag)
            self.frag = []
            self.sess.message(data)
