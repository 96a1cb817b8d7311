"""Snapshots: write -> restore gives the same state hash and the same events afterwards; the
manifest is checked (config hash, digest, state hash) and a bad newest snapshot falls back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import FUNDS

from engine import Engine, EngineError, SnapshotError
from engine.testing import funding, random_commands, small_config


def _engine() -> Engine:
    eng = Engine(small_config())
    eng.apply(funding(range(3, 8), FUNDS), ts_ns=1)
    eng.apply(random_commands(11, 300, first_seq=16), ts_ns=2)
    return eng


def test_restore_gives_the_same_hash_and_the_same_subsequent_events(tmp_path: Path) -> None:
    eng = _engine()
    assert eng.n_orders > 0
    manifest = eng.snapshot(tmp_path, eng.seq, fencing=7)
    doc = json.loads(manifest.read_text())
    assert (doc["seq"], doc["state_hash"], doc["fencing_token"]) == (eng.seq, eng.state_hash(), 7)
    assert not list(tmp_path.glob("*.tmp"))
    back = Engine.restore(manifest, small_config())
    assert (back.seq, back.state_hash()) == (eng.seq, eng.state_hash())
    assert back.verify_hash()
    tail = random_commands(12, 300, first_seq=eng.seq + 1)
    assert back.apply(tail, ts_ns=3).tobytes() == eng.apply(tail, ts_ns=3).tobytes()
    assert back.state_hash() == eng.state_hash()


def test_restore_refuses_another_config(tmp_path: Path) -> None:
    eng = _engine()
    eng.snapshot(tmp_path, eng.seq, 1)
    with pytest.raises(SnapshotError, match="config"):
        Engine.restore(tmp_path, small_config(max_levels=17))


def test_a_damaged_newest_snapshot_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    eng = _engine()
    old = eng.snapshot(tmp_path, eng.seq, 1)
    old_seq, old_hash = eng.seq, eng.state_hash()
    eng.apply(random_commands(13, 50, first_seq=eng.seq + 1), ts_ns=4)
    new = eng.snapshot(tmp_path, eng.seq, 1)
    npz = tmp_path / json.loads(new.read_text())["npz"]
    npz.write_bytes(npz.read_bytes()[:-100])  # torn
    with pytest.raises(SnapshotError, match="digest"):
        Engine.restore(new, small_config())
    back = Engine.restore(tmp_path, small_config())
    assert (back.seq, back.state_hash()) == (old_seq, old_hash)
    assert old.exists()


def test_snapshot_only_at_the_applied_seq(tmp_path: Path) -> None:
    eng = _engine()
    with pytest.raises(EngineError):
        eng.snapshot(tmp_path, eng.seq - 1, 1)
