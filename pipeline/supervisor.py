"""The supervisor behind ``spotx up``: starts, watches and stops the single-host stack.

Processes (see docs/ARCHITECTURE.md): engine (1), edge (N), publisher (1), market-data fan-out (M),
settle (1). Each child is started with the ``spawn`` context (a clean interpreter: numba and uvloop
state is never inherited through fork), pinned by itself to its configured core, and reports ready
on a pipe once it has warmed up. The supervisor serves ``/metrics`` from the children's stats blocks.

Shared memory ownership: the supervisor creates every ring before the children start and unlinks
them after the last child exited; at start it removes stale ``spotx-<instance>-*`` segments left by
a crashed run. Children only attach.

Failure policy: a child that exits unexpectedly is reported (log + ``spotx_process_restarts_total``)
and restarted: the engine through WAL recovery (it replays to the last durable seq before it reports
ready again), edges and the others freely. More than ``MAX_RESTARTS`` within ``RESTART_WINDOW_S``
stops the whole stack: a crash loop must page a human, not spin.

Shutdown (SIGINT/SIGTERM): edges first (no new commands), then the engine (drains its rings, syncs
the WAL, snapshots its end, writes nothing half-done), then publisher, fan-out and settle; SIGKILL
after a timeout.

Retention: with ``[retention] archive_dir`` set, every ``every_s`` the supervisor spawns one
process (nice 19) that runs ``spotx wal prune --apply`` online (``pipeline.retention``); its exit
codes and last run go to ``status.json``, what it moved to ``<data_dir>/wal-retention.jsonl``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pipeline.config import Config

log = logging.getLogger("spotx.supervisor")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


@dataclasses.dataclass(frozen=True)
class Role:
    name: str  # process name, e.g. "edge-1"
    target: str  # "module:function", called as fn(cfg, index, ready_conn)
    index: int
    stop_order: int  # lower stops first


@dataclasses.dataclass
class Child:
    role: Role
    proc: Any = None
    ready: bool = False
    started_at: float = 0.0
    restarts: list[float] = dataclasses.field(default_factory=list)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class SupervisorError(RuntimeError):
    """The stack could not start or stay up; the message says which process and why."""


def run_dir(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "run"


def roles_for(cfg: Config) -> list[Role]:
    roles = [Role("engine", "pipeline.engine_proc:main", 0, 1)]
    roles += [Role(f"edge-{i}", "pipeline.edge_proc:main", i, 0) for i in range(1, cfg.edge.processes + 1)]
    if cfg.market.enabled and _exists("pipeline.publisher:main"):
        roles.append(Role("publisher", "pipeline.publisher:main", 0, 2))
    if cfg.market.enabled and _exists("edge.fanout:main"):
        roles += [Role(f"fanout-{i}", "edge.fanout:main", i, 0) for i in range(1, cfg.market.processes + 1)]
    if cfg.settle.enabled and _exists("settle.process:main"):
        roles.append(Role("settle", "settle.process:main", 0, 3))
    return roles


def _exists(target: str) -> bool:
    """Whether ``module:function`` exists (roles of packages still being built are skipped)."""
    module, fn = target.split(":")
    try:
        if importlib.util.find_spec(module) is None:
            return False
        return callable(getattr(importlib.import_module(module), fn, None))
    except ImportError:
        return False


def _child_entry(target: str, cfg: Config, index: int, ready: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    mod_name, fn_name = target.split(":")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    fn(cfg, index, ready)


def _auto_prune(cfg: Config) -> None:
    """The scheduled ``[retention]`` run (a spawned process at nice 19): ``spotx wal prune
    --apply`` online into ``archive_dir``. Exit 0 done (moved or nothing to move), 2 when a
    position could not be read (Postgres down: nothing moved), 1 on anything else."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s wal-prune %(levelname)s %(message)s")
    os.nice(19)
    from pipeline import retention

    try:
        p, moved = retention.apply(cfg, Path(cfg.retention.archive_dir),
                                   reason=f"scheduled ([retention] every_s {cfg.retention.every_s})",
                                   ticket="retention", actor="supervisor",
                                   compress=cfg.retention.compress, lock=False)
    except retention.RetentionError as e:
        log.warning("scheduled WAL prune skipped: %s", e)
        sys.exit(2)
    except Exception:  # noqa: BLE001 - reported through the exit code and the log
        log.exception("scheduled WAL prune failed")
        sys.exit(1)
    if moved:
        log.info("scheduled WAL prune: %d segment(s) up to seq %d archived to %s (%.1f MB -> "
                 "%.1f MB)", len(moved), moved[-1].end_seq - 1, cfg.retention.archive_dir,
                 sum(m.bytes for m in moved) / 1e6, sum(m.stored_bytes for m in moved) / 1e6)
    else:
        held = ", ".join(f"{n.reader} ({n.why})" for n in p.needs if n.seq == p.keep_from)
        log.info("scheduled WAL prune: nothing to archive: seq %d on is needed by %s",
                 p.keep_from, held)


class Supervisor:
    def __init__(self, cfg: Config, roles: list[Role] | None = None) -> None:
        self.cfg = cfg
        self.ctx = mp.get_context("spawn")
        self.children = [Child(r) for r in (roles if roles is not None else roles_for(cfg))]
        self.run_dir = run_dir(cfg)
        self._stopping = False
        self._metrics_server: Any = None
        # the scheduled WAL prune ([retention]): its process, when it is next due, what it did
        self._prune: Any = None
        self._prune_due = time.monotonic() + cfg.retention.every_s
        self.prune_runs: dict[str, Any] = {"runs": 0, "last_exit": None, "last_end": None}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        import shutil

        from pipeline import shm_layout
        from pipeline.exporter import prom_dir

        self.run_dir.mkdir(parents=True, exist_ok=True)
        for p in self.run_dir.glob("stats-*.bin"):
            p.unlink()
        shutil.rmtree(prom_dir(self.run_dir), ignore_errors=True)
        os.makedirs(prom_dir(self.run_dir))
        # children (spawned) inherit it: their prometheus_client metrics go to mmap'd files
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir(self.run_dir)
        shm_layout.cleanup_stale(self.cfg)
        shm_layout.create_all(self.cfg)
        try:
            for child in sorted(self.children, key=lambda c: 0 if c.role.name == "engine" else 1):
                self._spawn(child)
                self._await_ready(child)
            self._serve_metrics()
            self._write_status()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, child: Child) -> None:
        parent_end, child_end = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_child_entry, name=f"spotx-{child.role.name}",
                                args=(child.role.target, self.cfg, child.role.index, child_end),
                                daemon=False)
        proc.start()
        child_end.close()
        child.proc, child.ready, child.started_at = proc, False, time.time()
        child.info = {"ready_conn": parent_end}

    def _await_ready(self, child: Child) -> None:
        conn: Connection = child.info["ready_conn"]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if conn.poll(0.1):
                try:
                    msg = conn.recv()
                except EOFError:
                    break
                if isinstance(msg, dict) and msg.get("ready"):
                    child.ready = True
                    child.info.update({k: v for k, v in msg.items() if k != "ready"})
                    log.info("%s ready (pid %d) %s", child.role.name, child.proc.pid,
                             {k: v for k, v in child.info.items() if k != "ready_conn"})
                    return
                if isinstance(msg, dict) and msg.get("error"):
                    raise SupervisorError(f"{child.role.name} failed to start: {msg['error']}")
            if not child.proc.is_alive():
                break
        code = child.proc.exitcode
        raise SupervisorError(f"{child.role.name} did not become ready (exit code {code}); see its log")

    def watch(self, stop_after_s: float | None = None) -> int:
        """Block, restarting crashed children, until a signal or ``stop_after_s``; returns exit code."""
        stop = {"sig": 0}

        def on_signal(signum: int, _frame: Any) -> None:
            stop["sig"] = signum

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t_end = None if stop_after_s is None else time.monotonic() + stop_after_s
        code = 0
        try:
            while not stop["sig"] and (t_end is None or time.monotonic() < t_end):
                time.sleep(0.2)
                if not self.poll():
                    code = 1
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.stop()
        return code

    def poll(self) -> bool:
        """Restart any child that died; False when one crash-looped (the stack must stop). Also
        starts the scheduled WAL prune when it is due."""
        for child in self.children:
            if child.proc is not None and not child.proc.is_alive() and not self._stopping:
                if not self._restart(child):
                    return False
        self._retention_tick()
        self._write_status()
        return True

    def _retention_tick(self) -> None:
        """Collect the scheduled prune if it ended; start the next one when due (one at a time)."""
        if not self.cfg.retention.archive_dir or self._stopping:
            return
        if self._prune is not None:
            if self._prune.is_alive():
                return
            self._prune.join()
            code = self._prune.exitcode
            self.prune_runs.update(runs=self.prune_runs["runs"] + 1, last_exit=code,
                                   last_end=time.time())
            (log.info if code == 0 else log.warning)("scheduled WAL prune exited with code %s",
                                                     code)
            self._prune = None
        if time.monotonic() >= self._prune_due:
            self._prune_due = time.monotonic() + self.cfg.retention.every_s
            self._prune = self.ctx.Process(target=_auto_prune, args=(self.cfg,),
                                           name="spotx-wal-prune", daemon=True)
            self._prune.start()

    def child(self, name: str) -> Child:
        for c in self.children:
            if c.role.name == name:
                return c
        raise KeyError(name)

    def _restart(self, child: Child) -> bool:
        now = time.time()
        child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S] + [now]
        log.error("%s exited with code %s; restart %d", child.role.name, child.proc.exitcode,
                  len(child.restarts))
        if len(child.restarts) > MAX_RESTARTS:
            log.critical("%s crash-looped %d times in %.0f s: stopping the stack", child.role.name,
                         len(child.restarts), RESTART_WINDOW_S)
            return False
        try:
            self._spawn(child)
            self._await_ready(child)
        except SupervisorError as e:
            log.critical("%s", e)
            return False
        return True

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        from pipeline import shm_layout

        if self._prune is not None:  # let a scheduled prune finish its move (it is crash-safe,
            self._prune.join(STOP_TIMEOUT_S)  # but a finished one leaves nothing to redo)
            if self._prune.is_alive():
                self._prune.terminate()
                self._prune.join(5)

        for order in sorted({c.role.stop_order for c in self.children}):
            group = [c for c in self.children if c.role.stop_order == order and c.proc is not None]
            for c in group:
                if c.proc.is_alive():
                    c.proc.terminate()  # SIGTERM: each role drains and exits cleanly
            for c in group:
                c.proc.join(STOP_TIMEOUT_S)
                if c.proc.is_alive():
                    log.error("%s did not stop within %.0f s: SIGKILL", c.role.name, STOP_TIMEOUT_S)
                    c.proc.kill()
                    c.proc.join(5)
        if self._metrics_server is not None:
            try:
                self._metrics_server[0].shutdown()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        shm_layout.unlink_all(self.cfg)
        self._write_status(stopped=True)

    # -- status and metrics ----------------------------------------------------------------------

    def _serve_metrics(self) -> None:
        from pipeline.exporter import serve

        self._metrics_server = serve(self.run_dir, self.cfg.metrics.host, self.cfg.metrics.port,
                                     self.cfg.data_dir)

    def _write_status(self, stopped: bool = False) -> None:
        doc = {
            "instance": self.cfg.instance,
            "supervisor_pid": os.getpid(),
            "stopped": stopped,
            "time": time.time(),
            "retention": {"archive_dir": self.cfg.retention.archive_dir,
                          "every_s": self.cfg.retention.every_s, **self.prune_runs},
            "processes": [
                {"name": c.role.name, "pid": c.proc.pid if c.proc else None,
                 "alive": bool(c.proc and c.proc.is_alive()), "ready": c.ready,
                 "restarts": len(c.restarts),
                 **{k: v for k, v in c.info.items() if k != "ready_conn"}}
                for c in self.children
            ],
        }
        tmp = self.run_dir / "status.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.run_dir / "status.json")
