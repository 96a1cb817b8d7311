from pathlib import Path

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.exporter import make_registry
from pipeline.stats import Stats, read_block


def scrape(run_dir: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(make_registry(run_dir)).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_from_several_processes_are_summed(tmp_path: Path) -> None:
    a, b = Stats(tmp_path, "edge-1"), Stats(tmp_path, "edge-2")
    ia = a.slot("auth_fail_total", reason="AUTH_MISSING")
    ib = b.slot("auth_fail_total", reason="AUTH_MISSING")
    other = b.slot("auth_fail_total", reason="AUTH_REPLAY")
    a.freeze()
    b.freeze()
    a.inc(ia, 3)
    b.inc(ib, 4)
    b.inc(other)
    m = scrape(tmp_path)
    assert m[("auth_fail_total", (("reason", "AUTH_MISSING"),))] == 7
    assert m[("auth_fail_total", (("reason", "AUTH_REPLAY"),))] == 1


def test_histogram_buckets_are_cumulative_in_seconds(tmp_path: Path) -> None:
    s = Stats(tmp_path, "engine")
    h = s.slot("wal_fsync_seconds", "histogram")
    s.freeze()
    for ns in (1_500, 250_000, 250_000, 3_000_000_000, 99_000_000_000):
        s.observe_ns(h, ns)
    m = scrape(tmp_path)
    assert m[("wal_fsync_seconds_bucket", (("le", "2e-06"),))] == 1
    assert m[("wal_fsync_seconds_bucket", (("le", "0.0005"),))] == 3
    assert m[("wal_fsync_seconds_bucket", (("le", "5.0"),))] == 4
    assert m[("wal_fsync_seconds_bucket", (("le", "+Inf"),))] == 5
    assert m[("wal_fsync_seconds_count", ())] == 5
    assert abs(m[("wal_fsync_seconds_sum", ())] - 102.0005015) < 1e-6


def test_block_survives_writer_close(tmp_path: Path) -> None:
    s = Stats(tmp_path, "engine")
    c = s.slot("engine_seq", "gauge")
    s.freeze()
    s.set(c, 42)
    s.close()
    _header, samples = read_block(tmp_path / "stats-engine.bin")
    assert [x.value for x in samples if x.name == "engine_seq"] == [42]


def test_slot_is_idempotent_per_labels(tmp_path: Path) -> None:
    s = Stats(tmp_path, "p")
    assert s.slot("x_total", symbol="A") == s.slot("x_total", symbol="A")
    assert s.slot("x_total", symbol="A") != s.slot("x_total", symbol="B")


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    import pytest

    from pipeline.stats import StatsError

    with pytest.raises(StatsError, match="kind must be one of"):
        Stats(tmp_path, "p").slot("x_total", "TRADE")


def test_a_conflicting_declaration_does_not_break_the_scrape(tmp_path: Path) -> None:
    a, b = Stats(tmp_path, "a"), Stats(tmp_path, "b")
    ia = a.slot("dual", "gauge")
    b.slot("dual", "histogram")
    ok = b.slot("fine_total")
    a.freeze()
    b.freeze()
    a.set(ia, 3)
    b.inc(ok, 2)
    m = scrape(tmp_path)
    assert m[("dual", ())] == 3 and m[("fine_total", ())] == 2


def test_observe_counts_the_bucket_bisect_picks() -> None:
    """``histogram.observe``'s inlined bucket search is ``bisect_left`` over the bounds: every
    bound, its neighbours, 0 and values past the last bound land where bisect puts them."""
    import bisect
    import random

    from pipeline.histogram import BUCKETS_NS, HIST_SLOTS, observe

    rnd = random.Random(7)
    values = [0, 1, 10**11, *(b + d for b in BUCKETS_NS for d in (-1, 0, 1)),
              *(rnd.randrange(0, 2 * 10**10) for _ in range(2000))]
    for v in values:
        data = np.zeros(3 + HIST_SLOTS, np.int64)
        observe(data.data, 3, v)  # the memoryview the processes hand it
        want = np.zeros_like(data)
        want[3 + bisect.bisect_left(BUCKETS_NS, v)] = 1
        want[3 + HIST_SLOTS - 1] = v
        assert data.tolist() == want.tolist(), v
