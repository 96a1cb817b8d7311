"""The settlement catalog: what postings need to know about symbols, assets and special accounts.

``Catalog.from_config(cfg)`` resolves it once from the frozen config (symbols' base/quote asset ids
and ``lot_minor``, assets' scales, the fee and external accounts, the shard, the smoke symbol) and
keeps dense lookup arrays indexed by symbol id / asset id for the vectorised posting code. The same
catalog is written to Postgres (``sync``) so the readable views can name things.

Limits: symbol ids < 65536 and asset ids < 32768 (they are u2 / smallint on the wire and in SQL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import asyncpg
import numpy as np

from pipeline.config import Config
from settle.errors import SettleError


@dataclasses.dataclass(frozen=True)
class SymbolInfo:
    symbol_id: int
    name: str
    base_id: int
    quote_id: int
    lot_minor: int  # base minor units per lot


@dataclasses.dataclass(frozen=True)
class AssetInfo:
    asset_id: int
    name: str
    scale: int


@dataclasses.dataclass(frozen=True)
class Catalog:
    shard: int
    fee_account: int
    external_account: int
    symbols: tuple[SymbolInfo, ...]
    assets: tuple[AssetInfo, ...]
    smoke_symbol: str = ""
    # dense lookups (derived): index = symbol id / asset id
    sym_valid: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    sym_base: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    sym_quote: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    sym_lot: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    asset_valid: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not -32768 <= self.shard <= 32767:
            raise SettleError(f"shard {self.shard} does not fit a smallint")
        if self.fee_account == self.external_account:
            raise SettleError("fee_account and external_account must differ")
        n = max((s.symbol_id for s in self.symbols), default=0) + 1
        valid = np.zeros(n, np.bool_)
        base = np.zeros(n, np.int16)
        quote = np.zeros(n, np.int16)
        lot = np.zeros(n, np.int64)
        asset_ids = {a.asset_id for a in self.assets}
        for s in self.symbols:
            if s.base_id not in asset_ids or s.quote_id not in asset_ids or s.lot_minor < 1:
                raise SettleError(f"symbol {s.name}: unknown asset or bad lot_minor")
            valid[s.symbol_id] = True
            base[s.symbol_id], quote[s.symbol_id], lot[s.symbol_id] = s.base_id, s.quote_id, s.lot_minor
        if any(not 0 < a < 32768 for a in asset_ids):
            raise SettleError("asset ids must be 1..32767")
        avalid = np.zeros(max(asset_ids, default=0) + 1, np.bool_)
        avalid[list(asset_ids)] = True
        for name, arr in (("sym_valid", valid), ("sym_base", base), ("sym_quote", quote),
                          ("sym_lot", lot), ("asset_valid", avalid)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def from_config(cls, cfg: Config) -> Catalog:
        return cls(
            shard=cfg.shard, fee_account=cfg.engine.fee_account,
            external_account=cfg.engine.external_account,
            symbols=tuple(SymbolInfo(s.symbol_id, s.name, s.base_id, s.quote_id, s.lot_minor)
                          for s in cfg.symbols),
            assets=tuple(AssetInfo(a.asset_id, a.name, a.scale) for a in cfg.assets),
            smoke_symbol=cfg.smoke_symbol)

    def symbol_name(self, symbol_id: int) -> str | None:
        for s in self.symbols:
            if s.symbol_id == symbol_id:
                return s.name
        return None

    def asset_name(self, asset_id: int) -> str | None:
        for a in self.assets:
            if a.asset_id == asset_id:
                return a.name
        return None


async def sync(conn: asyncpg.Connection, catalog: Catalog, smoke_accounts: Iterable[int] = ()) -> None:
    """Upsert assets, symbols and the special accounts (fee, external, smoke) into Postgres."""
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO assets (asset, name, scale) VALUES ($1, $2, $3)
               ON CONFLICT (asset) DO UPDATE SET name = EXCLUDED.name, scale = EXCLUDED.scale""",
            [(a.asset_id, a.name, a.scale) for a in catalog.assets])
        await conn.executemany(
            """INSERT INTO symbols (symbol, name, base, quote, lot_minor, smoke)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (symbol) DO UPDATE SET name = EXCLUDED.name, base = EXCLUDED.base,
                   quote = EXCLUDED.quote, lot_minor = EXCLUDED.lot_minor, smoke = EXCLUDED.smoke""",
            [(s.symbol_id, s.name, s.base_id, s.quote_id, s.lot_minor, s.name == catalog.smoke_symbol)
             for s in catalog.symbols])
        special = [(catalog.fee_account, "fee"), (catalog.external_account, "external")]
        special += [(int(a), "smoke") for a in smoke_accounts]
        await conn.executemany(
            """INSERT INTO accounts (account, kind) VALUES ($1, $2)
               ON CONFLICT (account) DO UPDATE SET kind = EXCLUDED.kind""", special)
