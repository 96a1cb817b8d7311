import multiprocessing as mp
import select
import time
from pathlib import Path

from pipeline.doorbell import Doorbell, Ringer


def _ring_from_child(run_dir: str, times: int) -> None:
    r = Ringer(run_dir, rescan_s=0.0)
    for _ in range(times):
        r.ring()
        time.sleep(0.01)
    r.close()


def test_ring_wakes_reader_in_another_process(tmp_path: Path) -> None:
    bell = Doorbell(tmp_path, "edge-1")
    try:
        assert select.select([bell], [], [], 0)[0] == []  # silent until rung
        p = mp.get_context("spawn").Process(target=_ring_from_child, args=(str(tmp_path), 3))
        p.start()
        ready, _, _ = select.select([bell], [], [], 10)
        assert ready == [bell]
        p.join(10)
        assert p.exitcode == 0
        assert 1 <= bell.drain() <= 3
        assert select.select([bell], [], [], 0)[0] == []  # drained
    finally:
        bell.close()
    assert not bell.path.exists()


def test_ringer_forgets_gone_readers_and_survives_full_fifo(tmp_path: Path) -> None:
    bell = Doorbell(tmp_path, "x")
    r = Ringer(tmp_path, rescan_s=0.0)
    for _ in range(100_000):  # far more than a FIFO holds: EAGAIN must be swallowed
        r.ring()
    assert bell.drain() > 0
    bell.close()
    r.ring()  # the FIFO is gone: dropped on rescan, no exception
    assert r._fds == {}
    r.close()
