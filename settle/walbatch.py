"""WAL frames -> engine batches: what both the embedded settler and the Kafka outbox read.

The WAL contract this relies on (pipeline/wal, docs/ARCHITECTURE.md): per engine loop iteration
the engine appends one COMMANDS frame (seqs ``first_seq .. first_seq + count - 1``), a BLOB frame
per admin note (``first_seq`` = the operator command's seq), then one EVENTS frame with the same
``first_seq`` holding every event those commands produced, in seq order. A batch is complete when
its EVENTS frame arrives. A COMMANDS frame that follows a COMMANDS frame closes the earlier batch
with no events (a crash between the two appends); an EVENTS frame that matches no open batch, or a
second one for the same batch, breaks the contract and raises ``WalContractError``.

Ordinals (``postings.ordinals``) are computed over the whole EVENTS frame, so a reader that
resumes "from seq S" — the WAL tail then starts at the COMMANDS frame that contains S — sees every
event of S and numbers legs exactly as the first pass did. Readers resume from the last settled
seq *inclusive*: that batch is read again and re-posting it is a no-op (idempotency keys).

Lifetime: ``WalBatch.events`` is a copy (safe to keep); the COMMAND view used to name the symbol
of an admin note is dropped when the batch completes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from pipeline.records import COMMAND, EVENT, GLOBAL_SYMBOL, Cmd
from pipeline.wal import Frame, FrameKind
from settle.catalog import Catalog
from settle.errors import SettleError
from settle.ledger import AuditRow
from settle.postings import ordinals

_COMMANDS, _EVENTS, _BLOB = int(FrameKind.COMMANDS), int(FrameKind.EVENTS), int(FrameKind.BLOB)
_SYMBOL_CMDS = (int(Cmd.SET_MODE), int(Cmd.CANCEL_ALL), int(Cmd.SET_LAG_HALT), int(Cmd.NEW_ORDER),
                int(Cmd.CANCEL))


class WalContractError(SettleError, ValueError):
    """The WAL's frames are not in the order settlement relies on (see module doc)."""


@dataclasses.dataclass
class WalBatch:
    first_seq: int
    last_seq: int
    fencing: int  # the COMMANDS frame's leader token
    ts_ns: int
    events: np.ndarray  # EVENT records (copy)
    ords: np.ndarray  # ordinal of each event within its seq
    fencing_events: int  # the EVENTS frame's token (normally == fencing)
    audit: list[AuditRow] = dataclasses.field(default_factory=list)

    @property
    def fencing_min(self) -> int:
        return min(self.fencing, self.fencing_events) if len(self.events) else self.fencing

    @property
    def fencing_max(self) -> int:
        return max(self.fencing, self.fencing_events)


class WalBatcher:
    """Feed frames in WAL order; get completed batches back."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._open: dict[str, Any] | None = None
        self._carry = (0, 0)
        self.batches = 0

    def feed(self, frame: Frame) -> list[WalBatch]:
        kind = frame.kind
        out: list[WalBatch] = []
        if kind == _COMMANDS:
            if self._open is not None:  # the previous batch never got its EVENTS frame
                out.append(self._close(np.zeros(0, EVENT), self._open["fencing"]))
            self._open = {"first": frame.first_seq, "last": frame.first_seq + frame.count - 1,
                          "fencing": frame.fencing, "ts_ns": frame.ts_ns, "audit": [],
                          "cmds": np.frombuffer(frame.payload, COMMAND)}
        elif kind == _BLOB:
            if self._open is None or not self._open["first"] <= frame.first_seq <= self._open["last"]:
                raise WalContractError(f"BLOB frame for seq {frame.first_seq} outside its batch")
            self._open["audit"].append(self._audit(frame))
        elif kind == _EVENTS:
            if self._open is None or frame.first_seq != self._open["first"]:
                where = "no open batch" if self._open is None else f"open batch {self._open['first']}"
                raise WalContractError(f"EVENTS frame first_seq {frame.first_seq} ({where})")
            events = np.frombuffer(frame.payload, EVENT).copy()
            if len(events) != frame.count:
                raise WalContractError(f"EVENTS frame at seq {frame.first_seq}: count {frame.count} "
                                       f"but {len(events)} records")
            if len(events) and (int(events["seq"][0]) < self._open["first"]
                                or int(events["seq"][-1]) > self._open["last"]):
                raise WalContractError(f"EVENTS frame at seq {frame.first_seq} holds events of seqs "
                                       f"outside {self._open['first']}..{self._open['last']}")
            out.append(self._close(events, frame.fencing))
        return out

    def _close(self, events: np.ndarray, fencing_events: int) -> WalBatch:
        o = self._open
        if o is None:
            raise WalContractError("internal: no open batch to close")
        ords, self._carry = ordinals(events["seq"], self._carry)
        b = WalBatch(o["first"], o["last"], o["fencing"], o["ts_ns"], events, ords, fencing_events,
                     o["audit"])
        self._open = None
        self.batches += 1
        return b

    def _audit(self, frame: Frame) -> AuditRow:
        raw = bytes(frame.payload)
        try:
            note = json.loads(raw.decode())
            if not isinstance(note, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError):
            note = {"raw": raw.decode("utf-8", "replace")}
        seq = frame.first_seq
        symbol = note.get("symbol")
        action = note.get("action")
        if self._open is None:
            raise WalContractError(f"BLOB frame for seq {frame.first_seq} outside its batch")
        cmds = self._open["cmds"]
        i = seq - self._open["first"]
        if 0 <= i < len(cmds):
            cmd = cmds[i]
            ck = int(cmd["kind"])
            if symbol is None and ck in _SYMBOL_CMDS:
                sid = int(cmd["symbol"])
                symbol = "*" if sid == GLOBAL_SYMBOL else self.catalog.symbol_name(sid)
            if action is None and ck in {int(c) for c in Cmd}:
                action = Cmd(ck).name

        def s(v: object) -> str | None:
            return None if v is None else str(v)

        return AuditRow(seq, s(note.get("actor")), s(action), s(symbol), s(note.get("reason")),
                        s(note.get("ticket")), json.dumps(note), frame.fencing, frame.ts_ns)
