"""CommandQueue: an iteration's commands go into the engine's ring in one push, in call order (a
long burst in pushes of EARLY_FLUSH); a full ring keeps the rest queued and retried; a ring that
never drains gives them up, in order."""

from __future__ import annotations

import asyncio
import os
import secrets

import numpy as np

from edge.recio import pack_command
from pipeline.link import EARLY_FLUSH, CommandQueue
from pipeline.records import COMMAND, Cmd
from ringbuf import SpscRing


def ring(cap: int) -> SpscRing:
    return SpscRing.create(f"spotx-test-cq-{os.getpid()}-{secrets.token_hex(4)}", COMMAND, cap)


def cmd(req: int) -> np.void:
    c = pack_command(int(Cmd.CANCEL), 7, price=req)
    c["req"] = req
    return c


def test_one_push_per_iteration_in_order_and_retry_when_full() -> None:
    r = ring(8)
    failed: list[int] = []

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        wakes: list[int] = []
        q = CommandQueue(r, failed.append, capacity=64, stall_s=5.0,
                         wake=lambda: wakes.append(q.n))
        assert all(q.put(cmd(i), loop) for i in range(1, 21))
        await asyncio.sleep(0)  # end of the iteration: one push, and the engine's bell rung
        assert q.pushes == 1 and q.n == 12 and len(wakes) == 1  # 8 fit
        got: list[int] = []
        out = np.zeros(8, COMMAND)
        deadline = loop.time() + 5
        while len(got) < 20:
            k = r.try_pop(out)
            got += out["req"][:k].tolist()
            assert loop.time() < deadline
            await asyncio.sleep(0.001)
        assert q.n == 0 and failed == []
        return got

    try:
        assert asyncio.run(main()) == list(range(1, 21))
    finally:
        r.close()
        r.unlink()


def test_a_ring_that_never_drains_gives_the_rest_up_in_order() -> None:
    r = ring(4)
    failed: list[int] = []

    async def main() -> CommandQueue:
        loop = asyncio.get_running_loop()
        q = CommandQueue(r, failed.append, capacity=4 + 3, stall_s=0.05)
        assert all(q.put(cmd(i), loop) for i in range(1, 8))
        assert not q.put(cmd(99), loop)  # its own buffer is full: the caller must wait
        await asyncio.sleep(0.3)
        return q

    try:
        q = asyncio.run(main())
        assert failed == [5, 6, 7] and q.given_up == 3 and q.n == 0
        out = np.zeros(8, COMMAND)
        assert r.try_pop(out) == 4 and out["req"][:4].tolist() == [1, 2, 3, 4]
    finally:
        r.close()
        r.unlink()


def test_a_closed_queue_takes_nothing_and_its_pending_flush_does_not_push() -> None:
    r = ring(8)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        q = CommandQueue(r, lambda req: None, capacity=8)
        assert q.put(cmd(1), loop)
        q.close()  # before the scheduled flush runs (an edge shutting down)
        assert not q.put(cmd(2), loop)
        await asyncio.sleep(0.01)

    try:
        asyncio.run(main())
        assert r.try_pop(np.zeros(8, COMMAND)) == 0
    finally:
        r.close()
        r.unlink()


def test_a_long_burst_is_pushed_every_early_flush_commands_in_order() -> None:
    r = ring(1024)

    async def main() -> tuple[int, list[int], list[int]]:
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        q = CommandQueue(r, lambda req: None, capacity=1024, wake=lambda: seen.append(q.n))
        n = 2 * EARLY_FLUSH + 5
        for i in range(1, n + 1):
            assert q.put(cmd(i), loop)
            if i == EARLY_FLUSH:  # pushed (and the engine rung) without waiting for the iteration
                assert q.pushes == 1 and q.n == 0 and len(seen) == 1
        assert q.pushes == 2 and q.n == 5
        await asyncio.sleep(0)  # the iteration's end pushes the remainder
        out = np.zeros(1024, COMMAND)
        k = r.try_pop(out)
        return q.pushes, out["req"][:k].tolist(), seen

    try:
        pushes, got, seen = asyncio.run(main())
        assert pushes == 3 and got == list(range(1, 2 * EARLY_FLUSH + 6)) and len(seen) == 3
    finally:
        r.close()
        r.unlink()
