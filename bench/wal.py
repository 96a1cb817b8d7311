"""WAL bench: durable 64-byte records/s with group commit, sync and commit latency, and a peer.

Regimes (all fdatasync unless named; the WAL lives in a temp dir under ``$SPOTX_BENCH_DIR`` or
/tmp — the same disk as the work tree here — and is removed afterwards):

* ``group_commit.b{64,256,1024}`` — a producer thread appends COMMANDS frames of B 64-byte
  records as fast as it can, calls ``request_sync()`` after each, and never runs more than
  ``INFLIGHT`` records ahead of the durable watermark (the bound an engine must keep); a
  GroupCommitter flusher thread syncs. Value: durable records/s. p50/p99/p99.9: duration of one
  ``writer.sync()`` (fdatasync, plus sealing with ``seal="flusher"``), µs.
* ``commit_latency.b{...}`` — same runs: time from ``append`` to "durable" per frame, µs.
* ``paced_1M.b256`` — offered load fixed at 1 M records/s (frames released on schedule, the
  producer sleeping in between): the latency a client would see from the WAL alone at the target.
* ``paced_1M.b256.spin.*`` — the same load from a producer that busy-waits holding the GIL, like an
  engine loop in Python: ``seal_append`` (default) vs ``seal_flusher`` at the default 5 ms switch
  interval, and ``seal_append`` with the interval lowered to 200 us (what the engine should set).
* ``rotation.b448`` — the engine's loop at full load across segment rotations: append a 28 KiB
  frame (an engine batch at 50 k orders/s), ``sync()`` inline, at once again, through 64 MiB
  segments (the default) while the writer prepares the next one in the background. p50/p99/
  p99.9 of the sync, and the max, which a rotation sets. Peer: the same with the zero-fill as it
  was before session 13 (``fdatasync`` every 8 MiB at full speed), interleaved.
* ``group_commit.msync.b256`` — the same producer with msync(MS_SYNC) instead of fdatasync.
* peer ``fdatasync_per_record`` — plain ``write`` of one 64-byte record + ``fdatasync`` each,
  limited to a few thousand records: what durability costs without group commit.

Correctness, recorded next to every figure: after each run the WAL is closed and read back — the
number of records equals the durable seq, every record carries its own seq in order, and
``verify_chain`` holds (CRC, hash chain, SEAL roots).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import numpy as np

from bench.harness import Latency, Result, rate
from pipeline.wal import FrameKind, GroupCommitter, WalReader, WalWriter, verify_chain

DURABILITY = "fdatasync"
RECORD_BYTES = 64
INFLIGHT = 65536  # records the producer may run ahead of the durable watermark (4 MiB)
SEGMENT_BYTES = 64 << 20  # the engine's default
INLINE_PAUSE_S = 0.001  # between two inline syncs (wal.inline_sync): about 1 k orders/s
LOW_SWITCH_INTERVAL_S = 0.0002  # see pipeline/wal/commit.py: a Python producer holds the GIL


def _bench_dir() -> str:
    base = os.environ.get("SPOTX_BENCH_DIR", tempfile.gettempdir())
    return tempfile.mkdtemp(prefix="spotx-walbench-", dir=base)


class _Run:
    """One producer + GroupCommitter run; collects per-frame append times and durable events."""

    def __init__(self, batch: int, seconds: float, sync_mode: str, paced_rps: float | None,
                 *, seal: str = "append", spin: bool = False, prealloc: str = "zero",
                 write: str = "pwrite", switch_interval_s: float | None = None) -> None:
        self.switch_interval_s = switch_interval_s
        self.prealloc = prealloc
        self.write = write
        self.seal = seal
        self.spin = spin  # paced: busy-wait holding the GIL (an engine loop) instead of sleeping
        self.batch = batch
        self.seconds = seconds
        self.sync_mode = sync_mode
        self.paced = paced_rps
        self.dir = _bench_dir()
        max_frames = int((paced_rps or 12e6) * seconds / batch) + 16
        self.t_append = np.zeros(max_frames, dtype=np.int64)
        self.durable_t: list[int] = []
        self.durable_seq: list[int] = []
        self.frames = 0
        self.records = 0
        self.elapsed = 0.0
        self.sync_ns: list[int] = []
        self.correct = False
        self.notes = ""

    def _on_durable(self, seq: int, _pos: int) -> None:
        self.durable_t.append(time.perf_counter_ns())
        self.durable_seq.append(seq)

    def run(self) -> _Run:
        old = sys.getswitchinterval()
        if self.switch_interval_s is not None:
            sys.setswitchinterval(self.switch_interval_s)
        try:
            return self._run()
        finally:
            sys.setswitchinterval(old)

    def _run(self) -> _Run:
        b = self.batch
        recs = np.zeros((b, RECORD_BYTES // 8), dtype=np.uint64)
        base = np.arange(b, dtype=np.uint64)
        w = WalWriter(self.dir, segment_bytes=64 << 20, fencing_token=1, sync_mode=self.sync_mode,
                      prealloc=self.prealloc, seal=self.seal, write=self.write)
        gc = GroupCommitter(w, history=1 << 17, on_durable=self._on_durable)
        seq = 1
        i = 0
        cap = len(self.t_append)
        clock = time.perf_counter_ns
        t0 = clock()
        end = t0 + int(self.seconds * 1e9)
        per_frame_ns = b / self.paced * 1e9 if self.paced else 0.0
        while i < cap:
            now = clock()
            if now >= end:
                break
            if self.paced:
                due = min(int((now - t0) / per_frame_ns) + 1, cap)
                if i >= due:
                    if not self.spin:
                        time.sleep(0.0001)
                    continue
                todo = due - i
            else:
                todo = 1
            for _ in range(todo):
                np.add(base, seq, out=recs[:, 0])
                self.t_append[i] = clock()
                w.append(FrameKind.COMMANDS, seq, b, recs, now)
                seq += b
                i += 1
            gc.request_sync()
            if seq - 1 - gc.durable_seq > INFLIGHT:
                gc.wait_durable(seq - 1 - INFLIGHT, 30.0)
        gc.wait_durable(seq - 1, 30.0)
        self.elapsed = (clock() - t0) / 1e9
        self.frames, self.records = i, seq - 1
        st = gc.statistics()
        self.sync_ns = st.durations_ns
        prepared, cancelled = w.prealloc_stats()
        gc.close()
        w.close()
        self.notes = (f"write={w.write}, prealloc={self.prealloc}, seal={self.seal}, switch interval {sys.getswitchinterval() * 1e6:.0f} us, "
                      f"{st.syncs} syncs, {self.records / max(st.syncs, 1):,.0f} records/sync avg, "
                      f"segments prepared ahead {prepared}, not ready in time {cancelled}")
        self.correct = _check(self.dir, self.records, b)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self

    def commit_latency(self) -> Latency:
        """append -> durable per frame: the first durable advance covering the frame's last seq."""
        lat = Latency()
        dseq = np.asarray(self.durable_seq, dtype=np.int64)
        dt = np.asarray(self.durable_t, dtype=np.int64)
        last = (np.arange(self.frames, dtype=np.int64) + 1) * self.batch
        k = np.searchsorted(dseq, last)
        ok = k < len(dseq)
        lat.record_many((dt[k[ok]] - self.t_append[: self.frames][ok]).tolist())
        return lat


def _check(directory: str, records: int, batch: int) -> bool:
    seq = 1
    for f in WalReader(directory).iter_frames():
        a = np.frombuffer(f.payload, dtype=np.uint64).reshape(-1, RECORD_BYTES // 8)
        if f.first_seq != seq or f.count != batch or len(a) != batch:
            return False
        if a[0, 0] != seq or a[-1, 0] != seq + batch - 1:
            return False
        seq += batch
    return seq - 1 == records and verify_chain(directory).ok


def _peer(n: int) -> tuple[float, Latency, bool]:
    d = _bench_dir()
    path = os.path.join(d, "peer.log")
    lat = Latency()
    rec = bytearray(RECORD_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            rec[:8] = i.to_bytes(8, "little")
            t = time.perf_counter_ns()
            os.write(fd, rec)
            os.fdatasync(fd)
            lat.record(time.perf_counter_ns() - t)
        el = time.perf_counter() - t0
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        data = f.read()
    ok = len(data) == n * RECORD_BYTES and data[-RECORD_BYTES:][:8] == (n - 1).to_bytes(8, "little")
    shutil.rmtree(d, ignore_errors=True)
    return rate(n, el), lat, ok


def _ready_writer(d: str, prealloc: str = "zero", write: str = "pwrite") -> WalWriter:
    """A writer on 64 MiB segments once its next segment is prepared (the steady state between
    rotations; at most 5 s of waiting)."""
    w = WalWriter(d, segment_bytes=SEGMENT_BYTES, fencing_token=1, sync_mode=DURABILITY,
                  prealloc=prealloc, write=write)
    ready = time.monotonic() + 5.0
    while w.prealloc_stats()[0] < 1 and time.monotonic() < ready:
        time.sleep(0.005)
    return w


def _inline_syncs(w: WalWriter, batch: int, n: int, lat: Latency, pause_s: float) -> tuple[int, int]:
    """``n`` times: append a COMMANDS frame of ``batch`` records, ``sync()`` inline (its time, ns,
    into ``lat``), pause ``pause_s``. Returns (the next seq, the slowest sync in ns)."""
    recs = np.zeros((batch, RECORD_BYTES // 8), dtype=np.uint64)
    base = np.arange(batch, dtype=np.uint64)
    seq, worst = 1, 0
    for _ in range(n):
        np.add(base, seq, out=recs[:, 0])
        w.append(FrameKind.COMMANDS, seq, batch, recs, time.time_ns())
        seq += batch
        t = time.perf_counter_ns()
        w.sync()
        dt = time.perf_counter_ns() - t
        lat.record(dt)
        worst = max(worst, dt)
        if pause_s:
            time.sleep(pause_s)
    return seq, worst


def _inline(batch: int, n: int, write: str, prealloc: str, lat: Latency) -> bool:
    """The engine's low-load loop: append one frame of ``batch`` records, ``sync()`` inline, pause
    (so the disk is idle again, as between two orders at a modest rate); ``n`` times, once the
    next segment is prepared (between rotations: what most syncs see). Latency: the
    sync, ns, into ``lat``. Then the log is read back (``_check``)."""
    d = _bench_dir()
    w = _ready_writer(d, prealloc, write)
    try:
        seq, _ = _inline_syncs(w, batch, n, lat, INLINE_PAUSE_S)
    finally:
        w.close()
    ok = _check(d, seq - 1, batch)
    shutil.rmtree(d, ignore_errors=True)
    return ok


def _inline_rows(quick: bool) -> list[Result]:
    """``wal.inline_sync.b{8,448}.<write>_<prealloc>``: one sync of a small frame (8 records =
    512 B, an order at a low rate; 448 records = 28 KiB, an engine batch at 50 k orders/s), for
    the engine's default (pwrite into pre-zeroed segments) and the alternatives, interleaved so
    they see the same disk; the peer of each is ``mmap_fallocate`` (appending through the shared
    mapping into fallocate'd segments: the WAL before session 10)."""
    n = 600 if quick else 3000
    modes = (("pwrite", "zero"), ("mmap", "fallocate"), ("pwrite", "fallocate"), ("mmap", "zero"))
    out: list[Result] = []
    for b in (8, 448):
        lat: dict[str, Latency] = {f"{w}_{p}": Latency() for w, p in modes}
        ok: dict[str, bool] = dict.fromkeys(lat, True)
        for _ in range(3):  # interleaved thirds: drift in the disk hits every mode alike
            for w, p in modes:
                ok[f"{w}_{p}"] &= _inline(b, n // 3, w, p, lat[f"{w}_{p}"])
        peer_p50 = lat["mmap_fallocate"].summary_us()[0]
        for key, h in lat.items():
            p50, p99, p999 = h.summary_us()
            out.append(Result(f"wal.inline_sync.b{b}.{key}", "us", p50, p50, p99, p999,
                              correct=ok[key],
                              notes=f"one fdatasync'd sync() of a {b * RECORD_BYTES} B frame, "
                                    f"{INLINE_PAUSE_S * 1e3:g} ms apart, {n} per mode in "
                                    f"interleaved thirds; write={key.replace('_', ', prealloc=')}"
                              ).with_peer("mmap_fallocate", peer_p50))
    return out


def _fill_before_s13(fd: int, size: int, mode: str, cancel: object = None,
                     pace: bool = False) -> bool:
    """The zero-fill before session 13, the ``rotation`` regime's peer: 1 MiB writes, an
    ``fdatasync`` every 8 MiB, no pause (``mode``/``pace`` ignored: zero, as fast as it goes)."""
    import threading

    done = since = 0
    zeros = bytes(1 << 20)
    while done < size:
        if isinstance(cancel, threading.Event) and cancel.is_set():
            os.ftruncate(fd, size)
            return False
        done += os.pwrite(fd, zeros[:min(len(zeros), size - done)], done)
        since += len(zeros)
        if since >= 8 << 20:
            os.fdatasync(fd)
            since = 0
    os.fsync(fd)
    return True


def _rotation(batch: int, rotations: int, old_fill: bool,
              lat: Latency) -> tuple[bool, float, int]:
    """Back-to-back inline syncs of ``batch``-record frames through ``rotations`` rotations of
    64 MiB segments; each sync (ns) into ``lat``. (log read back correct, max sync in us,
    rotations that came before the background fill had finished)."""
    from pipeline.wal import segment

    d = _bench_dir()
    fill = segment.fill_file
    if old_fill:
        segment.fill_file = _fill_before_s13
    try:
        w = _ready_writer(d)
        try:
            n = rotations * SEGMENT_BYTES // (batch * RECORD_BYTES + 64) + 1
            seq, worst = _inline_syncs(w, batch, n, lat, 0.0)
            late = w.prealloc_stats()[1]
        finally:
            w.close()
    finally:
        segment.fill_file = fill
    ok = _check(d, seq - 1, batch)
    shutil.rmtree(d, ignore_errors=True)
    return ok, worst / 1e3, late


def _rotation_rows(quick: bool) -> list[Result]:
    rounds, rotations, batch = (2, 2, 448) if quick else (3, 4, 448)
    lat = {"now": Latency(), "before": Latency()}
    ok = {"now": True, "before": True}
    worst: dict[str, list[float]] = {"now": [], "before": []}
    late = {"now": 0, "before": 0}
    for _ in range(rounds):  # interleaved: drift in the disk hits both alike
        for key in ("now", "before"):
            good, mx, k = _rotation(batch, rotations, key == "before", lat[key])
            ok[key] &= good
            worst[key].append(mx)
            late[key] += k
    out = []
    peer_p999 = lat["before"].summary_us()[2]
    for key, name in (("now", "wal.rotation.b448"), ("before", "wal.rotation.b448.fill_before_s13")):
        p50, p99, p999 = lat[key].summary_us()
        out.append(Result(name, "us", p999, p50, p99, p999, correct=ok[key],
                          notes=f"value = p99.9 of one inline sync() of a {batch * RECORD_BYTES} B "
                                f"frame, back to back through {rotations} rotations of 64 MiB "
                                f"segments, {rounds} interleaved rounds; max per round (us): "
                                f"{', '.join(f'{x:,.0f}' for x in worst[key])}; rotations before "
                                f"the next segment was ready: {late[key]}; zero-fill "
                                + ("paced, written back without a cache flush (now)" if key == "now"
                                   else "fdatasync every 8 MiB, unpaced (before session 13)"))
                   .with_peer("fill before session 13, p99.9 us", peer_p999))
    return out


def _sync_result(name: str, r: _Run, peer: tuple[str, float]) -> Result:
    h = Latency()
    h.record_many(r.sync_ns)
    p50, p99, p999 = h.summary_us()
    return Result(name, "records/s", round(rate(r.records, r.elapsed)), p50, p99, p999,
                  correct=r.correct,
                  notes=f"p50/p99/p99.9 = one writer.sync() ({r.sync_mode}) in us; "
                        f"{r.notes}").with_peer(*peer)


def _latency_result(name: str, r: _Run, value_rps: float | None = None) -> Result:
    p50, p99, p999 = r.commit_latency().summary_us()
    return Result(name, "us" if value_rps is None else "records/s",
                  p50 if value_rps is None else round(value_rps), p50, p99, p999,
                  correct=r.correct,
                  notes=f"append -> durable per frame of {r.batch} records, us; {r.notes}")


def run(quick: bool) -> list[Result]:
    seconds = 1.5 if quick else 5.0
    peer_rps, peer_lat, peer_ok = _peer(1500 if quick else 5000)
    peer = ("fdatasync_per_record", round(peer_rps))
    out: list[Result] = []
    for b in (64, 256, 1024):
        r = _Run(b, seconds, "fdatasync", None).run()
        out.append(_sync_result(f"wal.group_commit.b{b}", r, peer))
        out.append(_latency_result(f"wal.commit_latency.b{b}", r))
    paced = _Run(256, seconds, "fdatasync", 1e6).run()
    out.append(_latency_result("wal.paced_1M.b256", paced, rate(paced.records, paced.elapsed)))
    for name, seal, si in (("seal_append", "append", None), ("seal_flusher", "flusher", None),
                           ("seal_append.si200us", "append", LOW_SWITCH_INTERVAL_S)):
        r = _Run(256, seconds, "fdatasync", 1e6, seal=seal, spin=True, switch_interval_s=si).run()
        out.append(_latency_result(f"wal.paced_1M.b256.spin.{name}", r,
                                   rate(r.records, r.elapsed)))
    old = _Run(256, seconds, "fdatasync", 1e6, prealloc="fallocate", write="mmap").run()
    out.append(_latency_result("wal.paced_1M.b256.mmap_fallocate", old, rate(old.records, old.elapsed)))
    out += _inline_rows(quick)
    out += _rotation_rows(quick)
    ms = _Run(256, seconds, "msync", None).run()
    out.append(_sync_result("wal.group_commit.msync.b256", ms, peer))
    p50, p99, p999 = peer_lat.summary_us()
    out.append(Result("wal.peer.fdatasync_per_record", "records/s", round(peer_rps), p50, p99,
                      p999, correct=peer_ok,
                      notes="write(64 B) + fdatasync per record; p50/p99/p99.9 in us"))
    return out
