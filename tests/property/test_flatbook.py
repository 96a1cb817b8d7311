"""Property: ``FlatBooks`` (the numba fold the edge's REST state uses) equals ``BookDeriver`` with
``track=False`` on random engine event streams, after every batch: levels, book seq and time,
best prices, touched symbols, resting orders, last seq; across a pickle round trip (edge
snapshots) and table / level growth; and a stream that does not fit the book is refused with the
same error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_book_feed import ACCOUNTS, SYMS, TOML

from pipeline.config import Config, load
from pipeline.publisher.book import BookDeriver
from pipeline.publisher.errors import BookInconsistency
from pipeline.publisher.flatbook import FlatBooks
from pipeline.publisher.synth import RefEngine, deposits, random_commands
from pipeline.records import EVENT, Ev


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    p = Path(tmp_path_factory.mktemp("flatbook")) / "market.toml"
    p.write_text(TOML)
    return load(p, env={})


def same(py: BookDeriver, fb: FlatBooks) -> None:
    for sym in SYMS:
        a, b = py.book(sym), fb.book(sym)
        assert b.bids.levels(1 << 20) == a.bids.levels(1 << 20), sym
        assert b.asks.levels(1 << 20) == a.asks.levels(1 << 20), sym
        assert b.bids.levels(3) == a.bids.levels(3) and b.asks.top(5) == a.asks.top(5)
        assert (b.bids.best(), b.asks.best()) == (a.bids.best(), a.asks.best())
        assert (b.seq, b.ts_ns) == (a.seq, a.ts_ns), sym
        for p in a.bids.prices[:3]:
            assert b.bids.qty[p] == a.bids.qty[p]
    assert fb.orders == py.orders
    assert fb.last_seq == py.last_seq


def split_commands(ev: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """``ev`` cut at random command boundaries (a batch always holds whole commands)."""
    if len(ev) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, ev["seq"][1:] != ev["seq"][:-1]])
    cuts = sorted(set(rng.choice(starts, size=min(len(starts), 3), replace=False).tolist()) | {0})
    return [ev[a:b] for a, b in zip(cuts, [*cuts[1:], len(ev)], strict=True)]


def engine(cfg: Config, impl: str) -> tuple[object, list[int]]:
    if impl == "reference":
        eng: object = RefEngine(cfg)
    else:
        from engine import Engine

        eng = Engine(cfg)
    return eng, [1_700_000_000_000_000_000]


def run(eng: object, clock: list[int], cmds: np.ndarray) -> np.ndarray:
    clock[0] += 1_000_000
    return eng.apply(cmds) if isinstance(eng, RefEngine) else eng.apply(cmds, clock[0])  # type: ignore[attr-defined]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([2, 12, 70, 600]),
       max_batch=st.sampled_from([1, 8, 60]), impl=st.sampled_from(["engine", "reference"]))
def test_flat_books_equal_the_book_deriver(cfg: Config, seed: int, spread: int, max_batch: int,
                                           impl: str) -> None:
    rng = np.random.default_rng(seed)
    eng, clock = engine(cfg, impl)
    py = BookDeriver(list(SYMS))
    fb = FlatBooks(SYMS, level_cap=2, table=8)  # tiny: growth and rebuilds happen on the way
    run(eng, clock, deposits(ACCOUNTS, (1, 2, 3), 10**15))
    resting: dict[int, int] = {}
    moved = 0
    for b in range(50):
        cmds = random_commands(rng, int(rng.integers(1, max_batch + 1)), SYMS, accounts=ACCOUNTS,
                               spread=spread, lots=(1, 30), open_orders=list(resting.items()))
        ev = run(eng, clock, cmds)
        acc = ev[ev["kind"] == Ev.ACCEPTED]
        resting.update(zip(acc["order_id"].tolist(), acc["account"].tolist(), strict=True))
        for part in split_commands(ev, rng):
            py.apply(part, track=False)
            fb.apply(part)
            assert set(fb.touched) == set(py.touched)
            moved += len(py.touched)
            py.end_batch()
            fb.end_batch()
            assert not fb.touched
        same(py, fb)
        resting = {o: a for o, a in resting.items() if o in py.orders}
        if b % 13 == 7:
            fb = pickle.loads(pickle.dumps(fb))
            same(py, fb)
    assert moved > 10  # the flow did move the books


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), switch=st.integers(0, 25))
def test_books_given_a_symbol_later_equal_books_built_with_it(cfg: Config, seed: int,
                                                             switch: int) -> None:
    """``with_symbols`` (an edge snapshot carried over to a config that lists a symbol): books
    of symbol 1 only until batch ``switch``, then both symbols trade; equal to the reference
    deriver throughout, through a pickle round trip too."""
    rng = np.random.default_rng(seed)
    eng, clock = engine(cfg, "engine")
    py = BookDeriver(list(SYMS))
    fb = FlatBooks((1,), level_cap=2, table=8)
    run(eng, clock, deposits(ACCOUNTS, (1, 2, 3), 10**15))
    resting: dict[int, int] = {}
    for b in range(40):
        if b == switch:
            fb = pickle.loads(pickle.dumps(fb)).with_symbols(SYMS)
            assert fb.with_symbols(SYMS) is fb  # nothing more to add
        syms = SYMS if b >= switch else (1,)
        cmds = random_commands(rng, int(rng.integers(1, 30)), syms, accounts=ACCOUNTS,
                               spread=12, lots=(1, 30), open_orders=list(resting.items()))
        ev = run(eng, clock, cmds)
        acc = ev[ev["kind"] == Ev.ACCEPTED]
        resting.update(zip(acc["order_id"].tolist(), acc["account"].tolist(), strict=True))
        py.apply(ev, track=False)
        fb.apply(ev)
        py.end_batch()
        fb.end_batch()
        if b >= switch:
            same(py, fb)
        else:
            a, f = py.book(1), fb.book(1)
            assert f.bids.levels(1 << 20) == a.bids.levels(1 << 20)
            assert f.asks.levels(1 << 20) == a.asks.levels(1 << 20)
            assert fb.orders == py.orders and fb.last_seq == py.last_seq
        resting = {o: a for o, a in resting.items() if o in py.orders}


def events(cfg: Config, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eng, clock = engine(cfg, "reference")
    run(eng, clock, deposits(ACCOUNTS, (1, 2, 3), 10**15))
    out = [run(eng, clock, random_commands(rng, 30, SYMS, accounts=ACCOUNTS, spread=6,
                                           lots=(1, 30))) for _ in range(4)]
    return np.concatenate(out)


@pytest.mark.parametrize("mutate", ["drop_one", "qty", "price", "side", "maker_leaves",
                                    "duplicate_accept"])
def test_a_broken_stream_is_refused_with_the_same_error(cfg: Config, mutate: str) -> None:
    ev = events(cfg, 5)
    rng = np.random.default_rng(9)
    trades = np.flatnonzero(ev["kind"] == Ev.TRADE)
    assert len(trades) > 5
    i = int(rng.choice(trades[len(trades) // 2:]))
    bad = ev.copy()
    if mutate == "drop_one":  # the ACCEPTED of an order that later trades as a maker
        moid = bad["maker_order_id"][i]
        bad = bad[bad["order_id"] != moid]
    elif mutate == "qty":
        bad["qty"][i] += 1
    elif mutate == "price":
        bad["price"][i] += 1
    elif mutate == "side":
        bad["side"][i] = 3 - bad["side"][i]
    elif mutate == "maker_leaves":
        bad["maker_leaves"][i] -= 1
    else:  # the same order accepted twice in later commands: it would rest twice
        acc = np.flatnonzero(ev["kind"] == Ev.ACCEPTED)
        rests = acc[np.isin(ev["order_id"][acc], list(resting_after(ev)))]
        extra = bad[rests[:1]].copy()
        extra["seq"] = bad["seq"][-1] + 1
        bad = np.concatenate([bad, extra])
    py, fb = BookDeriver(list(SYMS)), FlatBooks(SYMS)
    with pytest.raises(BookInconsistency) as want:
        py.apply(bad, track=False)
    with pytest.raises(BookInconsistency) as got:
        fb.apply(bad)
    assert (got.value.symbol, got.value.seq, got.value.why) == (
        want.value.symbol, want.value.seq, want.value.why)


def resting_after(ev: np.ndarray) -> dict[int, list[int]]:
    d = BookDeriver(list(SYMS))
    d.apply(ev, track=False)
    return d.orders


def test_an_unconfigured_symbol_is_refused_before_anything_changes(cfg: Config) -> None:
    """``BookDeriver`` opens a book for any symbol id; the flat books are sized by the config and
    refuse the batch whole (the check runs before the fold)."""
    ev = events(cfg, 6)
    fb = FlatBooks(SYMS)
    fb.apply(ev[:40][ev["seq"][:40] < ev["seq"][40]])
    before = state(fb)
    bad = ev.copy()
    i = int(np.flatnonzero(bad["kind"] == Ev.ACCEPTED)[-1])
    bad["symbol"][i] = 77
    with pytest.raises(BookInconsistency, match="symbol 77 is not configured"):
        fb.apply(bad[ev["seq"] >= ev["seq"][40]])
    assert state(fb) == before


def state(fb: FlatBooks) -> tuple[object, ...]:
    books = [(b.bids.levels(1 << 20), b.asks.levels(1 << 20), b.seq, b.ts_ns)
             for b in map(fb.book, SYMS)]
    return books, fb.orders, fb.last_seq, sorted(fb.touched)


def test_track_is_refused_and_an_unknown_book_is_an_error() -> None:
    fb = FlatBooks(SYMS)
    with pytest.raises(ValueError, match="does not track"):
        fb.apply(np.zeros(1, EVENT), track=True)
    with pytest.raises(BookInconsistency, match="not configured"):
        fb.book(99)
    fb.apply(np.zeros(0, EVENT))
    assert fb.last_seq == 0 and not fb.touched
