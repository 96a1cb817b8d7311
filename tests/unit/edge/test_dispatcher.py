"""Dispatcher: futures and callbacks resolved in event order, timeouts by the sweep, fail_all."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from edge.errors import ApiError
from edge.gateway import Dispatcher, Wait
from edge.recio import EvT, pack_command
from pipeline.records import Cmd, Ev, route


class Applied:
    """Records what the dispatcher applies to the read model, in order."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def apply(self, evs: list[EvT]) -> None:
        self.seen += [e.seq for e in evs]


def ev(seq: int, req: int, last: int, edge: int = 1) -> EvT:
    blank = EvT((0,) * 25)
    return blank.replace(seq=seq, req=req, conn=route(edge, 3), last=last, kind=int(Ev.ACCEPTED))


def cmd() -> Any:
    return pack_command(int(Cmd.NEW_ORDER), 7)


def test_futures_and_callbacks_get_their_own_events_after_the_read_model() -> None:
    async def main() -> None:
        rm = Applied()
        d = Dispatcher(rm, edge_id=1)
        a, b = cmd(), cmd()
        fut = d.register(a, slot=3)
        got: list[tuple[Any, Any]] = []
        d.register_cb(b, 3, lambda evs, exc: got.append((evs, exc, list(rm.seen))))
        assert int(a["conn"]) == route(1, 3) and int(a["req"]) != int(b["req"])
        ra, rb = int(a["req"]), int(b["req"])
        d.feed([ev(10, rb, 0), ev(10, rb, 1), ev(11, ra, 1), ev(12, 99, 1, edge=2)])
        assert [e.seq for e in await fut] == [11]
        (evs, exc, applied), = got
        assert exc is None and [e.last for e in evs] == [0, 1]
        assert applied == [10, 10, 11, 12]  # every event of the batch applied before any answer
        assert len(d) == 0 and d.late_events == 0

    asyncio.run(main())


def test_timeout_by_sweep_and_a_failing_callback_does_not_stop_the_others() -> None:
    async def main() -> None:
        d = Dispatcher(Applied(), edge_id=1, timeout_s=0.2)
        got: list[Any] = []

        def bad(evs: Any, exc: Any) -> None:
            raise RuntimeError("caller bug")

        t0 = time.monotonic()
        x, y = cmd(), cmd()
        d.register_cb(x, 0, bad)
        d.register_cb(y, 0, lambda evs, exc: got.append((time.monotonic() - t0, evs, exc)))
        fut = d.register(cmd(), 0)
        with pytest.raises(ApiError) as ei:
            await fut
        assert ei.value.name == "ENGINE_UNAVAILABLE"
        (dt, evs, exc), = got
        assert evs is None and exc.name == "ENGINE_UNAVAILABLE"
        assert 0.2 <= dt <= 0.2 * 1.25 + 0.1 and d.timeouts == 3 and len(d) == 0
        d.feed([ev(5, int(y["req"]), 1)])  # late: counted, not answered twice
        assert d.late_events == 1 and len(got) == 1

    asyncio.run(main())


def test_fail_all_answers_every_kind_of_waiter() -> None:
    async def main() -> None:
        d = Dispatcher(Applied(), edge_id=1)
        got: list[Any] = []
        d.register_cb(cmd(), 0, lambda evs, exc: got.append(exc))
        fut = d.register(cmd(), 0)
        d.fail_all(ApiError("ENGINE_UNAVAILABLE", "edge shutting down"))
        with pytest.raises(ApiError):
            await fut
        assert [e.name for e in got] == ["ENGINE_UNAVAILABLE"] and len(d) == 0

    asyncio.run(main())


def test_a_wait_registered_as_its_own_callback_is_answered_through_resolve() -> None:
    """A ``Wait`` handed to ``register_cb`` is the pending entry itself (the WS session's ``_Slot``
    subclass answers in its ``resolve``; compiled, it cannot be subclassed here, so a plain
    ``Wait`` with a callback stands in): same object, its deadline set, answered once."""
    async def main() -> None:
        d = Dispatcher(Applied(), edge_id=1, timeout_s=0.2)
        got: list[Any] = []
        w = Wait(None, lambda evs, exc: got.append(("w", [e.seq for e in evs or []], exc)), 0.0)
        late = Wait(None, lambda evs, exc: got.append(("late", evs, exc)), 0.0)
        a, b = cmd(), cmd()
        d.register_cb(a, 3, w)
        d.register_cb(b, 3, late)
        assert d._pending[int(a["req"])] is w and w.deadline > time.monotonic()
        d.feed([ev(4, int(a["req"]), 0), ev(4, int(a["req"]), 1)])
        assert got == [("w", [4, 4], None)] and len(d) == 1
        await asyncio.sleep(0.35)  # the sweep answers the other one
        assert got[1][:2] == ("late", None) and got[1][2].name == "ENGINE_UNAVAILABLE"
        w2 = Wait(None, lambda evs, exc: got.append(("w2", evs, exc)), 0.0)
        w2.events.append(ev(1, 1, 0))  # registered with leftovers: it starts with no events
        d.register_cb(cmd(), 3, w2)
        assert w2.events == []
        d.fail_all(ApiError("ENGINE_UNAVAILABLE", "bye"))
        assert [g[0] for g in got] == ["w", "late", "w2"]

    asyncio.run(main())


def test_a_long_batch_is_fed_in_chunks_with_progress_between_them() -> None:
    """With a ``progress`` hook, a batch longer than FEED_CHUNK is applied and answered a chunk at a
    time (answers of the first chunk can be written while the rest is built); each answer still
    comes after its own events reached the read model, and a command split across two chunks is
    answered once, with all its events."""
    from edge.gateway import FEED_CHUNK

    async def main() -> None:
        rm = Applied()
        d = Dispatcher(rm, edge_id=1)
        marks: list[int] = []
        d.progress = lambda: marks.append(len(rm.seen))
        answers: list[tuple[int, list[int], int]] = []  # (req, its events' seqs, events applied)
        reqs = []
        for _ in range(FEED_CHUNK):  # FEED_CHUNK commands of 3 events: 3 chunks
            c = cmd()
            d.register_cb(c, 3, lambda evs, exc, c=c: answers.append(
                (int(c["req"]), [e.seq for e in evs], len(rm.seen))))
            reqs.append(int(c["req"]))
        evs = [ev(i + 1, r, k == 2) for i, r in enumerate(reqs) for k in range(3)]
        for i, e in enumerate(evs):
            e.seq = i + 1
        d.feed(evs)
        assert marks == [FEED_CHUNK, 2 * FEED_CHUNK]  # between chunks, not after the last
        assert [a[0] for a in answers] == reqs and len(d) == 0
        for i, (_, seqs, applied) in enumerate(answers):
            assert seqs == [3 * i + 1, 3 * i + 2, 3 * i + 3]
            assert applied >= seqs[-1]  # read-your-writes: its events were applied first
        assert any(applied < len(evs) for _, _, applied in answers)  # answered before the end
        d.progress = None
        before = len(rm.seen)
        d.feed([ev(10_000, 77, 1)] * (FEED_CHUNK + 1))  # no hook: one piece
        assert len(rm.seen) == before + FEED_CHUNK + 1 and marks == [FEED_CHUNK, 2 * FEED_CHUNK]

    asyncio.run(main())
