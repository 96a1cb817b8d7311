"""Candles: OHLCV of every interval equals a recomputation from the trade list, boundaries
included (trades exactly on, just before and just after interval edges), also when the engine
clock steps back and when candles are closed by time in between."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.publisher.candles import CandleSeries
from pipeline.publisher.channels import INTERVAL_MS

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # a UTC midnight


def recompute(trades: list[tuple[int, int, int, int]], iv: int) -> list[tuple]:
    by: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for t in trades:
        by[t[0] - t[0] % iv].append(t)
    out = []
    for start in sorted(by):
        ts = by[start]  # in arrival (engine seq) order
        px = [t[1] for t in ts]
        out.append((start, px[0], max(px), min(px), px[-1], sum(t[2] for t in ts),
                    sum(t[3] for t in ts), len(ts)))
    return out


edge_offsets = st.sampled_from([0, 1, 999, 1000, 59_999, 60_000, 299_999, 900_000, 3_599_999,
                                3_600_000, 86_399_999, 86_400_000, 86_400_001])


@st.composite
def trade_lists(draw: st.DrawFn) -> list[tuple[int, int, int, int]]:
    n = draw(st.integers(1, 120))
    t = T0
    out = []
    for _ in range(n):
        step = draw(st.one_of(st.integers(0, 2500), edge_offsets, st.integers(-3000, -1)))
        t = max(T0, t + step)
        px = draw(st.integers(1, 10_000))
        lots = draw(st.integers(1, 500))
        out.append((t, px, lots, px * lots))
    return out


@settings(max_examples=80, deadline=None)
@given(trades=trade_lists(), roll_every=st.sampled_from([0, 1, 7]))
def test_ohlcv_equals_recomputation_for_every_interval(trades: list[tuple[int, int, int, int]],
                                                        roll_every: int) -> None:
    for iv in INTERVAL_MS:
        cs = CandleSeries(iv, history=100_000)
        newest = 0
        for i, (t, px, lots, quote) in enumerate(trades):
            cs.trade(t, px, lots, quote, seq=i + 1)
            newest = max(newest, t)
            if roll_every and i % roll_every == 0:
                cs.roll(newest)  # closing by time never changes what a candle holds
        got = [c.row()[:8] for c in cs.all()]
        assert got == recompute(trades, iv), iv
        assert all(c.closed for c in cs.hist)
        assert all(a.open_ms < b.open_ms for a, b in zip(cs.all(), cs.all()[1:], strict=False))


def test_changed_candles_are_reported_in_order_with_closed_flags() -> None:
    cs = CandleSeries(60_000, history=10)
    cs.trade(T0 + 59_999, 10, 1, 10, 1)
    assert [(c.open_ms, c.closed) for c in cs.take()] == [(T0, False)]
    cs.trade(T0 + 60_000, 11, 1, 11, 2)  # the boundary: a new candle, the old one closes
    assert [(c.open_ms, c.closed) for c in cs.take()] == [(T0, True), (T0 + 60_000, False)]
    cs.roll(T0 + 119_999)
    assert cs.take() == []
    cs.roll(T0 + 120_000)
    assert [(c.open_ms, c.closed) for c in cs.take()] == [(T0 + 60_000, True)]
    cs.trade(T0 + 61_000, 9, 2, 18, 3)  # late trade into a closed candle: updated, still closed
    (c,) = cs.take()
    assert (c.open_ms, c.closed, c.l, c.vol, c.n) == (T0 + 60_000, True, 9, 3, 2)


def test_history_is_bounded() -> None:
    cs = CandleSeries(1000, history=5)
    for i in range(20):
        cs.trade(T0 + i * 1000, 1, 1, 1, i)
    assert len(cs.hist) == 5 and cs.cur is not None
    assert [c.open_ms for c in cs.all()] == [T0 + i * 1000 for i in range(14, 20)]


def test_deriver_candles_equal_recomputation_from_its_trades() -> None:
    """The publisher path (runs of trades per symbol and timestamp, rolled by event time) on a
    random flow crossing second, minute, hour and day boundaries."""
    import numpy as np

    from pipeline import config
    from pipeline.publisher.derive import MarketDeriver
    from pipeline.publisher.synth import RefEngine, random_commands

    cfg = config.load(env={}, overrides={"market.trade_history": 100_000,
                                         "market.candle_history": 100_000})
    day = 86_400_000_000_000
    eng = RefEngine(cfg, t0_ns=(1_700_000_000_000_000_000 // day + 1) * day - 1_200_000_000_000,
                    step_ns=333_333_337)  # from 20 min before a UTC midnight to ~15 min after
    d = MarketDeriver(cfg)
    rng = np.random.default_rng(8)
    for _ in range(1100):
        d.apply(eng.apply(random_commands(rng, int(rng.integers(1, 12)), [1, 2], spread=3,
                                          open_orders=eng.open_orders())))
    for sid in (1, 2):
        m = d.syms[sid]
        trades = [(ts // 1_000_000, px, lots, quote) for _tid, px, lots, quote, _s, ts, _q in m.trades]
        assert len(trades) > 500
        for i, iv in enumerate(INTERVAL_MS):
            got = [c.row()[:8] for c in m.candles[i].all()]
            assert got == recompute(trades, iv), (sid, iv)
        assert len(m.candles[5].all()) == 2  # the day boundary was crossed
