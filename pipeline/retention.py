"""WAL retention for the stack: how far every reader of the WAL has got, and ``spotx wal prune``.

The WAL grows by ~350 B per command (RUNBOOK "WAL disk"). A segment can leave the live directory
once nothing will read it again. Who reads the WAL, and from where at its next start:

==============  =================================================================================
engine          its oldest engine snapshot that fits this config or can be carried over to it,
                + 1 (it restores the newest loadable one; the older ones are its fallback, so
                the oldest bounds); without one, seq 1
edge            the edge snapshot's ``resume_seq`` if it fits this WAL and config, else seq 1
publisher       (``[market] enabled``) the publisher snapshot's ``resume_seq`` likewise, else 1
settlement      (``[settle] enabled``) the ledger's ``settlement_progress.last_seq`` (read again
                inclusively), the lowest over the shard's consumers, from Postgres; in kafka
                mode also the outbox cursor (``<data_dir>/run/outbox.cursor``); no progress: 1
==============  =================================================================================

``keep_from`` is the lowest of these (and of ``--before-seq``). ``pipeline.wal.archive`` moves
the segments below it into the archive, oldest first: with the stack stopped under the WAL
writer's lock, with it running only segments the engine has synced and left (``apply``). If
Postgres cannot be read while settlement is enabled, nothing is pruned: the tool never guesses
what settlement has read.

The consequence an operator must know (RUNBOOK "WAL disk", "Config changes"): snapshots are
carried over to a config that appends assets and symbols or changes history bounds (and the
engine's to changed fees and limits, with nothing to replay), but not past other changes (sizing,
units, removals). A reader whose snapshot does not fit starts from seq 1, which is then in the
archive: it refuses to start with ``WalGapError`` naming the seq, and ``spotx wal unarchive`` puts
the segments back.

Every applied prune is recorded (time, actor, reason, ticket, the positions, what moved) as one
JSON line in ``<data_dir>/wal-retention.jsonl`` (fsynced), which the forensic bundle copies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from pipeline.config import Config

__all__ = ["LOG", "Need", "PrunePlan", "RetentionError", "apply", "needs", "plan"]

LOG = "wal-retention.jsonl"


class RetentionError(RuntimeError):
    """A position could not be established: nothing is pruned."""


@dataclasses.dataclass(frozen=True)
class Need:
    reader: str
    seq: int  # the first seq this reader reads at its next start
    why: str


@dataclasses.dataclass(frozen=True)
class PrunePlan:
    wal_dir: Path
    first_seq: int  # the oldest seq in the live WAL now
    durable_seq: int
    needs: tuple[Need, ...]
    keep_from: int
    segments: tuple[tuple[int, int, int, int], ...]  # (segno, first_seq, end_seq, bytes)

    @property
    def bytes(self) -> int:
        return sum(s[3] for s in self.segments)

    def as_dict(self) -> dict[str, Any]:
        return {"wal_dir": str(self.wal_dir), "first_seq": self.first_seq,
                "durable_seq": self.durable_seq, "keep_from": self.keep_from,
                "needs": [dataclasses.asdict(n) for n in self.needs],
                "segments": [{"segno": s[0], "first_seq": s[1], "end_seq": s[2], "bytes": s[3]}
                             for s in self.segments], "bytes": self.bytes}


def _wal_dir(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "wal"


def _engine_need(cfg: Config, durable_seq: int) -> Need:
    from engine.errors import SnapshotError
    from engine.snapshot import carry_over, manifests, read_manifest
    from pipeline.engine_proc import snap_path

    sdir = snap_path(cfg)
    seqs = []
    for m in manifests(sdir) if sdir.is_dir() else []:
        try:
            doc = read_manifest(m)
        except Exception:  # noqa: BLE001 - an unreadable manifest is not a fallback either
            continue
        if not (m.parent / str(doc["npz"])).exists():
            continue
        try:  # one the engine carries over to this config (engine.snapshot) counts too
            change = carry_over(doc, cfg)
        except SnapshotError:
            continue
        if change is not None and change[0] == "params" and int(doc["seq"]) < durable_seq:
            continue  # the engine refuses it: commands after it ran under other fees
        seqs.append(int(doc["seq"]))
    if not seqs:
        return Need("engine", 1, "no engine snapshot fits this config: it replays from seq 1")
    return Need("engine", min(seqs) + 1,
                f"oldest of {len(seqs)} engine snapshot(s) at seq {min(seqs)} (newest {max(seqs)})")


def _snapshot_need(reader: str, cfg: Config, wal_id: int) -> Need:
    from pipeline import edge_snapshot
    from pipeline.wal import read_durable

    cls: Any
    if reader == "edge":
        path, cls, version = (edge_snapshot.snapshot_path(cfg), edge_snapshot.EdgeSnapshot,
                              edge_snapshot.VERSION)
    else:
        from pipeline.publisher import snapshot

        path, cls, version = snapshot.snapshot_path(cfg), snapshot.MdSnapshot, snapshot.VERSION
    # its meta JSON when there is one (unpickling a big edge state costs seconds and memory);
    # the durable watermark is read after the file: a running edge or publisher writes newer
    # snapshots meanwhile, never beyond what was durable when it wrote them
    resume, why = edge_snapshot.inspect_meta(path, version, cfg, wal_id, 1 << 62)
    if resume is None and why is None:
        snap, why = edge_snapshot.inspect(path, cls, version, cfg, wal_id, 1 << 62)
        resume = int(snap.resume_seq) if snap is not None else None
    dp = read_durable(_wal_dir(cfg))
    if resume is not None and (dp is None or resume - 1 > dp.seq):
        why = f"it resumes at seq {resume}, beyond the durable seq {dp.seq if dp else 0}"
        resume = None
    if resume is None:
        return Need(reader, 1, f"{path.name} not usable ({why}): reads from seq 1" if why else
                    f"no {path.name}: reads from seq 1")
    return Need(reader, resume, f"{path.name} resumes at seq {resume}")


async def _ledger_progress(cfg: Config) -> list[tuple[str, int]]:
    import asyncpg

    try:
        conn = await asyncpg.connect(cfg.settle.pg_dsn, timeout=10)
    except Exception as e:  # noqa: BLE001 - reported as the reason nothing is pruned
        raise RetentionError(f"cannot read settlement's progress from Postgres ({e}); prune "
                             f"needs it to know what settlement has not read yet") from e
    try:
        rows = await conn.fetch("SELECT consumer, last_seq FROM settlement_progress "
                                "WHERE shard = $1", cfg.shard)
    except asyncpg.UndefinedTableError:
        return []  # never migrated: settlement has read nothing
    finally:
        await conn.close()
    return [(str(r["consumer"]), int(r["last_seq"])) for r in rows]


def _settle_needs(cfg: Config) -> list[Need]:
    out = []
    prog = asyncio.run(_ledger_progress(cfg))
    if prog:
        consumer, seq = min(prog, key=lambda p: p[1])
        out.append(Need("settlement", max(1, seq),
                        f"ledger progress of {consumer!r} at seq {seq} (read again inclusively)"))
    else:
        out.append(Need("settlement", 1, "no settlement progress in the ledger: reads from seq 1"))
    if cfg.settle.mode == "kafka":
        from pipeline.supervisor import run_dir
        from settle.outbox import read_cursor

        path = run_dir(cfg) / "outbox.cursor"
        cur = read_cursor(path)
        out.append(Need("outbox", max(1, cur), f"{path.name} at seq {cur}" if cur else
                        f"no {path.name}: the outbox reads from seq 1"))
    return out


def needs(cfg: Config) -> list[Need]:
    """Where each reader of the WAL starts next (module doc). RetentionError if one is unknown."""
    from pipeline.wal import read_durable
    from pipeline.wal.format import list_segments

    d = _wal_dir(cfg)
    segs = list_segments(d) if d.is_dir() else []
    dp = read_durable(d) if segs else None
    if not segs or dp is None:
        raise RetentionError(f"{d} holds no WAL with a durable watermark")
    wid = dp.wal_id  # not the newest segment's header: a running writer may not have written it
    out = [_engine_need(cfg, dp.seq), _snapshot_need("edge", cfg, wid)]
    if cfg.market.enabled:
        out.append(_snapshot_need("publisher", cfg, wid))
    if cfg.settle.enabled:
        out += _settle_needs(cfg)
    return out


def plan(cfg: Config, before_seq: int | None = None, online: bool = False) -> PrunePlan:
    """What ``apply`` would archive now (reads only; takes no lock). ``online``: with the engine
    running, only segments before the durable watermark's (``archive_online``)."""
    from pipeline.wal import read_durable
    from pipeline.wal.archive import first_retained_seq, online_limit, prunable

    d = _wal_dir(cfg)
    ns = needs(cfg)
    keep = min(n.seq for n in ns)
    if before_seq is not None:
        if before_seq < 1:
            raise RetentionError(f"--before-seq must be >= 1, got {before_seq}")
        keep = min(keep, before_seq)
    dp = read_durable(d)
    go = [s for s in prunable(d, keep)
          if not online or (dp is not None and s.segno < online_limit(dp.segno))]
    from pipeline.wal.format import list_segments

    segs = list_segments(d)
    ends = {s.segno: n.first_seq for s, n in zip(segs, segs[1:], strict=False)}
    return PrunePlan(d, first_retained_seq(d), dp.seq if dp else 0, tuple(ns), keep,
                     tuple((s.segno, s.first_seq, ends[s.segno], s.path.stat().st_size)
                           for s in go))


def stack_running(cfg: Config) -> bool:
    """A supervisor of this data dir is alive (its ``status.json`` says not stopped and its pid
    exists; a recycled pid errs on the running side)."""
    from pipeline.supervisor import run_dir

    try:
        doc = json.loads((run_dir(cfg) / "status.json").read_text())
        if doc.get("stopped"):
            return False
        os.kill(int(doc["supervisor_pid"]), 0)
    except PermissionError:
        return True  # it exists, under another user
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def apply(cfg: Config, archive_dir: Path, *, reason: str, ticket: str, actor: str,
          before_seq: int | None = None, compress: bool = True, online_nice: int = 0,
          lock: bool | None = None) -> tuple[PrunePlan, list[Any]]:
    """Archive what ``plan`` names and record it in ``<data_dir>/wal-retention.jsonl``. With the
    stack stopped: under the WAL writer's lock, held from the plan to the last move. With the
    engine running (the lock is taken): online, only segments before the durable watermark's.
    Every position only moves forward while the stack runs (snapshots are replaced by newer
    ones, settlement commits on), so a plan made from them stays safe while it is applied.
    ``lock``: take the writer's lock when it is free (None: only if no stack runs here: an engine
    the supervisor is restarting must not find the WAL locked, or its restarts run out; False:
    never, the supervisor's scheduled run). ``online_nice``: lower this process's CPU priority by
    that much before moving online (the CLI: it is a process of its own). Returns (plan, moved
    segments)."""
    from pipeline.wal import WalLocked
    from pipeline.wal.archive import archive_locked, archive_online
    from pipeline.wal.recovery import lock_directory, unlock_directory

    if not reason.strip() or not ticket.strip():
        raise RetentionError("a prune needs a reason and a ticket (it is audited)")
    fd: int | None = None
    if lock if lock is not None else not stack_running(cfg):
        try:
            fd = lock_directory(_wal_dir(cfg))
        except WalLocked:
            fd = None
    try:
        p = plan(cfg, before_seq, online=fd is None)
        if not p.segments:
            moved = []
        elif fd is None:
            if online_nice:  # gzip'ing shares the cores with the running stack: it goes last
                os.nice(online_nice)
            moved = archive_online(p.wal_dir, archive_dir, p.keep_from, compress)
        else:
            moved = archive_locked(p.wal_dir, archive_dir, p.keep_from, compress=compress)
    finally:
        if fd is not None:
            unlock_directory(fd)
    record(cfg, {"action": "prune", "online": fd is None, "actor": actor, "reason": reason,
                 "ticket": ticket, "archive": str(archive_dir), **p.as_dict(),
                 "moved": [dataclasses.asdict(m) for m in moved]})
    return p, moved


def record(cfg: Config, doc: dict[str, Any]) -> None:
    """Append one JSON line to the retention log and fsync it."""
    path = Path(cfg.data_dir) / LOG
    line = json.dumps({"time_ns": time.time_ns(), **doc}, separators=(",", ":"), default=str)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
