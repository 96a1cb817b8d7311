"""Property: feeding the dispatcher an engine's EVENT arrays through ``feed_records`` (BALANCE
events as rows, ``edge._event_kernels.balance_lane``) is, as far as anyone can see, feeding it the
decoded lists (``feed(unpack_events(...))``, every event an object): on random engine streams with
orders, trades, cancels, cancel-alls, deposits and withdrawals, cut into chunks of any size, every
command is answered at the same point with the same events (BALANCE ones left out), every
subscriber gets the same bytes in the same order, every place and cancel gets the same answer
text (``TradingService.placed_text`` answers a resting order from the read model when its events
are just ACCEPTED, which only this feed hands it), and the read models hold the same balances,
orders, fills and last seq after every batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_book_feed import ACCOUNTS, SYMS, TOML

from edge.errors import ApiError
from edge.gateway import Dispatcher
from edge.orders import Validator
from edge.readmodel import ReadModel
from edge.recio import EVENT, EvT, event_rows, row_views, unpack_chunk, unpack_events, wal_rows
from edge.service import TradingService
from engine import Engine
from pipeline.config import Config, load
from pipeline.publisher.synth import deposits, random_commands
from pipeline.records import COMMAND, Cmd, Ev

BAL = int(Ev.BALANCE)
SUBSCRIBED = ACCOUNTS[:3]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    p = Path(tmp_path_factory.mktemp("lane")) / "lane.toml"
    p.write_text(TOML)
    return load(p, env={})


class Side:
    """One way of feeding: its read model, dispatcher, pushes and answers."""

    def __init__(self, cfg: Config, chunk: int, progress: bool) -> None:
        self.rm = ReadModel(Validator(cfg).units_by_id, {a.asset_id: a for a in cfg.assets},
                            closed_per_account=7, fills_per_account=9)
        self.svc = TradingService(cfg, self)  # type: ignore[arg-type]  # it reads .readmodel
        self.d = Dispatcher(self.rm, edge_id=1, timeout_s=600)
        self.d.chunk = chunk
        self.log: list[Any] = []  # pushes, answers and chunk ends, in the order they happened
        if progress:
            self.d.progress = lambda: self.log.append("progress")
        for a in SUBSCRIBED:
            self.rm.subscribe(a, lambda acct, b: self.log.append((acct, b)))

    @property
    def readmodel(self) -> ReadModel:
        return self.rm

    def done(self, req: int, kind: int) -> Any:
        def answer(evs: list[EvT] | None, exc: ApiError | None) -> None:
            assert exc is None and evs is not None
            self.log.append((req, [e.replace(last=0).astuple() for e in evs if e.kind != BAL]))
            try:  # the WS answer, built now: read-your-writes, as the session builds it
                if kind == Cmd.NEW_ORDER:
                    self.log.append(self.svc.placed_text(evs))
                elif kind == Cmd.CANCEL:
                    self.log.append(self.svc.canceled_text(Key(evs[0].account), evs))
            except ApiError as e:
                self.log.append(e.name)
        return answer

    def state(self) -> Any:
        rm = self.rm
        accts = {}
        for a, v in rm.accounts.items():
            accts[a] = (dict(v.balances), {k: rm.order_json(o) for k, o in v.open.items()},
                        {k: rm.order_json(o) for k, o in v.closed.items()}, dict(v.cids),
                        list(v.fills))
        return accts, sorted(rm.open_index), rm.last_seq, rm.modes, rm.global_mode


class Key:
    def __init__(self, account: int) -> None:
        self.account = account


def money(rng: np.random.Generator, n: int) -> np.ndarray:
    """Deposits and withdrawals (some refused: more than the account has)."""
    c = np.zeros(n, COMMAND)
    for i in range(n):
        c[i]["kind"] = Cmd.DEPOSIT if rng.random() < 0.5 else Cmd.WITHDRAW
        c[i]["account"] = ACCOUNTS[int(rng.integers(len(ACCOUNTS)))]
        c[i]["asset"] = int(rng.integers(1, 4))
        c[i]["amount"] = int(rng.choice([1, 10**6, 10**15, 10**17]))
    return c


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), chunk=st.sampled_from([1, 2, 3, 7, 64, 256]),
       progress=st.booleans(), max_batch=st.sampled_from([1, 9, 60]))
def test_records_feed_is_the_list_feed(cfg: Config, seed: int, chunk: int, progress: bool,
                                       max_batch: int) -> None:
    async def main() -> None:
        rng = np.random.default_rng(seed)
        eng = Engine(cfg)  # the real one: a BALANCE event for every order, cancel and fill
        clock = 1_700_000_000_000_000_000
        eng.apply(deposits(ACCOUNTS, (1, 2, 3), 10**15), clock)
        ref, lane = Side(cfg, chunk, progress), Side(cfg, chunk, progress)
        resting: dict[int, int] = {}
        balances_rows = 0
        for _ in range(30):
            cmds = random_commands(rng, int(rng.integers(1, max_batch + 1)), SYMS,
                                   accounts=ACCOUNTS, spread=8, lots=(1, 30),
                                   open_orders=list(resting.items()))
            if rng.random() < 0.3:
                both = cmds.tobytes() + money(rng, 3).tobytes()  # (np.concatenate unpacks aliases)
                cmds = np.frombuffer(both, COMMAND)[rng.permutation(len(both) // COMMAND.itemsize)]
            for i in range(len(cmds)):
                if rng.random() < 0.8:  # the rest: another edge's or nobody's (req 0)
                    for side in (ref, lane):
                        side.d.register_cb(cmds[i], 1 + i % 3, side.done(i, int(cmds[i]["kind"])))
            clock += 1_000_000
            ev = eng.apply(cmds, clock)
            acc = ev[ev["kind"] == Ev.ACCEPTED]
            resting.update(zip(acc["order_id"].tolist(), acc["account"].tolist(), strict=True))
            ref.d.feed(unpack_events(ev))
            assert lane.d.feed_records(ev) == len(ev)
            balances_rows += int((ev["kind"] == BAL).sum())
            assert lane.log == ref.log
            assert lane.state() == ref.state()
            assert len(lane.d) == len(ref.d) == 0
            resting = {o: a for o, a in resting.items() if o in ref.rm.open_index}
        assert balances_rows > 20
        assert sum(1 for x in ref.log if type(x) is tuple and len(x) == 2 and type(x[0]) is str
                   and '"status":"NEW"' in x[0]) > 5  # resting places answered (the fast case)
        assert any(type(x) is tuple and type(x[1]) is bytes and b"BalanceUpdate" in x[1]
                   for x in ref.log)

    asyncio.run(main())


def _ev(seq: int, kind: int, last: int, account: int = 3, asset: int = 1, avail: int = 0) -> Any:
    r = np.zeros(1, EVENT)
    r["seq"], r["kind"], r["last"], r["account"] = seq, kind, last, account
    r["asset"], r["available"], r["locked"], r["ts_ns"] = asset, avail, seq * 10, seq * 100
    return r


def test_lane_moves_last_or_keeps_the_balance_that_ends_a_command() -> None:
    acc, bal, can = int(Ev.ACCEPTED), BAL, int(Ev.CANCELED)
    ev = np.frombuffer(b"".join(r.tobytes() for r in [
        _ev(5, acc, 0), _ev(5, bal, 0, avail=1), _ev(5, bal, 1, avail=2),  # ACCEPTED takes last
        _ev(6, bal, 1, avail=3),  # a command of BALANCE only: kept
        _ev(7, can, 0), _ev(7, bal, 1, account=4, avail=4)]), EVENT).copy()
    rec = event_rows(ev)
    evs, rows, top = unpack_chunk(rec, 0, len(ev))
    assert [(e.seq, e.kind, e.last) for e in evs] == [(5, acc, 1), (6, bal, 1), (7, can, 1)]
    assert rows == [[3, 1, 3, 60, 6, 600], [4, 1, 4, 70, 7, 700]]
    assert top == 7
    evs, rows, top = unpack_chunk(rec, 2, 3)  # a chunk that starts at a command's last BALANCE
    assert [(e.seq, e.kind, e.last) for e in evs] == [(5, bal, 1)]
    assert rows == [[3, 1, 2, 50, 5, 500]] and top == 5
    assert unpack_chunk(rec, 3, 3) == ([], [], 0)
    assert bytes(rec) == ev.tobytes()  # the input is not touched


def test_event_rows_refuses_other_dtypes_and_copies_unaligned() -> None:
    with pytest.raises(TypeError):
        event_rows(np.zeros(2, COMMAND))
    buf = bytearray(EVENT.itemsize * 2 + 4)
    unaligned = np.frombuffer(buf, EVENT, count=2, offset=4)
    rows = event_rows(unaligned)
    assert rows.ctypes.data % 8 == 0 and rows.shape == (2, EVENT.itemsize)
    assert unpack_chunk(rows, 0, 2)[0][1].seq == 0
    wal = np.frombuffer(bytes(_ev(9, BAL, 1).tobytes()), EVENT)  # read-only, as the WAL hands them
    evs, bal_rows, top = unpack_chunk(event_rows(wal), 0, 1)
    assert [e.seq for e in evs] == [9] and bal_rows == [[3, 1, 0, 90, 9, 900]] and top == 9


def test_batch_views_and_the_compiled_entry_give_what_the_dispatcher_gives() -> None:
    """``feed_rows`` makes the int64 / uint32 views once per batch and calls the kernel's compiled
    entry; on WAL-like read-only rows (``wal_rows``) every chunk equals the checked call's."""
    acc, bal = int(Ev.ACCEPTED), BAL
    raw = b"".join(r.tobytes() for r in [
        _ev(5, acc, 0), _ev(5, bal, 0, avail=1), _ev(5, bal, 1, avail=2), _ev(6, bal, 1, avail=3),
        _ev(7, int(Ev.CANCELED), 0), _ev(7, bal, 1, account=4, avail=4)])
    rec = wal_rows(memoryview(raw))
    assert not rec.flags.writeable and rec.shape == (6, EVENT.itemsize)
    views = row_views(rec)
    for lo in range(6):
        for hi in range(lo, 7):
            got = unpack_chunk(rec, lo, hi, views)
            want = unpack_chunk(rec, lo, hi)
            assert [e.astuple() for e in got[0]] == [e.astuple() for e in want[0]]
            assert got[1:] == want[1:]
    for bad in (np.zeros(128, np.uint8), np.zeros((2, 64), np.uint8), np.zeros((2, 128), np.int64)):
        with pytest.raises(TypeError):
            row_views(bad)
