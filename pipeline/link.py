"""The stack gateway: an edge's link to the engine over shared memory and the WAL.

Outbound: COMMAND records into the edge's SPSC ring ``spotx-<instance>-cmd-<e>``, through the
``CommandQueue`` (one push per loop iteration, in order), then a ring of the engine's doorbell;
ADMIN records (command + audit note) into ``spotx-<instance>-adm-<e>``. This edge process is the
only producer of both (single-writer by construction: one gateway per edge process).

Inbound: the WAL is the event bus (docs/ARCHITECTURE.md). A ``WalTail`` yields only frames below
the durable watermark, so every event handed to ``Dispatcher.feed`` is durable: an order's answer
cannot leave before its batch is synced. Wake-ups come from a FIFO doorbell the engine's flusher
rings after each durable advance (pipeline/doorbell.py), plus a slow safety poll.

Start-up: the read model and market state are restored from the newest edge snapshot (if it fits
this WAL and config; ``pipeline/edge_snapshot.py``) and the durable EVENTS frames after it are
replayed before the edge reports ready; without a snapshot, every frame from the start of the WAL.
Audit notes (BLOB frames) are kept in a bounded deque for ``GET /v1/admin/audit``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge.errors import ApiError
from edge.gateway import Dispatcher, Done, Events
from edge.readmodel import PrivateSink, ReadModel
from edge.recio import Command, cmd_kind, wal_rows
from pipeline import shm_layout
from pipeline.config import Config
from pipeline.doorbell import Doorbell
from pipeline.records import ADMIN, COMMAND, Cmd
from pipeline.wal import FrameKind, WalReader

log = logging.getLogger("spotx.link")

# module constants are Final: compiled, each is a C static, not a module-dict lookup per use
AUDIT_KEEP: Final = 10_000
THROTTLED_ORDERS_PER_S: Final = 50  # new orders per edge per second while settlement lag is above T2
THROTTLE_CHECK_S: Final = 0.1
SAFETY_POLL_S: Final = 0.05
PUSH_RETRY_S: Final = 0.2


QUEUE_RECORDS: Final = 4096  # commands an edge can hold for its ring between loop iterations
EARLY_FLUSH: Final = 64  # commands queued in one iteration that are pushed at once, not at its end
QUEUE_RETRY_S: Final = 0.0002
_CMD_SIZE: Final = COMMAND.itemsize
_NEW_ORDER: Final = int(Cmd.NEW_ORDER)


def wal_dir(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "wal"


class CommandQueue:
    """The commands of one loop iteration, pushed into the engine's ring in one call, in order.

    ``put`` copies a COMMAND record into a preallocated buffer and schedules one ``flush`` for the
    end of the iteration: one ring push (one kernel call) per iteration instead of one per order.
    A long burst (``EARLY_FLUSH`` commands queued) is pushed at once, so the engine sequences and
    syncs it while the edge is still reading the rest (under load an iteration reads hundreds).
    Every command of the edge goes through it, so ring order = call order. When the ring is full
    the rest stays queued and is retried every ``QUEUE_RETRY_S``; after ``stall_s`` without any
    progress the queued commands are given up (``fail(req)``: never sent, so never executed).
    ``put`` returns False when the buffer itself is full (the caller waits or refuses)."""

    def __init__(self, ring: Any, fail: Callable[[int], None], capacity: int = QUEUE_RECORDS,
                 stall_s: float = PUSH_RETRY_S, wake: Callable[[], None] | None = None) -> None:
        self.ring = ring
        self.fail = fail
        self.wake = wake  # rings the engine's doorbell after a push (pipeline.doorbell)
        self.raw = bytearray(capacity * COMMAND.itemsize)
        self.buf = np.frombuffer(self.raw, COMMAND)  # the records, a view of ``raw``
        self.mv = memoryview(self.raw)
        self.n = 0
        self.stall_s = stall_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._stalled_at = 0.0
        self._closed = False
        self.pushes = 0
        self.given_up = 0

    def close(self) -> None:
        """Drop what is queued (its waiters are failed by the caller) and stop flushing."""
        self._closed = True
        self.n = 0

    def put(self, cmd: Command, loop: asyncio.AbstractEventLoop) -> bool:
        n = self.n
        if n >= len(self.buf) or self._closed:
            return False
        if type(cmd) is bytearray:
            self.mv[n * _CMD_SIZE:(n + 1) * _CMD_SIZE] = cmd
        else:
            self.buf[n] = cmd
        self.n = n + 1
        if n + 1 >= EARLY_FLUSH and not self._stalled_at:  # a long burst: the engine starts on
            self._loop = loop  # it while the rest is read (a full ring: the retry timer's job)
            self.flush()
            return True
        if not self._scheduled:
            self._scheduled = True
            self._loop = loop
            loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        self._scheduled = False
        n = self.n
        if n == 0 or self._closed:
            return
        k = self.ring.try_push(self.buf[:n])
        self.pushes += 1
        if k and self.wake is not None:
            self.wake()
        if k == n:
            self.n = 0
            self._stalled_at = 0.0
            return
        now = time.monotonic()
        if k:
            self.buf[:n - k] = self.buf[k:n]  # numpy copes with the overlap
            self.n = n - k
            self._stalled_at = now
        elif not self._stalled_at:
            self._stalled_at = now
        if now - self._stalled_at >= self.stall_s:
            reqs = self.buf["req"][:self.n].tolist()
            self.n = 0
            self._stalled_at = 0.0
            self.given_up += len(reqs)
            for req in reqs:
                self.fail(int(req))
            return
        if self._loop is not None and not self._loop.is_closed():
            self._scheduled = True
            self._loop.call_later(QUEUE_RETRY_S, self.flush)


class RingGateway:
    def __init__(self, cfg: Config, edge_id: int, readmodel: ReadModel, timeout_s: float = 5.0,
                 attach_rings: bool = True) -> None:
        """``attach_rings=False``: a read-only gateway (``catch_up`` only; the recovery bench)."""
        from ringbuf import SpscRing

        self.cfg = cfg
        self.edge_id = edge_id
        self.readmodel = readmodel
        self.dispatcher = Dispatcher(readmodel, edge_id, timeout_s=timeout_s)
        self.cmd_ring: Any = None
        self.adm_ring: Any = None
        self.cmdq: CommandQueue | None = None
        if attach_rings:
            self.cmd_ring = SpscRing.attach(shm_layout.cmd_ring(cfg, edge_id), COMMAND)
            self.adm_ring = SpscRing.attach(shm_layout.admin_ring(cfg, edge_id), ADMIN)
            from pipeline.doorbell import Ringer, engine_bell_root
            from pipeline.supervisor import run_dir

            self._engine_bell = Ringer(engine_bell_root(run_dir(cfg)))
            self.cmdq = CommandQueue(self.cmd_ring, self._give_up, wake=self._engine_bell.ring)
        self.reader = WalReader(wal_dir(cfg))
        self.tail = self.reader.tail(1)
        self.audit_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=AUDIT_KEEP)
        self.bell: Doorbell | None = None
        self.market: Any = None  # edge.market_state.MarketState, fed the same durable events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._safety: asyncio.TimerHandle | None = None
        self.frames = 0
        self.events = 0
        self._throttle_file = Path(cfg.data_dir) / "run" / "settle-throttle"
        self._throttle_on = False
        self._throttle_checked = 0.0
        self._throttle_tokens = float(THROTTLED_ORDERS_PER_S)
        self._throttle_at = 0.0
        self.throttled_refusals = 0
        # edge snapshots (pipeline.edge_snapshot): resume point of the last whole batch folded in
        self._batch_end = 0
        self._at_boundary = False
        self._since_snap = 0
        self._snap_pid = 0
        self.snapshot_every = cfg.edge.snapshot_every_events
        self.restored_from = 0  # resume seq of the snapshot catch_up started from (0: none)
        self.snapshots_written = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def catch_up(self) -> int:
        """Rebuild the state from the newest edge snapshot (if it fits) and every durable frame
        after it (blocking; before serving). Returns the events replayed from the WAL."""
        self._restore()
        before = self.events
        while self._drain(4096):
            pass
        return self.events - before

    def _restore(self) -> None:
        from pipeline import edge_snapshot

        d = self.reader.durable()
        if d is None:
            return
        snap = edge_snapshot.read(self.cfg, int(d.wal_id), int(d.seq))
        if snap is None:
            return
        self.readmodel.restore(snap.readmodel)
        if self.market is not None and snap.market is not None:
            snap.market.cfg = self.cfg
            self.market.deriver = snap.market
        self.audit_log.extend(snap.audit)
        self.tail = self.reader.tail(snap.resume_seq)
        self._batch_end = snap.resume_seq
        self.restored_from = snap.resume_seq
        log.info("edge state restored from snapshot at seq %d (%d events); replaying after it",
                 snap.resume_seq - 1, snap.events)

    def snapshot(self, in_child: bool = True) -> bool:
        """Write an edge snapshot of the state now (at a batch boundary only); in a forked child
        unless ``in_child`` is False (clean shutdown, tests). False if not at a boundary."""
        from pipeline import edge_snapshot

        d = self.reader.durable()
        if not self._at_boundary or d is None:
            return False
        market = self.market.deriver if self.market is not None else None
        snap = edge_snapshot.EdgeSnapshot(
            edge_snapshot.VERSION, int(d.wal_id), self._batch_end,
            edge_snapshot.fingerprint(self.cfg), self.events, self.readmodel.state(), market,
            list(self.audit_log), edge_snapshot.config_doc(self.cfg))
        path = edge_snapshot.snapshot_path(self.cfg)
        if in_child:
            self._snap_pid = edge_snapshot.write_in_child(path, snap)
        else:
            edge_snapshot.write(path, snap)
            self.snapshots_written += 1
        self._since_snap = 0
        return True

    def _reap(self) -> None:
        from pipeline.edge_snapshot import reap

        if self._snap_pid and (code := reap(self._snap_pid)) is not None:
            self._snap_pid = 0
            if code == 0:
                self.snapshots_written += 1
            else:
                log.warning("edge snapshot child failed (exit code %d)", code)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        from pipeline.supervisor import run_dir

        self._loop = loop
        self.bell = Doorbell(run_dir(self.cfg), f"edge-{self.edge_id}")
        loop.add_reader(self.bell.fileno(), self._on_bell)
        self._schedule_safety()
        self._drain(4096)

    def close(self) -> None:
        if self._snap_pid:  # let a snapshot being written finish (it is bounded: one file)
            try:
                os.waitpid(self._snap_pid, 0)
            except ChildProcessError:
                pass
            self._snap_pid = 0
        if self.snapshot_every and self._since_snap:
            try:
                self.snapshot(in_child=False)  # a planned restart then replays almost nothing
            except OSError as e:
                log.warning("edge snapshot at shutdown failed: %s", e)
        if self._loop is not None and self.bell is not None:
            loop: Any = self._loop  # uvloop's remove_reader returns None, not the declared bool
            loop.remove_reader(self.bell.fileno())
        if self.bell is not None:
            self.bell.close()
        if self._safety is not None:
            self._safety.cancel()
        if self.cmdq is not None:
            self.cmdq.close()
            self._engine_bell.close()
        self.dispatcher.fail_all(ApiError("ENGINE_UNAVAILABLE", "edge shutting down"))
        self.reader.close()
        if self.cmd_ring is not None:
            self.cmd_ring.close()
            self.adm_ring.close()

    # -- inbound -------------------------------------------------------------------------------
    def _on_bell(self) -> None:
        assert self.bell is not None
        self.bell.drain()
        # one poll, not a poll until empty: what becomes durable after the drain above rings the
        # bell again (the next loop iteration), so a second poll found nothing almost always and
        # cost a read of durable.pos (interpreted, ~1.5 % of a saturated edge)
        while self._drain(1024) == 1024:
            pass

    def _schedule_safety(self) -> None:
        assert self._loop is not None
        self._safety = self._loop.call_later(SAFETY_POLL_S, self._safety_poll)

    def _safety_poll(self) -> None:
        try:
            while self._drain(1024):
                pass
            self._reap()
            if self.snapshot_every and self._since_snap >= self.snapshot_every \
                    and not self._snap_pid and self._loop is not None:
                self.snapshot()
        finally:
            self._schedule_safety()

    def _drain(self, max_frames: int) -> int:
        frames = self.tail.poll(max_frames)
        for f in frames:
            if f.kind == FrameKind.EVENTS:
                if self.market is not None:
                    self.market.apply(f.payload)
                n = self.dispatcher.feed_rows(wal_rows(f.payload))
                self.events += n
                self._since_snap += n
                self._at_boundary = True
            elif f.kind == FrameKind.COMMANDS:
                self._batch_end = f.first_seq + f.count
                self._at_boundary = False
            elif f.kind == FrameKind.BLOB:
                self._audit(f.first_seq, f.ts_ns, bytes(f.payload))
        self.frames += len(frames)
        return len(frames)

    def _audit(self, seq: int, ts_ns: int, raw: bytes) -> None:
        try:
            note = json.loads(raw)
        except ValueError:
            note = {"raw": raw.decode(errors="replace")}
        self.audit_log.append({"seq": seq, "time": ts_ns // 1_000_000, **note})

    # -- EngineGateway -------------------------------------------------------------------------
    async def _push(self, ring: Any, rec: np.ndarray) -> bool:
        if ring.try_push(rec):
            return True
        deadline = asyncio.get_running_loop().time() + PUSH_RETRY_S
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0)
            if ring.try_push(rec):
                return True
        return False

    def _throttled(self, now: float) -> bool:
        """Settlement-lag policy (RUNBOOK 3.2): above T2 settle writes ``run/settle-throttle`` = 1."""
        if now - self._throttle_checked >= THROTTLE_CHECK_S:
            self._throttle_checked = now
            try:
                self._throttle_on = self._throttle_file.read_bytes().strip() == b"1"
            except OSError:
                self._throttle_on = False
        return self._throttle_on

    def _admit_new_order(self) -> bool:
        """Raises RATE_LIMITED while throttled and out of tokens; True if a token was taken."""
        now = time.monotonic()
        if not self._throttled(now):
            return False
        self._throttle_tokens = min(float(THROTTLED_ORDERS_PER_S),
                                    self._throttle_tokens + (now - self._throttle_at) * THROTTLED_ORDERS_PER_S)
        self._throttle_at = now
        if self._throttle_tokens < 1.0:
            self.throttled_refusals += 1
            raise ApiError("RATE_LIMITED", "settlement lag is above T2: new orders are throttled",
                           retry_after_s=1)
        self._throttle_tokens -= 1.0
        return True

    def _give_up(self, req: int) -> None:
        self.dispatcher.fail(req, ApiError(
            "ENGINE_UNAVAILABLE", "the engine is not taking commands (inbound ring full)"))

    async def submit(self, cmd: Command, slot: int = 0) -> Events:
        if cmd_kind(cmd) == _NEW_ORDER:
            self._admit_new_order()
        fut = self.dispatcher.register(cmd, slot)
        q = self.cmdq
        assert q is not None, "a read-only gateway (attach_rings=False) cannot submit"
        loop = self.dispatcher._loop_now()
        deadline = loop.time() + PUSH_RETRY_S
        while not q.put(cmd, loop):  # the edge's own queue is full: wait for it to drain
            if loop.time() >= deadline:
                self.dispatcher.forget(cmd)
                raise ApiError("ENGINE_UNAVAILABLE",
                               "the engine is not taking commands (inbound ring full)")
            await asyncio.sleep(QUEUE_RETRY_S)
        return await fut

    def send(self, cmd: Command, slot: int, done: Done) -> bool:
        took = cmd_kind(cmd) == _NEW_ORDER and self._admit_new_order()
        self.dispatcher.register_cb(cmd, slot, done)
        q = self.cmdq
        if q is not None and q.put(cmd, self.dispatcher._loop_now()):
            return True
        self.dispatcher.forget(cmd)
        if took:
            self._throttle_tokens += 1.0  # submit() will charge it again
        return False  # the queue is full: the caller waits for room through submit()

    async def submit_admin(self, rec: np.void) -> Events:
        cmd = rec["cmd"]
        fut = self.dispatcher.register(cmd, 0)
        arr = np.frombuffer(bytearray(rec.tobytes()), ADMIN)
        arr["cmd"]["req"] = cmd["req"]
        arr["cmd"]["conn"] = cmd["conn"]
        if not await self._push(self.adm_ring, arr):
            self.dispatcher.forget(cmd)
            raise ApiError("ENGINE_UNAVAILABLE", "the engine is not taking admin commands")
        self._engine_bell.ring()
        return await fut

    def subscribe(self, account: int, sink: PrivateSink) -> Callable[[], None]:
        return self.readmodel.subscribe(account, sink)

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        return list(self.audit_log)[-limit:][::-1]

    def ready(self) -> bool:
        d = self.reader.durable()
        return d is not None and self.bell is not None
