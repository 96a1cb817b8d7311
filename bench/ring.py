"""Bench suite ``ring``: 64-byte records between two processes.

Regimes
* ``batched``: producer pushes batches of 256 records as fast as the ring takes them, consumer pops
  batches of up to 256; throughput = records / (first pop .. last pop).
* ``single``: batches of one record each way.
* ``one-way latency``: the producer stamps each record with the TSC (``llvm.readcyclecounter``)
  when it pushes, one record every ~2 us so no queue builds up; the consumer busy-spins, stamps on
  pop and records the difference. TSC ticks are converted to ns by calibrating against
  ``perf_counter_ns`` (invariant TSC, shared by both cores of this VM).
Both processes run njit loops pinned to different cores, busy-spinning; each record carries its
sequence number and a checksum word, and the consumer checks every one (``correct``).

Peers in the same run: ``multiprocessing.Queue`` and ``faster_fifo.Queue`` moving the same
64-byte payloads (as bytes objects; faster_fifo with put_many/get_many batches of 256).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from typing import Any

import numba
import numpy as np
from numba import types
from numba.core.extending import intrinsic

from bench.harness import Latency, Result, pin, rate
from ringbuf import SpscRing
from ringbuf._kernels import spsc_pop, spsc_push

REC = np.dtype([("seq", "<i8"), ("ts", "<i8"), ("check", "<i8"), ("pad", "<i8", (5,))])
assert REC.itemsize == 64
CTX = mp.get_context("spawn")


@intrinsic
def _rdtsc(typingctx: Any) -> Any:  # noqa: ARG001
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        from llvmlite import ir

        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])

    return types.int64(), codegen


@numba.njit(cache=True)
def rdtsc() -> int:
    return _rdtsc()


@numba.njit(cache=True)
def _produce(ctrl: np.ndarray, slots: np.ndarray, n: int, batch: int, gap_cycles: int) -> int:
    buf = np.zeros((batch, 8), dtype=np.int64)
    seq = 0
    while seq < n:
        k = min(batch, n - seq)
        if gap_cycles > 0:
            t_next = rdtsc() + gap_cycles
            while rdtsc() < t_next:
                pass
        ts = rdtsc()
        for i in range(k):
            buf[i, 0] = seq + i
            buf[i, 1] = ts
            buf[i, 2] = (seq + i) * 2654435761 + 7
        done = 0
        while done < k:
            done += spsc_push(ctrl, slots, buf[done:k], k - done)
        seq += k
    return seq


@numba.njit(cache=True)
def _consume(ctrl: np.ndarray, slots: np.ndarray, n: int, batch: int,
             lat: np.ndarray) -> tuple[int, int, int, int]:
    buf = np.zeros((batch, 8), dtype=np.int64)
    got = 0
    bad = 0
    t_first = 0
    t_last = 0
    while got < n:
        k = spsc_pop(ctrl, slots, buf, min(batch, n - got))
        if k == 0:
            continue
        now = rdtsc()
        if t_first == 0:
            t_first = now
        t_last = now
        for i in range(k):
            s = buf[i, 0]
            if s != got + i or buf[i, 2] != s * 2654435761 + 7:
                bad += 1
            if lat.shape[0] > 0:
                lat[got + i] = now - buf[i, 1]
        got += k
    return got, bad, t_first, t_last


def _tsc_per_ns() -> float:
    rdtsc()
    t0, c0 = time.perf_counter_ns(), rdtsc()
    time.sleep(0.2)
    t1, c1 = time.perf_counter_ns(), rdtsc()
    return (c1 - c0) / (t1 - t0)


def _producer_main(name: str, n: int, batch: int, gap_cycles: int, core: int) -> None:
    pin(core)
    r = SpscRing.attach(name, REC)
    _produce(r.ctrl, r.slots, 8, 1, 0)  # compiled before the parent starts timing
    _produce(r.ctrl, r.slots, n, batch, gap_cycles)
    r.close()


def _run_ring(n: int, batch: int, gap_cycles: int, want_lat: bool) -> tuple[float, int, int, np.ndarray]:
    ring = SpscRing.create(f"spotx-bench-{uuid.uuid4().hex[:8]}", REC, 1 << 14)
    try:
        lat = np.zeros(n if want_lat else 0, dtype=np.int64)
        _consume(ring.ctrl, ring.slots, 0, batch, lat[:0])  # compile
        p = CTX.Process(target=_producer_main, args=(ring.name, n + 8, batch, gap_cycles, 1))
        p.start()
        warm = np.zeros(0, dtype=np.int64)
        _consume(ring.ctrl, ring.slots, 8, 1, warm)  # the producer's warm-up records
        got, bad, t0, t1 = _consume(ring.ctrl, ring.slots, n, batch, lat)
        p.join(60)
        return float(t1 - t0), got, bad, lat
    finally:
        ring.unlink()
        ring.close()


def _peer_mp_queue(n: int) -> float:
    q: Any = CTX.Queue(maxsize=10_000)
    p = CTX.Process(target=_mpq_producer, args=(q, n))
    p.start()
    q.get()
    t0 = time.perf_counter()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t0
    p.join(30)
    return rate(n, dt)


def _mpq_producer(q: Any, n: int) -> None:
    pin(1)
    payload = bytes(64)
    q.put(payload)
    for _ in range(n):
        q.put(payload)


def _peer_faster_fifo(n: int, batch: int) -> float | None:
    try:
        from faster_fifo import Queue
    except ImportError:
        return None
    q = Queue(max_size_bytes=16 << 20)
    p = CTX.Process(target=_ff_producer, args=(q, n, batch))
    p.start()
    q.get(timeout=30)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        got += len(q.get_many(timeout=30, max_messages_to_get=batch))
    dt = time.perf_counter() - t0
    p.join(30)
    return rate(n, dt)


def _ff_producer(q: Any, n: int, batch: int) -> None:
    pin(1)
    payload = bytes(64)
    q.put(payload)
    sent = 0
    while sent < n:
        k = min(batch, n - sent)
        q.put_many([payload] * k, timeout=30)
        sent += k


def run(quick: bool) -> list[Result]:
    pin(0)
    n_batched = 5_000_000 if quick else 50_000_000
    n_single = 1_000_000 if quick else 10_000_000
    n_lat = 200_000 if quick else 2_000_000
    n_peer = 100_000 if quick else 1_000_000
    tpn = _tsc_per_ns()
    out: list[Result] = []

    cycles, got, bad, _ = _run_ring(n_batched, 256, 0, False)
    ff_b = _peer_faster_fifo(n_peer, 256)
    out.append(Result("spsc 64B batched(256) 2 procs", "records/s", rate(got, cycles / tpn / 1e9),
                      correct=bad == 0 and got == n_batched).with_peer("faster_fifo put_many(256)", ff_b))

    cycles, got, bad, _ = _run_ring(n_single, 1, 0, False)
    mpq = _peer_mp_queue(n_peer)
    out.append(Result("spsc 64B single 2 procs", "records/s", rate(got, cycles / tpn / 1e9),
                      correct=bad == 0 and got == n_single).with_peer("multiprocessing.Queue", mpq))

    gap = int(2_000 * tpn)  # one record every ~2 us
    _cycles, got, bad, lat = _run_ring(n_lat, 1, gap, True)
    h = Latency()
    h.record_many((lat[n_lat // 10:] / tpn).astype(np.int64))  # drop the first 10% (warm-up)
    p50, p99, p999 = h.summary_us()
    out.append(Result("spsc one-way latency busy-spin", "us", p50, p50=p50, p99=p99, p999=p999,
                      correct=bad == 0 and got == n_lat,
                      notes=f"TSC {tpn:.3f} ticks/ns; paced 1 record / 2 us; cores 0 and 1"))
    return out
