"""Helpers for engine tests and tools: a small two-symbol config and COMMAND builders.

``small_config(**engine)`` loads ``engine/testing.toml`` (BTC-USDT with K = 1 and maker/taker fees
2/5 bps; ETH-BTC with K = 100, fees 0/10 bps) with ``engine.*`` overrides. ``command(kind, **f)``
builds one COMMAND record; ``commands([(kind, {...}), ...])`` an array. Field names are the
COMMAND names (aliases included); ``cid`` may be a str (encoded) or bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, load
from pipeline.records import COMMAND, cid_encode

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
