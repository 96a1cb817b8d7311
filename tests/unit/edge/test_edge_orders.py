import orjson
import pytest

from edge.errors import ApiError
from edge.orders import Validator
from edge.recio import admin_note
from pipeline import config
from pipeline.records import (
    GLOBAL_SYMBOL,
    CancelScope,
    Cmd,
    CmdFlag,
    OrdType,
    Side,
    Stp,
    Tif,
    cid_decode,
)

CFG = config.load(env={})
V = Validator(CFG)
BTC = CFG.symbol("BTC-USDT").symbol_id
LIMIT = {"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "65000.25",
         "quantity": "0.5"}


def test_limit_order_record() -> None:
    r = V.place(42, {**LIMIT, "clientOrderId": "mm-1", "postOnly": True, "stp": "EXPIRE_BOTH"})
    assert (int(r["kind"]), int(r["account"]), int(r["symbol"])) == (Cmd.NEW_ORDER, 42, BTC)
    assert (int(r["price"]), int(r["qty"])) == (6_500_025, 5000)
    assert (int(r["side"]), int(r["otype"]), int(r["tif"])) == (Side.BUY, OrdType.LIMIT, Tif.GTC)
    assert int(r["flags"]) == CmdFlag.POST_ONLY and int(r["stp"]) == Stp.EXPIRE_BOTH
    assert cid_decode(r["cid"]) == "mm-1"
    assert int(r["conn"]) == int(r["req"]) == 0


def test_market_orders() -> None:
    r = V.place(1, {"symbol": "BTC-USDT", "side": "SELL", "type": "MARKET", "quantity": "1"})
    assert (int(r["otype"]), int(r["tif"]), int(r["price"]), int(r["qty"])) == (
        OrdType.MARKET, Tif.IOC, 0, 10_000)
    r = V.place(1, {"symbol": "BTC-USDT", "side": "BUY", "type": "MARKET", "quoteQuantity": "100",
                    "timeInForce": "FOK"})
    assert int(r["flags"]) == CmdFlag.QUOTE_QTY and int(r["qty"]) == 100_000_000
    assert int(r["tif"]) == Tif.FOK and cid_decode(r["cid"]) is None and int(r["stp"]) == Stp.EXPIRE_TAKER


BAD = [
    ({**LIMIT, "colour": "red"}, "BAD_REQUEST", "unknown field 'colour'"),
    ({k: v for k, v in LIMIT.items() if k != "side"}, "BAD_REQUEST", "missing field 'side'"),
    ({**LIMIT, "side": "buy"}, "BAD_REQUEST", "side must be one of BUY, SELL"),
    ({**LIMIT, "price": 65000.25}, "BAD_REQUEST", "price must be a decimal string"),
    ({**LIMIT, "postOnly": "true"}, "BAD_REQUEST", "postOnly must be true or false"),
    ({**LIMIT, "symbol": "DOGE-USDT"}, "UNKNOWN_SYMBOL", "DOGE-USDT"),
    ({**LIMIT, "price": "65000.251"}, "INVALID_PRICE", "more than 6 decimals|tick"),
    ({**LIMIT, "price": "65000.255"}, "INVALID_PRICE", "tick size 0.01"),
    ({**LIMIT, "price": "-1"}, "INVALID_PRICE", "not a plain decimal"),
    ({**LIMIT, "price": "1e5"}, "INVALID_PRICE", "not a plain decimal"),
    ({**LIMIT, "quantity": "0.00001"}, "INVALID_QUANTITY", "lot size 0.0001"),
    ({**LIMIT, "quantity": "99999999999999999999"}, "INVALID_QUANTITY", "too large"),
    ({**LIMIT, "price": "0.01", "quantity": "1"}, "MIN_NOTIONAL", "below minNotional 1"),
    ({**LIMIT, "quoteQuantity": "10"}, "BAD_REQUEST", "quoteQuantity is only for MARKET"),
    ({k: v for k, v in LIMIT.items() if k != "price"}, "BAD_REQUEST", "LIMIT orders need a price"),
    ({**LIMIT, "type": "MARKET"}, "BAD_REQUEST", "MARKET orders take no price"),
    ({**LIMIT, "type": "MARKET", "price": None, "timeInForce": "GTC"}, "BAD_REQUEST", "IOC or FOK"),
    ({**LIMIT, "type": "MARKET", "price": None, "quoteQuantity": "5"}, "BAD_REQUEST", "exactly one"),
    ({"symbol": "BTC-USDT", "side": "SELL", "type": "MARKET", "quoteQuantity": "5"}, "BAD_REQUEST",
     "only for MARKET BUY"),
    ({**LIMIT, "postOnly": True, "timeInForce": "IOC"}, "BAD_REQUEST", "postOnly needs a LIMIT GTC"),
    ({**LIMIT, "clientOrderId": "has space"}, "BAD_REQUEST", "outside"),
    ({**LIMIT, "clientOrderId": "x" * 37}, "BAD_REQUEST", "clientOrderId must be 1..36"),
    ({**LIMIT, "stp": "DECREMENT"}, "BAD_REQUEST", "stp must be one of"),
    ([1, 2], "BAD_REQUEST", "JSON object"),
]


@pytest.mark.parametrize("params,name,msg", BAD, ids=[b[2][:30] for b in BAD])
def test_place_errors(params: object, name: str, msg: str) -> None:
    with pytest.raises(ApiError, match=msg) as ei:
        V.place(1, params)
    assert ei.value.name == name


def test_null_means_absent() -> None:
    r = V.place(1, {**LIMIT, "clientOrderId": None, "stp": None})
    assert int(r["stp"]) == Stp.EXPIRE_TAKER


def test_cancels() -> None:
    r = V.cancel(3, {"orderId": 77})
    assert (int(r["kind"]), int(r["order_id"]), int(r["flags"])) == (Cmd.CANCEL, 77, 0)
    r = V.cancel(3, {"orderId": "77"}, query=True)
    assert int(r["order_id"]) == 77
    r = V.cancel(3, {"symbol": "BTC-USDT", "clientOrderId": "c1"})
    assert int(r["flags"]) == CmdFlag.BY_CID and cid_decode(r["cid"]) == "c1" and int(r["symbol"]) == BTC
    for bad, msg in (({}, "exactly one"), ({"orderId": 1, "clientOrderId": "a"}, "exactly one"),
                     ({"clientOrderId": "a"}, "needs symbol"), ({"orderId": 0}, "orderId must be in"),
                     ({"orderId": "7"}, "must be an integer")):
        with pytest.raises(ApiError, match=msg):
            V.cancel(3, bad)
    r = V.cancel_all(3, {"symbol": "BTC-USDT"})
    assert (int(r["kind"]), int(r["scope"]), int(r["symbol"])) == (Cmd.CANCEL_ALL, CancelScope.ACCOUNT_SYMBOL, BTC)
    r = V.cancel_all(3, {})
    assert int(r["scope"]) == CancelScope.ACCOUNT


def test_withdraw() -> None:
    r = V.withdraw(9, {"asset": "USDT", "amount": "12.5"})
    assert (int(r["kind"]), int(r["amount"]), int(r["asset"])) == (Cmd.WITHDRAW, 12_500_000,
                                                                    CFG.asset("USDT").asset_id)
    with pytest.raises(ApiError) as ei:
        V.withdraw(9, {"asset": "XYZ", "amount": "1"})
    assert ei.value.name == "UNKNOWN_ASSET"
    with pytest.raises(ApiError) as ei:
        V.withdraw(9, {"asset": "USDT", "amount": "0.0000001"})
    assert ei.value.name == "INVALID_AMOUNT"


def test_admin_records_carry_the_audit_note() -> None:
    audit = {"reason": "incident 12", "ticket": "OPS-1"}
    r = V.admin_symbol_mode("key1", "BTC-USDT", {"mode": "CANCEL_ONLY", **audit})
    assert (int(r["cmd"]["kind"]), int(r["cmd"]["symbol"]), int(r["cmd"]["mode"])) == (Cmd.SET_MODE, BTC, 1)
    note = orjson.loads(admin_note(r))
    assert note == {"actor": "key1", "action": "symbol.mode", "reason": "incident 12",
                    "ticket": "OPS-1", "symbol": "BTC-USDT", "mode": "CANCEL_ONLY"}
    r = V.admin_global_mode("k", {"mode": "SOFT_HALT", **audit})
    assert int(r["cmd"]["symbol"]) == GLOBAL_SYMBOL and int(r["cmd"]["mode"]) == 2
    r = V.admin_cancel_all("k", "BTC-USDT", audit)
    assert int(r["cmd"]["scope"]) == CancelScope.SYMBOL
    r = V.admin_withdrawals_halt("k", {"on": True, **audit})
    assert (int(r["cmd"]["kind"]), int(r["cmd"]["mode"])) == (Cmd.WITHDRAWALS_HALT, 1)
    r = V.admin_deposit("k", {"account": 5, "asset": "BTC", "amount": "1.5", **audit})
    assert (int(r["cmd"]["account"]), int(r["cmd"]["amount"])) == (5, 150_000_000)
    for bad, msg in (({"mode": "NORMAL"}, "missing field 'reason'"),
                     ({"mode": "NORMAL", "reason": " ", "ticket": "t"}, "blank"),
                     ({"mode": "HARD_HALT", **audit}, "SOFT_HALT, NORMAL")):
        with pytest.raises(ApiError, match=msg):
            V.admin_global_mode("k", bad)
    with pytest.raises(ApiError, match="reason must be 1..200"):
        V.admin_global_mode("k", {"mode": "NORMAL", "reason": "r" * 201, "ticket": "t"})
