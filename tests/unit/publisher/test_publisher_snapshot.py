"""Publisher snapshots on a real WAL (the engine's own code path, with trades): a publisher that
starts from its snapshot rebuilds only the WAL after it and ends in exactly the state of a
publisher that rebuilt everything (books with seq and checksum, open candles, tickers, trade
history); a periodic snapshot is written by a forked child while the loop goes on; a snapshot of
another WAL is never applied."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench import recovery
from bench.engine_wal import mix
from pipeline import config
from pipeline.publisher import snapshot
from pipeline.publisher.process import Publisher

NOW_MS = 1_900_000_000_000  # a fixed clock for the tickers' 24 h window


def _cfg(data: Path) -> config.Config:
    return recovery._cfg(str(data), 1 << 40)


def _extend(cfg: config.Config, n: int, seed: int) -> int:
    """``n`` more mix commands through the engine host (it replays the WAL first)."""
    from pipeline.engine_proc import EngineHost

    host = EngineHost(cfg, attach_rings=False)
    try:
        cmds = mix(n, host.next_seq, seed=seed)
        for i in range(0, n, 256):
            host.sequence(cmds[i:i + 256])
        host.committer.sync_now()
        return host.next_seq - 1
    finally:
        host.close()


def _pub(cfg: config.Config, tmp: Path, every: int = 0) -> Publisher:
    tag = uuid.uuid4().hex[:8]
    return Publisher(cfg, run_dir=tmp / f"run-{tag}", ring_name=f"spotx-{cfg.instance}-t{tag}",
                     capacity=1 << 12, stats=False, snapshot_every_events=every)


def _state(p: Publisher) -> tuple[Any, ...]:
    d = p.deriver
    return (d.seq, d.snapshots(), d.current_candles(), d.tickers(NOW_MS, everything=True))


@pytest.fixture
def wal(tmp_path: Path) -> tuple[config.Config, int]:
    cfg = _cfg(tmp_path / "data")
    last, _ = recovery.write_wal(cfg, 20_000)
    return cfg, last


def test_a_publisher_from_its_snapshot_equals_a_full_rebuild(tmp_path: Path, wal: Any) -> None:
    cfg, last = wal
    a = _pub(cfg, tmp_path, every=1 << 40)
    a.start()
    assert a.restored_from == 0 and a.deriver.seq == last
    a.close(final_snapshot=True)  # a clean stop writes one
    snap = snapshot.read(cfg, _wal_id(cfg), last)
    assert snap is not None and snap.resume_seq == last + 1

    last2 = _extend(cfg, 5_000, seed=11)
    b = _pub(cfg, tmp_path)
    b.start()
    assert b.restored_from == last + 1 and b.deriver.seq == last2
    tail_events = b.events
    state_b = _state(b)
    b.close()
    shutil.move(snapshot.snapshot_path(cfg), tmp_path / "aside.pickle")  # C: no snapshot
    c = _pub(cfg, tmp_path)
    c.start()
    assert c.restored_from == 0 and c.events > tail_events > 0  # B rebuilt only the tail
    assert _state(c) == state_b
    trades_b = {sid: list(m.trades) for sid, m in b.deriver.syms.items()}
    assert {sid: list(m.trades) for sid, m in c.deriver.syms.items()} == trades_b
    assert any(trades_b.values())  # the workload crossed: there is a trade history to compare
    c.close()


def test_periodic_snapshots_are_written_by_a_child_while_publishing(tmp_path: Path,
                                                                    wal: Any) -> None:
    cfg, last = wal
    p = _pub(cfg, tmp_path, every=2_000)
    p.start()
    assert not snapshot.snapshot_path(cfg).exists()  # the silent rebuild writes none
    last2 = _extend(cfg, 5_000, seed=12)
    for _ in range(10_000):
        p.step()
        if p.deriver.seq == last2 and not p._snap_pid:
            break
    p.close()
    assert p.deriver.seq == last2 and p.snapshots_written >= 1
    snap = snapshot.read(cfg, _wal_id(cfg), last2)
    assert snap is not None and last + 1 < snap.resume_seq <= last2 + 1


def test_a_snapshot_of_another_wal_is_not_applied(tmp_path: Path, wal: Any) -> None:
    cfg, last = wal
    a = _pub(cfg, tmp_path, every=1 << 40)
    a.start()
    a.close(final_snapshot=True)
    other = _cfg(tmp_path / "other")
    last_other, _ = recovery.write_wal(other, 3_000)
    path = snapshot.snapshot_path(other)
    path.parent.mkdir(parents=True)
    shutil.copy(snapshot.snapshot_path(cfg), path)
    b = _pub(other, tmp_path)
    b.start()
    assert b.restored_from == 0 and b.deriver.seq == last_other  # rebuilt from seq 1
    b.close()


def _wal_id(cfg: config.Config) -> int:
    from pipeline.wal import read_durable

    d = read_durable(Path(cfg.data_dir) / "wal")
    assert d is not None
    return int(d.wal_id)
