"""Recovery: WAL replay rate and restart to serving (DESIGN.md §12: replay >= 5 M commands/s;
restart to serving < 2 s for 10 M WAL records).

The WAL is written first through the engine process's own code path (``EngineHost.sequence``,
batches of 256, ``durability=async`` so writing it is quick; replay does not care how it was
synced), with the engine bench's realistic mix (``bench.engine_wal.mix``): ~60 % placements, ~35 %
cancels, ~5 % crossing IOC. Then:

* ``replay`` — ``EngineHost(cfg)`` on that WAL with no snapshot: every COMMANDS frame re-applied in
  the kernels and its events compared byte for byte with the logged EVENTS frame (what a restart
  does). Value = replayed commands / seconds of the replay itself (``EngineHost.replay_s``), in this
  process with the kernels already compiled.
  Correct = same state hash as before the restart and every command replayed. Peer: reading the
  same frames with ``WalReader.iter_frames`` and nothing else (the I/O + framing floor).
* ``restart`` — the same WAL size written with the default periodic snapshots
  (``engine.snapshot_every``): a fresh ``python`` process imports the engine, loads its kernels
  (numba cache), restores the newest snapshot and replays the tail: value = seconds from process
  start to an engine ready to sequence, measured inside that process from its first line.
* ``edge catch-up`` — the edge's read model and market state rebuilt from every durable EVENTS
  frame of the WAL (``RingGateway.catch_up``, what an edge does before it reports ready); then the
  same from an edge snapshot taken at the end (``pipeline.edge_snapshot``).
* ``publisher rebuild`` — ``Publisher.start()`` on the same WAL: the market state rebuilt from
  seq 1 and the current state published (how long market data is down after a publisher restart
  without a snapshot); then the same from a publisher snapshot taken at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engine_wal import deposits, mix
from bench.harness import Result, rate
from pipeline import config

BATCH = 256
TARGET_REPLAY = 5_000_000
TARGET_RESTART_S = 2.0


def _cfg(data: str, snapshot_every: int) -> config.Config:
    return config.load(env={"SPOTX_DATA_DIR": data, "SPOTX_ENGINE_DURABILITY": "async",
                            "SPOTX_ENGINE_MAX_ORDERS": str(1 << 20),
                            "SPOTX_ENGINE_SNAPSHOT_EVERY": str(snapshot_every)})


def _tmp() -> str:
    var = Path.cwd() / "var"
    return tempfile.mkdtemp(prefix="spotx-bench-recovery-", dir=str(var) if var.is_dir() else None)


def write_wal(cfg: config.Config, n: int) -> tuple[int, int]:
    """``n`` mix commands (+ deposits) through EngineHost.sequence; (last seq, state hash)."""
    from pipeline.engine_proc import EngineHost

    host = EngineHost(cfg, attach_rings=False)
    host.sequence(deposits())
    cmds = mix(n, host.next_seq)
    for i in range(0, n, BATCH):
        host.sequence(cmds[i:i + BATCH])
        host.reap_snapshot(block=True)  # a periodic snapshot completes at its seq (forked child)
    host.writer.sync()
    last, h = host.next_seq - 1, int(host.engine.state_hash())
    host.close()
    return last, h


def _replay(cfg: config.Config, last: int, h: int) -> Result:
    from pipeline.engine_proc import EngineHost, wal_path
    from pipeline.wal import WalReader

    t0 = time.perf_counter()
    host = EngineHost(cfg, attach_rings=False)
    total = time.perf_counter() - t0
    dt = host.replay_s
    ok = host.replayed == last and int(host.engine.state_hash()) == h and host.snap_seq == 0
    host.close()
    t0 = time.perf_counter()
    reader = WalReader(wal_path(cfg))
    frames = sum(1 for _ in reader.iter_frames(1))
    peer_dt = time.perf_counter() - t0
    reader.close()
    return Result(f"recovery.replay.{last // 1000}k", "commands/s", rate(last, dt), correct=ok,
                  notes=f"{last:,} commands replayed and compared in {dt:.2f} s (no snapshot, "
                        f"kernels compiled; EngineHost() in all {total:.2f} s incl. state "
                        f"allocation and WAL open); target >= {TARGET_REPLAY:,}/s: "
                        f"{'met' if rate(last, dt) >= TARGET_REPLAY else 'NOT met'}; peer: "
                        f"reading the same {frames:,} frames only").with_peer(
        "WAL frames read only (commands/s)", rate(last, peer_dt))


_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from engine.warm import warm
from pipeline import config
from pipeline.engine_proc import EngineHost
warm()
t_warm = time.perf_counter()
cfg = config.load(sys.argv[2] if len(sys.argv) > 2 else None, env=json.loads(sys.argv[1]))
host = EngineHost(cfg, attach_rings=False)
t_ready = time.perf_counter()
print(json.dumps({"warm_s": t_warm - t0, "restore_s": t_ready - t_warm, "total_s": t_ready - t0,
                  "snap_seq": host.snap_seq, "replayed": host.replayed,
                  "hash": int(host.engine.state_hash()), "migrated": host.engine.migrated}))
host.close()
"""


def _engine_child(cfg: config.Config, data: str, toml: Path | None = None) -> dict[str, Any]:
    """A fresh process restores the engine (``_CHILD``); its timings and state."""
    env = {"SPOTX_DATA_DIR": data, "SPOTX_ENGINE_DURABILITY": "async",
           "SPOTX_ENGINE_MAX_ORDERS": str(1 << 20),
           "SPOTX_ENGINE_SNAPSHOT_EVERY": str(cfg.engine.snapshot_every)}
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(env),
                          *([str(toml)] if toml else [])], capture_output=True,
                         text=True, timeout=600, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _restart(cfg: config.Config, data: str, last: int, h: int) -> Result:
    r = _engine_child(cfg, data)
    ok = r["hash"] == h and r["snap_seq"] + r["replayed"] == last
    return Result(f"recovery.restart.{last // 1000}k", "s", r["total_s"], correct=ok,
                  notes=f"fresh process -> engine ready: import + kernels from numba's cache "
                        f"{r['warm_s']:.2f} s, snapshot at seq {r['snap_seq']:,} restored + "
                        f"{r['replayed']:,} commands replayed {r['restore_s']:.2f} s "
                        f"(snapshot_every {cfg.engine.snapshot_every:,}); target < "
                        f"{TARGET_RESTART_S} s for 10 M WAL records: "
                        f"{'met' if r['total_s'] < TARGET_RESTART_S else 'NOT met'} at this size")


def _archive(cfg: config.Config, last: int) -> Result:
    """``spotx wal prune``'s move: every segment but the writer's into an archive, gzip'd (the
    default), then back (``unarchive``); peer: the same move without compression to another
    filesystem (/dev/shm when it is one: a copy, as to a cold-storage volume)."""
    from pipeline.engine_proc import wal_path
    from pipeline.wal.archive import archive, unarchive

    wal = wal_path(cfg)
    arch = Path(cfg.data_dir) / "bench-archive"
    t0 = time.perf_counter()
    moved = archive(wal, arch, last + 1)
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    back = unarchive(wal, arch)
    dt_back = time.perf_counter() - t1
    raw = sum(m.bytes for m in moved)
    stored = sum(m.stored_bytes for m in moved)
    shm = Path("/dev/shm")
    other = Path(tempfile.mkdtemp(prefix="spotx-bench-arch-", dir=str(shm) if shm.is_dir()
                                  else None))
    try:
        t2 = time.perf_counter()
        plain = archive(wal, other, last + 1, compress=False)
        dt_plain = time.perf_counter() - t2
        unarchive(wal, other)
    finally:
        shutil.rmtree(other, ignore_errors=True)
    ok = len(moved) == len(back) == len(plain) > 0
    return Result(f"recovery.archive.{last // 1000}k", "MB/s", raw / 1e6 / dt, correct=ok,
                  notes=f"{len(moved)} segments, {raw / 1e6:.0f} MB of WAL gzip'd to "
                        f"{stored / 1e6:.1f} MB (x{raw / max(stored, 1):.1f}) in {dt:.2f} s, put "
                        f"back in {dt_back:.2f} s; peer: a plain copy to {other.parent}"
                  ).with_peer("plain copy (MB/s)", raw / 1e6 / dt_plain)


def _stop_and_carry_over(cfg: config.Config, data: str, last: int, h: int,
                         restart: Result) -> list[Result]:
    """What a clean stop now adds (the engine snapshots the end of the WAL, inline) and what the
    next start costs under a config that lists one more symbol and asset (the snapshot carried
    over, and the new config's own snapshot written before ready), against a plain restart."""
    from engine.snapshot import load
    from pipeline.engine_proc import EngineHost

    host = EngineHost(cfg, attach_rings=False)
    t0 = time.perf_counter()
    manifest = host.snapshot()
    dt = time.perf_counter() - t0
    host.close()
    assert manifest is not None
    t1 = time.perf_counter()
    st, _ = load(manifest, cfg)
    load_s = time.perf_counter() - t1
    from engine._batch import state_hash

    size = sum(p.stat().st_size for p in manifest.parent.glob(manifest.stem + ".*"))
    stop = Result(f"recovery.stop_snapshot.{last // 1000}k", "s", dt,
                  correct=int(state_hash(st)) == h,
                  notes=f"the engine's snapshot at a clean stop, inline (max_orders "
                        f"{cfg.engine.max_orders:,}; {size / 1e6:.1f} MB deflated on disk); "
                        f"peer: loading it back").with_peer("snapshot load (s)", load_s)
    toml = Path(data) / "listed.toml"
    toml.write_text(config.DEFAULT_TOML.read_text() + LISTING)
    r = _engine_child(cfg, data, toml)
    ok = (r["hash"] == h and r["snap_seq"] == last and r["replayed"] == 0
          and bool(r["migrated"]) and r["migrated"][0] == "additive")
    carry = Result(f"recovery.carry_over.{last // 1000}k", "s", r["total_s"], correct=ok,
                   notes=f"fresh process -> engine ready under a config with one more asset and "
                         f"symbol: the snapshot at seq {r['snap_seq']:,} carried over, and the new "
                         f"config's snapshot written, in {r['restore_s']:.2f} s (import + "
                         f"kernels {r['warm_s']:.2f} s); peer: the plain restart above"
                   ).with_peer("plain restart (s)", restart.value)
    return [stop, carry]


# one more asset and a symbol on it, appended to pipeline/default.toml (also by the config-change
# tests)
LISTING = """
[[assets]]
name = "NEW"
scale = 6

[[symbols]]
name = "NEW-USDT"
tick = "0.001"
lot = "0.1"
min_qty = "0.1"
max_qty = "100000"
min_notional = "0.01"
max_price = "100000"
maker_fee_bps = 1
taker_fee_bps = 3
price_band_bps = 800
"""


def _edge(cfg: config.Config) -> Any:
    from edge.market_state import MarketState
    from edge.orders import Validator
    from edge.readmodel import ReadModel
    from pipeline.link import RingGateway

    units = Validator(cfg).units_by_id
    rm = ReadModel(units, {a.asset_id: a for a in cfg.assets})
    gw = RingGateway(cfg, 1, rm, attach_rings=False)
    gw.market = MarketState(cfg)
    return gw


def _edge_catch_up(cfg: config.Config, last: int) -> list[Result]:
    """The edge's start: the whole WAL, then (after a snapshot at the end) from the snapshot."""
    from pipeline import edge_snapshot

    gw = _edge(cfg)
    t0 = time.perf_counter()
    n = gw.catch_up()
    dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    gw.snapshot(in_child=False)
    snap_s = time.perf_counter() - t0
    size = edge_snapshot.snapshot_path(cfg).stat().st_size
    open_orders = len(gw.readmodel.open_index)
    gw.reader.close()
    gw2 = _edge(cfg)
    t0 = time.perf_counter()
    replayed = gw2.catch_up()
    dt2 = time.perf_counter() - t0
    ok2 = gw2.restored_from > 0 and replayed == 0 and \
        len(gw2.readmodel.open_index) == open_orders
    gw2.reader.close()
    edge_snapshot.snapshot_path(cfg).unlink()
    return [
        Result(f"recovery.edge_catch_up.{last // 1000}k", "events/s", rate(n, dt),
               correct=n > last,
               notes=f"edge read model + market state rebuilt from all {n:,} durable events of "
                     f"{last:,} commands in {dt:.2f} s (no snapshot: linear in the WAL)"),
        Result(f"recovery.edge_from_snapshot.{last // 1000}k", "s", dt2, correct=ok2,
               notes=f"the same edge state loaded from its snapshot ({size / 1e6:.1f} MB, "
                     f"{open_orders:,} open orders; writing it took {snap_s:.2f} s, in a forked "
                     f"child when periodic) and nothing left to replay; peer: the full catch-up "
                     f"time").with_peer("full catch-up s", dt),
    ]


def _publisher_rebuild(cfg: config.Config, last: int) -> list[Result]:
    """A publisher's start: books, trades, candles and tickers rebuilt from seq 1, silently,
    before it publishes the current state; then the same from a publisher snapshot taken at the
    end (``pipeline.publisher.snapshot``). Market data is down that long after a publisher
    restart; order entry is not affected."""
    import uuid

    from pipeline.publisher import snapshot
    from pipeline.publisher.process import Publisher

    def start() -> tuple[Publisher, float, Path]:
        tag = uuid.uuid4().hex[:8]
        run_dir = Path(cfg.data_dir) / f"run-bench-{tag}"
        pub = Publisher(cfg, run_dir=run_dir, ring_name=f"spotx-{cfg.instance}-benchmd{tag}",
                        stats=False)
        t0 = time.perf_counter()
        pub.start()
        return pub, time.perf_counter() - t0, run_dir

    snapshot.snapshot_path(cfg).unlink(missing_ok=True)
    pub, dt, run_dir = start()
    events, seq = pub.events, pub.deriver.seq
    try:
        t0 = time.perf_counter()
        wrote = pub.snapshot(in_child=False)
        snap_s = time.perf_counter() - t0
    finally:
        pub.close(unlink=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    size = snapshot.snapshot_path(cfg).stat().st_size if wrote else 0
    pub2, dt2, run_dir = start()
    ok2 = wrote and pub2.restored_from == last + 1 and pub2.events == 0 and pub2.deriver.seq == last
    pub2.close(unlink=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    snapshot.snapshot_path(cfg).unlink(missing_ok=True)
    return [
        Result(f"recovery.publisher_rebuild.{last // 1000}k", "events/s", rate(events, dt),
               correct=seq == last and events > last,
               notes=f"a publisher start without a snapshot: market state rebuilt from all "
                     f"{events:,} durable events of {last:,} commands (linear in the WAL) and the "
                     f"current state published, in {dt:.2f} s = the market-data outage of such a "
                     "restart (order entry goes on)"),
        Result(f"recovery.publisher_from_snapshot.{last // 1000}k", "s", dt2, correct=ok2,
               notes=f"the same publisher state loaded from its snapshot ({size / 1e6:.1f} MB; "
                     f"writing it took {snap_s:.2f} s, in a forked child when periodic) and "
                     "nothing left to rebuild; peer: the full rebuild time").with_peer(
                         "full rebuild s", dt),
    ]


def run(quick: bool) -> list[Result]:
    n = 1_000_000 if quick else 10_000_000
    out: list[Result] = []
    data = _tmp()
    try:
        cfg = _cfg(data, 1 << 40)  # no snapshot: the whole WAL is replayed
        last, h = write_wal(cfg, n)
        out.append(_replay(cfg, last, h))
        out += _edge_catch_up(cfg, last)
        out += _publisher_rebuild(cfg, last)
        out.append(_archive(cfg, last))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    data = _tmp()
    try:
        cfg = _cfg(data, config.load(env={}).engine.snapshot_every)
        last, h = write_wal(cfg, n)
        out.append(_restart(cfg, data, last, h))
        out += _stop_and_carry_over(cfg, data, last, h, out[-1])
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return out
