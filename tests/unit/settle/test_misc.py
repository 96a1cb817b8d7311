"""Small pure pieces: migration discovery, reconciliation report, cursor file, batch histogram,
catalog validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from settle.catalog import AssetInfo, Catalog, SymbolInfo
from settle.errors import MigrationError, ReconcileError, SettleError
from settle.metrics import observe_many
from settle.migrate import discover
from settle.outbox import read_cursor, write_cursor
from settle.reconcile import compare, load_engine_balances_json


def test_shipped_migrations_are_numbered_without_gaps() -> None:
    ms = discover()
    assert [m.version for m in ms] == list(range(1, len(ms) + 1)) and len(ms) >= 3
    assert all(len(m.checksum) == 64 for m in ms)


@pytest.mark.parametrize("names, match", [
    (["0001_a.sql", "0003_c.sql"], "without gaps"),
    (["0001_a.sql", "1_b.sql"], "NNNN_lower_snake"),
])
def test_migration_discovery_refuses(tmp_path: Path, names: list[str], match: str) -> None:
    for n in names:
        (tmp_path / n).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=match):
        discover(tmp_path)


def test_reconcile_compare_reports_every_difference(catalog: Catalog) -> None:
    ext = catalog.external_account
    engine = {(10, 1): 100, (10, 2): 5, (11, 1): 0, (12, 1): 7}
    ledger = {(10, 1): 100, (10, 2): 6, (12, 1): 0, (ext, 1): -999, (13, 4): 1}
    rep = compare(engine, ledger, shard=0, seq=42, catalog=catalog)
    assert [(d.account, d.asset, d.engine, d.ledger) for d in rep.differences] == [
        (ext, 1, 0, -999), (10, 2, 5, 6), (12, 1, 7, 0), (13, 4, 0, 1)]
    assert not rep.ok and rep.compared == 6
    skipped = compare(engine, ledger, shard=0, seq=42, catalog=catalog, skip=[ext])
    assert len(skipped.differences) == 3 and skipped.compared == 5
    text = rep.text()
    assert "4 differ" in text and "BTC" in text and "SMK" in text
    assert compare(engine, dict(engine), shard=0, seq=1, catalog=catalog).ok


def test_engine_balances_json(tmp_path: Path, catalog: Catalog) -> None:
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"seq": 9, "balances": [
        {"account": 10, "asset": "BTC", "total": 5},
        {"account": 11, "asset": 1, "available": 3, "locked": 4}]}))
    assert load_engine_balances_json(p, catalog) == (9, {(10, 2): 5, (11, 1): 7})
    p.write_text(json.dumps({"balances": []}))
    with pytest.raises(ReconcileError, match="seq"):
        load_engine_balances_json(p, catalog)
    p.write_text(json.dumps({"seq": 1, "balances": [{"account": 1, "asset": "DOGE", "total": 1}]}))
    with pytest.raises(ReconcileError, match="DOGE"):
        load_engine_balances_json(p, catalog)


def test_cursor_file_is_replaced_atomically(tmp_path: Path) -> None:
    c = tmp_path / "outbox.cursor"
    assert read_cursor(c) == 0
    write_cursor(c, 17)
    write_cursor(c, 18)
    assert read_cursor(c) == 18 and not list(tmp_path.glob("*.tmp"))


def test_observe_many_matches_observe() -> None:
    reg = CollectorRegistry()
    a = Histogram("a_seconds", "a", buckets=(0.1, 1.0), registry=reg)
    b = Histogram("b_seconds", "b", buckets=(0.1, 1.0), registry=reg)
    vals = np.array([0.05, 0.1, 0.5, 1.0, 3.0, 0.0])
    observe_many(a, vals)
    for v in vals:
        b.observe(float(v))

    def samples(name: str) -> list[float]:
        return [s.value for m in reg.collect() if m.name == name for s in m.samples
                if not s.name.endswith("_created")]

    assert samples("a_seconds") == samples("b_seconds")


def test_catalog_validation() -> None:
    assets = (AssetInfo(1, "USDT", 6),)
    with pytest.raises(SettleError, match="differ"):
        Catalog(0, 1, 1, (), assets)
    with pytest.raises(SettleError, match="unknown asset"):
        Catalog(0, 1, 2, (SymbolInfo(1, "X-USDT", 9, 1, 1),), assets)
    with pytest.raises(SettleError, match="smallint"):
        Catalog(40_000, 1, 2, (), assets)
