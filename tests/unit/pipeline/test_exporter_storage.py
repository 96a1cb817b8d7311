"""The exporter's storage series: what the data dir holds on disk, from a real engine host (WAL
segments rotated by real appends, a real snapshot), checked against the files themselves."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import config
from pipeline.engine_proc import EngineHost, snap_path, wal_path
from pipeline.exporter import make_registry
from pipeline.records import COMMAND, Cmd


def _scrape(run_dir: Path, data_dir: Path | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(make_registry(run_dir, data_dir)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _du(paths: list[Path]) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in paths)


def test_wal_and_snapshot_disk_series_match_the_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = config.load(env={"SPOTX_DATA_DIR": str(data), "SPOTX_ENGINE_MAX_ORDERS": "65536",
                           "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(1 << 20)})
    run = data / "run"
    run.mkdir(parents=True)
    assert not any(k[0].startswith("spotx_wal") for k in _scrape(run, None))  # opt-in
    empty = _scrape(run, data)  # before the engine ever ran: zeros, no error
    assert empty[("spotx_wal_segments", ())] == 0 and empty[("spotx_wal_disk_bytes", ())] == 0
    host = EngineHost(cfg, attach_rings=False)
    try:
        dep = np.zeros(4000, COMMAND)  # 4000 x 64 B commands + their events: > 1 MiB segments
        dep["kind"], dep["asset"], dep["amount"] = Cmd.DEPOSIT, 1, 10
        dep["account"] = 1 + np.arange(4000) % 100
        for i in range(0, 4000, 250):
            host.sequence(dep[i:i + 250])
        host.committer.sync_now()
        host.snapshot()
        deadline = time.monotonic() + 30  # the next segment is prepared in the background: one
        while sum(host.writer.prealloc_stats()) < len(list(wal_path(cfg).glob("wal-*.seg"))):
            assert time.monotonic() < deadline  # per segment, done or cut short by a rotation
            time.sleep(0.01)
        m = _scrape(run, data)
        segs = sorted(wal_path(cfg).glob("wal-*.seg"))
        wal_du = _du(segs + sorted(wal_path(cfg).glob("wal-next-*")))  # as the scrape saw it
    finally:
        host.close()
    assert len(segs) >= 2 and m[("spotx_wal_segments", ())] == len(segs)
    assert m[("spotx_wal_disk_bytes", ())] == wal_du >= len(segs) * (1 << 20)
    assert m[("spotx_wal_first_seq", ())] == 1
    snaps = [p for p in snap_path(cfg).rglob("*") if p.is_file()]
    assert snaps and m[("spotx_snapshot_disk_bytes", (("kind", "engine"),))] == _du(snaps) > 0
    assert m[("spotx_snapshot_disk_bytes", (("kind", "edge"),))] == 0
    assert m[("spotx_snapshot_disk_bytes", (("kind", "publisher"),))] == 0
    st = os.statvfs(data)
    assert 0 < m[("spotx_data_fs_free_bytes", ())] <= m[("spotx_data_fs_size_bytes", ())]
    assert m[("spotx_data_fs_size_bytes", ())] == st.f_blocks * st.f_frsize
