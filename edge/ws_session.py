"""The per-connection logic of WebSocket order entry, apart from picows (compiled: ``pipeline.native``).

``edge.ws_trade`` owns the socket side (the picows listener, fragments, the server); this module
owns what a session does with whole messages — parsing, limits, dispatch, ordering of answers,
private pushes, coalesced output, cancel-on-disconnect — exactly as described in
``edge.ws_trade``'s header. It imports nothing from picows: the transport is used through
``send_close``/``disconnect``/``underlying_transport`` only, so mypyc can compile the class (a
native class cannot subclass picows' Cython listener).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson

from edge import schema
from edge.auth import GRANTS, ApiKey
from edge.errors import ApiError
from edge.gateway import Wait
from edge.ratelimit import NS, KeyLimiter, TokenBucket, retry_after_s
from edge.service import TradingService
from edge.wire_fast import WireFast
from pipeline.histogram import observe
from pipeline.records import Ev

log = logging.getLogger("edge.ws_trade")
# module constants are Final: compiled, each is a C static, not a module-dict lookup per use
_TOP_KEYS: Final = frozenset({"id", "method", "params"})
# method -> (role, weight, order-bucket, kind): kind "w" write (async), "r" read (deferred), "s" session
METHODS: Final[dict[str, tuple[str, int, bool, str]]] = {
    "session.logon": ("", 0, False, "s"),
    "session.cancelOnDisconnect": ("trade", 1, False, "s"),
    "order.place": ("trade", 1, True, "w"),
    "order.cancel": ("trade", 1, True, "w"),
    "orders.cancelAll": ("trade", 1, True, "w"),
    "order.status": ("read", 1, False, "r"),
    "orders.open": ("read", 2, False, "r"),
    "balances.get": ("read", 5, False, "r"),
}
_CANCELED_EV: Final = int(Ev.CANCELED)
_PLACE: Final = "order.place"  # what edge.wire_fast parses
_CANCEL: Final = "order.cancel"
assert METHODS[_PLACE] == METHODS[_CANCEL] == ("trade", 1, True, "w")  # what _fast charges


class _Slot(Wait):
    """One request's place in its session's answer order; for order.place / order.cancel sent
    without a coroutine it is also the gateway's pending entry (a ``Wait``: no closure and no
    second object per order), answered by ``resolve``."""

    __slots__ = ("rid", "method", "t0", "data", "task", "thunk", "sess", "key", "place")

    def __init__(self, rid: Any, method: str) -> None:
        super().__init__(None, None, 0.0)
        self.rid = rid
        self.method = method
        self.t0 = _perf_ns()
        self.data: bytes | None = None
        self.task: asyncio.Task[None] | None = None
        self.thunk: Callable[[], Any] | None = None
        self.sess: TradeSession | None = None
        self.key: ApiKey | None = None
        self.place = False

    def resolve(self, events: list[Any] | None, exc: ApiError | BaseException | None) -> None:
        sess = self.sess
        if sess is None:
            return
        self.sess = None  # answered once
        if exc is not None and not isinstance(exc, ApiError):
            exc = ApiError("ENGINE_UNAVAILABLE", str(exc))
        try:
            sess._answered(self, events, exc)
        except Exception:  # noqa: BLE001 - as Wait.resolve: the feed's other answers go on
            log.exception("WS answer failed")


_perf_ns: Final = time.perf_counter_ns  # a C static: no lookup of `time` and its attribute
_mono_ns: Final = time.monotonic_ns
_HDR_SMALL: Final = [bytes((0x81, n)) for n in range(126)]  # FIN + TEXT, 7-bit length


def _frame_header(n: int) -> bytes:
    if n < 126:
        return _HDR_SMALL[n]
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def _ok(rid: Any, result: Any) -> bytes:
    return orjson.dumps({"id": rid, "status": 200, "result": result})


def _ok_text(rid: Any, text: str) -> bytes:
    """``_ok(rid, orjson.Fragment(text))``, byte for byte, for a result that is JSON text."""
    if type(rid) is int:
        return f'{{"id":{rid},"status":200,"result":{text}}}'.encode()
    return b'{"id":' + orjson.dumps(rid) + b',"status":200,"result":' + text.encode() + b"}"


def _err(rid: Any, e: ApiError) -> bytes:
    d: dict[str, Any] = {"id": rid, "status": e.status, "error": e.body()}
    ra = e.fields.get("retry_after_s")
    if ra is not None:
        d["retryAfter"] = ra
    return orjson.dumps(d)


class TradeSession:
    """One WS order-entry connection: its requests, answers and pushes (see ``edge.ws_trade``)."""

    def __init__(self, server: Any, slot: int) -> None:
        self.srv = server
        # the server's parts used per request, as typed attributes: native calls once compiled
        # instead of attribute lookups on the (interpreted) server and bound-method calls
        self.svc: TradingService = server.svc
        self.limiter: KeyLimiter = server.limiter
        self.metrics: Any = server.metrics
        self.ws_slots: dict[str, int] = server.metrics.ws_slots  # latency histogram per method
        self.stats: Any = server.metrics.stats  # pipeline.stats.Stats: its ``words`` (may change)
        self.max_inflight: int = server.max_inflight
        self.slot = slot
        self.t: Any = None  # picows WSTransport, set by connected()
        self.key: ApiKey | None = None
        self.grants: frozenset[str] = frozenset()
        self.queue: deque[_Slot] = deque()
        self.bucket = TokenBucket(server.messages_per_second, NS, time.monotonic_ns())
        self.cancel_on_disconnect = False
        self.placed: set[int] = set()  # open orders placed by this session (cancel-on-disconnect)
        self.prune_at = 4096
        self.unsubscribe: Callable[[], None] | None = None
        self.paused = False
        self.closed = False
        self.logon_timer: asyncio.TimerHandle | None = None
        self.out: list[bytes] = []  # frames' payloads waiting for the end of this loop iteration
        self.in_cb = 0  # requests sent without a coroutine, not answered yet
        self.drained: asyncio.Future[None] | None = None  # set when in_cb drops to 0
        self.loop = asyncio.get_running_loop()  # looked up once: each lookup calls getpid()
        self.wire: WireFast | None = server.wire
        # picows' frame callback in compiled code (``frame``), set by ``edge.ws_trade``'s listener
        self.text_type: Any = None  # picows' WSMsgType.TEXT / BINARY (this module stays free of
        self.binary_type: Any = None  # picows: compiled, it must not subclass its listener)
        self.fragments = False  # the listener holds the first frames of a fragmented message
        self.slow_frame: Callable[[Any, Any], None] | None = None  # the listener's full handling

    # -- from the picows listener (edge.ws_trade.TradeListener) -----------------------------------
    def connected(self, transport: Any) -> None:
        self.t = transport
        self.srv.sessions[self.slot] = self
        self.metrics.ws_clients.labels("trade").inc()
        self.logon_timer = self.loop.call_later(
            self.srv.logon_timeout_s, self._logon_timeout)

    def disconnected(self) -> None:
        self.closed = True
        self.srv.sessions.pop(self.slot, None)
        self.metrics.ws_clients.labels("trade").dec()
        self.metrics.ws_closes.labels("disconnect").inc()
        if self.logon_timer is not None:
            self.logon_timer.cancel()
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None
        pending = [s.task for s in self.queue if s.task is not None and not s.task.done()]
        self.queue.clear()
        if self.cancel_on_disconnect and self.key is not None:
            self.srv.spawn(self._cancel_session_orders(pending))
        else:
            for task in pending:
                task.cancel()

    def refuse(self, message: str) -> None:
        """A protocol-level problem the client should hear about (an answer with id null)."""
        self._send(_err(None, ApiError("BAD_REQUEST", message)))

    def peer_closed(self, code: Any, message: bytes | None) -> None:
        """The peer's CLOSE: flush what is queued, echo the close, drop the socket."""
        self.write_out()
        t = self.t
        if t is not None:
            t.send_close(code, message)
            t.disconnect()

    # -- requests ---------------------------------------------------------------------------------
    def frame(self, transport: Any, frame: Any) -> None:
        """picows' ``on_ws_frame``, bound by ``edge.ws_trade.TradeListener`` as its instance
        attribute so that picows calls compiled code, not an interpreted method (~4 % of a
        saturated edge): a whole TEXT / BINARY message with no fragments pending goes straight to
        ``message``; every other frame to the listener's ``slow_frame``."""
        mt = frame.msg_type
        if (mt is self.text_type or mt is self.binary_type) and frame.fin and not self.fragments:
            self.message(frame.get_payload_as_memoryview(), True)
            return
        slow = self.slow_frame
        if slow is not None:
            slow(transport, frame)

    def message(self, data: bytes | memoryview, view: bool = False) -> None:
        """One whole TEXT/BINARY message (the payload view is valid only during this call);
        ``view``: ``data`` is picows' payload memoryview (``WireFast.view_kernel``)."""
        key = self.key
        wire = self.wire
        if key is not None and wire is not None:  # edge.wire_fast.WireFast.parse, inlined
            kernel = wire.view_kernel if view else wire.kernel
            kind, rid_i, rs, re = kernel(data, key.account, wire.tab, wire.cmd, wire.sc)
            if kind:
                rid_s: Any = rid_i if rs < 0 else bytes(data[rs:re]).decode()
                self._fast(kind == 1, rid_s, wire.record_buf[:], key)  # a copy
                return
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._answer_now(None, "?", ApiError("BAD_REQUEST", "message is not valid JSON"))
            return
        rid: Any = None
        method = "?"
        try:
            if type(msg) is not dict:
                raise ApiError("BAD_REQUEST", "message must be a JSON object")
            d: dict[str, Any] = msg  # typed: d.get compiles to a C dict lookup
            rid = d.get("id")
            if not (type(rid) is int or (type(rid) is str and len(rid) <= 64)):
                rid = None
                raise ApiError("BAD_REQUEST", "id must be an integer or a string of <= 64 chars")
            if not -2**63 <= (rid if type(rid) is int else 0) < 2**63:
                rid = None
                raise ApiError("BAD_REQUEST", "id out of range")
            if len(d) > ("id" in d) + ("method" in d) + ("params" in d):  # no set per message
                raise ApiError("BAD_REQUEST", "unknown member "
                               + repr(sorted(str(k)[:40] for k in d.keys() - _TOP_KEYS)[0]))
            m = d.get("method")
            spec = METHODS.get(m) if type(m) is str else None
            if spec is None:
                raise ApiError("BAD_REQUEST", f"unknown method {str(m)[:40]!r}")
            method = str(m)
            self._token(self.key.key_id if self.key else "-")
            self._dispatch(rid, method, spec, d.get("params"))
        except ApiError as e:
            self._answer_now(rid, method, e)
        except Exception:  # noqa: BLE001 - a bug answers INTERNAL, the session lives on
            log.exception("WS request %s failed", method)
            self._answer_now(rid, method, ApiError("INTERNAL"))

    def _token(self, key_id: str) -> None:
        """This connection's message budget (``messages_per_second``): RATE_LIMITED when spent."""
        wait = self.bucket.take(1, _mono_ns())
        if wait:
            self.limiter.drop(key_id, "ws_messages")
            raise ApiError("RATE_LIMITED", f"over {self.srv.messages_per_second} messages/s "
                           "on this connection", retry_after_s=retry_after_s(wait))

    def _armed(self, slot: _Slot, place: bool, key: ApiKey) -> _Slot:
        """``slot`` made the gateway's callback of a place / cancel (before it is sent)."""
        slot.place = place
        slot.sess = self
        slot.key = key
        return slot

    def _sent(self, slot: _Slot, place: bool, key: ApiKey, cmd: Any) -> None:
        """A place / cancel whose record went to the gateway with ``slot`` as its callback (``cmd``
        None), or could not (inbound ring full: ``cmd`` is awaited through a coroutine)."""
        if cmd is None:
            self.in_cb += 1
        else:
            coro: Awaitable[Any] = (self._place_cmd(key, cmd) if place
                                    else self.svc.cancel_cmd(key, cmd, self.slot))
            slot.task = self.loop.create_task(self._run(slot, coro))

    def _fast(self, place: bool, rid: Any, cmd: bytearray, key: ApiKey) -> None:
        """An order.place / order.cancel whose record ``edge.wire_fast`` built from the bytes: the
        rest of ``message`` and ``_dispatch`` for it, step for step (rate limits, grants, slot)."""
        method = _PLACE if place else _CANCEL
        try:
            self._token(key.key_id)
            if "trade" not in self.grants:
                self.srv.auth.require(key, "trade")
            self.limiter.admit(key.key_id, 1, True)
            slot = self._armed(_Slot(rid, method), place, key)
            self._sent(slot, place, key, None if self.svc.send_cmd(cmd, self.slot, slot) else cmd)
            self.queue.append(slot)
            self._flush()
        except ApiError as e:
            self._answer_now(rid, method, e)
        except Exception:  # noqa: BLE001 - a bug answers INTERNAL, the session lives on
            log.exception("WS request %s failed", method)
            self._answer_now(rid, method, ApiError("INTERNAL"))

    def _dispatch(self, rid: Any, method: str, spec: tuple[str, int, bool, str],
                  params: Any) -> None:
        role, weight, order, kind = spec
        if method == "session.logon":
            self._logon(rid, params)
            return
        key = self.key
        if key is None:
            raise ApiError("AUTH_MISSING", "session.logon first")
        if role not in self.grants:  # the role's grants, looked up once at logon
            self.srv.auth.require(key, role)  # counts the failure and raises FORBIDDEN
        self.limiter.admit(key.key_id, weight, order)
        svc = self.svc
        slot = _Slot(rid, method)
        if kind == "w":
            if method == "orders.cancelAll":
                slot.task = self.loop.create_task(
                    self._run(slot, svc.cancel_all(key, params, self.slot)))
            else:  # order.place / order.cancel: no coroutine unless the inbound ring is full
                place = method == _PLACE
                self._armed(slot, place, key)
                self._sent(slot, place, key, svc.send_place(key, params, self.slot, slot) if place
                           else svc.send_cancel(key, params, self.slot, slot))
        elif kind == "r":
            if method == "order.status":
                slot.thunk = lambda: svc.order_status(key, params)
            elif method == "orders.open":
                slot.thunk = lambda: svc.open_orders(key, params)
            else:
                slot.thunk = lambda: svc.balances(key, params)
        else:  # session.cancelOnDisconnect
            p = schema.check(params, schema.CANCEL_ON_DISCONNECT)
            self.cancel_on_disconnect = p["enabled"]
            slot.data = _ok(rid, {"cancelOnDisconnect": self.cancel_on_disconnect})
        self.queue.append(slot)
        self._flush()

    def _logon(self, rid: Any, params: Any) -> None:
        p = schema.check(params, schema.LOGON)
        if self.key is not None:
            raise ApiError("BAD_REQUEST", "this session is already logged on")
        key = self.srv.auth.verify_logon(p["apiKey"], p["timestamp"], p["signature"],
                                         p.get("recvWindow"))
        self.key = key
        self.grants = GRANTS[key.role]
        if self.logon_timer is not None:
            self.logon_timer.cancel()
            self.logon_timer = None
        if key.allows("read"):
            self.unsubscribe = self.svc.gw.subscribe(key.account, self._private)
        slot = _Slot(rid, "session.logon")
        slot.data = _ok(rid, {"apiKey": key.key_id, "account": key.account, "role": key.role})
        self.queue.append(slot)
        self._flush()

    async def _place_cmd(self, key: ApiKey, cmd: Any) -> Any:
        res = await self.svc.place_cmd(cmd, self.slot)
        self._placed(key, res)
        return res

    def _placed(self, key: ApiKey, res: Any) -> None:
        oid = res.get("orderId")
        if oid and res.get("status") in ("NEW", "PARTIALLY_FILLED"):
            self._remember(key, oid)

    def _answered(self, slot: _Slot, evs: list[Any] | None, exc: ApiError | None) -> None:
        """The answer of a request sent without a coroutine (see ``_dispatch``): its events once
        durable, or the gateway's error."""
        self.in_cb -= 1
        if exc is None:
            try:
                if evs is None:
                    raise ApiError("INTERNAL")
                key = slot.key
                assert key is not None
                if slot.place:
                    text, oid = self.svc.placed_text(evs)
                    if oid:
                        self._remember(key, oid)
                else:
                    text = self.svc.canceled_text(key, evs)
                    placed = self.placed
                    if placed:  # the order it canceled is no longer this session's to cancel
                        for e in evs:
                            if e.kind == _CANCELED_EV:
                                placed.discard(e.order_id)
                slot.data = _ok_text(slot.rid, text)
            except ApiError as e:
                exc = e
            except Exception:  # noqa: BLE001 - a bug answers INTERNAL; the queue must not stall
                log.exception("WS request %s failed", slot.method)
                exc = ApiError("INTERNAL")
        if exc is not None:
            self.metrics.error(exc.name)
            slot.data = _err(slot.rid, exc)
        if self.in_cb == 0 and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        if not self.closed:
            self._flush()

    def _remember(self, key: ApiKey, oid: int) -> None:
        placed = self.placed
        placed.add(oid)
        if len(placed) > self.prune_at:  # drop orders closed since; amortised O(1) per order
            rm = self.svc.rm
            for o in [o for o in placed if (st := rm.order(key.account, o)) is None or not st.is_open]:
                placed.discard(o)
            self.prune_at = max(4096, 2 * len(placed))

    async def _run(self, slot: _Slot, coro: Awaitable[Any]) -> None:
        try:
            slot.data = _ok(slot.rid, await coro)
        except ApiError as e:
            self.metrics.error(e.name)
            slot.data = _err(slot.rid, e)
        except Exception:  # noqa: BLE001 - a bug answers INTERNAL, the session lives on
            log.exception("WS request %s failed", slot.method)
            slot.data = _err(slot.rid, ApiError("INTERNAL"))
        slot.task = None
        if not self.closed:
            self._flush()

    # -- output -----------------------------------------------------------------------------------
    def _answer_now(self, rid: Any, method: str, e: ApiError) -> None:
        self.metrics.error(e.name)
        slot = _Slot(rid, method)
        slot.data = _err(rid, e)
        self.queue.append(slot)
        self._flush()

    def _flush(self) -> None:
        q = self.queue
        m = self.metrics
        while q:
            head = q[0]
            if head.data is None:
                if head.thunk is None:
                    break
                try:
                    head.data = _ok(head.rid, head.thunk())
                except ApiError as e:
                    m.error(e.name)
                    head.data = _err(head.rid, e)
            q.popleft()
            self._send(head.data)
            off = self.ws_slots.get(head.method)
            if off is None:  # a label not declared yet: EdgeMetrics declares it (or uses "other")
                m.observe_ws(head.method, (time.perf_counter_ns() - head.t0) / 1e9)
            else:
                observe(self.stats.words, off, _perf_ns() - head.t0)
        self._update_reading()

    def _send(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.out:
            self.srv.want_write(self)
        self.out.append(data)

    def write_out(self) -> None:
        """Write the queued messages as one buffer of TEXT frames; 4008 if the peer lags."""
        out = self.out
        if not out:
            return
        self.out = []
        t = self.t
        if t is None or t.is_disconnected:
            return
        parts: list[bytes] = []
        for d in out:
            parts.append(_frame_header(len(d)))
            parts.append(d)
        tr = t.underlying_transport
        tr.write(b"".join(parts))
        if not self.closed and tr.get_write_buffer_size() > self.srv.max_backlog_bytes:
            self.close(4008, "SLOW_CONSUMER")

    def _private(self, account: int, payload: bytes) -> None:
        self._send(payload)

    def _update_reading(self) -> None:
        t = self.t
        if t is None or self.closed:
            return
        full = len(self.queue) >= self.max_inflight
        if full and not self.paused:
            t.underlying_transport.pause_reading()
            self.paused = True
        elif not full and self.paused:
            t.underlying_transport.resume_reading()
            self.paused = False

    def close(self, code: int, reason: str) -> None:
        t = self.t
        if t is None or self.closed:
            return
        if code != 4008:
            self.write_out()  # answers queued before the close go first
        self.out = []
        self.closed = True
        self.metrics.ws_closes.labels(reason).inc()
        t.send_close(self.srv.close_code(code), reason.encode())
        t.disconnect()

    def _logon_timeout(self) -> None:
        self.logon_timer = None
        if self.key is None:
            self.close(1008, "LOGON_TIMEOUT")

    async def _cancel_session_orders(self, pending: list[asyncio.Task[None]]) -> None:
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.in_cb:  # answers are guaranteed (durable events, or the gateway's timeout)
            self.drained = self.loop.create_future()
            await self.drained
        key = self.key
        if key is None:
            return
        n = await self.svc.cancel_orders(key, sorted(self.placed), self.slot)
        if n:
            log.info("cancel-on-disconnect: %d orders of account %d canceled", n, key.account)
