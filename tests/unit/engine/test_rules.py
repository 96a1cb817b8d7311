"""Worked examples of the rules in engine/README.md, with the numbers done by hand. The property
tests (tests/property/test_engine_vs_reference.py) cover the classes; these pin the arithmetic.

testing.toml: BTC-USDT (symbol 1): K = 1, maker 2 bps, taker 5 bps, band 500 bps, lot_minor 10^4.
ETH-BTC (symbol 2): K = 100, maker 0, taker 10 bps, band 300 bps.
"""

from __future__ import annotations

from typing import Any

from engine_helpers import FUNDS, funded, kinds, limit, market, of, run

from engine import Engine
from engine.testing import small_config
from pipeline.records import CancelReason, CancelScope, Cmd, CmdFlag, Ev, ExpireReason, RejectReason

USDT, BTC = 1, 2


def test_gtc_buy_holds_notional_plus_worst_fee_and_rests_with_its_exact_obligation(eng: Engine) -> None:
    evs = run(eng, limit(3, 1, 100, 10))
    assert kinds(evs) == ["ACCEPTED", "BALANCE"]
    # hold 1000 + ceil(1000*5/1e4)=1 + 1 (both rates non-zero); resting: 1000 + ceil(1000*2/1e4) = 1001
    assert eng.balances(3)[USDT] == (FUNDS[USDT] - 1001, 1001)
    assert eng.open_orders(3)[0].locked == 1001


def test_maker_fees_are_cumulative_per_order_and_the_lock_ends_at_zero(eng: Engine) -> None:
    run(eng, limit(3, 1, 100, 10))
    t1 = of(run(eng, limit(4, 2, 100, 5, tif=2)), Ev.TRADE)
    t2 = of(run(eng, limit(5, 2, 100, 5, tif=2)), Ev.TRADE)
    assert [int(t1["maker_fee"][0]), int(t2["maker_fee"][0])] == [1, 0]  # ceil(.1)=1, ceil(.2)-1=0
    assert [int(t1["taker_fee"][0]), int(t2["taker_fee"][0])] == [1, 1]  # separate takers
    assert int(t2["maker_leaves"][0]) == 0
    assert eng.open_orders(3) == []
    assert eng.balances(3)[USDT] == (FUNDS[USDT] - 1001, 0)  # paid 1000 notional + 1 fee
    assert eng.balances(3)[BTC] == (FUNDS[BTC] + 10 * 10**4, 0)
    assert eng.balances(1)[USDT] == (3, 0)  # fee account: 1 + 0 + 1 + 1
    assert eng.balances(4)[USDT] == (FUNDS[USDT] + 500 - 1, 0)


def test_market_never_sweeps_beyond_the_band(eng: Engine) -> None:
    run(eng, limit(4, 2, 150, 2, symbol=2), limit(4, 2, 154, 2, symbol=2), limit(4, 2, 155, 2, symbol=2))
    evs = run(eng, market(3, 1, 6, symbol=2))  # band: 150 + floor(150*300/1e4) = 154
    assert kinds(evs)[:4] == ["ACCEPTED", "TRADE", "TRADE", "EXPIRED"]
    assert list(of(evs, Ev.TRADE)["price"]) == [150, 154]
    x = of(evs, Ev.EXPIRED)
    assert (int(x["qty"][0]), int(x["reason"][0])) == (2, ExpireReason.PRICE_BAND)
    assert eng.balances(3)[BTC][1] == 0  # the band-priced hold is fully released


def test_market_buy_by_quote_budget_buys_whole_lots_within_budget_and_fee(eng: Engine) -> None:
    run(eng, limit(4, 2, 100, 5), limit(4, 2, 101, 5))
    evs = run(eng, market(3, 1, 800, flags=int(CmdFlag.QUOTE_QTY)))
    t = of(evs, Ev.TRADE)
    # spend cap 800 - ceil(800*5/10005) = 799: 5 lots at 100, then (799-500)//101 = 2 lots at 101
    assert list(t["qty"]) == [5, 2] and list(t["quote_qty"]) == [500, 202]
    assert list(t["taker_fee"]) == [1, 0]  # ceil(500*5e-4)=1, ceil(702*5e-4)-1 = 0
    x = of(evs, Ev.EXPIRED)
    assert (int(x["qty"][0]), int(x["reason"][0])) == (800 - 703, ExpireReason.QUOTE_BUDGET)
    assert eng.balances(3)[USDT] == (FUNDS[USDT] - 703, 0)


def test_fok_expires_without_any_fill_when_not_fully_fillable(eng: Engine) -> None:
    run(eng, limit(4, 2, 100, 3))
    evs = run(eng, limit(3, 1, 100, 5, tif=3))
    assert kinds(evs) == ["ACCEPTED", "EXPIRED"]  # hold and release net to nothing: no BALANCE
    assert int(of(evs, Ev.EXPIRED)["reason"][0]) == ExpireReason.FOK
    assert kinds(run(eng, limit(3, 1, 100, 3, tif=3)))[:2] == ["ACCEPTED", "TRADE"]


def _stp(stp: int) -> tuple[list[str], list[int]]:
    eng = funded(small_config())
    run(eng, limit(3, 2, 100, 5), limit(4, 2, 101, 5))
    evs = run(eng, limit(3, 1, 101, 5, tif=2, stp=stp))
    return kinds(evs), [int(r) for r in of(evs, Ev.EXPIRED)["reason"]]


def test_self_trade_prevention_modes() -> None:
    X = ExpireReason
    assert _stp(1) == (["ACCEPTED", "EXPIRED"], [X.STP_TAKER])  # nothing filled: no BALANCE
    assert _stp(2)[0][:3] == ["ACCEPTED", "EXPIRED", "TRADE"] and _stp(2)[1] == [X.STP_MAKER]
    assert _stp(3)[1] == [X.STP_MAKER, X.STP_TAKER]
    assert _stp(4)[0][:2] == ["ACCEPTED", "TRADE"]  # NONE: the account trades with itself


def test_match_limit_bounds_the_makers_one_order_touches() -> None:
    eng = funded(small_config(), max_makers_per_order=2)
    run(eng, *[limit(4, 2, 100, 2 + i) for i in range(3)])
    evs = run(eng, limit(3, 1, 100, 12))
    assert kinds(evs)[:4] == ["ACCEPTED", "TRADE", "TRADE", "EXPIRED"]
    assert int(of(evs, Ev.EXPIRED)["reason"][0]) == ExpireReason.MATCH_LIMIT
    assert eng.book(1).asks[0].qty == 4  # the third maker is untouched


def test_balance_events_are_absolute_sorted_and_skip_the_fee_account(eng: Engine) -> None:
    run(eng, limit(4, 2, 100, 5))
    evs = run(eng, limit(3, 1, 100, 5))
    b = of(evs, Ev.BALANCE)
    rows = [(int(r["account"]), int(r["asset"])) for r in b]
    assert rows == sorted(rows) == [(3, USDT), (3, BTC), (4, USDT), (4, BTC)]
    assert all(int(r["account"]) != 1 for r in b)
    assert [(int(r["available"]), int(r["locked"])) for r in b][0] == eng.balances(3)[USDT]
    evs = evs[evs["kind"] != Ev.CHECKPOINT]
    assert int(evs["last"][-1]) == 1 and not evs["last"][:-1].any()


def test_cancel_all_answers_per_order_in_id_order_and_acks_when_empty(eng: Engine) -> None:
    ids = [int(run(eng, limit(3, 1, 90 + i, 5))["order_id"][0]) for i in (2, 0, 1)]
    evs = run(eng, (Cmd.CANCEL_ALL, {"account": 3, "scope": int(CancelScope.ACCOUNT), "conn": 5}))
    assert kinds(evs) == ["CANCELED", "BALANCE"] * 3
    assert list(of(evs, Ev.CANCELED)["order_id"]) == sorted(ids)
    assert set(of(evs, Ev.CANCELED)["reason"]) == {2}  # CANCEL_ALL (conn != 0)
    empty = run(eng, (Cmd.CANCEL_ALL, {"account": 3, "scope": int(CancelScope.ACCOUNT), "conn": 5}))
    assert kinds(empty) == ["ACK"] and int(empty["last"][0]) == 1 and int(empty["qty"][0]) == 0


def _cid_rows(eng: Engine, *rows: Any) -> list[str]:
    return [k for k in kinds(run(eng, *rows)) if k != "BALANCE"]


def test_client_order_ids_are_unique_per_account_among_open_orders(eng: Engine) -> None:
    assert _cid_rows(eng, limit(3, 1, 90, 5, cid="mm-1")) == ["ACCEPTED"]
    assert _cid_rows(eng, limit(4, 1, 90, 5, cid="mm-1")) == ["ACCEPTED"]  # another account
    assert _cid_rows(eng, limit(3, 1, 91, 5, cid="mm-1")) == ["REJECTED"]
    assert _cid_rows(eng, limit(3, 1, 95, 5, cid="mm-2", tif=2)) == ["ACCEPTED", "EXPIRED"]
    assert _cid_rows(eng, limit(3, 1, 95, 5, cid="mm-2")) == ["ACCEPTED"]  # the IOC never rested
    by_cid = {"account": 3, "symbol": 1, "flags": int(CmdFlag.BY_CID), "cid": "mm-1"}
    evs = run(eng, (Cmd.CANCEL, by_cid))
    assert int(of(evs, Ev.CANCELED)["price"][0]) == 90
    assert _cid_rows(eng, (Cmd.CANCEL, by_cid)) == ["REJECTED"]
    assert _cid_rows(eng, limit(3, 1, 91, 5, cid="mm-1")) == ["ACCEPTED"]  # free again
    assert [o.cid for o in eng.open_orders(4)] == ["mm-1"]


def test_deposits_and_withdrawals_move_against_the_external_account(eng: Engine) -> None:
    ext = eng.config.engine.external_account
    before = eng.balances(ext)[USDT][0]
    evs = run(eng, (Cmd.WITHDRAW, {"account": 3, "asset": USDT, "amount": 7}))
    assert kinds(evs) == ["TRANSFER", "BALANCE"] and int(evs["qty"][0]) == -7
    assert eng.balances(ext)[USDT][0] == before + 7
    assert not eng.asset_totals().any()


def test_cancel_reasons_say_who_asked(eng: Engine) -> None:
    """USER / CANCEL_ALL by default; OPERATOR flag (or conn 0) -> ADMIN; DISCONNECT flag ->
    DISCONNECT; any other flag on a cancel is BAD_REQUEST. The WAL dump names them."""
    from pipeline.wal.__main__ import event_lines

    a, b, c = (int(run(eng, limit(3, 1, 90 + i, 5))["order_id"][0]) for i in range(3))
    user = run(eng, (Cmd.CANCEL, {"account": 3, "order_id": a, "conn": 5}))
    gone = run(eng, (Cmd.CANCEL, {"account": 3, "order_id": b, "conn": 5,
                                  "flags": int(CmdFlag.DISCONNECT)}))
    op = run(eng, (Cmd.CANCEL_ALL, {"symbol": 1, "scope": int(CancelScope.SYMBOL), "conn": 5,
                                    "flags": int(CmdFlag.OPERATOR)}))
    assert [int(of(e, Ev.CANCELED)["reason"][0]) for e in (user, gone, op)] == [
        CancelReason.USER, CancelReason.DISCONNECT, CancelReason.ADMIN]
    assert int(of(op, Ev.CANCELED)["order_id"][0]) == c
    d = int(run(eng, limit(3, 1, 95, 5))["order_id"][0])
    bad = run(eng, (Cmd.CANCEL, {"account": 3, "order_id": d, "conn": 5, "flags": 32}))
    assert kinds(bad) == ["REJECTED"] and int(bad["reason"][0]) == RejectReason.BAD_REQUEST
    lines = event_lines(gone.tobytes()) + event_lines(op.tobytes())
    assert any("CANCELED" in s and s.endswith("reason DISCONNECT") for s in lines)
    assert any("CANCELED" in s and s.endswith("reason ADMIN") for s in lines)
