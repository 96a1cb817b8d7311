"""In-process ``EngineGateway``: the real ``engine.Engine`` in the edge's own event loop.

For tests and the ``--inproc`` dev mode (``python -m edge --inproc``). Not a mock: commands go
through the same numba kernels as in the stack. What it leaves out is the WAL, so "durable" here
means "applied": never use it where durability matters.

Batching mirrors the engine process: ``submit`` queues the record and schedules one flush on the
next loop iteration (``call_soon``), so every command submitted in the same iteration is applied as
one batch (up to ``engine.batch_max`` per ``apply``), in submission order, with consecutive seqs and
one timestamp per batch. The events are then handed to the shared ``Dispatcher``: read model first,
then each command's waiter. ADMIN notes are kept in a bounded deque as the audit trail (the stack
journals them as WAL BLOB frames instead). If the engine raises, the batch's commands fail with
INTERNAL and the gateway reports not ready (its state can no longer be trusted).
"""

from __future__ import annotations

import collections
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import orjson

from edge.errors import ApiError
from edge.gateway import Dispatcher, Done, Events
from edge.readmodel import PrivateSink, ReadModel
from edge.recio import Command, admin_note, cmd_bytes
from pipeline.config import Config
from pipeline.records import COMMAND

log = logging.getLogger(__name__)
AUDIT_KEEP = 10_000


class EngineLike(Protocol):
    """What the gateway needs of ``engine.Engine``."""

    @property
    def seq(self) -> int: ...  # last applied seq
    def apply(self, cmds: np.ndarray, ts_ns: int | None = None) -> np.ndarray: ...
    def state_hash(self) -> int: ...


class InprocGateway:
    def __init__(self, cfg: Config, edge_id: int = 1, engine: EngineLike | None = None,
                 readmodel: ReadModel | None = None, timeout_s: float = 5.0) -> None:
        if engine is None:
            # imported by name: edge depends on the engine's behaviour (EngineLike), not its code;
            # warmed (kernels compiled or loaded from numba's cache) before the first command, so
            # the first order does not pay for the compiler or time out
            mod = importlib.import_module("engine")
            mod.warm()
            engine = mod.Engine(cfg)
        if readmodel is None:
            from edge.orders import Validator

            readmodel = ReadModel(Validator(cfg).units_by_id, {a.asset_id: a for a in cfg.assets})
        self.cfg = cfg
        self.engine = engine
        self.edge_id = edge_id
        self.readmodel = readmodel
        self.dispatcher = Dispatcher(readmodel, edge_id, timeout_s=timeout_s)
        self.batch_max = max(1, cfg.engine.batch_max)
        self.seq = 0
        self.batches = 0
        self.commands = 0
        self.audit_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=AUDIT_KEEP)
        self._queue: list[tuple[bytes, bytes | None]] = []
        self._scheduled = False
        self._broken = False

    # -- EngineGateway ----------------------------------------------------------------------------
    async def submit(self, cmd: Command, slot: int = 0) -> Events:
        self._check()
        fut = self.dispatcher.register(cmd, slot)
        self._enqueue(cmd_bytes(cmd), None)
        return await fut

    def send(self, cmd: Command, slot: int, done: Done) -> bool:
        self._check()
        self.dispatcher.register_cb(cmd, slot, done)
        self._enqueue(cmd_bytes(cmd), None)
        return True

    async def submit_admin(self, rec: np.void) -> Events:
        self._check()
        cmd: np.void = np.frombuffer(bytearray(rec["cmd"].tobytes()), COMMAND)[0]
        fut = self.dispatcher.register(cmd, 0)
        self._enqueue(cmd.tobytes(), admin_note(rec))
        return await fut

    def subscribe(self, account: int, sink: PrivateSink) -> Callable[[], None]:
        return self.readmodel.subscribe(account, sink)

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        return list(self.audit_log)[-limit:][::-1]

    def ready(self) -> bool:
        return not self._broken

    # -- engine side ------------------------------------------------------------------------------
    def state_hash(self) -> int:
        return int(self.engine.state_hash())

    def _check(self) -> None:
        if self._broken:
            raise ApiError("ENGINE_UNAVAILABLE", "the in-process engine failed earlier")

    def _enqueue(self, raw: bytes, note: bytes | None) -> None:
        self._queue.append((raw, note))
        if not self._scheduled:
            self._scheduled = True
            self.dispatcher._loop_now().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for i in range(0, len(queue), self.batch_max):
            self._apply(queue[i:i + self.batch_max])

    def _apply(self, batch: list[tuple[bytes, bytes | None]]) -> None:
        cmds = np.frombuffer(bytearray(b"".join(raw for raw, _ in batch)), COMMAND)
        seq0 = int(self.engine.seq) + 1  # the engine numbers commands itself (contiguous seqs)
        ts = time.time_ns()
        try:
            out = self.engine.apply(cmds, ts)
        except Exception:  # noqa: BLE001 - fail the batch loudly, never leave waiters hanging
            log.exception("in-process engine failed on a batch of %d commands", len(batch))
            self._broken = True
            self.dispatcher.fail_all(ApiError("INTERNAL", "the in-process engine failed"))
            return
        self.seq = int(self.engine.seq)
        self.batches += 1
        self.commands += len(batch)
        for i, (_, note) in enumerate(batch):
            if note is not None:
                try:
                    doc = orjson.loads(note)
                except orjson.JSONDecodeError:
                    doc = {"raw": note.decode(errors="replace")}
                self.audit_log.append({"seq": seq0 + i, "time": ts // 1_000_000, **doc})
        self.dispatcher.feed_records(out)

    def statistics(self) -> dict[str, int]:
        return {"seq": self.seq, "batches": self.batches, "commands": self.commands,
                "inflight": len(self.dispatcher), "timeouts": self.dispatcher.timeouts}
