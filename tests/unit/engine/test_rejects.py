"""Every reject the engine can give is reachable through ``Engine.apply``, and a refused command
changes nothing (same state hash, same balances) and answers with exactly one REJECTED event."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import funded, limit, market, run

from engine import Engine
from engine.testing import small_config
from pipeline.records import GLOBAL_SYMBOL, CancelScope, Cmd, CmdFlag, Ev, RejectReason

R = RejectReason
Row = tuple[int, dict[str, Any]]

# reason -> (setup commands, the refused command)
CASES: dict[R, tuple[list[Row], Row]] = {
    R.UNKNOWN_SYMBOL: ([], limit(3, 1, 100, 5, symbol=9)),
    R.BAD_REQUEST: ([], limit(3, 1, 100, 5, stp=0)),
    R.UNKNOWN_ACCOUNT: ([], limit(0, 1, 100, 5)),
    R.SYMBOL_CANCEL_ONLY: ([(Cmd.SET_MODE, {"symbol": 1, "mode": 1})], limit(3, 1, 100, 5)),
    R.SYMBOL_HALTED: ([(Cmd.SET_MODE, {"symbol": 1, "mode": 2})], limit(3, 1, 100, 5)),
    R.MARKET_HALTED: ([(Cmd.SET_MODE, {"symbol": GLOBAL_SYMBOL, "mode": 2})], limit(3, 1, 100, 5)),
    R.INVALID_PRICE: ([], limit(3, 1, 201, 5)),
    R.INVALID_QUANTITY: ([], limit(3, 1, 100, 0)),
    R.MIN_NOTIONAL: ([], limit(3, 1, 100, 1)),
    R.DUPLICATE_CLIENT_ORDER_ID: ([limit(3, 1, 90, 5, cid="q1")], limit(3, 1, 91, 5, cid="q1")),
    R.WOULD_TAKE: ([limit(4, 2, 100, 5)], limit(3, 1, 100, 5, flags=int(CmdFlag.POST_ONLY))),
    R.INSUFFICIENT_BALANCE: ([], limit(7, 1, 100, 5)),
    R.UNKNOWN_ORDER: ([limit(4, 2, 100, 5)], (Cmd.CANCEL, {"account": 3, "order_id": 17})),
    R.WITHDRAWALS_HALTED: ([(Cmd.WITHDRAWALS_HALT, {"mode": 1})],
                           (Cmd.WITHDRAW, {"account": 3, "asset": 1, "amount": 5})),
}
NOT_ENGINE = {R.FENCING_TOKEN, R.FOK_UNFILLABLE}  # WAL / ledger side; FOK answers EXPIRED (FOK)


def _refused(eng: Engine, setup: list[Row], cmd: Row, reason: R) -> None:
    if setup:
        run(eng, *setup)
    before_hash, before_bal = eng.state_hash(), [eng.balances(a) for a in range(8)]
    evs = run(eng, cmd)
    evs = evs[evs["kind"] != Ev.CHECKPOINT]
    assert [int(k) for k in evs["kind"]] == [Ev.REJECTED], evs["kind"]
    assert int(evs["reason"][0]) == reason
    assert int(evs["last"][0]) == 1
    assert eng.state_hash() == before_hash
    assert [eng.balances(a) for a in range(8)] == before_bal


@pytest.mark.parametrize("reason", list(CASES), ids=lambda r: r.name)
def test_each_reject_is_reachable_and_changes_nothing(cfg: Any, reason: R) -> None:
    setup, cmd = CASES[reason]
    _refused(funded(cfg), setup, cmd, reason)


def test_capacity_exhausted_is_a_clean_reject() -> None:
    eng = funded(small_config(max_orders=2, max_levels=2))
    run(eng, limit(3, 1, 90, 5), limit(3, 1, 91, 5))
    _refused(eng, [], limit(3, 1, 92, 5), R.CAPACITY_EXHAUSTED)
    # an order that cannot rest (IOC) needs no slot and is still served
    assert run(eng, limit(4, 2, 91, 3, tif=2))["kind"][0] == Ev.ACCEPTED
    # a full side of levels refuses a new level but not an existing one
    eng2 = funded(small_config(max_levels=2))
    run(eng2, limit(3, 1, 90, 5), limit(3, 1, 91, 5))
    _refused(eng2, [], limit(3, 1, 89, 5), R.CAPACITY_EXHAUSTED)
    assert run(eng2, limit(4, 1, 90, 5))["kind"][0] == Ev.ACCEPTED
    # room comes back once an order leaves
    run(eng, (Cmd.CANCEL_ALL, {"account": 3, "scope": int(CancelScope.ACCOUNT)}))
    assert run(eng, limit(3, 1, 92, 5))["kind"][0] == Ev.ACCEPTED


def test_every_engine_reason_is_covered() -> None:
    covered = set(CASES) | {R.CAPACITY_EXHAUSTED}
    assert covered == set(R) - NOT_ENGINE


def test_hard_halt_refuses_cancels_and_soft_halt_allows_them(cfg: Any) -> None:
    eng = funded(cfg)
    oid = int(run(eng, limit(3, 1, 90, 5))["order_id"][0])
    run(eng, (Cmd.SET_MODE, {"symbol": 1, "mode": 3}))
    _refused(eng, [], (Cmd.CANCEL, {"account": 3, "order_id": oid}), R.SYMBOL_HALTED)
    _refused(eng, [], market(4, 2, 1), R.SYMBOL_HALTED)
    run(eng, (Cmd.SET_MODE, {"symbol": 1, "mode": 2}))
    assert Ev.CANCELED in run(eng, (Cmd.CANCEL, {"account": 3, "order_id": oid}))["kind"]


def test_only_the_lag_policy_lifts_its_halt(cfg: Any) -> None:
    eng = funded(cfg)
    run(eng, (Cmd.SET_LAG_HALT, {"symbol": GLOBAL_SYMBOL, "mode": 1}),
        (Cmd.SET_MODE, {"symbol": GLOBAL_SYMBOL, "mode": 0}), (Cmd.SET_MODE, {"symbol": 1, "mode": 0}))
    _refused(eng, [], limit(3, 1, 90, 5), R.MARKET_HALTED)
    evs = run(eng, (Cmd.SET_LAG_HALT, {"symbol": GLOBAL_SYMBOL, "mode": 0}))
    assert int(evs["kind"][0]) == Ev.MODE_CHANGED and int(evs["mode"][0]) == 0
    assert run(eng, limit(3, 1, 90, 5))["kind"][0] == Ev.ACCEPTED
