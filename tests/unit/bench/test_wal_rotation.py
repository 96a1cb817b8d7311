"""bench wal's rotation regime: syncs through a real rotation with the zero-fill as it is and as
it was (the peer), the log read back whole each time, and the fill put back afterwards. No timing
is asserted."""

from __future__ import annotations

from bench import wal
from bench.harness import Latency
from pipeline.wal import segment


def test_rotation_runs_both_fills_and_restores_the_current_one() -> None:
    current = segment.fill_file
    for old in (False, True):
        lat = Latency()
        ok, worst_us, late = wal._rotation(448, 1, old, lat)
        assert ok, "the log read back after the run differs from what was appended"
        assert worst_us > 0 and late >= 0
        assert lat.count == wal.SEGMENT_BYTES // (448 * wal.RECORD_BYTES + 64) + 1
        assert segment.fill_file is current
