"""``bench e2e``'s stack runs, small: the durable stack (``spotx up``'s code path, fdatasync) and
its no-fsync peer, driven by the real generator over real sockets. No timing is asserted (speed
figures come from ``python -m bench e2e`` only). What is checked: each stack runs with the
durability it claims; every order is answered and the durable WAL seq moved by exactly the commands
answered (fdatasync), the peer's rows say loudly that they are not durable figures, and the
comparison row names both sides."""

from __future__ import annotations

import pytest

from bench import e2e
from bench.loadgen import rows

PLAN = e2e.Plan(ws_rates=(500,), seconds=0.6, warmup=0.1, inflight=(), rest_rate=50,
                inproc_rates=(), inproc_inflight=(), drain_s=10.0, max_backlog_s=5.0,
                nosync_rates=(500,))


@pytest.mark.timeout(240)
def test_the_durable_stack_and_its_nosync_peer() -> None:
    stack, facts = e2e.run_stack(PLAN)
    assert facts["durability"] == "fdatasync"
    by = rows.by_name(stack)
    assert set(by) == {e2e.WARMUP, "e2e.ws.open.500", "e2e.rest.open.50"}
    assert all(rows.clean(r) for r in by.values())
    seq = e2e._seq_row(stack, facts)
    assert seq.correct and seq.value and seq.value >= 300 + 30  # WS 300 + REST 30 + warm-up

    out = e2e.run_nosync(PLAN, stack)
    names = [r.name for r in out]
    assert names == ["e2e.ws.nosync.open.500", "e2e.sync_vs_nosync.place_p50.500"], out
    peer_row, cmp_row = out
    assert peer_row.correct and "WITHOUT FSYNC" in (peer_row.notes or "")
    assert "NOT a durable figure" in (peer_row.notes or "")
    assert cmp_row.value == by["e2e.ws.open.500"]["latency_us"]["place"]["p50"]
    assert cmp_row.peer_value == peer_row.p50 and cmp_row.peer_value and cmp_row.peer_value > 0
