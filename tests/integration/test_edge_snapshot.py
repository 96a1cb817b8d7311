"""Edge snapshots: an edge restored from a snapshot plus the WAL after it holds exactly the state of
an edge that replayed the whole WAL (read model and market state), before and after more trading;
the periodic snapshot is written by a forked child; a snapshot of another WAL or config is ignored."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench import recovery
from bench.engine_wal import mix
from edge.market_state import MarketState
from edge.orders import Validator
from edge.readmodel import ReadModel
from pipeline import config, diskio, edge_snapshot
from pipeline.engine_proc import EngineHost
from pipeline.link import RingGateway


@pytest.fixture
def cfg() -> Iterator[config.Config]:
    data = recovery._tmp()
    c = recovery._cfg(data, 1 << 40)
    recovery.write_wal(c, 6_000)
    yield c
    shutil.rmtree(data, ignore_errors=True)


def edge(cfg: config.Config) -> RingGateway:
    rm = ReadModel(Validator(cfg).units_by_id, {a.asset_id: a for a in cfg.assets})
    gw = RingGateway(cfg, 1, rm, attach_rings=False)
    gw.market = MarketState(cfg)
    return gw


def view(gw: RingGateway) -> dict[str, Any]:
    """Everything a client can read from the edge, canonically ordered."""
    rm = gw.readmodel
    out: dict[str, Any] = {"modes": (rm.modes, rm.global_mode, rm.withdrawals_halted)}
    for acct in sorted(rm.accounts):
        out[f"open{acct}"] = [rm.order_json(o) for o in rm.open_orders(acct)]
        out[f"bal{acct}"] = rm.balances_json(acct)
        out[f"fills{acct}"] = rm.fills_json(acct, limit=1000)
        out[f"closed{acct}"] = sorted(rm.accounts[acct].closed)
    for s in gw.cfg.symbols:
        p = {"symbol": s.name}
        out[f"depth{s.name}"] = gw.market.depth({**p, "limit": 1000})
        out[f"trades{s.name}"] = gw.market.trades({**p, "limit": 1000})
        out[f"candles{s.name}"] = gw.market.candles({**p, "interval": "1m", "limit": 1000})
    out["audit"] = list(gw.audit_log)
    return out


def more_trading(cfg: config.Config, n: int, seed: int) -> int:
    host = EngineHost(cfg, attach_rings=False)
    cmds = mix(n, host.next_seq, seed=seed)
    for i in range(0, n, 256):
        host.sequence(cmds[i:i + 256])
    host.writer.sync()
    last = host.next_seq - 1
    host.close()
    return last


def test_restored_edge_equals_a_full_replay_before_and_after_more_trading(cfg: config.Config) -> None:
    a = edge(cfg)
    full = a.catch_up()
    assert full > 6_000 and a.restored_from == 0
    assert a.snapshot(in_child=False) and a.snapshots_written == 1
    b = edge(cfg)
    assert b.catch_up() == 0 and b.restored_from == a._batch_end > 6_000
    assert view(b) == view(a)
    a.reader.close()
    b.reader.close()

    more_trading(cfg, 3_000, seed=11)
    c, d = edge(cfg), edge(cfg)
    tail = c.catch_up()
    d.reader.close()
    d = edge(cfg)
    (edge_snapshot.snapshot_path(cfg)).rename(edge_snapshot.snapshot_path(cfg).with_suffix(".off"))
    everything = d.catch_up()
    assert d.restored_from == 0 and 0 < tail < everything
    assert view(c) == view(d)
    c.reader.close()
    d.reader.close()


def test_periodic_snapshot_is_written_by_a_child(cfg: config.Config,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """...and paced to the disk before its fsync (the forked child says so in a marker file)."""
    marker = edge_snapshot.snapshot_path(cfg).with_name("paced")
    real = diskio.write_back_paced

    def paced(fd: int, size: int) -> None:
        marker.write_text(str(size))
        real(fd, size)

    monkeypatch.setattr(diskio, "write_back_paced", paced)
    gw = edge(cfg)
    gw.catch_up()
    assert gw.snapshot()  # forked
    deadline = time.monotonic() + 30
    while gw._snap_pid:
        assert time.monotonic() < deadline, "snapshot child did not finish"
        gw._reap()
        time.sleep(0.01)
    assert gw.snapshots_written == 1
    d = gw.reader.durable()
    assert d is not None
    snap = edge_snapshot.read(cfg, int(d.wal_id), int(d.seq))
    assert snap is not None and snap.resume_seq == gw._batch_end and snap.events == gw.events
    assert int(marker.read_text()) == edge_snapshot.snapshot_path(cfg).stat().st_size
    gw.reader.close()


def test_a_snapshot_of_another_wal_or_config_is_not_used(cfg: config.Config) -> None:
    gw = edge(cfg)
    n = gw.catch_up()
    gw.snapshot(in_child=False)
    gw.reader.close()
    path = edge_snapshot.snapshot_path(cfg)
    good = pickle.loads(path.read_bytes())
    for bad in (dataclasses.replace(good, wal_id=good.wal_id + 1),
                dataclasses.replace(good, fingerprint="0" * 32, config=None),  # pre-carry-over
                dataclasses.replace(good, fingerprint="0" * 32, config={  # a tick changed
                    **good.config, "symbols": [[*good.config["symbols"][0][:4], 999,
                                                *good.config["symbols"][0][5:]],
                                               *good.config["symbols"][1:]]}),
                dataclasses.replace(good, resume_seq=10**12), dataclasses.replace(good, version=0)):
        edge_snapshot.write(path, bad)
        again = edge(cfg)
        assert again.catch_up() == n and again.restored_from == 0  # whole WAL replayed
        again.reader.close()
    path.write_bytes(b"not a pickle")
    again = edge(cfg)
    assert again.catch_up() == n and again.restored_from == 0
    again.reader.close()
