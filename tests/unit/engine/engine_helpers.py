"""Helpers for engine unit tests: a funded small engine (engine/testing.toml, accounts 3..6), and
functions that apply commands and pick events out. (A module of its own, not conftest.py: test
folders each have a conftest, and ``from conftest import`` could find another folder's.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine import Engine
from engine.testing import commands
from pipeline.config import Config
from pipeline.records import Cmd, Ev

FUNDS = {1: 10_000_000, 2: 10_000_000_000, 3: 10_000_000_000}  # USDT, BTC, ETH minor units

Run = Callable[..., np.ndarray]


def funded(cfg: Config, accounts: tuple[int, ...] = (3, 4, 5, 6), **kw: Any) -> Engine:
    eng = Engine(cfg, **kw)
    eng.apply(commands([(Cmd.DEPOSIT, {"account": a, "asset": x, "amount": v})
                        for a in accounts for x, v in FUNDS.items()]), ts_ns=1)
    return eng


def run(eng: Engine, *rows: tuple[int, dict[str, Any]], ts_ns: int = 10) -> np.ndarray:
    return eng.apply(commands(list(rows)), ts_ns=ts_ns)


def limit(account: int, side: int, price: int, qty: int, symbol: int = 1, tif: int = 1,
          stp: int = 1, **kw: Any) -> tuple[int, dict[str, Any]]:
    return (Cmd.NEW_ORDER, {"account": account, "symbol": symbol, "side": side, "otype": 1,
                            "tif": tif, "stp": stp, "price": price, "qty": qty, **kw})


def market(account: int, side: int, qty: int, symbol: int = 1, tif: int = 2, stp: int = 1,
           **kw: Any) -> tuple[int, dict[str, Any]]:
    return (Cmd.NEW_ORDER, {"account": account, "symbol": symbol, "side": side, "otype": 2,
                            "tif": tif, "stp": stp, "qty": qty, **kw})


def kinds(evs: np.ndarray) -> list[str]:
    return [Ev(int(k)).name for k in evs["kind"] if int(k) != Ev.CHECKPOINT]


def of(evs: np.ndarray, kind: Ev) -> np.ndarray:
    return evs[evs["kind"] == kind]
