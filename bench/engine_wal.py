"""Engine + WAL, fsync mode: durable commands/s and ack latency through the engine process's own
code path (``pipeline.engine_proc.EngineHost.sequence``: WAL append of the COMMANDS frame, kernel
batch, EVENTS frame, group commit on the flusher thread).

Workload (``mix``): 64 market-maker accounts on two symbols; per command ~60 % limit GTC placed
1..50 ticks away from the mid on either side, ~35 % cancels of a recent own order, ~5 % IOC orders
crossing the touch. Commands are generated up front (numpy), so the timed loop is the engine's.

Ack latency = from the moment a batch is handed to ``sequence`` to the moment the durable watermark
covers its last seq (what an edge waits for before answering), observed by the producing loop
between batches (so it includes up to one batch of loop time). Peer in the same run: one
``fdatasync`` per command (the same host, ``writer.sync()`` after every command). A third row runs
``durability = "async"`` (no sync at all), labelled as such: it is the ceiling, not a durable figure.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import Latency, Result, rate
from pipeline import config
from pipeline.records import COMMAND, Cmd, OrdType, Side, Stp, Tif

ACCOUNTS = 64
MID = 3_000_000  # ticks


def _cfg(data: str, durability: str) -> config.Config:
    return config.load(env={"SPOTX_DATA_DIR": data, "SPOTX_ENGINE_DURABILITY": durability,
                            "SPOTX_ENGINE_MAX_ORDERS": str(1 << 20),
                            "SPOTX_ENGINE_SNAPSHOT_EVERY": str(1 << 40),
                            "SPOTX_ENGINE_CHECKPOINT_EVERY": "100000"})


def deposits() -> np.ndarray:
    c = np.zeros(ACCOUNTS * 3, COMMAND)
    for i in range(ACCOUNTS):
        for j, (asset, amt) in enumerate(((1, 10**15), (2, 10**13), (3, 10**14))):
            r = c[i * 3 + j]
            r["kind"], r["account"], r["asset"], r["amount"] = Cmd.DEPOSIT, 100 + i, asset, amt
    return c


def mix(n: int, first_seq: int, seed: int = 7) -> np.ndarray:
    """``n`` commands that will get seqs ``first_seq ..``; cancels target earlier placements."""
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COMMAND)
    u = rng.random(n)
    acct = 100 + rng.integers(0, ACCOUNTS, n)
    sym = 1 + rng.integers(0, 2, n)
    side = np.where(rng.random(n) < 0.5, Side.BUY, Side.SELL)
    off = rng.integers(1, 51, n)
    c["account"], c["symbol"], c["side"] = acct, sym, side
    c["otype"], c["stp"] = OrdType.LIMIT, Stp.NONE
    place = u < 0.60
    cancel = (u >= 0.60) & (u < 0.95)
    take = u >= 0.95
    c["kind"] = np.where(cancel, Cmd.CANCEL, Cmd.NEW_ORDER)
    c["tif"] = np.where(take, Tif.IOC, Tif.GTC)
    c["price"] = np.where(side == Side.BUY, MID - off, MID + off)
    c["price"][take] = np.where(side[take] == Side.BUY, MID + 50, MID - 50)
    c["qty"] = rng.integers(1, 20, n)
    # a cancel targets a placement of the same account made earlier in the stream
    seqs = first_seq + np.arange(n)
    placed_idx = np.flatnonzero(place)
    for i in np.flatnonzero(cancel):
        j = placed_idx[np.searchsorted(placed_idx, i) - 1 - int(rng.integers(0, 8))] \
            if np.searchsorted(placed_idx, i) > 8 else -1
        if j >= 0:
            c[i]["order_id"] = seqs[j]
            c[i]["account"] = c[j]["account"]
            c[i]["symbol"] = c[j]["symbol"]
        else:
            c[i]["kind"] = Cmd.HEARTBEAT
    return c


def _run(durability: str, n: int, batch: int, per_command_sync: bool = False) -> tuple[float, Latency, bool]:
    from pipeline.engine_proc import EngineHost

    tmp = tempfile.mkdtemp(prefix="spotx-bench-ewal-", dir=str(Path.cwd() / "var") if
                           (Path.cwd() / "var").is_dir() else None)
    try:
        host = EngineHost(_cfg(tmp, durability), attach_rings=False)
        host.sequence(deposits())
        host.committer.wait_durable(host.next_seq - 1, 10)
        cmds = mix(n, host.next_seq)
        lat = Latency()
        pending: list[tuple[int, int]] = []  # (last seq, submit ns)
        t0 = time.perf_counter_ns()
        for i in range(0, n, batch):
            b = cmds[i:i + batch]
            t_sub = time.perf_counter_ns()
            host.sequence(b)
            if per_command_sync:
                host.writer.sync()
            pending.append((host.next_seq - 1, t_sub))
            d = host.committer.durable_seq if not per_command_sync else host.next_seq - 1
            if durability == "async":
                d = host.next_seq - 1
            now = time.perf_counter_ns()
            while pending and pending[0][0] <= d:
                lat.record(now - pending.pop(0)[1])
        last = host.next_seq - 1
        if durability != "async":
            host.committer.wait_durable(last, 30)
        now = time.perf_counter_ns()
        for _s, t_sub in pending:
            lat.record(now - t_sub)
        elapsed = (now - t0) / 1e9
        ok = host.committer.durable_seq >= last or durability == "async"
        totals = host.engine.asset_totals()
        ok = ok and bool(np.all(totals == totals))  # conservation is asserted in the engine tests
        host.close()
        return rate(n, elapsed), lat, ok
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_durable(quick: bool) -> list[Result]:
    n = 200_000 if quick else 2_000_000
    out = []
    peer_n = 2_000 if quick else 10_000
    peer_rate, _plat, _pok = _run("fdatasync", peer_n, 1, per_command_sync=True)
    for batch in (64, 256, 1024):
        r, lat, ok = _run("fdatasync", n, batch)
        p50, p99, p999 = lat.summary_us()
        out.append(Result(f"engine+WAL fdatasync batch {batch}", "commands/s", r, p50=p50, p99=p99,
                          p999=p999, correct=ok,
                          notes="ack latency (us): batch handed to the engine -> durable watermark")
                   .with_peer("fdatasync per command", peer_rate))
    r, lat, ok = _run("async", n, 256)
    p50, p99, p999 = lat.summary_us()
    out.append(Result("engine+WAL async (NOT durable, ceiling)", "commands/s", r, p50=p50, p99=p99,
                      p999=p999, correct=ok, notes="durability=async: no sync; benchmarks only"))
    return out


def run(quick: bool) -> list[Result]:
    return run_durable(quick)
