"""SPSC ring (one process) against ``collections.deque``: exact full/empty semantics and exact
statistics for any sequence of pushes and pops."""

from __future__ import annotations

import collections
import os
import uuid

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pipeline.records import COMMAND
from ringbuf import SpscRing, cleanup


class SpscVsDeque(RuleBasedStateMachine):
    @initialize(cap_log2=st.integers(1, 5))
    def setup(self, cap_log2: int) -> None:
        self.prefix = f"spotx-ptest{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.ring = SpscRing.create(self.prefix, COMMAND, 1 << cap_log2)
        self.cap = 1 << cap_log2
        self.model: collections.deque[int] = collections.deque()
        self.next = self.full = self.empty = self.peak = self.popped = 0

    @rule(k=st.integers(0, 20))
    def push(self, k: int) -> None:
        a = np.zeros(k, COMMAND)
        a["order_id"] = np.arange(self.next, self.next + k)
        a["qty"] = -a["order_id"]
        fits = min(k, self.cap - len(self.model))
        assert self.ring.try_push(a) == fits
        self.full += fits < k
        self.model.extend(range(self.next, self.next + fits))
        self.next += fits
        self.peak = max(self.peak, len(self.model))

    @rule(m=st.integers(0, 20), slack=st.integers(0, 3))
    def pop(self, m: int, slack: int) -> None:
        out = np.zeros(m + slack, COMMAND)
        want = min(m, len(self.model))
        assert self.ring.try_pop(out, max_n=m) == want
        self.empty += m > 0 and not self.model
        for rec in out[:want]:
            expect = self.model.popleft()
            assert (int(rec["order_id"]), int(rec["qty"])) == (expect, -expect)
        self.popped += want

    @precondition(lambda self: hasattr(self, "ring"))
    @invariant()
    def statistics_are_exact(self) -> None:
        s = self.ring.statistics()
        assert (s.capacity, s.depth, s.pushed, s.popped) == (
            self.cap, len(self.model), self.next, self.popped)
        assert (s.full_waits, s.empty_waits) == (self.full, self.empty)
        assert len(self.model) <= s.peak_depth <= self.peak  # sampled, never over-stated
        assert self.ring.depth() == len(self.model)

    def teardown(self) -> None:
        if hasattr(self, "ring"):
            self.ring.close()
            cleanup(self.prefix)


TestSpscVsDeque = SpscVsDeque.TestCase
TestSpscVsDeque.settings = settings(max_examples=30, stateful_step_count=40, deadline=None)
