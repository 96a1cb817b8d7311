"""bench recovery on a small WAL: replay equals the pre-restart state, the edge catches up on every
event, a publisher rebuilds to the WAL's last seq, a fresh process restores snapshot + tail to the
same state hash, a clean-stop snapshot loads back, and a start under a config with one more symbol
carries it over to the same state hash. No timing is asserted."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from bench import recovery


def test_replay_catch_up_and_restart_on_a_small_wal() -> None:
    data = recovery._tmp()
    try:
        cfg = recovery._cfg(data, 1 << 40)
        last, h = recovery.write_wal(cfg, 20_000)
        rep = recovery._replay(cfg, last, h)
        assert rep.correct is True and rep.value and rep.value > 0 and rep.peer_value
        cu, snap = recovery._edge_catch_up(cfg, last)
        assert cu.correct is True and cu.value and cu.value > 0
        assert snap.correct is True and snap.value is not None and snap.peer_value
        pub, pub_snap = recovery._publisher_rebuild(cfg, last)  # from seq 1, then from a snapshot
        assert pub.correct is True and pub.value and pub.value > 0
        assert f"of {last:,} commands" in (pub.notes or "")
        assert pub_snap.correct is True and pub_snap.value is not None and pub_snap.peer_value
        assert not [p for p in Path(data).iterdir() if p.name.startswith("run-bench-")]
    finally:
        shutil.rmtree(data, ignore_errors=True)
    data = recovery._tmp()
    try:  # small segments, so that the archive row has some to move
        base = recovery._cfg(data, 1 << 40)
        cfg = dataclasses.replace(base, engine=dataclasses.replace(base.engine,
                                                                   wal_segment_bytes=128 << 10))
        last, h = recovery.write_wal(cfg, 20_000)
        arch = recovery._archive(cfg, last)
        assert arch.correct is True and arch.value and arch.peer_value
        assert "gzip'd" in (arch.notes or "")
        assert recovery._replay(cfg, last, h).correct is True  # everything was put back
    finally:
        shutil.rmtree(data, ignore_errors=True)
    data = recovery._tmp()
    try:
        cfg = recovery._cfg(data, 8_000)  # snapshots at 8k and 16k, then a tail to replay
        last, h = recovery.write_wal(cfg, 20_000)
        rs = recovery._restart(cfg, data, last, h)
        assert rs.correct is True and rs.value and rs.value > 0
        assert "snapshot at seq 16," in (rs.notes or "") and "replayed" in (rs.notes or "")
        stop, carry = recovery._stop_and_carry_over(cfg, data, last, h, rs)
        assert stop.correct is True and stop.value and stop.peer_value  # the snapshot loads back
        assert carry.correct is True and carry.peer_value == rs.value  # same hash, nothing replayed
        assert f"snapshot at seq {last:,} carried over" in (carry.notes or "")
    finally:
        shutil.rmtree(data, ignore_errors=True)
