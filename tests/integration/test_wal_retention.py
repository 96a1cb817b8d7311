"""``spotx wal prune`` (pipeline.retention): the positions of every WAL reader are found from real
files and a real ledger; what is archived is exactly what none of them reads again; after the
prune the engine, an edge, the publisher and settlement all restart to the same state; a reader
that would need an archived seq refuses to start, and ``unarchive`` brings the log back."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from test_edge_snapshot import edge, view

from bench import recovery
from bench.engine_wal import mix
from pipeline import config, edge_snapshot, retention
from pipeline.engine_proc import EngineHost
from pipeline.publisher import snapshot as md_snapshot
from pipeline.publisher.process import Publisher
from pipeline.wal import WalGapError, WalLocked
from pipeline.wal.archive import first_retained_seq, unarchive
from pipeline.wal.format import list_segments
from settle.catalog import Catalog, sync
from settle.embedded import EmbeddedSettler
from settle.invariants import check_against_wal
from settle.ledger import LedgerWriter
from settle.migrate import migrate


def _cfg(data: Path, dsn: str, **extra: str) -> config.Config:
    env = {"SPOTX_DATA_DIR": str(data), "SPOTX_ENGINE_DURABILITY": "async",
           "SPOTX_ENGINE_MAX_ORDERS": str(1 << 16), "SPOTX_ENGINE_SNAPSHOT_EVERY": "3000",
           "SPOTX_ENGINE_SNAPSHOTS_KEEP": "2", "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(256 << 10),
           "SPOTX_SETTLE_PG_DSN": dsn, **extra}
    return config.load(env=env)


def _trade(cfg: config.Config, n: int, seed: int) -> tuple[int, int]:
    host = EngineHost(cfg, attach_rings=False)
    try:
        cmds = mix(n, host.next_seq, seed=seed)
        for i in range(0, n, 256):
            host.sequence(cmds[i:i + 256])
            host.reap_snapshot(block=True)
        host.committer.sync_now()
        return host.next_seq - 1, int(host.engine.state_hash())
    finally:
        host.close()


def _pub(cfg: config.Config, tmp: Path) -> Publisher:
    tag = uuid.uuid4().hex[:8]
    return Publisher(cfg, run_dir=tmp / f"run-{tag}", ring_name=f"spotx-{cfg.instance}-t{tag}",
                     capacity=1 << 12, stats=False, snapshot_every_events=1 << 40)


def snapshot_readers(cfg: config.Config, tmp: Path) -> None:
    """An edge and a publisher catch up with the WAL and write their snapshots (a clean stop)."""
    gw = edge(cfg)
    gw.catch_up()
    assert gw.snapshot(in_child=False)
    gw.reader.close()
    p = _pub(cfg, tmp)
    p.start()
    p.close(final_snapshot=True)


def _settle(cfg: config.Config) -> int:
    """Run the real embedded settler over the WAL as it is; returns its settled seq."""
    async def go() -> int:
        cat = Catalog.from_config(cfg)
        await migrate(cfg.settle.pg_dsn)
        conn = await asyncpg.connect(cfg.settle.pg_dsn)
        await sync(conn, cat)
        w = LedgerWriter(cfg.settle.pg_dsn, retry_max_s=10)
        try:
            s = EmbeddedSettler(Path(cfg.data_dir) / "wal", w, cat)
            await s.start()
            await s.drain()
            await s.close()
            rep = await check_against_wal(conn, Path(cfg.data_dir) / "wal", cat,
                                          from_seq=first_retained_seq(Path(cfg.data_dir) / "wal"))
            assert rep.ok, rep.violations
            return int(s.settled_seq)
        finally:
            await w.close()
            await conn.close()
    return asyncio.run(go())


@pytest.fixture
def stack(tmp_path: Path, pg_database: str) -> Any:
    data = Path(recovery._tmp())
    cfg = _cfg(data, pg_database)
    recovery.write_wal(cfg, 200)  # the deposits the mix trades against
    yield cfg
    shutil.rmtree(data, ignore_errors=True)


def test_prune_archives_only_what_no_reader_needs_and_every_reader_restarts(
        stack: config.Config, tmp_path: Path) -> None:
    cfg = stack
    wal = Path(cfg.data_dir) / "wal"
    arch = tmp_path / "archive"
    last, _ = _trade(cfg, 12_000, seed=3)
    # every reader somewhere before the end: settlement caught up to here...
    settled = _settle(cfg)
    assert settled == last
    # ...the publisher's and the edge's snapshots at the end, then more trading
    snapshot_readers(cfg, tmp_path)
    last, h = _trade(cfg, 4_000, seed=4)
    segs = list_segments(wal)
    assert len(segs) > 10

    ns = {n.reader: n for n in retention.needs(cfg)}
    assert set(ns) == {"engine", "edge", "publisher", "settlement"}
    snaps = sorted(int(m.name.split("-")[1].split(".")[0])
                   for m in (Path(cfg.data_dir) / "snapshots").glob("snapshot-*.json"))
    assert len(snaps) == 2 and ns["engine"].seq == snaps[0] + 1  # the oldest of the two kept
    assert ns["settlement"].seq == settled
    assert ns["edge"].seq == ns["publisher"].seq == settled + 1
    p1 = retention.plan(cfg)
    assert p1.keep_from == min(n.seq for n in ns.values()) and p1.segments
    assert p1.segments[-1][2] <= p1.keep_from  # the last archived ends at or before keep_from
    seg_of_keep = max((s for s in segs if s.first_seq <= p1.keep_from), key=lambda s: s.segno)
    assert [s[0] for s in p1.segments] == [s.segno for s in segs if s.segno < seg_of_keep.segno]
    assert retention.plan(cfg, before_seq=segs[2].first_seq).segments == p1.segments[:2]

    with pytest.raises(retention.RetentionError, match="reason and a ticket"):
        retention.apply(cfg, arch, reason=" ", ticket="OPS-1", actor="t")
    before = view_all(cfg, tmp_path)
    # online: the engine has the WAL open, appends and syncs while segments move
    host = EngineHost(cfg, attach_rings=False)
    with pytest.raises(WalLocked):
        unarchive(wal, arch)  # putting segments back is offline only
    plan, moved = retention.apply(cfg, arch, reason="disk", ticket="OPS-1", actor="t")
    dp = host.writer.durable_seq
    assert [m.segno for m in moved] == [s[0] for s in p1.segments]
    assert all(m.segno < list_segments(wal)[-1].segno for m in moved) and dp == last
    host.close()
    assert first_retained_seq(wal) == seg_of_keep.first_seq > 1
    log = [json.loads(x) for x in (Path(cfg.data_dir) / retention.LOG).read_text().splitlines()]
    assert log[-1]["ticket"] == "OPS-1" and len(log[-1]["moved"]) == len(moved)
    assert log[-1]["online"] is True
    assert retention.plan(cfg).segments == ()  # idempotent

    # every reader restarts from its position to the same state as before the prune
    host = EngineHost(cfg, attach_rings=False)
    assert host.next_seq - 1 == last and int(host.engine.state_hash()) == h
    host.close()
    assert view_all(cfg, tmp_path) == before
    last, h = _trade(cfg, 2_000, seed=5)
    assert _settle(cfg) == last  # settlement resumes, and the WAL cross-check still agrees

    # a reader whose snapshot is gone would need seq 1: a loud refusal, and unarchive fixes it
    edge_snapshot.snapshot_path(cfg).unlink()
    assert {n.reader: n.seq for n in retention.needs(cfg)}["edge"] == 1
    assert retention.plan(cfg).segments == ()
    with pytest.raises(WalGapError, match="older than the oldest segment"):
        edge(cfg).catch_up()
    unarchive(wal, arch)
    assert first_retained_seq(wal) == 1 and not list(arch.iterdir())
    gw = edge(cfg)
    assert gw.catch_up() > 0 and gw.restored_from == 0
    gw.reader.close()


def view_all(cfg: config.Config, tmp: Path) -> tuple[Any, ...]:
    """What an edge and the publisher hold after a restart (each from its snapshot + tail)."""
    gw = edge(cfg)
    gw.catch_up()
    v = view(gw)
    gw.reader.close()
    p = _pub(cfg, tmp)
    p.start()
    d = p.deriver
    state = (d.seq, d.snapshots(), d.current_candles())
    p.close()
    return v, state


def test_a_config_change_that_voids_the_snapshots_prunes_nothing(stack: config.Config,
                                                                  tmp_path: Path) -> None:
    from pipeline.config import DEFAULT_TOML

    cfg = stack
    _trade(cfg, 8_000, seed=6)
    _settle(cfg)
    snapshot_readers(cfg, tmp_path)
    # new history bounds: every snapshot carries over, nothing changes
    bounds = _cfg(Path(cfg.data_dir), cfg.settle.pg_dsn, SPOTX_MARKET_TRADE_HISTORY="77")
    assert retention.needs(bounds) == retention.needs(cfg)
    # a tick changed: no snapshot fits, every reader would start at seq 1
    toml = tmp_path / "tick.toml"
    toml.write_text(DEFAULT_TOML.read_text().replace('tick = "0.01"', 'tick = "0.1"', 1))
    env = {"SPOTX_DATA_DIR": cfg.data_dir, "SPOTX_ENGINE_DURABILITY": "async",
           "SPOTX_ENGINE_MAX_ORDERS": str(1 << 16), "SPOTX_ENGINE_SNAPSHOT_EVERY": "3000",
           "SPOTX_ENGINE_SNAPSHOTS_KEEP": "2", "SPOTX_SETTLE_PG_DSN": cfg.settle.pg_dsn}
    changed = config.load(toml, env=env)
    ns = {n.reader: n for n in retention.needs(changed)}
    assert ns["engine"].seq == ns["edge"].seq == ns["publisher"].seq == 1
    assert retention.plan(changed).segments == ()


def test_settlement_position_unknown_means_no_prune(stack: config.Config) -> None:
    cfg = stack
    _trade(cfg, 4_000, seed=7)
    down = _cfg(Path(cfg.data_dir), "postgresql://exchange:x@127.0.0.1:1/none")
    with pytest.raises(retention.RetentionError, match="settlement's progress"):
        retention.plan(down)
    off = _cfg(Path(cfg.data_dir), "postgresql://exchange:x@127.0.0.1:1/none",
               SPOTX_SETTLE_ENABLED="false", SPOTX_MARKET_ENABLED="false")
    assert {n.reader for n in retention.needs(off)} == {"engine", "edge"}


def test_the_cli_dry_runs_by_default_and_audits_an_apply(stack: config.Config, tmp_path: Path,
                                                         monkeypatch: Any, capsys: Any) -> None:
    from pipeline import cli

    cfg = stack
    last, _ = _trade(cfg, 12_000, seed=8)
    _settle(cfg)
    snapshot_readers(cfg, tmp_path)
    for k, v in {"SPOTX_DATA_DIR": cfg.data_dir, "SPOTX_SETTLE_PG_DSN": cfg.settle.pg_dsn,
                 "SPOTX_ENGINE_SNAPSHOT_EVERY": "3000", "SPOTX_ENGINE_MAX_ORDERS": str(1 << 16),
                 "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(256 << 10)}.items():
        monkeypatch.setenv(k, v)
    wal = Path(cfg.data_dir) / "wal"
    n0 = len(list_segments(wal))
    assert cli.main(["wal", "prune"]) == 0
    out = capsys.readouterr().out
    assert "would archive" in out and "dry run" in out and "settlement" in out
    assert len(list_segments(wal)) == n0  # a dry run moves nothing
    assert cli.main(["wal", "prune", "--apply"]) == 2  # no reason / ticket
    assert "--reason and --ticket" in capsys.readouterr().err
    assert cli.main(["wal", "prune", "--apply", "--reason", "disk", "--ticket", "OPS-9",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["applied"] and len(doc["segments"]) == n0 - len(list_segments(wal)) > 0
    arch = Path(doc["archive"])
    assert arch == Path(cfg.data_dir) / "wal-archive" and len(list(arch.glob("*.seg.gz"))) == len(
        doc["segments"])
    assert 0 < doc["stored_bytes"] < doc["bytes"]
    assert cli.main(["wal", "unarchive"]) == 0  # a dry run: what the (gzip'd) archive holds
    assert f"holds {len(doc['segments'])} segment(s) from seq 1" in capsys.readouterr().out
    assert cli.main(["wal", "unarchive", "--apply", "--reason", "audit", "--ticket", "OPS-10"]) == 0
    assert "hash chain verifies" in capsys.readouterr().out
    assert len(list_segments(wal)) == n0 and first_retained_seq(wal) == 1
    actions = [json.loads(x)["action"] for x in
               (Path(cfg.data_dir) / retention.LOG).read_text().splitlines()]
    assert actions == ["prune", "unarchive"]
    assert md_snapshot.snapshot_path(cfg).exists() and last > 0


def test_kafka_mode_keeps_what_the_outbox_has_not_produced(stack: config.Config) -> None:
    from pipeline.supervisor import run_dir
    from settle.outbox import write_cursor

    cfg = stack
    last, _ = _trade(cfg, 8_000, seed=9)
    settled = _settle(cfg)  # the ledger is at the end...
    kafka = _cfg(Path(cfg.data_dir), cfg.settle.pg_dsn, SPOTX_SETTLE_MODE="kafka")
    ns = {n.reader: n.seq for n in retention.needs(kafka)}
    assert ns["settlement"] == settled and ns["outbox"] == 1  # ...the outbox produced nothing
    run_dir(kafka).mkdir(parents=True, exist_ok=True)
    write_cursor(run_dir(kafka) / "outbox.cursor", 4_321)
    assert {n.reader: n.seq for n in retention.needs(kafka)}["outbox"] == 4_321
    assert retention.plan(kafka).keep_from <= 4_321


def test_positions_come_from_the_snapshots_meta_without_unpickling(stack: config.Config,
                                                                  tmp_path: Path,
                                                                  monkeypatch: Any) -> None:
    cfg = stack
    _trade(cfg, 6_000, seed=10)
    _settle(cfg)
    snapshot_readers(cfg, tmp_path)
    metas = [edge_snapshot.meta_path(edge_snapshot.snapshot_path(cfg)),
             edge_snapshot.meta_path(md_snapshot.snapshot_path(cfg))]
    assert all(m.is_file() for m in metas)
    with_meta = retention.needs(cfg)

    def no_unpickling(*a: Any, **k: Any) -> Any:
        raise AssertionError("unpickled a snapshot although its meta is there")

    monkeypatch.setattr(edge_snapshot, "inspect", no_unpickling)
    assert retention.needs(cfg) == with_meta
    monkeypatch.undo()
    # a damaged snapshot file under a good meta: its reader would start over, and so says prune
    pickle_path = edge_snapshot.snapshot_path(cfg)
    good = pickle_path.read_bytes()
    pickle_path.write_bytes(good[: len(good) // 2])
    assert {n.reader: n.seq for n in retention.needs(cfg)}["edge"] == 1
    pickle_path.write_bytes(good)
    for m in metas:  # snapshots written before the meta existed: unpickled, the same answer
        m.unlink()
    assert [(n.reader, n.seq) for n in retention.needs(cfg)] == [
        (n.reader, n.seq) for n in with_meta]


def test_a_running_stack_is_pruned_online_even_while_its_engine_is_down(
        stack: config.Config, tmp_path: Path, monkeypatch: Any) -> None:
    """The supervisor may be restarting the engine: the prune must not take the WAL lock then
    (the engine's restarts would fail on it and run out), so it goes online, lock-free."""
    import os

    from pipeline.supervisor import run_dir
    from pipeline.wal.recovery import lock_directory, unlock_directory

    cfg = stack
    _trade(cfg, 12_000, seed=11)
    _settle(cfg)
    snapshot_readers(cfg, tmp_path)
    run_dir(cfg).mkdir(parents=True, exist_ok=True)
    status = run_dir(cfg) / "status.json"
    status.write_text(json.dumps({"stopped": False, "supervisor_pid": os.getpid()}))
    assert retention.stack_running(cfg)
    _, moved = retention.apply(cfg, tmp_path / "a", reason="r", ticket="t", actor="t")
    log = [json.loads(x) for x in (Path(cfg.data_dir) / retention.LOG).read_text().splitlines()]
    assert moved and log[-1]["online"] is True
    fd = lock_directory(Path(cfg.data_dir) / "wal")  # it was never taken, and is free
    unlock_directory(fd)
    from pipeline import cli

    for k, v in {"SPOTX_DATA_DIR": cfg.data_dir, "SPOTX_SETTLE_PG_DSN": cfg.settle.pg_dsn}.items():
        monkeypatch.setenv(k, v)
    # putting segments back needs the stack stopped, not just the lock free
    assert cli.main(["wal", "unarchive", "--apply", "--archive", str(tmp_path / "a")]) == 1
    status.write_text(json.dumps({"stopped": True, "supervisor_pid": os.getpid()}))
    assert not retention.stack_running(cfg)
    retention.apply(cfg, tmp_path / "a", reason="r", ticket="t", actor="t")
    log = [json.loads(x) for x in (Path(cfg.data_dir) / retention.LOG).read_text().splitlines()]
    assert log[-1]["online"] is False  # stopped: under the lock, everything the readers allow
