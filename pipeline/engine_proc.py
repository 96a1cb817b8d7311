"""The engine process: the sequencer loop of DESIGN.md §4.

Loop (one thread, pinned core; the WAL flusher is a second thread):
  1. drain every inbound ring (edges' COMMAND rings, then their ADMIN rings) into one batch of at
     most ``engine.batch_max`` commands;
  2. number them ``seq0 .. seq0+n-1``, stamp the batch time, append a COMMANDS frame (and one BLOB
     frame per admin audit note) to the WAL;
  3. apply the batch in the numba kernels, append the EVENTS frame;
  4. sync: while more commands wait in the rings, ask the group committer's flusher thread and
     go on (the engine does not wait for the disk under load); when nothing waits, sync inline
     (``GroupCommitter.sync_now``): the hand-off to the flusher thread (a futex wake, then the
     GIL) cost ~270 us of the ack at low rate. Events become visible to readers (edges,
     publisher, settle) only when the fdatasync covering them returns and the durable watermark
     moves (the WAL is the event bus).

Recovery on start: newest valid snapshot, then replay of every COMMANDS frame after it; the events
each replayed batch produces must equal the EVENTS frame logged for it byte for byte — a mismatch
is a SEV1 (determinism broken or the log tampered with) and the engine refuses to start. A last
batch whose COMMANDS frame is in the WAL but whose EVENTS frame is not (crash between the two)
is applied and its EVENTS frame appended: its commands were journaled, so they are executed.

Stop: SIGTERM sets a flag; the loop finishes its batch, the committer syncs, the WAL closes.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import heap, shm_layout
from pipeline.config import Config
from pipeline.records import ADMIN, COMMAND, EVENT, Cmd
from pipeline.stats import Stats, observe
from pipeline.supervisor import run_dir
from ringbuf import SPSC_HEAD, SPSC_TAIL

log = logging.getLogger("spotx.engine")

EXIT_SEV1 = 70
EXIT_CONFIG = 78  # EX_CONFIG: the config does not fit the state (engine snapshot, WAL)
_SNAPSHOT = int(Cmd.SNAPSHOT)  # an int: numpy converting the IntEnum member cost 4.8 us a batch


class EngineSev1(RuntimeError):
    """Replay does not reproduce the logged events: never start on a divergent state."""


class EngineConfigChange(RuntimeError):
    """The config changed in a way the engine cannot start under (the message says what to do)."""


def wal_path(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "wal"


def snap_path(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "snapshots"


def fencing_token(cfg: Config) -> int:
    """The leader's fencing token (HA leases come later): ``<data_dir>/fencing`` or 1."""
    p = Path(cfg.data_dir) / "fencing"
    try:
        return int(p.read_text().strip())
    except (FileNotFoundError, ValueError):
        return 1


class EngineHost:
    """Engine state + WAL + rings for one engine process (also used by tests and the bench)."""

    def __init__(self, cfg: Config, *, attach_rings: bool = True, wal_sync: str | None = None) -> None:
        from engine.engine import Engine
        from engine.snapshot import manifests
        from pipeline.wal import GroupCommitter, WalWriter

        self.cfg = cfg
        self.fencing = fencing_token(cfg)
        sdir = snap_path(cfg)
        has_snap = sdir.is_dir() and bool(manifests(sdir))
        self.engine = Engine.restore(sdir, cfg) if has_snap else Engine(cfg)  # newest loadable
        self.snap_seq = self.engine.seq
        self.writer = WalWriter(wal_path(cfg), segment_bytes=cfg.engine.wal_segment_bytes,
                                fencing_token=self.fencing,
                                sync_mode=wal_sync or _sync_mode(cfg.engine.durability),
                                write=cfg.engine.wal_write, prealloc=cfg.engine.wal_prealloc)
        self._check_config_change()
        self.batch_max = cfg.engine.batch_max
        self.cmds = np.zeros(self.batch_max, COMMAND)
        self.admin = np.zeros(16, ADMIN)
        self.events = np.zeros(self.engine.events_capacity(self.batch_max), EVENT)
        t0 = time.perf_counter()
        self.replayed = self._replay()
        self.replay_s = time.perf_counter() - t0
        self.next_seq = self.writer.last_seq + 1
        self.ringer: Any = None
        self.sync_hook: Any = None  # called on the flusher thread after each durable advance
        self.committer = GroupCommitter(self.writer, on_durable=self._on_durable)
        self.cmd_rings: list[Any] = []
        self.adm_rings: list[Any] = []
        if attach_rings:
            from ringbuf import SpscRing

            for e in range(1, cfg.edge.processes + 1):
                self.cmd_rings.append(SpscRing.attach(shm_layout.cmd_ring(cfg, e), COMMAND))
                self.adm_rings.append(SpscRing.attach(shm_layout.admin_ring(cfg, e), ADMIN))
            # settlement's lag policy (SET_LAG_HALT) arrives on its own control ring
            self.adm_rings.append(SpscRing.attach(shm_layout.settle_admin_ring(cfg), ADMIN))
        self._watched: tuple[list[tuple[Any, np.ndarray]], list[tuple[Any, np.ndarray]]] | None = None
        self._watched_for = (0, 0)
        self.since_snapshot = 0
        self._snap_pid = 0  # a forked child writing a periodic snapshot
        self.snapshots_written = 0
        self.snapshot_seq = self.snap_seq  # seq of the newest snapshot on disk (0: none)
        if self.engine.migrated is not None:
            self.snapshot()  # the new config's own base: the next start needs no carrying over

    def _check_config_change(self) -> None:
        """A snapshot of another config was carried over (engine.snapshot): fine for appended
        assets and symbols; a change of existing symbols' limits or fees only if nothing is left
        to replay, since the commands after the snapshot ran under the old parameters and their
        logged events would not replay (a false SEV1)."""
        if self.engine.migrated is None:
            return
        kind, what = self.engine.migrated
        last = self.writer.last_seq
        if kind == "params" and last > self.snap_seq:
            self.writer.close()
            raise EngineConfigChange(
                f"the config changed since the engine snapshot at seq {self.snap_seq} ({what}), "
                f"and the WAL holds commands up to seq {last} that ran under the old parameters: "
                f"start once with the previous config and stop cleanly (the engine snapshots the "
                f"end of the WAL at a clean stop), then apply the change (RUNBOOK 'Config "
                f"changes')")
        log.warning("engine config changed since the snapshot at seq %d (%s): state carried "
                    "over", self.snap_seq, what)

    # -- recovery ------------------------------------------------------------------------------
    def _replay(self) -> int:
        """Re-apply the WAL after the snapshot; compare with the logged events.

        Same kernel call as the live loop (``_apply`` into the preallocated event buffer, a
        writable copy of the frame's commands in a reused buffer), compared without copies: the
        per-batch Python around the kernel is what bounds the replay rate (bench recovery)."""
        from pipeline.wal import FrameKind, WalReader

        if self.writer.last_seq <= self.snap_seq:
            return 0
        reader = WalReader(wal_path(self.cfg))
        pending: tuple[int, int, np.ndarray] | None = None  # (seq0, ts, events) awaiting EVENTS
        buf = self.cmds
        n = 0
        try:
            for f in reader.iter_frames(self.snap_seq + 1):
                if f.kind == FrameKind.COMMANDS:
                    if pending is not None:
                        raise EngineSev1(f"WAL has COMMANDS at seq {pending[0]} without its EVENTS "
                                         f"frame and more commands after it")
                    cmds = np.frombuffer(f.payload, COMMAND)
                    if f.first_seq <= self.snap_seq:
                        raise EngineSev1(f"snapshot at seq {self.snap_seq} splits the batch at "
                                         f"{f.first_seq}")
                    if f.first_seq != self.engine.seq + 1:
                        raise EngineSev1(f"WAL batch at seq {f.first_seq} does not follow the "
                                         f"engine state at seq {self.engine.seq}")
                    if len(cmds) > len(buf):
                        buf = np.zeros(len(cmds), COMMAND)
                    buf[:len(cmds)] = cmds
                    out = self._apply(buf[:len(cmds)], f.first_seq, f.ts_ns)
                    pending = (f.first_seq, f.ts_ns, out)
                    n += len(cmds)
                elif f.kind == FrameKind.EVENTS and pending is not None:
                    logged = np.frombuffer(f.payload, np.uint8)
                    if f.first_seq != pending[0] or not np.array_equal(logged,
                                                                       pending[2].view(np.uint8)):
                        raise EngineSev1(
                            f"SEV1: replay of the batch at seq {pending[0]} produced "
                            f"{len(pending[2])} events that differ from the {len(logged)} logged; "
                            f"refusing to start (see RUNBOOK 3.3)")
                    pending = None
        finally:
            reader.close()
        if pending is not None:  # crash between the COMMANDS and EVENTS appends
            ev = pending[2]
            self.writer.append(2, pending[0], len(ev), ev.view(np.uint8), pending[1])
            self.writer.sync()
        return n

    # -- the loop ------------------------------------------------------------------------------
    def _on_durable(self, seq: int, position: int) -> None:
        if self.ringer is not None:
            self.ringer.ring()
        if self.sync_hook is not None:
            self.sync_hook(seq)

    def _watch(self) -> tuple[list[tuple[Any, np.ndarray]], list[tuple[Any, np.ndarray]]]:
        """Each ring with its control words, read directly by ``step``'s emptiness check."""
        if self._watched is None or self._watched_for != (len(self.cmd_rings), len(self.adm_rings)):
            self._watched_for = (len(self.cmd_rings), len(self.adm_rings))
            self._watched = ([(r, r.ctrl) for r in self.cmd_rings],
                             [(r, r.ctrl) for r in self.adm_rings])
        return self._watched

    def step(self) -> int:
        """One loop iteration; returns the number of commands sequenced (0 when idle).

        A ring is popped only when its tail has moved past its head: two loads from the shared
        control words (~0.1 us) instead of a pop through the wrapper (~1.5 us each, mostly argument
        checks). An idle poll of the three rings of the default stack went 6.1 -> ~1 us, and the
        park strategy's spins are idle polls."""
        n = 0
        notes: list[tuple[int, bytes]] = []
        cmd_watch, adm_watch = self._watch()
        for ring, ctrl in cmd_watch:
            if n >= self.batch_max:
                break
            if ctrl[SPSC_TAIL] != ctrl[SPSC_HEAD]:
                n += ring.try_pop(self.cmds[n:])
        for ring, ctrl in adm_watch:
            room = min(self.batch_max - n, len(self.admin))
            if room <= 0:
                break
            if ctrl[SPSC_TAIL] == ctrl[SPSC_HEAD]:
                continue
            k = ring.try_pop(self.admin[:room])
            for i in range(k):
                rec = self.admin[i]
                self.cmds[n] = rec["cmd"]
                notes.append((n, bytes(rec["note"][: int(rec["note_len"])])))
                n += 1
        if n == 0:
            return 0
        self.sequence(self.cmds[:n], notes, request_sync=False)
        if self.queue_depth():
            self.committer.request_sync()  # more to sequence: the flusher syncs meanwhile
        else:
            self.committer.sync_now()  # nothing waiting: sync here, no hand-off to the flusher
        return n

    def sequence(self, cmds: np.ndarray, notes: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
                 request_sync: bool = True) -> int:
        """Journal, apply, journal events, request sync (unless the caller syncs). Returns the
        number of events."""
        seq0 = self.next_seq
        ts = time.time_ns()
        w = self.writer
        w.append(1, seq0, len(cmds), cmds.view(np.uint8), ts)
        for i, note in notes:
            w.append(3, seq0 + i, 1, note, ts)
        events = self._apply(cmds, seq0, ts)
        w.append(2, seq0, len(events), events.view(np.uint8), ts)
        if request_sync:
            self.committer.request_sync()
        self.next_seq = seq0 + len(cmds)
        self.since_snapshot += len(cmds)
        if bool((cmds["kind"] == _SNAPSHOT).any()):
            self.snapshot()  # asked for: written before the next batch
        elif self.since_snapshot >= self.cfg.engine.snapshot_every:
            self.snapshot(background=True)
        elif self._snap_pid:
            self.reap_snapshot()
        return len(events)

    def _apply(self, cmds: np.ndarray, seq0: int, ts: int) -> np.ndarray:
        """All events of the batch; one kernel call unless the batch outgrew the buffer (FULL)."""
        from engine.layout import FULL

        n = len(cmds)
        ne, done, status = self.engine.apply_into(cmds, n, seq0, ts, self.events)
        if status != FULL:
            return self.events[:ne]
        pieces = [self.events[:ne].copy()]  # rare: a deep sweep or a big cancel-all
        while status == FULL:
            ne, d, status = self.engine.apply_into(cmds[done:], n - done, seq0 + done, ts,
                                                   self.events)
            pieces.append(self.events[:ne].copy())
            done += d
        from engine.engine import join_events

        return join_events(pieces)  # np.concatenate would drop the aliased 128-byte layout

    def snapshot(self, background: bool = False) -> Path | None:
        """Write a snapshot at the current seq (batch boundary); returns its manifest path, or
        None when ``background``. The WAL is synced first: a snapshot ahead of the durable WAL
        would not follow it after a crash. Then only the newest ``[engine] snapshots_keep`` stay.

        ``background`` (the periodic ones): a forked child writes the files from the
        copy-on-write image of the state as of the fork, and the loop goes on. Written inline, a
        snapshot of the default 1 M-order state (157 MB) stopped the engine for 0.3-0.6 s here:
        every order in flight waited that long, every ``snapshot_every`` commands. If the previous
        child is still writing, the snapshot is put off to the next batch."""
        if self._snap_pid:
            self.reap_snapshot(block=not background)
            if self._snap_pid:
                return None
        from engine.snapshot import prune as snapshot_prune
        from pipeline.edge_snapshot import run_in_child

        if self.writer.durable_seq < self.next_seq - 1:
            self.committer.sync_now()
        directory, keep = snap_path(self.cfg), self.cfg.engine.snapshots_keep
        write = self.engine.snapshot_writer(directory, self.next_seq - 1, self.fencing,
                                            pace=background)
        self.snapshot_seq = self.next_seq - 1
        self.since_snapshot = 0
        if not background:
            p = write()
            snapshot_prune(directory, keep)
            return Path(p)
        # the child writes files only (no logging, WAL, rings or threads), at nice 19: it shares
        # the engine's core, and the loop and its peers come first
        self._snap_pid = run_in_child(lambda: (write(), snapshot_prune(directory, keep)), nice=19)
        return None

    def reap_snapshot(self, block: bool = False) -> None:
        """Collect a finished snapshot child (``block``: wait for it)."""
        from pipeline.edge_snapshot import reap

        if self._snap_pid and (code := reap(self._snap_pid, block)) is not None:
            self._snap_pid = 0
            if code:
                log.error("engine snapshot child failed (exit code %d): the next one retries at "
                          "snapshot_every; restart replays from the previous snapshot", code)
                self.snapshot_seq = 0  # unknown which is newest on disk: a clean stop writes one
            else:
                self.snapshots_written += 1

    def queue_depth(self) -> int:
        return sum(r.depth() for r in self.cmd_rings) + sum(r.depth() for r in self.adm_rings)

    def close(self) -> None:
        self.reap_snapshot(block=True)
        self.committer.close()
        self.writer.close()
        for r in self.cmd_rings + self.adm_rings:
            r.close()


def _sync_mode(durability: str) -> str:
    return {"fdatasync": "fdatasync", "msync": "msync", "async": "none"}.get(durability, durability)


def main(cfg: Config, index: int, ready: Connection) -> None:
    """Process entry (``spotx up``)."""
    from pipeline.cpu import pin
    from pipeline.doorbell import Ringer
    from ringbuf import strategy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s engine %(levelname)s %(message)s")
    pin(cfg.engine.core)
    sys.setswitchinterval(0.0002)  # let the flusher thread publish promptly after fdatasync
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    from engine.errors import SnapshotError
    from pipeline.wal import WalGapError

    try:
        host = EngineHost(cfg)
    except EngineSev1 as e:
        log.critical("%s", e)
        ready.send({"error": str(e)})
        sys.exit(EXIT_SEV1)
    except (EngineConfigChange, SnapshotError, WalGapError) as e:  # the state cannot start
        log.critical("%s", e)
        ready.send({"error": str(e)})
        sys.exit(EXIT_CONFIG)
    host.ringer = Ringer(run_dir(cfg))
    from engine._stats import count_orders
    from engine.warm import warm

    warm()
    stats = Stats(run_dir(cfg), "engine")
    s_seq = stats.slot("engine_seq", "gauge", "last sequenced command")
    s_depth = stats.slot("engine_queue_depth", "gauge", "commands waiting in inbound rings")
    s_loop = stats.slot("engine_loop_seconds", "histogram", "one loop iteration with work")
    s_fsync = stats.slot("wal_fsync_seconds", "histogram", "WAL group-commit sync duration")
    s_durable = stats.slot("wal_durable_seq", "gauge", "highest durable seq")
    s_batch = stats.slot("engine_batch_commands_total", "counter", "commands sequenced")
    s_gc = stats.slot("spotx_process_gc_collections_total", "counter",
                      "Python GC collections in the engine process (the loop allocates per batch only)",
                      process="engine")
    top = max((s.symbol_id for s in cfg.symbols), default=0) + 1
    count_off = np.full(top, -1, np.int64)  # symbol id -> its slot (engine/_stats.py)
    seq_off = np.full(top, -1, np.int64)
    for s in cfg.symbols:
        count_off[s.symbol_id] = stats.slot("engine_commands_total", "counter", "commands per symbol",
                                            symbol=s.name)
        seq_off[s.symbol_id] = stats.slot("engine_symbol_seq", "gauge",
                                          "last seq of an order command on the symbol",
                                          symbol=s.name)
    data = stats.freeze()

    def on_sync(seq: int) -> None:  # flusher thread: the only writer of these two slots
        observe(data, s_fsync, getattr(host.committer, "_last_ns", 0))
        data[s_durable] = seq

    host.sync_hook = on_sync
    heap.settle()
    ready.send({"ready": True, "seq": host.next_seq - 1, "replayed": host.replayed,
                "snapshot_seq": host.snap_seq, "pid": os.getpid()})
    log.info("engine ready at seq %d (snapshot %d, replayed %d)", host.next_seq - 1, host.snap_seq,
             host.replayed)
    wait = strategy(cfg.engine.wait)
    idle_wait = _bell_wait(wait, cfg)
    idle = 0
    batches = 0
    try:
        while not stop["flag"]:
            t0 = time.perf_counter_ns()
            n = host.step()
            if n == 0:
                idle_wait(idle)
                idle += 1
                if idle % 1024 == 0:
                    data[s_depth] = host.queue_depth()
                    data[s_gc] = sum(g["collections"] for g in gc.get_stats())
                continue
            idle = 0
            observe(data, s_loop, time.perf_counter_ns() - t0)
            data[s_seq] = host.next_seq - 1
            data[s_batch] += n
            batches += 1
            if batches % 64 == 0:  # under constant load the idle path never runs
                data[s_depth] = host.queue_depth()
            count_orders(host.cmds, n, host.next_seq - n, count_off, seq_off, data)
    finally:
        if stop["flag"] and host.writer.failed is None and host.next_seq - 1 > host.snapshot_seq:
            try:  # a clean stop: the next start (maybe under a changed config) replays nothing
                host.snapshot()
            except Exception:  # noqa: BLE001 - the WAL has everything; it only costs a replay
                log.exception("engine snapshot at stop failed")
        host.close()
        stats.close()
        log.info("engine stopped at seq %d", host.next_seq - 1)


def _bell_wait(wait: Any, cfg: Config) -> Any:
    """The idle wait of the loop. ``park``: after the strategy's spins, sleep on the engine's
    doorbell for ``max_s`` at once rather than backing off from ``min_s``: edges ring the bell
    after each push, so a command wakes the engine at once either way, and the back-off's short
    timed sleeps only cost wake-ups (engine CPU at 1 k orders/s offered 2.1-2.2 -> 1.6-1.9 s per
    ``bench e2e`` regime, latency unchanged, interleaved runs). ``max_s`` (1 ms) still bounds
    the wait for the one pusher that does not ring: settlement's lag-policy ring. The other
    strategies never sleep long enough to need the bell."""
    from pipeline.doorbell import Doorbell, engine_bell_root
    from ringbuf import ParkBackoff

    if not isinstance(wait, ParkBackoff):
        return wait.idle
    bell = Doorbell(engine_bell_root(run_dir(cfg)), "engine")
    fd = bell.fileno()
    spins, park_s = wait.spins, wait.max_s

    def idle(attempt: int) -> None:
        if attempt >= spins and select.select((fd,), (), (), park_s)[0]:
            bell.drain()

    return idle


def dump_status(cfg: Config) -> dict[str, Any]:
    from pipeline.wal import read_durable

    d = read_durable(wal_path(cfg))
    return {"durable_seq": d.seq if d else 0}

