"""Bench suite ``ring``: 64-byte records between two processes through ``ringbuf.SpscRing``.

Regimes (producer in a forked child pinned to core 1, consumer in this process pinned to core 0;
both run njit loops that call the ring kernels directly and busy-spin when full / empty):

* ``ring.spsc.batched256.{busyspin,spinyield}`` — producer pushes batches of 256 as fast as the
  ring takes them, consumer pops up to 256 at a time. Value: records/s from the first record
  popped to the last. ``busyspin``: both loops poll without pause; ``spinyield``: after 256
  empty polls they ``sched_yield`` (``ringbuf.idle``, the njit SpinThenYield), which is what a
  shared 2-core box needs. Peer: ``faster_fifo.Queue`` ``put_many`` / ``get_many`` of 256
  64-byte ``bytes``.
* ``ring.spsc.single.{busyspin,spinyield}`` — one record per push and per pop. Peer:
  ``multiprocessing.Queue`` put/get of one 64-byte ``bytes`` each.
* ``ring.spsc.oneway_latency`` — one-way latency with one record in flight: the producer waits
  until the consumer has taken the previous record, waits ~2 us more, stamps the TSC
  (``llvm.readcyclecounter``) into the record and pushes it; the consumer busy-spins, reads the
  TSC after the pop and records the difference. (Pacing on a timer alone lets one preemption by
  another process queue thousands of records, and the figure then measures the queue, not the
  ring.) TSC ticks become ns by calibrating against ``perf_counter_ns``; both cores share
  one invariant TSC here (``constant_tsc nonstop_tsc``, kernel clocksource ``tsc``). Peer:
  ``multiprocessing.Queue`` one-way latency with ``perf_counter_ns`` stamps (CLOCK_MONOTONIC), the
  producer sleeping 50 us (about 100 us in practice) between records, consumer blocking in
  ``get``.
* ``ring.spsc.pingpong_rtt_half`` — two rings, the child echoes each record; round trip on one
  clock (no cross-core clock assumption), halved. A cross-check of the one-way figure.
* ``ring.doorbell.wake_rtt_half.{idle1ms,back2back}`` — what a *blocking* hand-off costs, the
  one every hop of the stack's order -> ack path pays when its reader is asleep (edge -> engine,
  engine -> edge: ``pipeline.doorbell``, the stack's own FIFO doorbells). The child (core 1)
  sleeps in ``select`` on its doorbell and rings ours when woken; we (core 0) ring it and sleep
  on ours; round trip / 2 on one clock. ``idle1ms``: 1 ms between pings, so both vCPUs go idle
  in between, as at a low order rate; ``back2back``: the next ping at once. Peer: the spinning
  ring ping-pong above, same run. On this guest the kernel's cpuidle is ``haltpoll`` with
  ``guest_halt_poll_ns=0`` (``/proc/cmdline``): an idle vCPU halts at once and is woken through
  the hypervisor. Correct: every ping answered, every wake-up drained exactly one ring.

Correctness, next to every figure: each record carries its sequence number, the TSC stamp and six
check words derived from the sequence number; the consumer verifies every word of every record and
that sequence numbers are contiguous (peers: the sequence number in the payload, contiguous).
Latency percentiles are from an HDR histogram in ns, reported in us. The first 10% of latency
samples are dropped as warm-up. Throughputs are the median of three runs. This machine has 2 vCPUs
and is shared with other work, so figures move between runs; the bench pins but cannot isolate.
Cross-core figures here are multi-modal and switch even within a run: one-way ~0.15 us with
80-120 M batched records/s, or ~0.5-0.6 us with ~30 M/s, and ping-pong halves as low as 0.065 us.
We read it as the hypervisor moving the two vCPUs between nearby host cores, distant ones, and
SMT siblings of one core; the guest cannot see or pin that, so compare runs with that in mind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import types
from numba.core.extending import intrinsic

from bench.harness import Latency, Result, pin, rate
from ringbuf import SpscRing, cleanup, idle, spsc_depth, spsc_pop, spsc_push

REC = np.dtype([("seq", "<i8"), ("ts", "<i8"), ("check", "<i8", (6,))])
W = REC.itemsize // 8  # 8 words
CAPACITY = 1 << 14
SPIN_YIELD_AFTER = 256  # the ``spinyield`` regimes: sched_yield after this many empty polls
WAKE_TIMEOUT_S = 5.0  # a doorbell ping not answered in this long is a failure, not a wait
CTX = mp.get_context("fork")  # the child inherits the compiled loops: no compile in the race
K = 0x9E3779B97F4A7C15 - (1 << 64)  # odd 64-bit constant as int64


@intrinsic
def _rdtsc(typingctx: Any) -> Any:  # noqa: ARG001
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        from llvmlite import ir

        fn = builder.module.declare_intrinsic("llvm.readcyclecounter",
                                              fnty=ir.FunctionType(ir.IntType(64), []))
        return builder.call(fn, [])

    return types.int64(), codegen


@numba.njit(cache=True)
def rdtsc() -> int:
    return _rdtsc()  # type: ignore[call-arg]  # numba supplies typingctx


@numba.njit(cache=True)
def _fill(buf: np.ndarray, i: int, seq: int, ts: int) -> None:
    buf[i, 0] = seq
    buf[i, 1] = ts
    for w in range(2, 8):
        buf[i, w] = (seq * K) ^ w


@numba.njit(cache=True)
def _bad(buf: np.ndarray, i: int, seq: int) -> int:
    if buf[i, 0] != seq:
        return 1
    for w in range(2, 8):
        if buf[i, w] != (seq * K) ^ w:
            return 1
    return 0


@numba.njit(cache=True)
def _produce(ctrl: np.ndarray, slots: np.ndarray, n: int, batch: int, gap_cycles: int,
             spins: int) -> int:
    """``spins`` > 0: spin-then-yield after that many failed pushes; 0: pure busy-spin."""
    buf = np.zeros((batch, 8), dtype=np.int64)
    seq = 0
    attempt = 0
    while seq < n:
        k = min(batch, n - seq)
        if gap_cycles > 0:
            while spsc_depth(ctrl) > 0:  # one record in flight: no queueing in the figure
                pass
            t_next = rdtsc() + gap_cycles
            while rdtsc() < t_next:
                pass
        ts = rdtsc()
        for i in range(k):
            _fill(buf, i, seq + i, ts)
        done = 0
        while done < k:
            m = spsc_push(ctrl, slots, buf[done:k], k - done)
            done += m
            if m > 0:
                attempt = 0
            elif spins > 0:
                idle(attempt, spins)
                attempt += 1
        seq += k
    return seq


@numba.njit(cache=True)
def _consume(ctrl: np.ndarray, slots: np.ndarray, n: int, batch: int, lat: np.ndarray,
             spins: int) -> tuple[int, int, int, int, int]:
    """Returns (records, bad records, tsc of first pop, records in first pop, tsc of last pop)."""
    buf = np.zeros((batch, 8), dtype=np.int64)
    got, bad, t_first, k_first, t_last, attempt = 0, 0, 0, 0, 0, 0
    while got < n:
        k = spsc_pop(ctrl, slots, buf, min(batch, n - got))
        if k <= 0:
            if spins > 0:
                idle(attempt, spins)
                attempt += 1
            continue
        attempt = 0
        now = rdtsc()
        if t_first == 0:
            t_first, k_first = now, k
        t_last = now
        for i in range(k):
            bad += _bad(buf, i, got + i)
            if lat.shape[0] > 0:
                lat[got + i] = now - buf[i, 1]
        got += k
    return got, bad, t_first, k_first, t_last


@numba.njit(cache=True)
def _ping(ctrl_o: np.ndarray, slots_o: np.ndarray, ctrl_i: np.ndarray, slots_i: np.ndarray,
          n: int, rtt: np.ndarray) -> int:
    out = np.zeros((1, 8), dtype=np.int64)
    back = np.zeros((1, 8), dtype=np.int64)
    bad = 0
    for seq in range(n):
        _fill(out, 0, seq, 0)
        t0 = rdtsc()
        while spsc_push(ctrl_o, slots_o, out, 1) == 0:
            pass
        while spsc_pop(ctrl_i, slots_i, back, 1) == 0:
            pass
        rtt[seq] = rdtsc() - t0
        bad += _bad(back, 0, seq)
    return bad


@numba.njit(cache=True)
def _pong(ctrl_i: np.ndarray, slots_i: np.ndarray, ctrl_o: np.ndarray, slots_o: np.ndarray,
          n: int) -> None:
    buf = np.zeros((1, 8), dtype=np.int64)
    for _ in range(n):
        while spsc_pop(ctrl_i, slots_i, buf, 1) == 0:
            pass
        while spsc_push(ctrl_o, slots_o, buf, 1) == 0:
            pass


def _tsc_per_ns() -> float:
    c0, t0 = rdtsc(), time.perf_counter_ns()
    time.sleep(0.2)
    c1, t1 = rdtsc(), time.perf_counter_ns()
    return (c1 - c0) / (t1 - t0)


def _warm() -> None:
    """Compile (or load from cache) every loop before any child forks."""
    z1, z2 = np.zeros(128, np.int64), np.zeros((2, W), np.int64)
    _produce(z1, z2, 0, 1, 0, 0)
    _consume(z1, z2, 0, 1, np.zeros(0, np.int64), 0)
    _ping(z1, z2, z1, z2, 0, np.zeros(0, np.int64))
    _pong(z1, z2, z1, z2, 0)


def _child(fn: Any, *args: Any) -> Any:
    p = CTX.Process(target=_pinned, args=(fn, *args), daemon=True)
    p.start()
    return p


def _pinned(fn: Any, *args: Any) -> None:
    pin(1)
    fn(*args)


def _producer_main(name: str, n: int, batch: int, gap_cycles: int, spins: int) -> None:
    with SpscRing.attach(name, REC) as r:
        r.claim_producer()
        _produce(r.ctrl, r.slots, n, batch, gap_cycles, spins)


def _run_ring(prefix: str, n: int, batch: int, gap_cycles: int, want_lat: bool,
              spins: int) -> tuple[int, int, float, np.ndarray]:
    """(records, bad, ticks from first to last pop excluding the first batch's records, lat)."""
    ring = SpscRing.create(f"{prefix}spsc-{batch}-{gap_cycles}", REC, CAPACITY)
    try:
        ring.claim_consumer()
        lat = np.zeros(n if want_lat else 0, dtype=np.int64)
        p = _child(_producer_main, ring.name, n, batch, gap_cycles, spins)
        got, bad, t0, k0, t1 = _consume(ring.ctrl, ring.slots, n, batch, lat, spins)
        p.join(60)
        ok = p.exitcode == 0 and ring.statistics().depth == 0
        return got - k0, bad + (0 if ok else 1), float(t1 - t0), lat
    finally:
        ring.close()
        ring.unlink()


def _pong_main(a: str, b: str, n: int) -> None:
    with SpscRing.attach(a, REC) as ra, SpscRing.attach(b, REC) as rb:
        ra.claim_consumer()
        rb.claim_producer()
        _pong(ra.ctrl, ra.slots, rb.ctrl, rb.slots, n)


def _pingpong(prefix: str, n: int) -> tuple[int, np.ndarray]:
    a = SpscRing.create(f"{prefix}ping", REC, 1024)
    b = SpscRing.create(f"{prefix}pong", REC, 1024)
    try:
        a.claim_producer()
        b.claim_consumer()
        rtt = np.zeros(n, dtype=np.int64)
        p = _child(_pong_main, a.name, b.name, n)
        bad = int(_ping(a.ctrl, a.slots, b.ctrl, b.slots, n, rtt))
        p.join(30)
        return bad + (0 if p.exitcode == 0 else 1), rtt
    finally:
        for r in (a, b):
            r.close()
            r.unlink()


def _bell_pong_main(mine: str, theirs: str, n: int) -> None:
    """The child of ``_doorbell_pingpong``: wait on our bell, ring theirs, ``n`` times; exits 1
    if a wake-up did not drain exactly one ring."""
    import select

    from pipeline.doorbell import Doorbell, Ringer

    bell = Doorbell(mine, "pong")
    ringer = Ringer(theirs, rescan_s=3600.0)
    ready = Path(mine) / "ready"
    ready.touch()
    bad = 0
    for _ in range(n):
        if not select.select((bell.fileno(),), (), (), WAKE_TIMEOUT_S)[0]:
            os._exit(2)  # never rung: the parent reports it
        bad += bell.drain() != 1
        ringer.ring()
    bell.close()
    ringer.close()
    os._exit(1 if bad else 0)


def _doorbell_pingpong(n: int, gap_s: float) -> tuple[int, np.ndarray]:
    """(bad, round-trip ns) of ``n`` doorbell ping-pongs, ``gap_s`` apart (see the module doc)."""
    import select
    import shutil
    import tempfile

    from pipeline.doorbell import Doorbell, Ringer

    root = Path(tempfile.mkdtemp(prefix="spotx-bench-bell-"))
    mine, theirs = root / "ping", root / "pong"
    bell = Doorbell(mine, "ping")
    p = _child(_bell_pong_main, str(theirs), str(mine), n)
    try:
        deadline = time.monotonic() + 30
        while not (theirs / "ready").exists():
            if time.monotonic() > deadline or not p.is_alive():
                raise RuntimeError("doorbell ping-pong child did not start")
            time.sleep(0.001)
        ringer = Ringer(theirs, rescan_s=3600.0)
        rtt = np.zeros(n, dtype=np.int64)
        bad = 0
        fd = bell.fileno()
        for i in range(n):
            t0 = time.perf_counter_ns()
            ringer.ring()
            if not select.select((fd,), (), (), WAKE_TIMEOUT_S)[0]:
                return bad + 1 + n - i, rtt[:i]  # never answered
            rtt[i] = time.perf_counter_ns() - t0
            bad += bell.drain() != 1
            if gap_s:
                time.sleep(gap_s)
        ringer.close()
        p.join(30)
        return bad + (0 if p.exitcode == 0 else 1) + (ringer.rings != n), rtt
    finally:
        if p.is_alive():
            p.kill()
        bell.close()
        shutil.rmtree(root, ignore_errors=True)


# -- peers -------------------------------------------------------------------------------------
def _payload(seq: int) -> bytes:
    return seq.to_bytes(8, "little") + bytes(56)


def _mpq_producer(q: Any, n: int) -> None:
    for seq in range(n):
        q.put(_payload(seq))


def _peer_mp_queue(n: int) -> tuple[float, bool]:
    q: Any = CTX.Queue(maxsize=10_000)
    p = _child(_mpq_producer, q, n)
    ok = int.from_bytes(q.get(timeout=30)[:8], "little") == 0
    t0 = time.perf_counter()
    for seq in range(1, n):
        ok &= int.from_bytes(q.get(timeout=30)[:8], "little") == seq
    dt = time.perf_counter() - t0
    p.join(30)
    return rate(n - 1, dt), ok and p.exitcode == 0


def _mpq_paced(q: Any, n: int, gap_s: float) -> None:
    # sleep, not a busy wait: a spinning main thread would hold the GIL and starve the queue's
    # feeder thread, and the figure would measure the switch interval (5 ms), not the queue
    for seq in range(n):
        time.sleep(gap_s)
        q.put((seq, time.perf_counter_ns()))


def _peer_mp_queue_latency(n: int) -> tuple[Latency, bool]:
    q: Any = CTX.Queue(maxsize=10_000)
    p = _child(_mpq_paced, q, n, 50e-6)
    h, ok = Latency(), True
    for seq in range(n):
        s, ts = q.get(timeout=30)
        now = time.perf_counter_ns()
        ok &= s == seq
        if seq >= n // 10:
            h.record(now - ts)
    p.join(30)
    return h, ok and p.exitcode == 0


def _ff_producer(q: Any, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        q.put_many([_payload(s) for s in range(start, min(n, start + batch))], timeout=30)


def _peer_faster_fifo(n: int, batch: int) -> tuple[float | None, bool]:
    try:
        from faster_fifo import Queue
    except ImportError:
        return None, True
    q = Queue(max_size_bytes=16 << 20)
    p = _child(_ff_producer, q, n, batch)
    first = q.get_many(timeout=30, max_messages_to_get=batch)
    seqs = [int.from_bytes(m[:8], "little") for m in first]
    got = len(first)
    t0 = time.perf_counter()
    while got < n:
        msgs = q.get_many(timeout=30, max_messages_to_get=batch)
        seqs.extend(int.from_bytes(m[:8], "little") for m in msgs)
        got += len(msgs)
    dt = time.perf_counter() - t0
    p.join(30)
    return rate(got - len(first), dt), seqs == list(range(n)) and p.exitcode == 0


# -- suite -------------------------------------------------------------------------------------
def _throughput(prefix: str, n: int, batch: int, tpn: float, spins: int,
                reps: int = 3) -> tuple[float, bool, str]:
    """Median records/s of ``reps`` runs (the box is shared: one run can be unlucky)."""
    rates, ok = [], True
    for _ in range(reps):
        got, bad, ticks, _ = _run_ring(prefix, n, batch, 0, False, spins)
        rates.append(rate(got, ticks / tpn / 1e9))
        ok &= bad == 0
    runs = ", ".join(f"{r / 1e6:.1f}M" for r in rates)
    return float(np.median(rates)), ok, f"[{runs}]"


def _lat_result(name: str, samples_ns: np.ndarray, correct: bool, notes: str) -> Result:
    h = Latency()
    h.record_many(samples_ns[samples_ns.shape[0] // 10:])
    p50, p99, p999 = h.summary_us()
    return Result(name, "us", p50, p50=p50, p99=p99, p999=p999, correct=correct, notes=notes)


def _cpuidle() -> str:
    """The guest's cpuidle driver and its halt-poll setting, as this kernel reports them."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return "?"

    driver = read("/sys/devices/system/cpu/cpuidle/current_driver")
    poll = [a for a in read("/proc/cmdline").split() if "halt_poll" in a]
    return f"{driver}{' (' + ', '.join(poll) + ')' if poll else ''}"


def run(quick: bool) -> list[Result]:
    n_batched = 10_000_000 if quick else 200_000_000
    n_single = 1_000_000 if quick else 20_000_000
    n_lat = 100_000 if quick else 2_000_000
    n_pp = 100_000 if quick else 2_000_000
    n_peer = 100_000 if quick else 2_000_000
    n_peer_lat = 10_000 if quick else 100_000
    n_bell = 2_000 if quick else 20_000
    affinity = os.sched_getaffinity(0)
    prefix = f"spotx-bench{os.getpid()}-{uuid.uuid4().hex[:6]}-"
    out: list[Result] = []
    try:
        pin(0)
        _warm()
        tpn = _tsc_per_ns()
        shared = (f"{os.cpu_count()} vCPUs shared with other work (load avg "
                  f"{os.getloadavg()[0]:.2f} at start); producer core 1, consumer core 0; "
                  f"TSC {tpn:.3f}/ns")

        ff, ff_ok = _peer_faster_fifo(n_peer, 256)
        mpq, mpq_ok = _peer_mp_queue(n_peer)
        for regime, batch, n, peer, peer_value, peer_ok in (
                ("batched256", 256, n_batched, "faster_fifo put_many/get_many(256)", ff, ff_ok),
                ("single", 1, n_single, "multiprocessing.Queue put/get", mpq, mpq_ok)):
            for wait, spins in (("busyspin", 0), ("spinyield", SPIN_YIELD_AFTER)):
                value, ok, runs = _throughput(prefix, n, batch, tpn, spins)
                out.append(Result(f"ring.spsc.{regime}.{wait}", "records/s", value, correct=ok,
                                  notes=f"median of {runs}; {shared}; peer correct={peer_ok}")
                           .with_peer(peer, peer_value))

        _got, bad, _ticks, lat = _run_ring(prefix, n_lat, 1, int(2_000 * tpn), True, 0)
        peer_h, peer_ok = _peer_mp_queue_latency(n_peer_lat)
        out.append(_lat_result("ring.spsc.oneway_latency", (lat / tpn).astype(np.int64), bad == 0,
                               "busy-spin both sides, one record in flight, 2us between records, "
                               f"TSC one-way; {shared}; "
                               f"peer: sleep 50us between records, perf_counter_ns, correct={peer_ok}; "
                               "ratio < 1 = lower latency than the peer")
                   .with_peer("multiprocessing.Queue one-way p50 us", peer_h.pct(50) / 1e3))

        bad, rtt = _pingpong(prefix, n_pp)
        spin = _lat_result("ring.spsc.pingpong_rtt_half", (rtt / tpn / 2).astype(np.int64),
                           bad == 0, f"round trip / 2 through two rings, busy-spin; {shared}")
        out.append(spin)

        idle = _cpuidle()
        for regime, gap in (("idle1ms", 1e-3), ("back2back", 0.0)):
            bad, rtt = _doorbell_pingpong(n_bell, gap)
            out.append(_lat_result(
                f"ring.doorbell.wake_rtt_half.{regime}", rtt // 2, bad == 0,
                f"round trip / 2 through two FIFO doorbells (pipeline.doorbell), both sides asleep "
                f"in select until rung, {f'{gap * 1e3:g} ms' if gap else 'nothing'} between pings; "
                f"{n_bell} pings; cpuidle: {idle}; {shared}; "
                "peer: the spinning ring ping-pong of this run (ratio = what sleeping costs)")
                       .with_peer("ring.spsc.pingpong_rtt_half p50 us", spin.value))
    finally:
        os.sched_setaffinity(0, affinity)
        cleanup(prefix)
    return out
