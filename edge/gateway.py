"""The seam between the edge and the engine: ``EngineGateway`` and the shared ``Dispatcher``.

An ``EngineGateway`` takes COMMAND / ADMIN records and answers with the EVENT records the command
produced, decoded by ``edge.recio.unpack_events`` into ``EvT`` tuples (decoded once, since the read
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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from edge.errors import ApiError
from edge.readmodel import PrivateSink, ReadModel
from edge.recio import EvT
from pipeline.records import route

Events = list[EvT]


class EngineGateway(Protocol):
    readmodel: ReadModel
    edge_id: int

    async def submit(self, cmd: np.void, slot: int = 0) -> Events:
        """Send a COMMAND record; its events once durable (see the module header)."""
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


class _Wait:
    __slots__ = ("fut", "events", "timer")

    def __init__(self, fut: asyncio.Future[Events], timer: asyncio.TimerHandle) -> None:
        self.fut = fut
        self.events: Events = []
        self.timer = timer


class Dispatcher:
    def __init__(self, readmodel: ReadModel, edge_id: int, timeout_s: float = 5.0,
                 max_inflight: int = 65536) -> None:
        if not 1 <= edge_id <= 255:
            raise ValueError(f"edge_id must be 1..255, got {edge_id}")
        self.readmodel = readmodel
        self.edge_id = edge_id
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self._pending: dict[int, _Wait] = {}
        self._req = 0
        self.timeouts = 0
        self.late_events = 0

    def __len__(self) -> int:
        return len(self._pending)

    def register(self, cmd: np.void, slot: int = 0) -> asyncio.Future[Events]:
        """Stamp ``cmd`` with conn/req and return the future of its events."""
        if len(self._pending) >= self.max_inflight:
            raise ApiError("CAPACITY_EXHAUSTED", f"{self.max_inflight} commands in flight on this edge")
        req = self._req
        while True:
            req = req + 1 if req < 0xFFFFFFFF else 1
            if req not in self._pending:
                break
        self._req = req
        cmd["req"] = req
        cmd["conn"] = route(self.edge_id, slot)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Events] = loop.create_future()
        self._pending[req] = _Wait(fut, loop.call_later(self.timeout_s, self._expire, req))
        return fut

    def forget(self, cmd: np.void) -> None:
        """Drop a registration whose record could not be sent."""
        w = self._pending.pop(int(cmd["req"]), None)
        if w is not None:
            w.timer.cancel()

    def _expire(self, req: int) -> None:
        w = self._pending.pop(req, None)
        if w is not None and not w.fut.done():
            self.timeouts += 1
            w.fut.set_exception(ApiError("ENGINE_UNAVAILABLE"))

    def feed(self, evs: Events) -> None:
        """Apply ``evs`` (durable, in seq order) to the read model, then resolve their commands."""
        self.readmodel.apply(evs)
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
                w.timer.cancel()
                if not w.fut.done():
                    w.fut.set_result(w.events)

    def fail_all(self, exc: BaseException) -> None:
        for w in self._pending.values():
            w.timer.cancel()
            if not w.fut.done():
                w.fut.set_exception(exc)
        self._pending.clear()
