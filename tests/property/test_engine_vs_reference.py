"""The numba engine against the plain-Python reference (engine/README.md is the spec of both).

Random multi-account (3-5), two-symbol command streams: limit / market / quote-budget orders, IOC,
FOK, post-only, every STP mode, cancels by id and cid, cancel-all of every scope, deposits,
withdrawals, modes, lag halts, withdrawal halts, heartbeats and the odd malformed command. After
every command: identical events and state hash, and the invariants — book never crossed, each
resting order's lock equals its remaining obligation, each account's locked balance equals the sum
of its orders' locks, every asset sums to zero over all accounts, nothing negative but the external
account. Two capacity regimes: roomy, and tight (10 orders, 3 levels a side, 2 makers per order) so
CAPACITY_EXHAUSTED and MATCH_LIMIT happen. A second property applies whole streams in one call with
the smallest legal event buffer (CANCEL_ALL splits) and expects the same events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.engine import join_events
from engine.fees import fee_ceil
from engine.queries import all_open_orders, asset_totals
from engine.reference import ReferenceEngine
from engine.testing import commands, small_config
from pipeline.records import EVENT, GLOBAL_SYMBOL, Cmd, CmdFlag, route

CFG_ROOMY = small_config()
CFG_TIGHT = small_config(max_orders=10, max_levels=3)
REGIMES = [(CFG_ROOMY, 1000), (CFG_TIGHT, 2)]
MID = {1: 100, 2: 150}
BUDGET = {1: (50, 3000), 2: (5_000, 200_000)}
CIDS = [None] * 8 + ["a", "b", "c", "d", "e", "f", "g", "h"]
FUNDING = {1: 2_000, 2: 300_000, 3: 15_000_000}  # USDT, BTC, ETH minor units per account


def _order(d: st.DataObject, accounts: list[int]) -> tuple[int, dict[str, Any]]:
    sym = d.draw(st.sampled_from([1] * 10 + [2] * 9 + [3]))
    mid = MID.get(sym, 100)
    side = d.draw(st.sampled_from([1, 2]))
    otype = d.draw(st.sampled_from([1, 1, 1, 2]))
    f: dict[str, Any] = {"account": d.draw(st.sampled_from(accounts)), "symbol": sym, "side": side,
                         "otype": otype, "stp": d.draw(st.sampled_from([1] * 6 + [2, 2, 3, 3, 4, 4, 4]
                                                                        + [0]))}
    rare = d.draw(st.integers(0, 24)) == 0
    if otype == 1:
        f["tif"] = d.draw(st.sampled_from([1, 1, 1, 1, 1, 1, 2, 3]))
        lo, hi = (-6, 2) if side == 1 else (-2, 6)  # mostly resting, sometimes crossing
        f["price"] = d.draw(st.sampled_from([0, 201])) if rare else mid + d.draw(st.integers(lo, hi))
        if f["tif"] == 1 and d.draw(st.integers(0, 4)) == 0:
            f["flags"] = int(CmdFlag.POST_ONLY)
    else:
        f["tif"] = 1 if rare else d.draw(st.sampled_from([2, 2, 2, 3]))
        if side == 1 and d.draw(st.booleans()):
            f["flags"] = int(CmdFlag.QUOTE_QTY)
            if f["tif"] == 3:
                f["tif"] = d.draw(st.sampled_from([2, 2, 2, 2, 3]))
    if f.get("flags") == CmdFlag.QUOTE_QTY:
        lo, hi = BUDGET.get(sym, (50, 3000))
        f["qty"] = d.draw(st.integers(lo, hi))
    else:
        f["qty"] = d.draw(st.sampled_from([0, 101])) if rare else d.draw(st.integers(1, 12))
    cid = d.draw(st.sampled_from(CIDS))
    if cid:
        f["cid"] = cid
    return Cmd.NEW_ORDER, f


def _ladder(d: st.DataObject, accounts: list[int]) -> list[tuple[int, dict[str, Any]]]:
    """Several GTC orders on one side of one symbol: depth for sweeps and capacity limits."""
    sym = d.draw(st.sampled_from([1, 2]))
    side = d.draw(st.sampled_from([1, 2]))
    sign = -1 if side == 1 else 1
    return [(Cmd.NEW_ORDER, {"account": d.draw(st.sampled_from(accounts)), "symbol": sym,
                             "side": side, "otype": 1, "tif": 1, "stp": 1,
                             "price": MID[sym] + sign * d.draw(st.integers(0, 6)),
                             "qty": d.draw(st.integers(3, 8))})
            for _ in range(d.draw(st.integers(2, 6)))]


def _sweep(d: st.DataObject, accounts: list[int]) -> tuple[int, dict[str, Any]]:
    """A large aggressive order: many makers, the band, MATCH_LIMIT."""
    sym = d.draw(st.sampled_from([1, 2]))
    side = d.draw(st.sampled_from([1, 2]))
    f: dict[str, Any] = {"account": d.draw(st.sampled_from(accounts)), "symbol": sym,
                         "side": side, "stp": d.draw(st.sampled_from([1, 2, 3, 4])),
                         "qty": d.draw(st.integers(10, 50))}
    if d.draw(st.booleans()):
        f.update(otype=2, tif=d.draw(st.sampled_from([2, 3])))
    else:
        f.update(otype=1, tif=d.draw(st.sampled_from([1, 2, 3])),
                 price=MID[sym] + (8 if side == 1 else -8))
    return Cmd.NEW_ORDER, f


def _command(d: st.DataObject, accounts: list[int],
             order_seqs: list[tuple[int, int]]) -> list[tuple[int, dict[str, Any]]]:
    k = d.draw(st.integers(0, 99))
    acct = d.draw(st.sampled_from(accounts))
    if k < 8:
        return _ladder(d, accounts)
    if k < 14:
        kind, f = _sweep(d, accounts)
    elif k < 66:
        kind, f = _order(d, accounts)
    elif k < 80:
        f = {"account": acct, "symbol": d.draw(st.sampled_from([0, 0, 0, 1, 2]))}
        cid = d.draw(st.sampled_from(CIDS))
        if cid and d.draw(st.booleans()):
            f.update(flags=int(CmdFlag.BY_CID), cid=cid)
        else:
            seq, owner = d.draw(st.sampled_from(order_seqs)) if order_seqs else (1, acct)
            f["order_id"] = seq
            if d.draw(st.integers(0, 5)):
                f["account"] = owner
        kind = Cmd.CANCEL
    elif k < 83:
        kind, f = Cmd.CANCEL_ALL, {"account": acct, "scope": d.draw(st.sampled_from([1, 2, 3, 3, 0])),
                                   "symbol": d.draw(st.sampled_from([1, 2]))}
    elif k < 91:
        kind = Cmd.DEPOSIT if k < 87 else Cmd.WITHDRAW
        f = {"account": d.draw(st.sampled_from([*accounts, 2, 9])), "asset": d.draw(st.integers(1, 3)),
             "amount": d.draw(st.one_of(st.integers(1, 200_000), st.just(0)))}
    elif k < 94:
        kind, f = Cmd.SET_MODE, {"symbol": d.draw(st.sampled_from([1, 2, GLOBAL_SYMBOL, 5])),
                                 "mode": d.draw(st.sampled_from([0] * 8 + [1, 2, 3, 4]))}
    elif k < 96:
        kind, f = Cmd.SET_LAG_HALT, {"symbol": d.draw(st.sampled_from([1, 2, GLOBAL_SYMBOL])),
                                     "mode": d.draw(st.sampled_from([0, 0, 0, 1, 2]))}
    elif k < 97:
        kind, f = Cmd.WITHDRAWALS_HALT, {"mode": d.draw(st.sampled_from([0, 1, 1, 2]))}
    elif k < 99:
        kind, f = d.draw(st.sampled_from([Cmd.HEARTBEAT, Cmd.SNAPSHOT])), {}
    else:
        kind, f = 42, {"account": acct}
    f["conn"] = d.draw(st.sampled_from([0, route(1, 7), route(2, 9)]))
    f["req"] = d.draw(st.integers(0, 1000))
    return [(kind, f)]


@st.composite
def streams(draw: Any) -> tuple[int, np.ndarray]:
    d = draw(st.data())
    regime = draw(st.integers(0, 1))
    accounts = list(range(3, 3 + draw(st.integers(3, 5))))
    rows = [(Cmd.DEPOSIT, {"account": a, "asset": x, "amount": amt * draw(st.sampled_from([1, 5, 20]))})
            for a in accounts for x, amt in FUNDING.items()]
    order_seqs: list[tuple[int, int]] = []
    want = len(rows) + draw(st.integers(1, 60))
    while len(rows) < want:
        for row in _command(d, accounts, order_seqs):
            rows.append(row)
            if row[0] == Cmd.NEW_ORDER:
                order_seqs.append((len(rows), row[1]["account"]))  # seq = order id if it rests
    return regime, commands(rows)


def _diff(a: np.ndarray, b: np.ndarray) -> str:
    if len(a) != len(b):
        return f"{len(a)} events vs {len(b)}: kinds {list(a['kind'])} vs {list(b['kind'])}"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.tobytes() != y.tobytes():
            fields = [(n, x[n], y[n]) for n in EVENT.names if n != "cid" and x[n] != y[n]]
            return f"event {i} (kind {x['kind']}): {fields or 'cid differs'}"
    return ""


def check_invariants(eng: Engine) -> None:
    s = eng.state
    cfg = eng.config
    ext = cfg.engine.external_account
    syms = {x.symbol_id: x for x in cfg.symbols}
    for sym in syms:
        b = eng.book(sym, 1)
        if b.bids and b.asks:
            assert b.bids[0].price < b.asks[0].price, f"symbol {sym} crossed: {b}"
    locks = np.zeros_like(s.locked)
    for o in all_open_orders(s):
        x = syms[o.symbol]
        assert o.leaves > 0
        if o.side == 2:
            want = o.leaves * x.lot_minor
            locks[o.account, x.base_id] += o.locked
        else:
            r = o.price * o.leaves * x.k
            want = r + fee_ceil(o.maker_notional + r, x.maker_fee_bps) - fee_ceil(o.maker_notional,
                                                                                 x.maker_fee_bps)
            locks[o.account, x.quote_id] += o.locked
        assert o.locked == want, f"order {o.order_id}: lock {o.locked} != obligation {want}"
    assert np.array_equal(locks, s.locked), "locked balances != sum of order locks"
    assert not asset_totals(s).any(), f"asset not conserved: {asset_totals(s)}"
    neg = np.argwhere((s.avail < 0) | (s.locked < 0))
    assert all(int(a) == ext for a, _ in neg), f"negative balance rows {neg.tolist()}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_engine_matches_reference_event_for_event(stream: tuple[int, np.ndarray]) -> None:
    regime, cmds = stream
    cfg, makers = REGIMES[regime]
    eng = Engine(cfg, max_makers_per_order=makers)
    ref = ReferenceEngine(cfg, makers)
    for i in range(len(cmds)):
        one = cmds[i:i + 1]
        got = eng.apply(one, ts_ns=1_000 + i)
        want = ref.apply(one, 1_000 + i)
        diff = _diff(got, want)
        assert not diff, f"command {i} kind {int(one['kind'][0])}: {diff}"
        assert eng.state_hash() == ref.state_hash(), f"state hash differs after command {i}"
        check_invariants(eng)
    assert eng.verify_hash()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_one_call_with_the_smallest_buffer_gives_the_same_events(stream: tuple[int, np.ndarray]) -> None:
    regime, cmds = stream
    cfg, makers = REGIMES[regime]
    one_by_one = Engine(cfg, max_makers_per_order=makers)
    events = join_events([one_by_one.apply(cmds[i:i + 1], ts_ns=7) for i in range(len(cmds))])
    small = Engine(cfg, max_makers_per_order=makers, events_capacity=5 + 3 * makers)
    assert not _diff(small.apply(cmds, ts_ns=7), events)
    assert small.state_hash() == one_by_one.state_hash()
