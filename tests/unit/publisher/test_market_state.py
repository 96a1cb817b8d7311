"""REST market data from durable events: depth is the engine's book, trades and candles come from
the trade list with their bounds, the ticker is the 24 h window, errors are API errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from edge import market_rest
from edge.errors import ApiError
from edge.market_state import MarketFollower, MarketState
from pipeline import config
from pipeline.publisher.errors import WalStartError
from pipeline.publisher.synth import RefEngine, random_commands
from pipeline.records import Ev
from pipeline.wal import WalWriter

CFG = config.load(env={}, overrides={"market.trade_history": 50, "market.candle_history": 30})


@pytest.fixture(scope="module")
def fed() -> tuple[MarketState, RefEngine, np.ndarray]:
    eng = RefEngine(CFG, step_ns=700_000_000)  # 0.7 s per command: many 1s candles, a few 1m
    st = MarketState(CFG, clock_ms=lambda: eng.now // 1_000_000)
    rng = np.random.default_rng(4)
    trades = []
    for _ in range(40):
        ev = eng.apply(random_commands(rng, 10, [1], spread=6, open_orders=eng.open_orders()))
        st.apply(ev)
        trades.append(ev[ev["kind"] == Ev.TRADE])
    return st, eng, np.concatenate(trades)


def test_depth_is_the_engine_book(fed: tuple[MarketState, RefEngine, np.ndarray]) -> None:
    st, eng, _ = fed
    f = st.deriver.syms[1].fmt
    for limit in (1, 5, 100):
        d = st.depth({"symbol": "BTC-USDT", "limit": limit})
        bids, asks = eng.book(1, limit)
        assert d["bids"] == [[f.price(p), f.qty(q)] for p, q in bids]
        assert d["asks"] == [[f.price(p), f.qty(q)] for p, q in asks]
        assert d["seq"] == st.deriver.books.book(1).seq > 0
    assert st.depth({"symbol": "ETH-USDT"})["bids"] == []


def test_trades_are_the_last_ones_oldest_first(fed: tuple[MarketState, RefEngine, np.ndarray]) -> None:
    st, _, tr = fed
    got = st.trades({"symbol": "BTC-USDT", "limit": 1000})
    assert len(tr) > 50 and len(got) == 50  # market.trade_history bounds it
    assert [t["tradeId"] for t in got] == tr["trade_id"].tolist()[-50:]
    assert [t["tradeId"] for t in st.trades({"symbol": "BTC-USDT", "limit": 3})] == \
        tr["trade_id"].tolist()[-3:]
    t = got[-1]
    assert t["takerSide"] in ("BUY", "SELL") and t["time"] == int(tr["ts_ns"][-1]) // 10**6


def test_candles_paging(fed: tuple[MarketState, RefEngine, np.ndarray]) -> None:
    st, _, tr = fed
    all1s = st.candles({"symbol": "BTC-USDT", "interval": "1s", "limit": 1000})
    assert len(all1s) == 31  # 30 closed kept + the open one
    opens = [c["openTime"] for c in all1s]
    assert opens == sorted(opens) and all(c["closeTime"] == c["openTime"] + 999 for c in all1s)
    start, end = opens[5], opens[12]
    page = st.candles({"symbol": "BTC-USDT", "interval": "1s", "startTime": start + 1,
                       "endTime": end, "limit": 4})
    assert [c["openTime"] for c in page] == opens[5:9]  # startTime inside a candle includes it
    tail = st.candles({"symbol": "BTC-USDT", "interval": "1s", "endTime": end, "limit": 3})
    assert [c["openTime"] for c in tail] == opens[10:13]
    m1 = st.candles({"symbol": "BTC-USDT", "interval": "1m"})
    ts = tr["ts_ns"] // 10**6
    assert sum(c["trades"] for c in m1) == len(tr) and m1[0]["openTime"] == int(ts[0] - ts[0] % 60_000)
    with pytest.raises(ApiError) as e:
        st.candles({"symbol": "BTC-USDT", "interval": "1s", "startTime": 5, "endTime": 4})
    assert e.value.name == "BAD_REQUEST"


def test_ticker(fed: tuple[MarketState, RefEngine, np.ndarray]) -> None:
    st, eng, tr = fed
    t = st.ticker({"symbol": "BTC-USDT"})
    f = st.deriver.syms[1].fmt
    bids, asks = eng.book(1, 1)
    assert t["trades"] == len(tr) and t["last"] == f.price(int(tr["price"][-1]))
    assert t["high"] == f.price(int(tr["price"].max())) and t["low"] == f.price(int(tr["price"].min()))
    assert t["volume"] == f.qty(int(tr["qty"].sum()))
    assert t["bestBid"] == (f.price(bids[0][0]) if bids else None)
    assert t["bestAsk"] == (f.price(asks[0][0]) if asks else None)


def test_handle_serves_bytes_and_api_errors(fed: tuple[MarketState, RefEngine, np.ndarray]) -> None:
    st, _, _ = fed
    market_rest.install(st)
    try:
        status, body = market_rest.handle("/v1/depth", "symbol=BTC-USDT&limit=2")
        assert status == 200 and len(orjson.loads(body)["bids"]) <= 2
        status, body = market_rest.handle("/v1/candles", b"symbol=BTC-USDT&interval=1m")
        assert status == 200 and orjson.loads(body)
        for path, q, code, name in (
                ("/v1/depth", "symbol=NOPE-USDT", 404, "UNKNOWN_SYMBOL"),
                ("/v1/depth", "symbol=BTC-USDT&limit=0", 400, "BAD_REQUEST"),
                ("/v1/depth", "symbol=BTC-USDT&symbol=BTC-USDT", 400, "BAD_REQUEST"),
                ("/v1/candles", "symbol=BTC-USDT&interval=2m", 400, "BAD_REQUEST"),
                ("/v1/ticker", "", 400, "BAD_REQUEST"),
                ("/v1/depthx", "", 404, "NOT_FOUND")):
            status, body = market_rest.handle(path, q)
            assert (status, orjson.loads(body)["error"]) == (code, name), (path, q)
    finally:
        market_rest.install(None)
    assert market_rest.handle("/v1/ticker", "symbol=BTC-USDT")[0] == 503


def test_follower_rebuilds_from_the_wal_and_refuses_one_not_starting_at_seq_1(tmp_path: Path) -> None:
    eng = RefEngine(CFG)
    rng = np.random.default_rng(6)
    with WalWriter(tmp_path / "wal", segment_bytes=1 << 20, sync_mode="none") as w:
        for _ in range(20):
            cmds = random_commands(rng, 8, [1], spread=4, open_orders=eng.open_orders())
            seq0 = w.last_seq + 1
            ev = eng.apply(cmds)
            w.append(1, seq0, len(cmds), cmds.view(np.uint8), eng.now)
            w.append(2, seq0, len(ev), ev.view(np.uint8), eng.now)
        w.sync()
    st = MarketState(CFG)
    fol = MarketFollower(st, tmp_path / "wal")
    assert fol.catch_up() == 40 and st.seq == eng.seq
    bids, asks = eng.book(1, 100)
    f = st.deriver.syms[1].fmt
    assert st.depth({"symbol": "BTC-USDT"})["asks"] == [[f.price(p), f.qty(q)] for p, q in asks]
    fol.close()
    with WalWriter(tmp_path / "wal2", segment_bytes=1 << 20, sync_mode="none", first_seq=5) as w:
        cmds = random_commands(rng, 2, [1])
        w.append(1, 5, 2, cmds.view(np.uint8), 0)
        w.sync()
    with pytest.raises(WalStartError, match="starts at seq 5"):
        MarketFollower(MarketState(CFG), tmp_path / "wal2").poll()


def test_deferred_folding_answers_as_if_folded_at_once() -> None:
    """apply() only queues: a read folds everything queued first, the queue folds itself at
    PENDING_MAX, and the answers equal a state fed one batch at a time through the deriver."""
    from edge import market_state

    eng = RefEngine(CFG, step_ns=300_000_000)
    lazy = MarketState(CFG, clock_ms=lambda: eng.now // 1_000_000)
    eager = MarketState(CFG, clock_ms=lambda: eng.now // 1_000_000)
    rng = np.random.default_rng(11)
    queued = self_folds = 0
    for i in range(300):
        ev = eng.apply(random_commands(rng, 12, [1, 2], spread=5, open_orders=eng.open_orders()))
        lazy.apply(ev if i % 2 else memoryview(ev.view(np.uint8)))  # an array or a frame's bytes
        queued += len(ev)
        if queued >= market_state.PENDING_MAX:
            queued = 0
            self_folds += 1
        assert len(lazy._pending) == queued * ev.itemsize  # folded at PENDING_MAX, not before
        eager.deriver.apply(ev, emit=False)
        if i % 131 == 130:  # a read in between folds what is queued
            for sym in ("BTC-USDT", "ETH-USDT"):
                assert lazy.depth({"symbol": sym}) == eager.depth({"symbol": sym})
            assert not lazy._pending
            queued = 0
    assert self_folds >= 2 and lazy.seq == eager.seq == eng.seq
    for sym in ("BTC-USDT", "ETH-USDT"):
        p = {"symbol": sym, "limit": 1000}
        assert lazy.depth(p) == eager.depth(p)
        assert lazy.trades(p) == eager.trades(p)
        assert lazy.candles({**p, "interval": "1m"}) == eager.candles({**p, "interval": "1m"})
        assert lazy.ticker(p) == eager.ticker(p)
