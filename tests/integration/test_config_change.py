"""A config change across a restart. The engine carries its snapshot over to appended assets and
symbols (and, with nothing left to replay, to changed limits and fees); the result equals an
engine that replayed the whole WAL under the new config, and trades on the new symbol. The edge
and the publisher carry their snapshots over to appended symbols likewise. A change the state
cannot carry (sizing, a symbol's lot or tick, a removed symbol) is refused naming the change."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_edge_snapshot import edge, view
from test_wal_retention import _pub, snapshot_readers

from bench import recovery
from bench.engine_wal import mix
from engine.errors import SnapshotError
from engine.testing import concat
from pipeline import config, edge_snapshot
from pipeline.config import DEFAULT_TOML
from pipeline.engine_proc import EngineConfigChange, EngineHost, snap_path
from pipeline.publisher import snapshot as md_snapshot
from pipeline.records import COMMAND, Cmd, OrdType, Side, Stp, Tif

NEW = recovery.LISTING


def _toml(tmp: Path, text: str) -> Path:
    p = tmp / f"cfg-{uuid.uuid4().hex[:6]}.toml"
    p.write_text(text)
    return p


def _cfg(data: Path, text: str | None = None, tmp: Path | None = None, **env: str) -> config.Config:
    e = {"SPOTX_DATA_DIR": str(data), "SPOTX_ENGINE_DURABILITY": "async",
         "SPOTX_ENGINE_MAX_ORDERS": str(1 << 16), "SPOTX_ENGINE_SNAPSHOT_EVERY": "2500", **env}
    path = _toml(tmp, text) if text is not None and tmp is not None else None
    return config.load(path, env=e)


BASE = DEFAULT_TOML.read_text()


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    d = Path(recovery._tmp())
    recovery.write_wal(_cfg(d), 6_000)  # deposits + the mix; periodic snapshots along the way
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _events_of(host: EngineHost, cmds: np.ndarray) -> list[bytes]:
    """The events ``cmds`` produce, batch by batch (as logged)."""
    got = []
    for i in range(0, len(cmds), 256):
        seq0 = host.next_seq
        ts = 1_900_000_000_000_000_000 + i
        batch = np.zeros(min(256, len(cmds) - i), COMMAND)
        batch.view(np.uint8)[:] = cmds[i:i + 256].view(np.uint8)  # bytes: the dtype has aliases
        ev = host._apply(batch, seq0, ts)
        host.writer.append(1, seq0, len(batch), batch.view(np.uint8), ts)
        host.writer.append(2, seq0, len(ev), ev.view(np.uint8), ts)
        host.next_seq = seq0 + len(batch)
        got.append(bytes(ev.view(np.uint8)))
    host.committer.sync_now()
    return got


def _new_symbol_orders(cfg: config.Config, n: int) -> np.ndarray:
    """A deposit of the new asset and USDT, then crossing limit orders on NEW-USDT."""
    sym = cfg.symbol("NEW-USDT")
    usdt = next(a.asset_id for a in cfg.assets if a.name == "USDT")
    cmds = np.zeros(n + 2, COMMAND)
    cmds["kind"][:2] = int(Cmd.DEPOSIT)
    cmds["account"][:2] = [5001, 5002]
    cmds["asset"][:2] = [sym.base_id, usdt]
    cmds["amount"][:2] = [10**12, 10**12]
    o = cmds[2:]
    o["kind"] = int(Cmd.NEW_ORDER)
    o["symbol"] = sym.symbol_id
    o["account"] = np.where(np.arange(n) % 2 == 0, 5001, 5002)
    o["side"] = np.where(np.arange(n) % 2 == 0, int(Side.SELL), int(Side.BUY))
    o["otype"] = int(OrdType.LIMIT)
    o["tif"] = int(Tif.GTC)
    o["stp"] = int(Stp.NONE)
    o["price"] = 1_000 + (np.arange(n) % 7)
    o["qty"] = 5
    return cmds


def test_appended_asset_and_symbol_carry_over_like_a_full_replay(data: Path,
                                                                 tmp_path: Path) -> None:
    old = _cfg(data)
    n_snaps = len(list(snap_path(old).glob("snapshot-*.json")))
    assert n_snaps >= 1
    new = _cfg(data, BASE + NEW, tmp_path)
    assert len(new.symbols) == len(old.symbols) + 1
    # A: the snapshot carried over, then the WAL after it replayed
    a = EngineHost(new, attach_rings=False)
    assert a.engine.migrated is not None and a.engine.migrated[0] == "additive"
    assert a.replayed > 0 and a.snap_seq > 0
    # it wrote the new config's own snapshot at once: the next start carries nothing over
    last = a.next_seq - 1
    # B: a copy of the data without snapshots replays everything under the new config
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "snapshots")
    b = EngineHost(_cfg(copy, BASE + NEW, tmp_path), attach_rings=False)
    assert b.snap_seq == 0 and b.next_seq - 1 == last
    assert int(a.engine.state_hash()) == int(b.engine.state_hash())
    # the same new commands, old symbols and the new one, give byte-identical events
    more = concat(mix(3_000, last + 1, seed=21), _new_symbol_orders(new, 400))
    ea, eb = _events_of(a, more), _events_of(b, more)
    assert ea == eb
    assert int(a.engine.state_hash()) == int(b.engine.state_hash())
    book = a.engine.book(new.symbol("NEW-USDT").symbol_id, depth=5)
    trades = sum(np.frombuffer(x, np.uint8).size for x in ea)
    assert trades and (book.bids or book.asks)
    a.close()
    b.close()
    c = EngineHost(new, attach_rings=False)  # from the new config's snapshot: nothing to carry
    assert c.engine.migrated is None and c.snap_seq == last
    c.close()


def test_a_fee_change_needs_a_snapshot_at_the_end_of_the_wal(data: Path, tmp_path: Path) -> None:
    old = _cfg(data)
    host = EngineHost(old, attach_rings=False)
    _events_of(host, mix(700, host.next_seq, seed=3))  # commands after the newest snapshot
    end = host.next_seq - 1
    host.close()
    fee = BASE.replace("maker_fee_bps = 2\ntaker_fee_bps = 5", "maker_fee_bps = 0\ntaker_fee_bps = 9", 1)
    changed = _cfg(data, fee, tmp_path)
    with pytest.raises(EngineConfigChange, match="taker_fee_bps 5 -> 9") as e:
        EngineHost(changed, attach_rings=False)
    assert "start once with the previous config" in str(e.value)
    # the procedure: start under the old config, snapshot the end (a clean stop does), then change
    host = EngineHost(old, attach_rings=False)
    assert host.snapshot() is not None and host.snapshot_seq == end
    host.close()
    host = EngineHost(changed, attach_rings=False)
    assert host.engine.migrated is not None and host.engine.migrated[0] == "params"
    assert host.replayed == 0 and host.next_seq - 1 == end
    host.close()


@pytest.mark.parametrize(("what", "edit"), [
    ("max_orders", lambda t: t + ""),
    ("tick", lambda t: t.replace('tick = "0.01"', 'tick = "0.1"', 1)),
    ("removed", lambda t: t[:t.rindex("[[symbols]]")].replace('smoke_symbol = "SMK-USDT"',
                                                              'smoke_symbol = "BTC-USDT"')),
])
def test_a_change_the_state_cannot_carry_is_refused_naming_it(data: Path, tmp_path: Path,
                                                               what: str, edit: Any) -> None:
    env = {"SPOTX_ENGINE_MAX_ORDERS": str(1 << 17)} if what == "max_orders" else {}
    cfg = _cfg(data, edit(BASE), tmp_path, **env)
    msg = {"max_orders": "engine max_orders changed", "tick": "lot or tick changed",
           "removed": "symbols removed"}[what]
    with pytest.raises(SnapshotError, match=msg):
        EngineHost(cfg, attach_rings=False)


def test_edge_and_publisher_snapshots_carry_over_to_an_appended_symbol(data: Path,
                                                                       tmp_path: Path) -> None:
    old = _cfg(data)
    snapshot_readers(old, tmp_path)
    new = _cfg(data, BASE + NEW, tmp_path)
    host = EngineHost(new, attach_rings=False)  # the engine carries over and trades the new one
    _events_of(host, concat(mix(1_000, host.next_seq, seed=5), _new_symbol_orders(new, 300)))
    host.close()
    a = edge(new)
    a.catch_up()
    assert a.restored_from > 0  # from the old config's snapshot
    b = edge(new)
    shutil.move(edge_snapshot.snapshot_path(new), tmp_path / "aside")
    b.catch_up()
    assert b.restored_from == 0  # everything, under the new config
    assert view(a) == view(b)
    assert view(a)["tradesNEW-USDT"]  # the new symbol's trades are there
    a.reader.close()
    b.reader.close()
    pa = _pub(new, tmp_path)
    pa.start()
    assert pa.restored_from > 0
    shutil.move(md_snapshot.snapshot_path(new), tmp_path / "aside-md")
    pb = _pub(new, tmp_path)
    pb.start()
    assert pb.restored_from == 0
    da, db = pa.deriver, pb.deriver
    assert (da.seq, da.snapshots(), da.current_candles()) == (db.seq, db.snapshots(),
                                                              db.current_candles())
    pa.close()
    pb.close()


def test_list_a_symbol_after_a_prune(data: Path, tmp_path: Path) -> None:
    """The reason carry-over matters: after ``spotx wal prune`` seq 1 is gone, so a reader whose
    snapshot did not fit the new config could not start at all."""
    from pipeline import retention
    from pipeline.wal.archive import first_retained_seq

    off = {"SPOTX_SETTLE_ENABLED": "false", "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(128 << 10)}
    old = _cfg(data / "p", BASE, tmp_path, **off)
    recovery.write_wal(old, 8_000)
    snapshot_readers(old, tmp_path)
    host = EngineHost(old, attach_rings=False)
    host.snapshot()
    host.close()
    _, moved = retention.apply(old, tmp_path / "arch", reason="disk", ticket="T", actor="t")
    wal = Path(old.data_dir) / "wal"
    assert moved and first_retained_seq(wal) > 1
    new = _cfg(data / "p", BASE + NEW, tmp_path, **off)
    assert {n.reader: n.seq for n in retention.needs(new)} == {
        n.reader: n.seq for n in retention.needs(old)}  # every snapshot still counts
    host = EngineHost(new, attach_rings=False)
    assert host.engine.migrated is not None
    _events_of(host, _new_symbol_orders(new, 50))
    host.close()
    a = edge(new)
    a.catch_up()
    assert a.restored_from > 1 and view(a)["tradesNEW-USDT"]
    a.reader.close()
    pa = _pub(new, tmp_path)
    pa.start()
    assert pa.restored_from > 1 and pa.deriver.by_name["NEW-USDT"].trades
    pa.close()


def test_new_history_bounds_carry_over_re_bounded(data: Path, tmp_path: Path) -> None:
    old = _cfg(data)
    snapshot_readers(old, tmp_path)
    gw = edge(old)
    gw.catch_up()
    before = view(gw)
    gw.reader.close()
    small = _cfg(data, None, None, SPOTX_MARKET_TRADE_HISTORY="5", SPOTX_MARKET_CANDLE_HISTORY="2")
    a = edge(small)
    a.catch_up()
    assert a.restored_from > 0  # carried over, not rebuilt
    after = view(a)
    a.reader.close()
    for s in old.symbols:
        key = f"trades{s.name}"
        assert after[key] == before[key][-5:]  # the newest five, as a rebuild would keep
        assert len(a.market.deriver.by_name[s.name].candles[0].hist) <= 2
    pa = _pub(small, tmp_path)
    pa.start()
    assert pa.restored_from > 0
    assert all(len(m.trades) <= 5 for m in pa.deriver.syms.values())
    pa.close()
