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
    assert bell.drain() >= 4096 * 2  # a full FIFO takes several reads, and all of them
    assert select.select([bell], [], [], 0)[0] == []
    r.ring()
    r.ring()
    assert bell.drain() == 2  # one short read
    assert select.select([bell], [], [], 0)[0] == []
    bell.close()
    r.ring()  # the FIFO is gone: dropped on rescan, no exception
    assert r._fds == {}
    r.close()


def test_a_parked_engine_wakes_on_its_bell_not_after_its_backoff(tmp_path: Path) -> None:
    """The engine's idle wait with ``park`` spins, then sleeps on its doorbell for ``max_s`` at
    once (no back-off from ``min_s``): a ring (an edge pushed commands) ends the sleep at once,
    while an unrung sleep lasts ``max_s``."""
    import threading

    from pipeline import config
    from pipeline.doorbell import Ringer, engine_bell_root
    from pipeline.engine_proc import _bell_wait
    from pipeline.supervisor import run_dir
    from ringbuf import ParkBackoff

    cfg = config.load(env={"SPOTX_DATA_DIR": str(tmp_path)})
    wait = ParkBackoff(spins=3, min_s=0.001, max_s=0.6)
    idle = _bell_wait(wait, cfg)
    t0 = time.monotonic()
    for attempt in range(3):
        idle(attempt)  # spinning: no sleep
    assert time.monotonic() - t0 < 0.3
    t0 = time.monotonic()
    idle(3)  # the first sleep, and nobody rings: all of max_s, not min_s
    assert time.monotonic() - t0 >= 0.55
    ringer = Ringer(engine_bell_root(run_dir(cfg)))
    timer = threading.Timer(0.05, ringer.ring)
    timer.start()
    t0 = time.monotonic()
    idle(5)
    assert time.monotonic() - t0 < 0.4  # woken by the ring
    timer.join()  # ring() counts after its write, which may already have woken us
    assert ringer.rings == 1
    ringer.close()
