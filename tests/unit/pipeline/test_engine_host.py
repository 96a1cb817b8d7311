"""EngineHost (the engine process's loop body): a batch whose events outgrow the buffer (a big
CANCEL_ALL split by the kernel, status FULL) is journaled as one EVENTS frame of whole 128-byte
EVENT records that replay reproduces byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline import config
from pipeline.engine_proc import EngineHost, snap_path, wal_path
from pipeline.records import COMMAND, EVENT, Cmd, Ev, OrdType, Side, Stp, Tif
from pipeline.wal import FrameKind, WalReader


def _cfg(data: Path) -> config.Config:
    return config.load(env={"SPOTX_DATA_DIR": str(data), "SPOTX_ENGINE_MAX_ORDERS": "65536",
                            "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(8 << 20),
                            "SPOTX_ENGINE_BATCH_MAX": "64"})


def test_full_split_batch_is_journaled_whole_and_replays(tmp_path: Path) -> None:
    host = EngineHost(_cfg(tmp_path), attach_rings=False)
    dep = np.zeros(1, COMMAND)
    dep["kind"], dep["account"], dep["asset"], dep["amount"] = Cmd.DEPOSIT, 7, 1, 10**15
    host.sequence(dep)
    n = 3000  # far more CANCELED events than a 64-command batch buffer holds
    orders = np.zeros(n, COMMAND)
    orders["kind"], orders["account"], orders["symbol"] = Cmd.NEW_ORDER, 7, 1
    orders["side"], orders["otype"], orders["tif"], orders["stp"] = Side.BUY, OrdType.LIMIT, Tif.GTC, Stp.NONE
    orders["price"] = 2_000_000 - np.arange(n) % 100  # 2 USDT notional > minNotional
    orders["qty"] = 1
    for i in range(0, n, 64):
        host.sequence(orders[i:i + 64])
    ca = np.zeros(1, COMMAND)
    ca["kind"], ca["account"], ca["symbol"], ca["scope"] = Cmd.CANCEL_ALL, 7, 1, 3
    ne = host.sequence(ca)
    assert ne > len(host.events)  # the kernel had to split it
    host.committer.wait_durable(host.next_seq - 1, 10)
    hash_before = host.engine.state_hash()
    host.close()
    reader = WalReader(wal_path(_cfg(tmp_path)))
    try:
        last = [f for f in reader.iter_frames(1) if f.kind == FrameKind.EVENTS][-1]
        evs = np.frombuffer(last.payload, EVENT)
        assert len(evs) == last.count == ne  # whole 128-byte records, as many as announced
        canceled = evs[evs["kind"] == Ev.CANCELED]
        assert len(canceled) == n and set(canceled["seq"].tolist()) == {last.first_seq}
    finally:
        reader.close()
    again = EngineHost(_cfg(tmp_path), attach_rings=False)  # replay compares events byte for byte
    try:
        assert again.engine.state_hash() == hash_before
    finally:
        again.close()


def test_an_idle_loop_step_returns_with_its_batch_durable(tmp_path: Path) -> None:
    """``step`` syncs inline when nothing else waits (no hand-off to the flusher thread)."""
    from ringbuf import SpscRing

    cfg = _cfg(tmp_path)
    host = EngineHost(cfg, attach_rings=False)
    ring = SpscRing.create(f"spotx-test-{os.getpid()}-cmd", COMMAND, 64)
    try:
        host.cmd_rings.append(ring)
        dep = np.zeros(3, COMMAND)
        dep["kind"], dep["account"], dep["asset"], dep["amount"] = Cmd.DEPOSIT, 7, 1, 10**9
        assert ring.try_push(dep) == 3
        assert host.step() == 3
        assert host.writer.durable_seq == host.next_seq - 1 == 3  # durable on return
        assert host.committer.statistics().requests == 0  # the flusher was not asked
    finally:
        host.cmd_rings.remove(ring)
        host.close()
        ring.close()
        ring.unlink()


def test_step_pops_only_rings_with_records_and_takes_admin_notes(tmp_path: Path) -> None:
    """``step`` checks each ring's cursors before popping: an idle poll pops nothing (the rings'
    empty-pop counters stay put), and a poll takes every ring that has records, commands first,
    then admin records with their audit notes."""
    from pipeline.records import ADMIN
    from pipeline.wal import FrameKind, WalReader
    from ringbuf import SpscRing

    cfg = _cfg(tmp_path)
    host = EngineHost(cfg, attach_rings=False)
    pid = os.getpid()
    rings = [SpscRing.create(f"spotx-test-{pid}-c1", COMMAND, 64),
             SpscRing.create(f"spotx-test-{pid}-c2", COMMAND, 64),
             SpscRing.create(f"spotx-test-{pid}-a1", ADMIN, 8),
             SpscRing.create(f"spotx-test-{pid}-a2", ADMIN, 8)]
    try:
        host.cmd_rings += rings[:2]
        host.adm_rings += rings[2:]
        for r in rings:
            r.claim_consumer()
        before = [r.statistics().empty_waits for r in rings]
        assert [host.step() for _ in range(100)] == [0] * 100
        assert [r.statistics().empty_waits for r in rings] == before  # nothing was popped
        dep = np.zeros(2, COMMAND)
        dep["kind"], dep["account"], dep["asset"], dep["amount"] = Cmd.DEPOSIT, 7, 1, 10**9
        assert rings[1].try_push(dep) == 2  # the second command ring only
        adm = np.zeros(1, ADMIN)
        adm["cmd"]["kind"], adm["cmd"]["account"] = Cmd.DEPOSIT, 8
        adm["cmd"]["asset"], adm["cmd"]["amount"] = 1, 5
        note = b'{"actor":"ops","reason":"test","ticket":"T-1"}'
        adm["note_len"] = len(note)
        adm["note"][0, :len(note)] = np.frombuffer(note, np.uint8)
        assert rings[3].try_push(adm) == 1  # the second admin ring only
        assert host.step() == 3
        assert host.step() == 0
        assert host.writer.durable_seq == 3
    finally:
        for r in rings:
            (host.cmd_rings if r.dtype == COMMAND else host.adm_rings).remove(r)
        host.close()
        for r in rings:
            r.close()
            r.unlink()
    reader = WalReader(wal_path(cfg))
    try:
        frames = list(reader.iter_frames(1))
        cmds = np.concatenate([np.frombuffer(f.payload, COMMAND) for f in frames
                               if f.kind == FrameKind.COMMANDS])
        assert cmds["account"].tolist() == [7, 7, 8]  # commands first, then the admin record
        blobs = [(f.first_seq, bytes(f.payload)) for f in frames if f.kind == FrameKind.BLOB]
        assert blobs == [(3, note)]
    finally:
        reader.close()


def test_a_periodic_snapshot_is_written_by_a_child_at_its_seq_while_the_engine_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic snapshot is written from the copy-on-write image as of the fork: the engine
    applies more batches meanwhile, and the snapshot still holds exactly the state at its seq
    (restoring it gives that seq's state hash). Only the newest ``snapshots_keep`` stay. The
    child paces its npz to the disk before the fsync (``pipeline.diskio``)."""
    from bench.engine_wal import deposits, mix
    from engine import Engine
    from engine.snapshot import manifests, read_manifest
    from pipeline import diskio

    paced_dir = tmp_path / "paced"
    paced_dir.mkdir()
    real = diskio.write_back_paced

    def paced(fd: int, size: int) -> None:  # runs in the forked child: leaves a file behind
        with open(paced_dir / str(os.getpid()), "a") as f:
            f.write(f"{size}\n")
        real(fd, size)

    monkeypatch.setattr(diskio, "write_back_paced", paced)

    cfg = config.load(env={"SPOTX_DATA_DIR": str(tmp_path), "SPOTX_ENGINE_MAX_ORDERS": "65536",
                           "SPOTX_ENGINE_SNAPSHOT_EVERY": "2000",
                           "SPOTX_ENGINE_SNAPSHOTS_KEEP": "2"})
    host = EngineHost(cfg, attach_rings=False)
    hashes: dict[int, int] = {}
    children = 0
    try:
        host.sequence(deposits())
        cmds = mix(9_000, host.next_seq, seed=5)
        since_fork = -1
        for i in range(0, len(cmds), 250):
            before = host._snap_pid
            host.sequence(cmds[i:i + 250])
            hashes[host.next_seq - 1] = host.engine.state_hash()
            if host._snap_pid and host._snap_pid != before:
                children += 1
                since_fork = 0
            elif since_fork >= 0:
                since_fork += 1
                if since_fork == 2:  # two more batches applied while the child writes
                    host.reap_snapshot(block=True)
                    since_fork = -1
        host.committer.sync_now()
    finally:
        host.close()  # waits for the last child
    assert children >= 2 and host.snapshots_written == children
    per_child = [[int(x) for x in p.read_text().split()] for p in paced_dir.iterdir()]
    assert len(per_child) == children  # each child paced its npz (the manifest is a few KiB)
    assert all(len(sizes) == 1 and sizes[0] > 0 for sizes in per_child), per_child
    npz_sizes = {p.stat().st_size for p in snap_path(cfg).glob("*.npz")}
    assert npz_sizes <= {sizes[0] for sizes in per_child}  # the kept ones went through it
    kept = manifests(snap_path(cfg))
    assert len(kept) == 2  # snapshots_keep
    assert len(list(snap_path(cfg).glob("*.npz"))) == 2
    for m in kept:
        seq = int(read_manifest(m)["seq"])
        assert seq < host.next_seq - 1  # the engine went on after the fork
        assert Engine.restore(m, cfg).state_hash() == hashes[seq]
