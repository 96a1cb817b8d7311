"""Property: random order flow through the engine, derived into book channels by the publisher
library, carried as md records, applied by a client (snapshot + deltas) gives exactly the engine's
book after every batch, for every depth view, with every checksum matching; a client that joins
mid-stream or loses a delta (forced gap) resyncs from a snapshot and is exact again.

Runs against the numba engine (``engine.Engine``) and the plain reference matcher
(``pipeline.publisher.synth.RefEngine``) on the same command streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.market_client import BookClient, BookGap
from pipeline.config import Config, load
from pipeline.publisher.channels import DEPTHS, Ctype, chan_parts
from pipeline.publisher.derive import MarketDeriver
from pipeline.publisher.record import MdAssembler, MdEncoder, Msg
from pipeline.publisher.synth import RefEngine, deposits, random_commands
from pipeline.records import Ev

TOML = """
data_dir = "var"
instance = "bookfeed"
[engine]
max_orders = 8192
max_accounts = 16
max_levels = 1024
[[assets]]
name = "USDT"
scale = 6
[[assets]]
name = "BTC"
scale = 8
[[assets]]
name = "ETH"
scale = 8
[[symbols]]
name = "BTC-USDT"
tick = "0.01"
lot = "0.0001"
min_qty = "0.0001"
max_qty = "100"
min_notional = "0"
max_price = "100000"
maker_fee_bps = 2
taker_fee_bps = 5
price_band_bps = 500
[[symbols]]
name = "ETH-USDT"
tick = "0.05"
lot = "0.001"
min_qty = "0.001"
max_qty = "1000"
min_notional = "0"
max_price = "100000"
maker_fee_bps = 0
taker_fee_bps = 10
price_band_bps = 800
"""
ACCOUNTS = (3, 4, 5, 6, 7)
SYMS = (1, 2)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    p = Path(tmp_path_factory.mktemp("bookfeed")) / "market.toml"
    p.write_text(TOML)
    return load(p, env={})


def make_engine(cfg: Config, impl: str) -> Any:
    if impl == "reference":
        return RefEngine(cfg)
    from engine import Engine

    return Engine(cfg)


def engine_book(eng: Any, sym: int, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    if isinstance(eng, RefEngine):
        return eng.book(sym, depth)
    b = eng.book(sym, depth)
    return [(lv.price, lv.qty) for lv in b.bids], [(lv.price, lv.qty) for lv in b.asks]


class Feed:
    """Engine -> MarketDeriver -> md records -> messages; clients per (symbol, depth index)."""

    def __init__(self, cfg: Config, impl: str) -> None:
        self.eng = make_engine(cfg, impl)
        self.d = MarketDeriver(cfg)
        self.asm = MdAssembler()
        self.enc = MdEncoder(lambda recs: self.msgs.extend(self.asm.feed(recs, len(recs))))
        self.msgs: list[Any] = []
        self.clients: dict[tuple[int, int], list[BookClient]] = {}
        self.accounts: dict[int, int] = {}
        self.gapped: set[BookClient] = set()  # lost a delta, has not noticed yet
        self.ts = 1_700_000_000_000_000_000
        self.apply(deposits(ACCOUNTS, (1, 2, 3), 10**15))

    def apply(self, cmds: np.ndarray) -> None:
        self.ts += 1_000_000
        ev = self.eng.apply(cmds, self.ts) if not isinstance(self.eng, RefEngine) else self.eng.apply(cmds)
        acc = ev[ev["kind"] == Ev.ACCEPTED]
        self.accounts.update(zip(acc["order_id"].tolist(), acc["account"].tolist(), strict=True))
        for kind, chan, seq, prev, js in self.d.apply(ev):
            self.enc.add(kind, chan, seq, prev, js, 0)
        self.enc.flush()

    def open_orders(self) -> list[tuple[int, int]]:
        return [(oid, self.accounts[oid]) for oid in self.d.books.orders]

    def join(self, sym: int, i: int) -> BookClient:
        c = BookClient(DEPTHS[i])
        _chan, _seq, js = self.d.syms[sym].views.snapshot(self.d.books.book(sym), i)
        c.apply(orjson.loads(js))
        self.clients.setdefault((sym, i), []).append(c)
        return c

    def deliver(self, drop_one: BookClient | None = None) -> bool:
        """Hand the messages to the clients; ``drop_one`` loses its first delta (a gap) and
        resyncs the way the docs say. Returns whether that client hit (and healed) a gap."""
        healed = False
        dropped = False
        for m in self.msgs:
            if m.kind != Msg.BOOK_DELTA:
                continue
            ct, sym, sub = chan_parts(m.chan)
            assert ct == Ctype.BOOK and m.seq > m.prev_seq
            msg = orjson.loads(m.payload)
            assert (msg["seq"], msg["prevSeq"]) == (m.seq, m.prev_seq)
            for c in self.clients.get((sym, sub), []):
                if c is drop_one and not dropped:
                    dropped = True
                    self.gapped.add(c)
                    continue
                try:
                    c.apply(msg)
                except BookGap:
                    assert c in self.gapped
                    # resubscribe: the snapshot is of the book after this whole batch, so the
                    # batch's later deltas are older than it and the client skips them
                    _chan, _seq, js = self.d.syms[sym].views.snapshot(self.d.books.book(sym), sub)
                    c.apply(orjson.loads(js))
                    self.gapped.discard(c)
                    healed = True
        self.msgs = []
        return healed

    def check(self) -> None:
        for (sym, i), clients in self.clients.items():
            f = self.d.syms[sym].fmt
            bids, asks = engine_book(self.eng, sym, DEPTHS[i])
            want = ([[f.price(p), f.qty(q)] for p, q in bids], [[f.price(p), f.qty(q)] for p, q in asks])
            for c in clients:
                if c in self.gapped:
                    continue
                assert c.top() == want, (sym, DEPTHS[i], c.seq)
                assert c.seq == self.d.syms[sym].views.last[i]


@pytest.mark.parametrize("impl", ["engine", "reference"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([2, 12, 70, 600]),
       max_batch=st.sampled_from([1, 6, 40]))
def test_client_book_is_the_engine_book_at_every_seq(cfg: Config, impl: str, seed: int,
                                                     spread: int, max_batch: int) -> None:
    rng = np.random.default_rng(seed)
    feed = Feed(cfg, impl)
    for sym in SYMS:
        for i in range(len(DEPTHS)):
            feed.join(sym, i)
    batches = 60 if max_batch > 1 else 150
    deltas = 0
    for b in range(batches):
        n = int(rng.integers(1, max_batch + 1))
        cmds = random_commands(rng, n, SYMS, accounts=ACCOUNTS, spread=spread, lots=(1, 30),
                               open_orders=feed.open_orders())
        feed.apply(cmds)
        deltas += sum(1 for m in feed.msgs if m.kind == Msg.BOOK_DELTA)
        feed.deliver()
        feed.check()
        if b % 17 == 5:  # late joiners start from a snapshot taken now
            feed.join(SYMS[b % 2], int(rng.integers(len(DEPTHS))))
    assert deltas > batches // 2  # the flow did move the books


@pytest.mark.parametrize("impl", ["engine", "reference"])
def test_forced_gap_resyncs_the_client(cfg: Config, impl: str) -> None:
    rng = np.random.default_rng(7)
    feed = Feed(cfg, impl)
    victim = feed.join(1, DEPTHS.index(20))
    healthy = feed.join(1, DEPTHS.index(20))
    healed = 0
    for b in range(80):
        feed.apply(random_commands(rng, 10, (1,), accounts=ACCOUNTS, spread=8,
                                   open_orders=feed.open_orders()))
        healed += feed.deliver(drop_one=victim if b % 10 == 3 else None)
        feed.check()
    assert healed >= 5 and victim.snapshots == 1 + healed and healthy.snapshots == 1
