"""The kernel entry point as the process loop uses it: seq checks, bounded output with FULL and
resume, split CANCEL_ALL, last flags, CHECKPOINT events, order id = seq."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import FUNDS, funded, limit, run

from engine import FULL, OK, Engine, EngineError, SequenceError, apply_batch
from engine.engine import join_events
from engine.testing import commands, funding, random_commands, small_config
from pipeline.records import EVENT, CancelScope, Cmd, Ev


def test_order_id_is_the_seq_of_its_command(eng: Engine) -> None:
    seq = eng.seq + 1
    evs = run(eng, limit(3, 1, 90, 5))
    assert int(evs["order_id"][0]) == seq == int(evs["seq"][0]) == eng.seq


def test_a_seq_gap_is_refused_and_applies_nothing(eng: Engine) -> None:
    h, seq = eng.state_hash(), eng.seq
    out = np.zeros(64, EVENT)
    with pytest.raises(SequenceError) as e:
        eng.apply_into(commands([limit(3, 1, 90, 5)]), 1, seq + 2, 0, out)
    assert (e.value.expected, e.value.got) == (seq + 1, seq + 2)
    assert (eng.state_hash(), eng.seq) == (h, seq)


def test_the_buffer_must_hold_one_command() -> None:
    with pytest.raises(EngineError):
        Engine(small_config(), max_makers_per_order=10, events_capacity=34)
    assert Engine(small_config(), max_makers_per_order=10, events_capacity=35).min_events_capacity() == 35


def test_full_stops_between_commands_and_the_caller_continues() -> None:
    cfg = small_config(checkpoint_every=0)
    cmds = random_commands(3, 400, first_seq=16)
    ref = Engine(cfg)
    ref.apply(funding(range(3, 8), FUNDS), ts_ns=1)
    want = ref.apply(cmds, ts_ns=1)
    eng = Engine(cfg, max_makers_per_order=1000)
    eng.apply(funding(range(3, 8), FUNDS), ts_ns=1)
    out = np.zeros(eng.min_events_capacity() + 2, EVENT)
    got, i, fulls = [], 0, 0
    while i < len(cmds):
        n_ev, done, status = eng.apply_into(cmds[i:], len(cmds) - i, eng.seq + 1, 1, out)
        assert status in (OK, FULL)
        fulls += status == FULL
        assert n_ev == 0 or int(out["last"][n_ev - 1]) == 1  # never stops inside a command here
        got.append(out[:n_ev].copy())
        i += done
    assert fulls > 0
    assert join_events(got).tobytes() == want.tobytes()
    assert eng.state_hash() == ref.state_hash()


def test_a_large_cancel_all_is_split_and_resumed_with_identical_events() -> None:
    cfg = small_config(checkpoint_every=0)
    orders = [limit(3, 1, 80 + i % 10, 5) for i in range(30)]
    cancel_all = commands([(Cmd.CANCEL_ALL, {"account": 3, "scope": int(CancelScope.ACCOUNT),
                                             "conn": 9}), (Cmd.HEARTBEAT, {})])
    big = funded(cfg)
    run(big, *orders)
    want = big.apply(cancel_all, ts_ns=5)
    assert len(want) == 2 * 30 + 1

    eng = funded(cfg, max_makers_per_order=1)
    run(eng, *orders)
    out = np.zeros(eng.min_events_capacity(), EVENT)  # 8 events: 2 cancel steps a call
    seq0 = eng.seq + 1
    n_ev, done, status = eng.apply_into(cancel_all, 2, seq0, 5, out)
    assert (done, status) == (0, FULL) and n_ev > 0 and not out["last"][:n_ev].any()
    assert eng.seq == seq0 - 1  # the command is not complete yet
    with pytest.raises(SequenceError):  # the interrupted CANCEL_ALL must come first
        eng.apply_into(cancel_all[1:], 1, seq0, 5, out)
    got = [out[:n_ev].copy()]
    i = 0
    while i < 2:
        n_ev, done, status = eng.apply_into(cancel_all[i:], 2 - i, eng.seq + 1, 5, out)
        got.append(out[:n_ev].copy())
        i += done
    assert join_events(got).tobytes() == want.tobytes()
    assert eng.open_orders(3) == [] and eng.state_hash() == big.state_hash()


def test_checkpoints_carry_the_state_hash_at_their_seq() -> None:
    eng = Engine(small_config(checkpoint_every=5))
    cmds = funding(range(3, 6), FUNDS)  # 9 commands -> a checkpoint after seq 5
    out = np.zeros(eng.events_capacity(16), EVENT)
    info = np.zeros(4, np.int64)
    n = apply_batch(eng.state, cmds[:5], 5, 1, 0, out, info)
    assert (int(info[0]), int(info[1])) == (5, OK)
    cp = out[:n][out[:n]["kind"] == Ev.CHECKPOINT]
    assert len(cp) == 1 and int(cp["seq"][0]) == 5 and int(cp["last"][0]) == 1
    assert int(cp["state_hash"][0]) == eng.state_hash()
    assert (int(cp["conn"][0]), int(cp["req"][0])) == (0, 0)
    assert int(out["kind"][n - 2]) == Ev.BALANCE and int(out["last"][n - 2]) == 1


def test_kernel_caches_are_stamped_with_every_kernel_source() -> None:
    # a cached apply_batch must not survive an edit of a kernel it inlines from another module
    from engine import _numba
    from engine._batch import apply_batch as kernel

    locator = kernel._cache._impl.locator
    assert isinstance(locator, _numba._EngineCacheLocator)
    assert locator.get_source_stamp() == _numba.KERNEL_DIGEST
    assert {p.name for p in _numba.KERNEL_FILES} >= {"_batch.py", "_match_kernels.py", "layout.py"}
