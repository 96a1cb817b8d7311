"""Broadcast ring (one process) against a list of everything published: a reader gets exactly
the records it has not yet read, or ``Lapped`` with exactly the number it lost; its accounting
(read + missed + skipped) always covers every position it passed."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pipeline.records import EVENT
from ringbuf import BroadcastReader, BroadcastWriter, Lapped, cleanup


class BroadcastVsList(RuleBasedStateMachine):
    @initialize(cap_log2=st.integers(1, 5), pre=st.integers(0, 70),
                start=st.sampled_from(["latest", "oldest"]))
    def setup(self, cap_log2: int, pre: int, start: str) -> None:
        self.prefix = f"spotx-ptest{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.cap = 1 << cap_log2
        self.w = BroadcastWriter.create(self.prefix, EVENT, self.cap)
        self.published = 0
        self.publish(pre)
        self.r = BroadcastReader.attach(self.prefix, EVENT, start=start)
        expect = self.published if start == "latest" else max(0, self.published - self.cap)
        assert self.r.cursor == self.r.start == expect

    @rule(k=st.integers(0, 40))
    def publish(self, k: int) -> None:
        a = np.zeros(k, EVENT)
        a["seq"] = np.arange(self.published, self.published + k)
        a["leaves"] = a["seq"].astype(np.int64) * 7
        self.published += k
        assert self.w.publish(a) == self.published

    @precondition(lambda self: hasattr(self, "r"))
    @rule(m=st.integers(1, 40))
    def read(self, m: int) -> None:
        out = np.zeros(m, EVENT)
        cursor = self.r.cursor
        if self.published - cursor > self.cap:
            with pytest.raises(Lapped) as e:
                self.r.try_read(out)
            assert e.value.missed == self.published - self.cap - cursor
            assert self.r.cursor == cursor
            return
        n = self.r.try_read(out)
        assert n == min(m, self.published - cursor)
        assert out["seq"][:n].tolist() == list(range(cursor, cursor + n))
        assert np.array_equal(out["leaves"][:n], out["seq"][:n].astype(np.int64) * 7)

    @precondition(lambda self: hasattr(self, "r"))
    @rule(latest=st.booleans())
    def resync(self, latest: bool) -> None:
        before = self.r.cursor
        after = self.r.resync_to_latest() if latest else self.r.resync_to_oldest()
        expect = self.published if latest else max(before, self.published - self.cap)
        assert after == expect

    @precondition(lambda self: hasattr(self, "r"))
    @invariant()
    def accounting(self) -> None:
        s = self.r.statistics()
        assert s.published == self.published and s.lag == self.published - self.r.cursor
        # every position between start and cursor was read, lost, or skipped: exactly once
        assert s.read + s.missed + s.skipped == self.r.cursor - self.r.start
        assert s.missed <= max(0, self.published - self.cap - self.r.start)

    def teardown(self) -> None:
        if hasattr(self, "r"):
            self.r.close()
        if hasattr(self, "w"):
            self.w.close()
            cleanup(self.prefix)


TestBroadcastVsList = BroadcastVsList.TestCase
TestBroadcastVsList.settings = settings(max_examples=30, stateful_step_count=40, deadline=None)
