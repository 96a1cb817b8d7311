"""Frozen, typed configuration (CONVENTIONS.md habit 7).

Resolved once: explicit file > environment (``SPOTX_<SECTION>_<KEY>``, e.g. ``SPOTX_EDGE_REST_PORT``)
> defaults. Unknown keys are rejected with a message naming the key. Secrets are redacted in repr.

Scale rules (DESIGN.md §2). Each asset has ``scale`` decimals of minor units. Each symbol has a
``tick`` (price step, quote per base) and a ``lot`` (quantity step, base). Then

    tick_minor = tick * 10**quote.scale      (must be an integer >= 1)
    lot_minor  = lot  * 10**base.scale       (must be an integer >= 1)
    K          = tick_minor * lot_minor / 10**base.scale   (must be an integer >= 1)
    notional(price_ticks, qty_lots) = price_ticks * qty_lots * K   quote minor units

and ``max_price_ticks * max_qty_lots * K * (1 + taker_fee)`` must fit in int64. Config loading
rejects a symbol that breaks any of these, naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

INT64_MAX = 2**63 - 1


class ConfigError(ValueError):
    """A configuration value is missing, unknown or inconsistent; the message names it."""


@dataclasses.dataclass(frozen=True)
class Asset:
    name: str
    asset_id: int
    scale: int  # decimals of the minor unit


@dataclasses.dataclass(frozen=True)
class Symbol:
    name: str  # BASE-QUOTE
    symbol_id: int
    base: str
    quote: str
    tick: str  # decimal strings, as published at /v1/symbols
    lot: str
    min_qty: str
    max_qty: str
    min_notional: str
    max_price: str
    maker_fee_bps: int
    taker_fee_bps: int
    price_band_bps: int  # MARKET orders never sweep beyond best * (1 ± band)
    # derived (filled by load)
    base_id: int = 0
    quote_id: int = 0
    base_scale: int = 0
    quote_scale: int = 0
    tick_minor: int = 0
    lot_minor: int = 0
    k: int = 0
    min_qty_lots: int = 0
    max_qty_lots: int = 0
    max_price_ticks: int = 0
    min_notional_minor: int = 0


DURABILITY_MODES = ("fdatasync", "msync", "async")  # async: no sync at all, benchmarks only


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    core: int = 0
    wait: str = "spin_yield"  # busy_spin | spin_yield | park
    durability: str = "fdatasync"  # fdatasync | msync | async (benchmarks only)
    max_orders: int = 1 << 20
    max_accounts: int = 1 << 14
    max_levels: int = 1 << 14  # price levels per side per symbol (pool shared)
    batch_max: int = 256
    snapshot_every: int = 1_000_000  # commands between automatic snapshots
    snapshots_keep: int = 3  # newest engine snapshots kept (older ones are deleted)
    checkpoint_every: int = 10_000  # seq between CHECKPOINT events
    ring_capacity: int = 1 << 16
    wal_segment_bytes: int = 64 << 20
    wal_write: str = "pwrite"  # pwrite | mmap (see pipeline/wal/segment.py; msync implies mmap)
    wal_prealloc: str = "zero"  # zero | fallocate | sparse (see pipeline/wal/segment.py)
    fee_account: int = 1
    external_account: int = 2


@dataclasses.dataclass(frozen=True)
class EdgeConfig:
    host: str = "127.0.0.1"
    rest_port: int = 8080
    ws_trade_port: int = 8081
    ws_trade_path: str = "/v1/ws/trade"
    processes: int = 1
    core: int = 1
    key_store: str = ""  # default: <data_dir>/keys.json
    max_body_bytes: int = 65536
    max_frame_bytes: int = 65536
    orders_per_second: int = 10_000
    weight_per_minute: int = 600_000
    recv_window_default_ms: int = 5000
    recv_window_max_ms: int = 60000
    replay_cache_entries: int = 200_000  # signatures remembered for replay detection
    ws_messages_per_second: int = 10_000  # frames per order-entry socket (429 beyond)
    ws_max_inflight: int = 256  # requests in flight per socket before it stops being read
    ws_max_backlog_bytes: int = 4 << 20  # unsent output per socket before 4008 SLOW_CONSUMER
    ws_logon_timeout_s: int = 30  # a socket not logged on by then is closed (1008)
    snapshot_every_events: int = 2_000_000  # edge state snapshot period (0: never; see RUNBOOK)


@dataclasses.dataclass(frozen=True)
class MarketConfig:
    enabled: bool = True  # publisher + fan-out processes
    host: str = "127.0.0.1"
    port: int = 8082
    path: str = "/v1/ws/market"
    processes: int = 1
    core: int = 1
    broadcast_capacity: int = 1 << 16
    max_subscriptions: int = 64
    ping_interval_s: int = 20
    ping_timeout_s: int = 60
    trade_history: int = 10_000
    candle_history: int = 1_440
    nice: int = 10  # publisher + fan-out CPU priority below the order path's (pipeline.cpu)
    snapshot_every_events: int = 2_000_000  # publisher state snapshot period (0: never)


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9100


@dataclasses.dataclass(frozen=True)
class SettleConfig:
    enabled: bool = True
    mode: str = "embedded"  # embedded (WAL -> Postgres) | kafka (WAL -> Kafka -> Postgres)
    pg_dsn: str = "postgresql://exchange:exchange@127.0.0.1:5432/exchange"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "spotx.events"
    core: int = 1
    nice: int = 10  # settlement's CPU priority below the order path's (pipeline.cpu)
    lag_t2_ms: int = 2_000
    lag_t3_ms: int = 10_000

    def __repr__(self) -> str:  # the DSN may carry a password
        fields = dataclasses.asdict(self)
        fields["pg_dsn"] = "***"
        return f"SettleConfig({fields})"


@dataclasses.dataclass(frozen=True)
class RetentionConfig:
    archive_dir: str = ""  # automatic online WAL pruning into this directory ("" = off)
    every_s: int = 3600  # how often the supervisor runs it (spotx wal prune --apply, online)
    compress: bool = True  # gzip the archived segments (level 1)


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: str
    instance: str
    shard: int
    engine: EngineConfig
    edge: EdgeConfig
    market: MarketConfig
    metrics: MetricsConfig
    settle: SettleConfig
    assets: tuple[Asset, ...]
    symbols: tuple[Symbol, ...]
    smoke_symbol: str = ""
    smoke_accounts: tuple[int, int] = (9001, 9002)  # (buyer, seller) of the G0 smoke trade
    source_hash: str = ""
    retention: RetentionConfig = RetentionConfig()

    def symbol(self, name: str) -> Symbol:
        for s in self.symbols:
            if s.name == name:
                return s
        raise KeyError(name)

    def asset(self, name: str) -> Asset:
        for a in self.assets:
            if a.name == name:
                return a
        raise KeyError(name)


_SECTIONS: dict[str, type] = {"engine": EngineConfig, "edge": EdgeConfig, "market": MarketConfig,
                              "metrics": MetricsConfig, "settle": SettleConfig,
                              "retention": RetentionConfig}
_TOP = {"data_dir", "instance", "shard", "assets", "symbols", "smoke_symbol", "smoke_accounts",
        *_SECTIONS}

DEFAULT_TOML = Path(__file__).with_name("default.toml")


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
         overrides: dict[str, Any] | None = None) -> Config:
    """Load ``path`` (default: the embedded ``pipeline/default.toml``), apply env and overrides."""
    env = dict(os.environ) if env is None else env
    src = Path(path) if path else DEFAULT_TOML
    raw_bytes = src.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{src}: {e}") from e
    for key in raw:
        if key not in _TOP:
            raise ConfigError(f"{src}: unknown key {key!r}")
    for sect, cls in _SECTIONS.items():
        table = dict(raw.get(sect, {}))
        names = {f.name: f for f in dataclasses.fields(cls)}
        for key in table:
            if key not in names:
                raise ConfigError(f"{src}: unknown key {sect}.{key}")
        for name, f in names.items():
            ev = env.get(f"SPOTX_{sect.upper()}_{name.upper()}")
            if ev is not None:
                table[name] = _coerce(ev, f.type, f"SPOTX_{sect.upper()}_{name.upper()}")
        for k, v in (overrides or {}).items():
            if k.startswith(sect + "."):
                field = k.split(".", 1)[1]
                if field not in names:
                    raise ConfigError(f"override: unknown key {k}")
                table[field] = v
        raw[sect] = cls(**table)
    data_dir = env.get("SPOTX_DATA_DIR") or (overrides or {}).get("data_dir") or raw.get("data_dir", "var")
    assets = _load_assets(raw.get("assets", []))
    symbols = _load_symbols(raw.get("symbols", []), {a.name: a for a in assets})
    cfg = Config(
        data_dir=str(data_dir),
        instance=str((overrides or {}).get("instance") or env.get("SPOTX_INSTANCE") or raw.get("instance", "main")),
        shard=_shard(env.get("SPOTX_SHARD", raw.get("shard", 0))),
        engine=raw["engine"], edge=raw["edge"], market=raw["market"], metrics=raw["metrics"],
        settle=raw["settle"], assets=assets, symbols=symbols,
        smoke_symbol=str(raw.get("smoke_symbol", symbols[0].name if symbols else "")),
        smoke_accounts=_smoke_accounts(raw.get("smoke_accounts", [9001, 9002])),
        source_hash=hashlib.sha256(raw_bytes).hexdigest()[:16], retention=raw["retention"],
    )
    if cfg.smoke_symbol and cfg.smoke_symbol not in {s.name for s in symbols}:
        raise ConfigError(f"smoke_symbol {cfg.smoke_symbol!r} is not a configured symbol")
    from pipeline.wal.segment import PREALLOC_MODES, WRITE_MODES  # the WAL's own lists

    for key, value, allowed in (("durability", cfg.engine.durability, DURABILITY_MODES),
                                ("wal_write", cfg.engine.wal_write, WRITE_MODES),
                                ("wal_prealloc", cfg.engine.wal_prealloc, PREALLOC_MODES)):
        if value not in allowed:
            raise ConfigError(f"engine.{key} must be one of {', '.join(allowed)}, got {value!r}")
    for sect, nice in (("market", cfg.market.nice), ("settle", cfg.settle.nice)):
        if not 0 <= nice <= 19:
            raise ConfigError(f"{sect}.nice must be 0..19, got {nice}")
    if cfg.engine.snapshot_every < 1:
        raise ConfigError(f"engine.snapshot_every must be >= 1, got {cfg.engine.snapshot_every}")
    if cfg.engine.snapshots_keep < 1:
        raise ConfigError(f"engine.snapshots_keep must be >= 1, got {cfg.engine.snapshots_keep}")
    if cfg.retention.every_s < 1:
        raise ConfigError(f"retention.every_s must be >= 1, got {cfg.retention.every_s}")
    for key, every in (("edge.snapshot_every_events", cfg.edge.snapshot_every_events),
                       ("market.snapshot_every_events", cfg.market.snapshot_every_events)):
        if every < 0:
            raise ConfigError(f"{key} must be >= 0 (0: never), got {every}")
    return cfg


def _shard(v: Any) -> int:
    try:
        shard = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"shard must be an integer, got {v!r}") from None
    if not 0 <= shard <= 32767:
        raise ConfigError(f"shard must be 0..32767, got {shard}")
    return shard


def _smoke_accounts(v: Any) -> tuple[int, int]:
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)
            and v[0] != v[1]):
        raise ConfigError(f"smoke_accounts must be two distinct positive account ids, got {v!r}")
    return (int(v[0]), int(v[1]))


def _coerce(value: str, typ: Any, where: str) -> Any:
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if t == "int":
            return int(value)
        if t == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
    except ValueError as e:
        raise ConfigError(f"{where}: cannot read {value!r} as {t}") from e
    return value


def _load_assets(rows: list[dict[str, Any]]) -> tuple[Asset, ...]:
    out = []
    for i, row in enumerate(rows):
        unknown = set(row) - {"name", "scale"}
        if unknown:
            raise ConfigError(f"assets[{i}]: unknown key {sorted(unknown)[0]!r}")
        scale = int(row["scale"])
        if not 0 <= scale <= 18:
            raise ConfigError(f"asset {row['name']}: scale {scale} outside 0..18")
        out.append(Asset(name=str(row["name"]), asset_id=i + 1, scale=scale))
    if len({a.name for a in out}) != len(out):
        raise ConfigError("assets: duplicate name")
    return tuple(out)


_SYMBOL_KEYS = {"name", "tick", "lot", "min_qty", "max_qty", "min_notional", "max_price",
                "maker_fee_bps", "taker_fee_bps", "price_band_bps"}


def _exact(value: str, scale: int, what: str) -> int:
    """``value`` (decimal string) as an integer count of 10**-scale units; reject if inexact."""
    try:
        d = Decimal(value)
    except InvalidOperation as e:
        raise ConfigError(f"{what}: {value!r} is not a decimal") from e
    scaled = d.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"{what}: {value} is not a whole number of 1e-{scale} units")
    return int(scaled)


def _steps(row: dict[str, Any], name: str, key: str, unit_minor: int, scale: int) -> int:
    minor = _exact(str(row[key]), scale, f"symbol {name}: {key}")
    if minor % unit_minor:
        raise ConfigError(f"symbol {name}: {key} {row[key]} is not a multiple of its step")
    return minor // unit_minor


def _load_symbols(rows: list[dict[str, Any]], assets: dict[str, Asset]) -> tuple[Symbol, ...]:
    out = []
    for i, row in enumerate(rows):
        unknown = set(row) - _SYMBOL_KEYS
        if unknown:
            raise ConfigError(f"symbols[{i}]: unknown key {sorted(unknown)[0]!r}")
        name = str(row["name"])
        try:
            base_name, quote_name = name.split("-")
        except ValueError:
            raise ConfigError(f"symbol {name!r}: name must be BASE-QUOTE") from None
        if base_name not in assets or quote_name not in assets:
            raise ConfigError(f"symbol {name}: unknown asset")
        base, quote = assets[base_name], assets[quote_name]
        tick_minor = _exact(str(row["tick"]), quote.scale, f"symbol {name}: tick")
        lot_minor = _exact(str(row["lot"]), base.scale, f"symbol {name}: lot")
        if tick_minor < 1 or lot_minor < 1:
            raise ConfigError(f"symbol {name}: tick and lot must be positive")
        if (tick_minor * lot_minor) % (10**base.scale):
            raise ConfigError(
                f"symbol {name}: tick*lot is not a whole number of {quote_name} minor units "
                f"(K = {tick_minor}*{lot_minor}/10^{base.scale} is not an integer)")
        k = tick_minor * lot_minor // 10**base.scale

        max_price_ticks = _steps(row, name, "max_price", tick_minor, quote.scale)
        min_qty_lots = _steps(row, name, "min_qty", lot_minor, base.scale)
        max_qty_lots = _steps(row, name, "max_qty", lot_minor, base.scale)
        min_notional_minor = _exact(str(row["min_notional"]), quote.scale, f"symbol {name}: min_notional")
        maker, taker = int(row.get("maker_fee_bps", 0)), int(row.get("taker_fee_bps", 0))
        band = int(row.get("price_band_bps", 500))
        if not (0 <= maker <= 1000 and 0 <= taker <= 1000):
            raise ConfigError(f"symbol {name}: fees must be 0..1000 bps")
        if not 1 <= band <= 10_000:
            raise ConfigError(f"symbol {name}: price_band_bps must be 1..10000")
        if max_price_ticks < 1 or not 1 <= min_qty_lots <= max_qty_lots:
            raise ConfigError(f"symbol {name}: limits out of order")
        worst = max_price_ticks * max_qty_lots * k
        if worst + (worst * max(maker, taker) + 9999) // 10000 > INT64_MAX // 4:
            raise ConfigError(f"symbol {name}: max_price*max_qty notional could overflow int64")
        out.append(Symbol(
            name=name, symbol_id=i + 1, base=base_name, quote=quote_name, tick=str(row["tick"]),
            lot=str(row["lot"]), min_qty=str(row["min_qty"]), max_qty=str(row["max_qty"]),
            min_notional=str(row["min_notional"]), max_price=str(row["max_price"]),
            maker_fee_bps=maker, taker_fee_bps=taker, price_band_bps=band,
            base_id=base.asset_id, quote_id=quote.asset_id, base_scale=base.scale,
            quote_scale=quote.scale, tick_minor=tick_minor, lot_minor=lot_minor, k=k,
            min_qty_lots=min_qty_lots, max_qty_lots=max_qty_lots, max_price_ticks=max_price_ticks,
            min_notional_minor=min_notional_minor))
    if len({s.name for s in out}) != len(out):
        raise ConfigError("symbols: duplicate name")
    return tuple(out)
