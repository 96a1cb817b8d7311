"""Engine state: allocation from config, the symbol parameter table, the engine config hash.

``allocate(config)`` builds a ``layout.State`` of preallocated arrays sized by ``EngineConfig``
(``max_orders``, ``max_accounts``, ``max_levels``) and the assets / symbols of the config. Memory is
about ``128 B * max_orders`` (pool) + ``8 B * 2 * pow2(2 * max_orders)`` (maps) + ``16 B *
max_accounts * (n_assets + 1)`` (balances) + ``24 B * max_accounts * (n_assets + 1)`` (scratch) +
``(12 + 32) B * n_symbols * 2 * max_levels`` (books, level pool); the pool and maps dominate
(~145 MiB at the default 2**20 orders). numpy zero pages are lazily committed by the OS.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from engine.errors import EngineConfigError
from engine.layout import (
    C_CKPT_EVERY,
    C_EXT_ACCT,
    C_FEE_ACCT,
    C_FREE_LEVEL,
    C_FREE_ORDER,
    C_MAP_MASK,
    C_MAX_ACCOUNTS,
    C_MAX_LEVELS,
    C_MAX_ORDERS,
    C_MAX_TOUCH,
    C_N_ASSETS,
    C_N_SYMBOLS,
    C_NEXT_TRADE,
    C_VERSION,
    DEFAULT_MAX_MAKERS,
    LAYOUT_VERSION,
    LEVEL,
    NCTL,
    NP,
    ORDER,
    P_BAND,
    P_BASE,
    P_K,
    P_LOT,
    P_MAKER,
    P_MAX_BUDGET,
    P_MAX_PRICE,
    P_MAX_QTY,
    P_MIN_NOTIONAL,
    P_MIN_QTY,
    P_QUOTE,
    P_TAKER,
    P_VALID,
    State,
)
from pipeline.config import Config

INT32_MAX = 2**31 - 1


def symbol_table(cfg: Config) -> np.ndarray:
    """int64[n_symbols + 1, NP]: the per-symbol parameters the kernels read (row = symbol id)."""
    sp = np.zeros((len(cfg.symbols) + 1, NP), np.int64)
    for i, s in enumerate(cfg.symbols):
        if s.symbol_id != i + 1:
            raise EngineConfigError(f"symbol {s.name}: ids must be 1..n in order")
        row = sp[s.symbol_id]
        row[P_VALID] = 1
        row[P_BASE], row[P_QUOTE] = s.base_id, s.quote_id
        row[P_LOT], row[P_K] = s.lot_minor, s.k
        row[P_MIN_QTY], row[P_MAX_QTY] = s.min_qty_lots, s.max_qty_lots
        row[P_MAX_PRICE], row[P_MIN_NOTIONAL] = s.max_price_ticks, s.min_notional_minor
        row[P_MAKER], row[P_TAKER], row[P_BAND] = s.maker_fee_bps, s.taker_fee_bps, s.price_band_bps
        row[P_MAX_BUDGET] = s.max_price_ticks * s.max_qty_lots * s.k
    return sp


def engine_config_doc(cfg: Config, max_makers: int) -> dict[str, object]:
    """Everything in the config that changes what the engine does (the config hash covers this)."""
    e = cfg.engine
    return {
        "layout": LAYOUT_VERSION,
        "max_orders": e.max_orders, "max_accounts": e.max_accounts, "max_levels": e.max_levels,
        "checkpoint_every": e.checkpoint_every, "fee_account": e.fee_account,
        "external_account": e.external_account, "max_makers_per_order": max_makers,
        "assets": [[a.asset_id, a.name, a.scale] for a in cfg.assets],
        "symbols": symbol_table(cfg).tolist(),
    }


def config_hash(cfg: Config, max_makers: int = DEFAULT_MAX_MAKERS) -> str:
    doc = json.dumps(engine_config_doc(cfg, max_makers), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


# what a restart may not change under a snapshot: the state's sizing and the meaning of its
# integers (which assets a symbol trades, its lot and its tick-to-quote factor)
_SIZING = ("layout", "max_orders", "max_accounts", "max_levels", "checkpoint_every", "fee_account",
           "external_account", "max_makers_per_order")
_STRUCTURAL = (P_VALID, P_BASE, P_QUOTE, P_LOT, P_K)
_PARAM_NAMES = {P_MIN_QTY: "min_qty", P_MAX_QTY: "max_qty", P_MAX_PRICE: "max_price",
                P_MIN_NOTIONAL: "min_notional", P_MAKER: "maker_fee_bps",
                P_TAKER: "taker_fee_bps", P_BAND: "price_band_bps", P_MAX_BUDGET: "max_budget"}


def config_change(old: dict[str, object], new: dict[str, object]) -> tuple[str, str]:
    """How the engine config ``new`` differs from ``old`` (two ``engine_config_doc``): ("same",
    ""), ("additive", what) when assets or symbols were only appended, or ("params", what) when
    existing symbols' limits, fees or bands changed too. Raises EngineConfigError naming the
    change when a snapshot of ``old`` cannot carry over (sizing, an asset or a symbol's assets,
    lot or tick changed, or one was removed)."""
    for key in _SIZING:
        if old.get(key) != new.get(key):
            raise EngineConfigError(f"engine {key} changed ({old.get(key)} -> {new.get(key)}): "
                                    f"the state cannot be carried over")
    oa, na = list(old["assets"]), list(new["assets"])  # type: ignore[call-overload]
    if na[:len(oa)] != oa:
        raise EngineConfigError(f"assets changed ({oa} -> {na[:len(oa)]}): assets may only be "
                                f"appended")
    os_, ns = list(old["symbols"]), list(new["symbols"])  # type: ignore[call-overload]
    if len(ns) < len(os_):
        raise EngineConfigError(f"symbols removed ({len(os_) - 1} -> {len(ns) - 1}): symbols may "
                                f"only be appended (halt one instead)")
    what, params = [], []
    for sid in range(1, len(os_)):
        o, n = os_[sid], ns[sid]
        if [o[i] for i in _STRUCTURAL] != [n[i] for i in _STRUCTURAL]:
            raise EngineConfigError(f"symbol {sid}: its assets, lot or tick changed: a symbol's "
                                    f"integers cannot change meaning under open orders")
        params += [f"symbol {sid} {name} {o[i]} -> {n[i]}" for i, name in _PARAM_NAMES.items()
                   if o[i] != n[i]]
    if len(na) > len(oa):
        what.append(f"{len(na) - len(oa)} asset(s) added")
    if len(ns) > len(os_):
        what.append(f"{len(ns) - len(os_)} symbol(s) added")
    if params:
        return "params", "; ".join(what + params)
    return ("additive", "; ".join(what)) if what else ("same", "")


def _check(cfg: Config, max_makers: int) -> None:
    e = cfg.engine
    if not 1 <= e.max_orders <= INT32_MAX // 2:
        raise EngineConfigError(f"engine.max_orders {e.max_orders} outside 1..{INT32_MAX // 2}")
    if not 3 <= e.max_accounts <= INT32_MAX // (len(cfg.assets) + 1):
        raise EngineConfigError(f"engine.max_accounts {e.max_accounts} too small or too large")
    if not 1 <= e.max_levels or len(cfg.symbols) * 2 * e.max_levels > INT32_MAX:
        raise EngineConfigError(f"engine.max_levels {e.max_levels} out of range")
    for name in ("fee_account", "external_account"):
        v = getattr(e, name)
        if not 1 <= v < e.max_accounts:
            raise EngineConfigError(f"engine.{name} {v} outside 1..max_accounts-1")
    if e.fee_account == e.external_account:
        raise EngineConfigError("engine.fee_account and engine.external_account must differ")
    if e.checkpoint_every < 0:
        raise EngineConfigError("engine.checkpoint_every must be >= 0 (0 = never)")
    if not 1 <= max_makers <= 1_000_000:
        raise EngineConfigError(f"max_makers_per_order {max_makers} outside 1..1000000")
    if not cfg.symbols or not cfg.assets:
        raise EngineConfigError("the engine needs at least one asset and one symbol")
    if len(cfg.symbols) >= 0xFFFF:
        raise EngineConfigError("too many symbols (GLOBAL_SYMBOL is 0xFFFF)")


def allocate(cfg: Config, max_makers: int = DEFAULT_MAX_MAKERS) -> State:
    """A fresh, empty engine state for ``cfg``. Raises EngineConfigError."""
    _check(cfg, max_makers)
    e = cfg.engine
    n_sym, n_assets = len(cfg.symbols), len(cfg.assets)
    n_orders, n_accounts, n_levels = e.max_orders, e.max_accounts, e.max_levels
    map_size = 1
    while map_size < 2 * n_orders:
        map_size <<= 1
    level_pool = n_sym * 2 * n_levels

    orders = np.zeros(n_orders, ORDER)
    orders["next"] = np.arange(1, n_orders + 1)
    orders["next"][-1] = -1
    levels = np.zeros(level_pool, LEVEL)
    levels["next_free"] = np.arange(1, level_pool + 1)
    levels["next_free"][-1] = -1
    ctl = np.zeros(NCTL, np.int64)
    ctl[C_NEXT_TRADE] = 1
    ctl[C_FREE_ORDER] = 0
    ctl[C_FREE_LEVEL] = 0
    ctl[C_FEE_ACCT] = e.fee_account
    ctl[C_EXT_ACCT] = e.external_account
    ctl[C_CKPT_EVERY] = e.checkpoint_every
    ctl[C_MAX_TOUCH] = max_makers
    ctl[C_N_ASSETS] = n_assets
    ctl[C_N_SYMBOLS] = n_sym
    ctl[C_MAX_LEVELS] = n_levels
    ctl[C_MAX_ACCOUNTS] = n_accounts
    ctl[C_MAP_MASK] = map_size - 1
    ctl[C_MAX_ORDERS] = n_orders
    ctl[C_VERSION] = LAYOUT_VERSION
    rows = n_accounts * (n_assets + 1)
    return State(
        orders=orders,
        levels=levels,
        bk_key=np.zeros((n_sym + 1, 2, n_levels), np.int64),
        bk_lv=np.full((n_sym + 1, 2, n_levels), -1, np.int32),
        bk_n=np.zeros((n_sym + 1, 2), np.int64),
        bk_orders=np.zeros((n_sym + 1, 2), np.int64),
        sp=symbol_table(cfg),
        smode=np.zeros((n_sym + 1, 2), np.int64),
        avail=np.zeros((n_accounts, n_assets + 1), np.int64),
        locked=np.zeros((n_accounts, n_assets + 1), np.int64),
        idmap=np.full(map_size, -1, np.int32),
        cidmap=np.full(map_size, -1, np.int32),
        ahead=np.full(n_accounts, -1, np.int32),
        ctl=ctl,
        hs=np.zeros(2, np.uint64),
        **scratch(n_orders, rows, max_makers),
    )


def scratch(n_orders: int, rows: int, max_makers: int) -> dict[str, np.ndarray]:
    return {
        "bmark": np.zeros(rows, np.int64),
        "bold": np.zeros((rows, 2), np.int64),
        "tkeys": np.zeros(8 + 2 * max_makers, np.int64),
        "ca_ids": np.zeros(n_orders, np.int64),
    }


def prefault(st: State) -> None:
    """Write one byte in every page of every state array, so the OS commits the (lazily mapped)
    zero pages now instead of on the first orders that touch them (a page fault and a page clear
    each). Call once at start-up, before reporting ready."""
    for a in st:
        flat = a.reshape(-1).view(np.uint8)
        flat[::4096] = flat[::4096]
