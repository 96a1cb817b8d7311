"""A snapshot carried over to a config with an appended asset and symbol (engine.snapshot) behaves
exactly like an engine that ran the whole stream under the new config: for random command
streams (test_engine_vs_reference's), a random split point and random orders on the new symbol
after it, the same events byte for byte and the same state hash, in both capacity regimes (the
tight one exhausts levels, so the carried-over free list is exercised)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_vs_reference import CFG_ROOMY, CFG_TIGHT, _diff, check_invariants, streams

from engine import Engine
from engine.layout import C_FREE_LEVEL
from engine.testing import TESTING_TOML, commands, concat
from pipeline import config
from pipeline.records import Cmd, OrdType, Side, Tif

LISTED = TESTING_TOML.read_text() + """
[[assets]]
name = "SOL"
scale = 6

[[symbols]]
name = "SOL-USDT"
tick = "0.01"
lot = "0.1"
min_qty = "0.1"
max_qty = "1000"
min_notional = "0.01"
max_price = "10000"
maker_fee_bps = 3
taker_fee_bps = 7
price_band_bps = 500
"""


def _listed(base: config.Config) -> config.Config:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(LISTED)
    try:
        return config.load(f.name, env={}, overrides={
            "engine.max_orders": base.engine.max_orders,
            "engine.max_levels": base.engine.max_levels})
    finally:
        Path(f.name).unlink()


LISTED_ROOMY, LISTED_TIGHT = _listed(CFG_ROOMY), _listed(CFG_TIGHT)
REGIMES = [(CFG_ROOMY, LISTED_ROOMY, 1000), (CFG_TIGHT, LISTED_TIGHT, 2)]


@st.composite
def new_symbol_orders(draw: Any, cfg: config.Config) -> np.ndarray:
    """Deposits of the new asset and USDT, then limit orders on the new symbol that cross."""
    sym = cfg.symbol("SOL-USDT")
    rows: list[tuple[int, dict[str, Any]]] = [
        (Cmd.DEPOSIT, {"account": a, "asset": x, "amount": 10**9}) for a in (3, 4)
        for x in (sym.base_id, sym.quote_id)]
    for _ in range(draw(st.integers(0, 12))):
        rows.append((Cmd.NEW_ORDER, {
            "account": draw(st.sampled_from([3, 4])), "symbol": sym.symbol_id,
            "side": draw(st.sampled_from([Side.BUY, Side.SELL])), "otype": OrdType.LIMIT,
            "tif": Tif.GTC, "price": draw(st.integers(95, 105)), "qty": draw(st.integers(1, 9))}))
    return commands(rows)


def check_level_pool(eng: Engine) -> None:
    """Every level is in a book or on the free list, once: the pool the carried-over state
    appended to is whole."""
    s = eng.state
    free, lv, seen = 0, int(s.ctl[C_FREE_LEVEL]), set()
    while lv >= 0:
        assert lv not in seen, f"level {lv} twice on the free list"
        seen.add(lv)
        free += 1
        lv = int(s.levels["next_free"][lv])
    used = int(s.bk_n.sum())
    assert free + used == len(s.levels), f"{free} free + {used} in books != {len(s.levels)} levels"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_carried_over_engine_equals_a_run_under_the_new_config(stream: tuple[int, np.ndarray],
                                                               data: st.DataObject) -> None:
    regime, cmds = stream
    old, new, makers = REGIMES[regime]
    split = data.draw(st.integers(0, len(cmds)))
    after = concat(cmds[split:], data.draw(new_symbol_orders(new)))
    x = Engine(old, max_makers_per_order=makers)
    for i in range(split):
        x.apply(cmds[i:i + 1], ts_ns=1_000 + i)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = x.snapshot(tmp, x.seq, 1)
        carried = Engine.restore(manifest, new)
    assert carried.migrated is not None and carried.migrated[0] == "additive"
    assert carried.state_hash() == x.state_hash()
    check_level_pool(carried)
    y = Engine(new, max_makers_per_order=makers)
    for i in range(split):
        y.apply(cmds[i:i + 1], ts_ns=1_000 + i)
    assert carried.state_hash() == y.state_hash()
    for i in range(len(after)):
        one = after[i:i + 1]
        got = carried.apply(one, ts_ns=2_000 + i)
        want = y.apply(one, ts_ns=2_000 + i)
        assert not _diff(got, want), f"command {i} after the split: {_diff(got, want)}"
    assert carried.state_hash() == y.state_hash() and carried.verify_hash()
    check_invariants(carried)
    check_level_pool(carried)
    with tempfile.TemporaryDirectory() as tmp:  # and it snapshots like any other state

        again = Engine.restore(carried.snapshot(tmp, carried.seq, 1), new)
    assert again.migrated is None and again.state_hash() == y.state_hash()
