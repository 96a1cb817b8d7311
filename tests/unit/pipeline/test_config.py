from pathlib import Path

import pytest

from pipeline import config
from pipeline.config import ConfigError

BASE = config.DEFAULT_TOML.read_text()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spotx.toml"
    p.write_text(text)
    return p


def test_default_loads_with_exact_scales() -> None:
    cfg = config.load(env={})
    btc = cfg.symbol("BTC-USDT")
    # tick 0.01 USDT (scale 6) = 10_000 minor; lot 0.0001 BTC (scale 8) = 10_000 minor; K = 1
    assert (btc.tick_minor, btc.lot_minor, btc.k) == (10_000, 10_000, 1)
    assert btc.max_price_ticks == 1_000_000_000
    assert cfg.smoke_symbol == "SMK-USDT"


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        config.load(write(tmp_path, BASE + '\ncolour = "red"\n'), env={})


def test_unknown_section_key_is_named(tmp_path: Path) -> None:
    text = BASE.replace("[edge]\n", "[edge]\nrest_prot = 1\n")
    with pytest.raises(ConfigError, match=r"edge\.rest_prot"):
        config.load(write(tmp_path, text), env={})


def test_env_overrides_and_bad_env_value() -> None:
    cfg = config.load(env={"SPOTX_EDGE_REST_PORT": "18080"})
    assert cfg.edge.rest_port == 18080
    with pytest.raises(ConfigError, match="SPOTX_EDGE_REST_PORT"):
        config.load(env={"SPOTX_EDGE_REST_PORT": "eighty"})


def test_inexact_symbol_rejected_naming_it(tmp_path: Path) -> None:
    text = BASE.replace('lot = "0.0001"', 'lot = "0.00001"', 1)  # tick*lot below 1 USDT minor unit
    with pytest.raises(ConfigError, match="symbol BTC-USDT: tick\\*lot"):
        config.load(write(tmp_path, text), env={})


def test_tick_finer_than_asset_scale_rejected(tmp_path: Path) -> None:
    text = BASE.replace('tick = "0.01"', 'tick = "0.0000001"', 1)
    with pytest.raises(ConfigError, match="BTC-USDT: tick"):
        config.load(write(tmp_path, text), env={})


def test_overflow_prone_limits_rejected(tmp_path: Path) -> None:
    text = BASE.replace('max_price = "10000000"', 'max_price = "100000000000000"', 1)
    with pytest.raises(ConfigError, match="overflow"):
        config.load(write(tmp_path, text), env={})


def test_settle_repr_redacts_dsn() -> None:
    cfg = config.load(env={})
    assert "exchange:exchange" not in repr(cfg.settle)
    assert "***" in repr(cfg.settle)


def test_nice_values_are_checked() -> None:
    assert config.load(env={}).market.nice == 10 and config.load(env={}).settle.nice == 10
    assert config.load(env={"SPOTX_SETTLE_NICE": "0"}).settle.nice == 0
    for key, bad in (("SPOTX_MARKET_NICE", "20"), ("SPOTX_SETTLE_NICE", "-1")):
        with pytest.raises(config.ConfigError, match=r"nice must be 0\.\.19"):
            config.load(env={key: bad})


def test_engine_wal_modes_are_checked_naming_the_key() -> None:
    eng = config.load(env={}).engine
    assert (eng.durability, eng.wal_write, eng.wal_prealloc) == ("fdatasync", "pwrite", "zero")
    assert config.load(env={"SPOTX_ENGINE_WAL_WRITE": "mmap"}).engine.wal_write == "mmap"
    for key, bad, name in (("SPOTX_ENGINE_DURABILITY", "sometimes", "durability"),
                           ("SPOTX_ENGINE_WAL_WRITE", "dma", "wal_write"),
                           ("SPOTX_ENGINE_WAL_PREALLOC", "magic", "wal_prealloc")):
        with pytest.raises(config.ConfigError, match=rf"engine\.{name} must be one of .*'{bad}'"):
            config.load(env={key: bad})


def test_example_spotx_toml_loads_and_matches_the_embedded_default() -> None:
    """The repository's documented example (``spotx up --config spotx.toml``) is the same exchange
    as the embedded default, every key it sets is in docs/CONFIG.md, and `source_hash` differs
    only because the text does."""
    import dataclasses
    import tomllib

    root = Path(__file__).resolve().parents[3]
    example = config.load(root / "spotx.toml", env={})
    default = config.load(env={})
    a, b = dataclasses.asdict(example), dataclasses.asdict(default)
    a.pop("source_hash"), b.pop("source_hash")
    assert a == b
    assert len([s for s in example.symbols if s.name != example.smoke_symbol]) >= 2
    assert all(s.maker_fee_bps >= 0 and s.taker_fee_bps > 0 for s in example.symbols)
    doc = (root / "docs" / "CONFIG.md").read_text()
    raw = tomllib.loads((root / "spotx.toml").read_text())
    for key, value in raw.items():
        keys = value if isinstance(value, dict) else ({} if isinstance(value, list) else {key: 0})
        for k in keys:
            assert f"`{k}`" in doc, f"{key}.{k} is not documented in docs/CONFIG.md"


@pytest.mark.parametrize("key,value,match", [
    ("SPOTX_ENGINE_SNAPSHOT_EVERY", "0", r"engine\.snapshot_every must be >= 1"),
    ("SPOTX_EDGE_SNAPSHOT_EVERY_EVENTS", "-1", r"edge\.snapshot_every_events must be >= 0"),
    ("SPOTX_MARKET_SNAPSHOT_EVERY_EVENTS", "-5", r"market\.snapshot_every_events must be >= 0"),
    ("SPOTX_RETENTION_EVERY_S", "0", r"retention\.every_s must be >= 1"),
])
def test_snapshot_periods_are_validated(key: str, value: str, match: str) -> None:
    with pytest.raises(config.ConfigError, match=match):
        config.load(env={key: value})
    assert config.load(env={"SPOTX_MARKET_SNAPSHOT_EVERY_EVENTS": "0"}).market.snapshot_every_events == 0
