import pickle

import orjson
import pytest
from edge_events import ev

from edge.convert import SymbolUnits
from edge.errors import ApiError
from edge.readmodel import ReadModel
from edge.views import place_response
from pipeline import config
from pipeline.records import GLOBAL_SYMBOL, CmdFlag, Ev, OrdType, RejectReason, Side, Tif

CFG = config.load(env={})
UNITS = {s.symbol_id: SymbolUnits.of(s) for s in CFG.symbols}
ASSETS = {a.asset_id: a for a in CFG.assets}
BTC = CFG.symbol("BTC-USDT").symbol_id
USDT = CFG.asset("USDT").asset_id
BTC_ASSET = CFG.asset("BTC").asset_id
T0 = 1_700_000_000_123_456_789


def accepted(oid: int, account: int, side: int, price: int, qty: int, seq: int, **kw: object):  # type: ignore[no-untyped-def]
    return ev(Ev.ACCEPTED, order_id=oid, account=account, side=side, price=price, qty=qty,
              leaves=qty, symbol=BTC, otype=OrdType.LIMIT, tif=Tif.GTC, stp=1, seq=seq,
              ts_ns=T0, **kw)


def trade(taker: int, taker_acct: int, maker: int, maker_acct: int, qty: int, leaves: int,
          maker_leaves: int, seq: int, tid: int, last: int = 0):  # type: ignore[no-untyped-def]
    return ev(Ev.TRADE, order_id=taker, account=taker_acct, maker_order_id=maker,
              maker_account=maker_acct, price=6_500_000, qty=qty, quote_qty=qty * 6_500_000,
              taker_fee=7, maker_fee=3, trade_id=tid, leaves=leaves, maker_leaves=maker_leaves,
              side=Side.SELL, symbol=BTC, seq=seq, ts_ns=T0 + 1000, last=last)


def test_place_response_from_events() -> None:
    evs = [accepted(11, 2, Side.SELL, 6_500_000, 10_000, 5, cid="t-1"),
           trade(11, 2, 10, 1, 4000, 6000, 0, 5, 900),
           trade(11, 2, 9, 1, 1000, 5000, 0, 5, 901),
           ev(Ev.BALANCE, account=2, asset=USDT, available=1, locked=0, seq=5, last=1)]
    r = place_response(evs, UNITS)
    assert r["orderId"] == 11 and r["clientOrderId"] == "t-1" and r["status"] == "PARTIALLY_FILLED"
    assert r["price"] == "65000.00" and r["quantity"] == "1.0000"
    assert r["executedQty"] == "0.5000" and r["cumQuoteQty"] == "32500.000000"
    assert r["time"] == T0 // 1_000_000
    assert r["fills"][0] == {"tradeId": 900, "price": "65000.00", "qty": "0.4000",
                             "quoteQty": "26000.000000", "fee": "0.000007", "feeAsset": "USDT",
                             "liquidity": "TAKER"}
    evs.insert(3, ev(Ev.EXPIRED, order_id=11, account=2, qty=5000, seq=5))
    assert place_response(evs, UNITS)["status"] == "EXPIRED"
    # a maker's STP expiry inside the same command does not touch the taker's status
    evs[3] = ev(Ev.EXPIRED, order_id=3, account=2, seq=5)
    assert place_response(evs, UNITS)["status"] == "PARTIALLY_FILLED"


def test_place_response_rejections() -> None:
    with pytest.raises(ApiError) as ei:
        place_response([ev(Ev.REJECTED, reason=RejectReason.INSUFFICIENT_BALANCE, last=1)], UNITS)
    assert ei.value.name == "INSUFFICIENT_BALANCE"
    fok = ev(Ev.REJECTED, reason=RejectReason.FOK_UNFILLABLE, symbol=BTC, side=Side.BUY,
             otype=OrdType.LIMIT, tif=Tif.FOK, price=100, qty=5, cid="f", last=1)
    r = place_response([fok], UNITS)
    assert r["status"] == "EXPIRED" and r["executedQty"] == "0.0000" and r["fills"] == []
    with pytest.raises(ApiError) as ei:
        place_response([ev(Ev.BALANCE, last=1)], UNITS)
    assert ei.value.name == "INTERNAL"


def test_market_by_quote_shows_quote_quantity() -> None:
    e = ev(Ev.ACCEPTED, order_id=5, account=1, side=Side.BUY, qty=100_000_000, symbol=BTC,
           otype=OrdType.MARKET, tif=Tif.IOC, flags=CmdFlag.QUOTE_QTY, seq=1)
    r = place_response([e], UNITS)
    assert r["price"] is None and r["quantity"] is None and r["quoteQuantity"] == "100.000000"


def test_read_model_tracks_orders_fills_balances_and_private_events() -> None:
    rm = ReadModel(UNITS, ASSETS, closed_per_account=2, fills_per_account=3)
    got: list[tuple[int, dict]] = []
    unsub = rm.subscribe(1, lambda acct, b: got.append((acct, orjson.loads(b))))
    rm.apply([accepted(10, 1, Side.BUY, 6_500_000, 5000, 1, cid="m-1"),
              ev(Ev.BALANCE, account=1, asset=USDT, available=5, locked=325_000_000, seq=1, last=1)])
    assert [o.order_id for o in rm.open_orders(1)] == [10]
    assert rm.order_by_cid(1, "m-1").order_id == 10  # type: ignore[union-attr]
    assert got[0][1]["type"] == "OrderUpdate" and got[0][1]["status"] == "NEW"
    assert got[0][1]["lastFill"] is None and got[0][1]["orderType"] == "LIMIT"
    assert got[1][1] == {"type": "BalanceUpdate", "asset": "USDT", "available": "0.000005",
                         "locked": "325.000000", "seq": 1, "timeUs": 0}
    rm.apply([accepted(11, 2, Side.SELL, 6_500_000, 2000, 2),
              trade(11, 2, 10, 1, 2000, 0, 3000, 2, 500, last=1)])
    maker_update = got[-1][1]
    assert maker_update["status"] == "PARTIALLY_FILLED" and maker_update["executedQty"] == "0.2000"
    assert maker_update["lastFill"]["liquidity"] == "MAKER" and maker_update["lastFill"]["fee"] == "0.000003"
    assert rm.order(2, 11).status == "FILLED" and rm.open_orders(2) == []  # type: ignore[union-attr]
    assert [f["tradeId"] for f in rm.fills_json(1)] == [500] and rm.fills_json(1)[0]["side"] == "BUY"
    assert rm.fills_json(2)[0]["liquidity"] == "TAKER"
    rm.apply([ev(Ev.CANCELED, order_id=10, account=1, qty=3000, seq=3, last=1)])
    assert rm.order(1, 10).status == "CANCELED" and rm.open_orders(1) == []  # type: ignore[union-attr]
    assert got[-1][1]["status"] == "CANCELED"
    # closed orders are bounded per account, oldest evicted, cid index follows
    for i in range(3):
        rm.apply([accepted(20 + i, 1, Side.BUY, 100, 1, 4 + i),
                  ev(Ev.EXPIRED, order_id=20 + i, account=1, seq=4 + i)])
    assert rm.order(1, 10) is None and rm.order_by_cid(1, "m-1") is None
    assert len(rm.accounts[1].closed) == 2
    av = rm.accounts[1]
    assert list(av.closed) == list(av.closed_keys) == [21, 22]  # the eviction order is the dict's
    again = pickle.loads(pickle.dumps(av))  # an edge snapshot: the order is derived, not stored
    assert list(again.closed_keys) == [21, 22] and list(again.closed) == [21, 22]
    # a rejected new order with a cid is remembered as REJECTED, findable by cid
    rm.apply([ev(Ev.REJECTED, account=1, symbol=BTC, side=Side.BUY, otype=OrdType.LIMIT,
                 tif=Tif.GTC, price=100, qty=1, cid="r-1", reason=RejectReason.SYMBOL_HALTED,
                 seq=9, last=1)])
    o = rm.order_by_cid(1, "r-1")
    assert o is not None and o.status == "REJECTED" and rm.order_json(o)["rejectReason"] == "SYMBOL_HALTED"
    assert rm.order_json(o)["orderId"] is None
    n = len(got)
    unsub()
    rm.apply([ev(Ev.BALANCE, account=1, asset=USDT, available=9, locked=0, seq=10)])
    assert len(got) == n
    bal = {b["asset"]: b for b in rm.balances_json(1)}
    assert bal["USDT"] == {"asset": "USDT", "available": "0.000009", "locked": "0.000000"}
    assert bal["BTC"]["available"] == "0.00000000"
    assert rm.statistics()["last_seq"] == 10


def test_balance_updates_are_one_per_asset_and_batch_with_the_newest_state() -> None:
    rm = ReadModel(UNITS, ASSETS)
    got: list[tuple[int, dict]] = []
    rm.subscribe(1, lambda acct, b: got.append((acct, orjson.loads(b))))
    rm.subscribe(2, lambda acct, b: got.append((acct, orjson.loads(b))))
    rm.apply([accepted(10, 1, Side.BUY, 100, 1, 1),
              ev(Ev.BALANCE, account=1, asset=USDT, available=7, locked=3, seq=2),
              ev(Ev.BALANCE, account=2, asset=USDT, available=50, locked=0, seq=3),
              accepted(11, 1, Side.BUY, 100, 1, 4),
              ev(Ev.BALANCE, account=1, asset=USDT, available=4, locked=6, seq=5),
              ev(Ev.BALANCE, account=1, asset=BTC_ASSET, available=1, locked=0, seq=6, last=1)])
    kinds = [(a, e["type"], e.get("asset"), e["seq"]) for a, e in got]
    # every order change; then the newest balance of each (account, asset), first-changed first
    assert kinds == [(1, "OrderUpdate", None, 1), (1, "OrderUpdate", None, 4),
                     (1, "BalanceUpdate", "USDT", 5), (2, "BalanceUpdate", "USDT", 3),
                     (1, "BalanceUpdate", "BTC", 6)]
    assert got[2][1]["available"] == "0.000004" and got[2][1]["locked"] == "0.000006"
    assert rm.balance(1, USDT) == (4, 6) and rm.balance(2, USDT) == (50, 0)
    got.clear()
    rm.apply([ev(Ev.BALANCE, account=1, asset=USDT, available=9, locked=1, seq=7, last=1)])
    assert [(e["type"], e["seq"], e["available"]) for _, e in got] == [
        ("BalanceUpdate", 7, "0.000009")]  # the next batch's change is pushed again


def test_duplicate_cid_reject_keeps_the_open_order_findable() -> None:
    rm = ReadModel(UNITS, ASSETS)
    rm.apply([accepted(10, 1, Side.BUY, 100, 1, 1, cid="dup")])
    rm.apply([ev(Ev.REJECTED, account=1, symbol=BTC, side=Side.BUY, otype=OrdType.LIMIT, price=100,
                 qty=1, cid="dup", reason=RejectReason.DUPLICATE_CLIENT_ORDER_ID, seq=2, last=1)])
    assert rm.order_by_cid(1, "dup").order_id == 10  # type: ignore[union-attr]


def test_modes_and_fills_bound() -> None:
    rm = ReadModel(UNITS, ASSETS, fills_per_account=3)
    rm.apply([ev(Ev.MODE_CHANGED, symbol=BTC, mode=1), ev(Ev.WITHDRAWALS, mode=1)])
    assert rm.symbol_mode(BTC) == 1 and rm.withdrawals_halted
    rm.apply([ev(Ev.MODE_CHANGED, symbol=GLOBAL_SYMBOL, mode=2)])
    assert rm.symbol_mode(BTC) == 2 and rm.symbol_mode(2) == 2
    rm.apply([accepted(1, 1, Side.BUY, 100, 100, 1)])
    for i in range(5):
        rm.apply([trade(50 + i, 2, 1, 1, 1, 0, 99 - i, 2 + i, 700 + i)])
    assert [f["tradeId"] for f in rm.fills_json(1)] == [702, 703, 704]
    assert [f["tradeId"] for f in rm.fills_json(1, limit=2)] == [703, 704]


def test_broken_subscriber_does_not_stop_the_feed() -> None:
    rm = ReadModel(UNITS, ASSETS)

    def boom(a: int, b: bytes) -> None:
        raise RuntimeError("x")
    rm.subscribe(1, boom)
    rm.apply([accepted(1, 1, Side.BUY, 100, 1, 1)])
    assert rm.sink_errors == 1 and rm.order(1, 1) is not None


def test_subscribers_of_one_account_each_get_every_event_until_they_leave() -> None:
    """Two sessions of one account both get the private events; unsubscribing one (twice is
    harmless) leaves the other; the last one leaving forgets the account."""
    rm = ReadModel(UNITS, ASSETS)
    a: list[bytes] = []
    b: list[bytes] = []
    unsub_a = rm.subscribe(1, lambda acct, p: a.append(p))
    unsub_b = rm.subscribe(1, lambda acct, p: b.append(p))
    rm.apply([accepted(1, 1, Side.BUY, 100, 1, 1)])
    assert len(a) == len(b) == 1 and a == b
    unsub_a()
    unsub_a()
    rm.apply([accepted(2, 1, Side.BUY, 100, 1, 2)])
    assert len(a) == 1 and len(b) == 2
    unsub_b()
    assert rm.statistics()["subscribed_accounts"] == 0
    rm.apply([accepted(3, 1, Side.BUY, 100, 1, 3)])
    assert len(b) == 2
