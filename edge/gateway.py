"""The seam between the edge and the engine: ``EngineGateway`` and the shared ``Dispatcher``.

An ``EngineGateway`` takes COMMAND / ADMIN records and answers with the EVENT records the command
produced, decoded by ``edge.recio.unpack_events`` into ``EvT`` objects (decoded once, since the read
model needs them too). Implementations:

* ``edge.inproc.InprocGateway`` — runs ``engine.Engine`` in this process (tests, ``--inproc``);
* the stack gateway (built with the engine process) — pushes into the edge's SPSC command / admin
  rings and tails the WAL's durable EVENTS frames.

Contract of ``submit``: it stamps ``req`` (a token unique among this edge's commands in flight) and
``conn = route(edge_id, slot)``, sends the record, and resolves with the command's events, in
order, the last one with ``last = 1``, once they are durable. Before resolving it has fed *every*
durable event up to and including them to ``readmodel`` (so the caller reads its own write). On no
answer within ``timeout_s`` it raises ``ApiError("ENGINE_UNAVAILABLE")``: the outcome is unknown and
the client may query by clientOrderId; late events still reach the read model.

``Dispatcher`` is the part both implementations share: req allocation, the pending table
(bounded by ``max_inflight``: refusing with CAPACITY_EXHAUSTED beats unbounded growth), the
per-command timeout, and feeding the read model then resolving waiters in event order.

``send(cmd, slot, done)`` is the same contract without a coroutine, for the WS order path: it stamps
and sends the record now and calls ``done(events, None)`` (or ``done(None, ApiError)`` on timeout or
shutdown) from the loop; it returns False, having registered nothing, when the record cannot be
sent at once (inbound ring full), and the caller falls back to ``submit`` (which waits for room).
A task and a future per order were ~15 % of an edge's CPU at load.

Cost per command (it is on every order's path): one future or callback, no timer. The pending table is a dict
in registration order and every command has the same ``timeout_s``, so its deadlines are sorted: one
sweep every ``timeout_s / 4`` expires from the front and stops at the first live entry. A command
therefore times out between ``timeout_s`` and ``1.25 * timeout_s`` after it was sent. The loop is
looked up once (``asyncio.get_running_loop`` calls ``getpid`` each time: 8 % of an edge's CPU at
load, measured with py-spy).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import numpy as np

from edge.errors import ApiError
from edge.readmodel import PrivateSink, ReadModel
from edge.recio import (
    BalanceRow,
    Command,
    EvT,
    cmd_req,
    event_rows,
    row_views,
    stamp,
    unpack_chunk,
)
from pipeline.records import route

assert route(0x1FE, 0x1ABCDEF) == ((0x1FE & 0xFF) << 24) | (0x1ABCDEF & 0xFFFFFF)  # _add inlines it

Events = list[EvT]
_monotonic: Final = time.monotonic  # a C static: no lookup of `time` and its attribute
FEED_CHUNK: Final = 256  # events fed between two progress() calls (see Dispatcher.feed)
Callback = Callable[[Events | None, ApiError | None], None]
log = logging.getLogger(__name__)


class EngineGateway(Protocol):
    readmodel: ReadModel
    edge_id: int

    async def submit(self, cmd: Command, slot: int = 0) -> Events:
        """Send a COMMAND record; its events once durable (see the module header)."""
        ...

    def send(self, cmd: Command, slot: int, done: Done) -> bool:
        """``submit`` without a coroutine: ``done(events, None)`` or ``done(None, error)`` later;
        False (nothing registered) when the record cannot be sent right now."""
        ...

    async def submit_admin(self, rec: np.void) -> Events:
        """Send an ADMIN record (command + audit note, journaled before it acts); its events."""
        ...

    def subscribe(self, account: int, sink: PrivateSink) -> Callable[[], None]:
        """Private events of ``account`` as JSON bytes to ``sink``; returns the unsubscribe call."""
        ...

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` admin audit notes, newest first: ``{"seq","time",...note}``."""
        ...

    def ready(self) -> bool:
        """Engine reachable, leader, warmed: what ``/readyz`` reports."""
        ...


class EventFeed(Protocol):
    """What the dispatcher feeds before answering: the read model (or a test's recorder); ``bal``
    and ``top`` as ``ReadModel.apply`` takes them (``feed_records``)."""

    def apply(self, evs: Events, bal: list[BalanceRow] | None = None, top: int = 0) -> None: ...


class Wait:
    """A command in flight: its events so far and its deadline; ``resolve`` answers it (a future's
    result, or the ``done`` callback). A caller may register its own subclass with ``register_cb``
    as the callback itself (``edge.ws_session._Slot``: one object per WS order, not two), which
    overrides ``resolve``."""

    __slots__ = ("fut", "done", "events", "deadline")

    def __init__(self, fut: asyncio.Future[Events] | None, done: Callback | None,
                 deadline: float) -> None:
        self.fut = fut
        self.done = done
        self.events: Events = []
        self.deadline = deadline

    def resolve(self, events: Events | None, exc: ApiError | BaseException | None) -> None:
        if self.done is not None:
            done, self.done = self.done, None
            try:
                done(events, exc if isinstance(exc, ApiError) or exc is None
                     else ApiError("ENGINE_UNAVAILABLE", str(exc)))
            except Exception:  # noqa: BLE001 - one caller's bug must not stop the others' answers
                log.exception("command callback failed")
        elif self.fut is not None and not self.fut.done():
            if exc is not None:
                self.fut.set_exception(exc)
            else:
                self.fut.set_result(events)  # type: ignore[arg-type]


Done = Callback | Wait  # what ``send`` / ``register_cb`` answer: a callback, or a Wait itself


class Dispatcher:
    def __init__(self, readmodel: EventFeed, edge_id: int, timeout_s: float = 5.0,
                 max_inflight: int = 65536) -> None:
        if not 1 <= edge_id <= 255:
            raise ValueError(f"edge_id must be 1..255, got {edge_id}")
        self.readmodel = readmodel
        self.edge_id = edge_id
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self._pending: dict[int, Wait] = {}
        self._req = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.timeouts = 0
        self.late_events = 0
        self.progress: Callable[[], None] | None = None  # see feed()
        self.chunk = FEED_CHUNK  # events fed between two progress() calls

    def __len__(self) -> int:
        return len(self._pending)

    def register(self, cmd: Command, slot: int = 0) -> asyncio.Future[Events]:
        """Stamp ``cmd`` with conn/req and return the future of its events."""
        fut = self._loop_now().create_future()
        self._add(cmd, slot, fut, None)
        return fut

    def register_cb(self, cmd: Command, slot: int, done: Done) -> None:
        """Stamp ``cmd`` with conn/req; ``done`` gets its events (or the error) from the loop: a
        callback, or a ``Wait`` subclass that is registered itself and answered by its
        ``resolve``."""
        self._loop_now()
        self._add(cmd, slot, None, done)

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
            self._sweeper = None
        return loop

    def _add(self, cmd: Command, slot: int, fut: asyncio.Future[Events] | None,
             done: Done | None) -> None:
        if len(self._pending) >= self.max_inflight:
            raise ApiError("CAPACITY_EXHAUSTED", f"{self.max_inflight} commands in flight on this edge")
        req = self._req
        while True:
            req = req + 1 if req < 0xFFFFFFFF else 1
            if req not in self._pending:
                break
        self._req = req
        stamp(cmd, ((self.edge_id & 0xFF) << 24) | (slot & 0xFFFFFF), req)  # records.route
        deadline = _monotonic() + self.timeout_s
        if isinstance(done, Wait):
            if done.events:  # (registered before: start again)
                done.events = []
            done.deadline = deadline
            self._pending[req] = done
        else:
            self._pending[req] = Wait(fut, done, deadline)
        if self._sweeper is None:
            assert self._loop is not None
            self._sweeper = self._loop.call_later(self.timeout_s / 4, self._sweep)

    def forget(self, cmd: Command) -> None:
        """Drop a registration whose record could not be sent."""
        self._pending.pop(cmd_req(cmd), None)

    def _sweep(self) -> None:
        """Expire, from the oldest, every command past its deadline; rearm while any is pending."""
        self._sweeper = None
        now = time.monotonic()
        pending = self._pending
        expired = []
        for req, w in pending.items():
            if w.deadline > now:
                break
            expired.append(req)
        for req in expired:
            self.timeouts += 1
            pending.pop(req).resolve(None, ApiError("ENGINE_UNAVAILABLE"))
        if pending and self._loop is not None and not self._loop.is_closed():
            self._sweeper = self._loop.call_later(self.timeout_s / 4, self._sweep)

    def feed(self, evs: Events) -> None:
        """Apply ``evs`` (durable, in seq order) to the read model, then resolve their commands.

        A long batch is fed in chunks of ``chunk`` (``FEED_CHUNK``) events, each applied then
        resolved, with ``progress()`` between chunks: the WS server writes the answers and pushes
        produced so far, so a batch's first answers leave while its last ones are still being built
        (under load a durable batch holds hundreds of commands: milliseconds of work). Every answer
        still follows the read model's update for its own events (read-your-writes)."""
        chunk = self.chunk
        if self.progress is None or len(evs) <= chunk:
            self._feed(evs)
            return
        n = len(evs)
        for i in range(0, n, chunk):
            self._feed(evs[i:i + chunk])
            if i + chunk < n:
                self.progress()

    def feed_records(self, events: np.ndarray) -> int:
        """``feed`` of an EVENT array as it comes from the engine: decoded a chunk at a time by
        ``edge.recio.unpack_chunk``, so BALANCE events reach the read model as rows, newest per
        (account, asset) and chunk, and never become objects (half of all events). The chunks are
        ``chunk`` records (the whole array without a ``progress`` hook), as ``feed`` cuts its list;
        a command is still answered at its last event. Returns the records fed."""
        return self.feed_rows(event_rows(events))

    def feed_rows(self, rec: np.ndarray) -> int:
        """``feed_records`` of the records as rows of bytes (``edge.recio.event_rows`` /
        ``wal_rows``: the WAL tail's durable frames)."""
        views = row_views(rec)
        n = len(rec)
        progress = self.progress
        step = self.chunk if progress is not None else max(n, 1)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            evs, bal, top = unpack_chunk(rec, lo, hi, views)
            self._feed(evs, bal, top)
            if hi < n and progress is not None:
                progress()
        return n

    def _feed(self, evs: Events, bal: list[BalanceRow] | None = None, top: int = 0) -> None:
        if bal is None:
            self.readmodel.apply(evs)
        else:
            self.readmodel.apply(evs, bal, top)
        pending = self._pending
        edge = self.edge_id
        for e in evs:
            if e.req == 0 or (e.conn >> 24) & 0xFF != edge:
                continue
            w = pending.get(e.req)
            if w is None:
                self.late_events += 1
                continue
            w.events.append(e)
            if e.last:
                del pending[e.req]
                w.resolve(w.events, None)

    def fail(self, req: int, exc: ApiError) -> None:
        """Answer one pending command with ``exc`` (its record was never handed to the engine)."""
        w = self._pending.pop(req, None)
        if w is not None:
            w.resolve(None, exc)

    def fail_all(self, exc: BaseException) -> None:
        waits = list(self._pending.values())
        self._pending.clear()
        for w in waits:
            w.resolve(None, exc)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
