"""Helpers for engine tests and tools: a small two-symbol config and COMMAND builders.

``small_config(**engine)`` loads ``engine/testing.toml`` (BTC-USDT with K = 1 and maker/taker fees
2/5 bps; ETH-BTC with K = 100, fees 0/10 bps) with ``engine.*`` overrides. ``command(kind, **f)``
builds one COMMAND record; ``commands([(kind, {...}), ...])`` an array. Field names are the
COMMAND names (aliases included); ``cid`` may be a str (encoded) or bytes. ``funding`` and
``random_commands`` build seeded streams for determinism, snapshot and soak tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, load
from pipeline.records import COMMAND, CancelScope, Cmd, CmdFlag, cid_encode

TESTING_TOML = Path(__file__).with_name("testing.toml")


def small_config(**engine: Any) -> Config:
    return load(TESTING_TOML, env={}, overrides={f"engine.{k}": v for k, v in engine.items()})


def _fill(rec: np.void, kind: int, fields: dict[str, Any]) -> None:
    rec["kind"] = kind
    for k, v in fields.items():
        if k == "cid":
            if isinstance(v, str):
                v = cid_encode(v)
            rec["cid"] = np.frombuffer(bytes(v), np.uint8) if isinstance(v, bytes | bytearray) else v
        else:
            rec[k] = v


def commands(rows: list[tuple[int, dict[str, Any]]]) -> np.ndarray:
    out = np.zeros(len(rows), COMMAND)
    for i, (kind, fields) in enumerate(rows):
        _fill(out[i], int(kind), fields)
    return out


def command(kind: int, **fields: Any) -> np.ndarray:
    return commands([(kind, fields)])


def funding(accounts: range | list[int], amounts: dict[int, int]) -> np.ndarray:
    """DEPOSIT commands giving every account ``amounts[asset]`` of each asset."""
    return commands([(int(Cmd.DEPOSIT), {"account": a, "asset": x, "amount": v})
                     for a in accounts for x, v in amounts.items()])


def random_commands(seed: int, n: int, accounts: range = range(3, 8), first_seq: int = 1) -> np.ndarray:
    """A seeded stream for ``small_config()``: 70% limit orders near the mid of both symbols (some
    IOC / FOK / post-only / with cids), 10% market, 15% cancels of earlier seqs, 2% cancel-all,
    3% heartbeats. Same seed, same commands, in any process. ``first_seq`` is the seq the first
    command will get (cancels aim at earlier orders by seq)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, COMMAND)
    mids = {1: 100, 2: 150}
    accts = np.asarray(list(accounts))
    for i in range(n):
        r = rng.random()
        c = out[i]
        c["account"] = accts[rng.integers(len(accts))]
        c["conn"] = 1 + (i & 3)
        c["req"] = i
        if r < 0.80:
            sym = 1 + int(rng.integers(2))
            side = 1 + int(rng.integers(2))
            c["kind"], c["symbol"], c["side"] = Cmd.NEW_ORDER, sym, side
            c["stp"] = 1 + int(rng.integers(4))
            c["qty"] = 2 + int(rng.integers(8))
            if r < 0.70:
                off = int(rng.integers(-6, 3))
                c["otype"], c["price"] = 1, mids[sym] + (off if side == 1 else -off)
                c["tif"] = (1, 1, 1, 1, 2, 3)[int(rng.integers(6))]
                if c["tif"] == 1 and rng.random() < 0.2:
                    c["flags"] = CmdFlag.POST_ONLY
                if rng.random() < 0.3:
                    c["cid"] = cid_encode(f"c{int(rng.integers(40))}")
            else:
                c["otype"], c["tif"] = 2, 2
        elif r < 0.95:
            c["kind"] = Cmd.CANCEL
            c["order_id"] = max(1, first_seq + i - int(rng.integers(1, 40)))
        elif r < 0.97:
            c["kind"], c["scope"], c["symbol"] = Cmd.CANCEL_ALL, CancelScope.ACCOUNT_SYMBOL, 1
        else:
            c["kind"] = Cmd.HEARTBEAT
    return out


def concat(*parts: np.ndarray) -> np.ndarray:
    """Record arrays of one dtype joined byte for byte (``np.concatenate`` drops the aliased
    fields of COMMAND / EVENT)."""
    out = np.zeros(sum(len(p) for p in parts), parts[0].dtype)
    raw, at = out.view(np.uint8), 0
    for p in parts:
        raw[at:at + p.nbytes] = p.view(np.uint8).reshape(-1)
        at += p.nbytes
    return out
