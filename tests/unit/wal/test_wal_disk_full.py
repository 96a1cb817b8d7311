"""A disk that fills up, with the real kernel's errors: no file may grow past a limit
(``RLIMIT_FSIZE``, so a write that crosses it is short and the next one fails with EFBIG, as a
write to a full disk is short and then fails with ENOSPC). No root, no mount.

* The writer's sync fails with ``WalSyncError`` carrying the errno; the durable watermark stays
  where the last good sync put it; the writer refuses every later append; after the process is
  gone, recovery keeps every durable seq (and at most the frames of the failed sync), with the
  hash chain intact.
* The background zero fill of the next segment reports a short write as the error it is, instead
  of handing over a short file (which made the rotation fail with a size mismatch that named no
  cause).
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from wal_payloads import check_log

from pipeline.wal import recover, verify_chain
from pipeline.wal.segment import fill_file

CHILD = str(Path(__file__).with_name("_child.py"))
SEG = 1 << 20


@pytest.mark.parametrize("limit", [300_000, SEG - 8192])
def test_a_full_disk_fails_the_sync_and_keeps_every_durable_seq(tmp_path: Path, limit: int) -> None:
    d = tmp_path / "wal"
    p = subprocess.run([sys.executable, CHILD, "full", str(d), str(SEG), str(limit)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-500:] + p.stderr[-2000:]
    lines = p.stdout.split("\n")
    reported = max(int(x.split()[1]) for x in lines if x.startswith("D "))
    (x,) = [x.split() for x in lines if x.startswith("X ")]
    assert x[1:3] == ["WalSyncError", str(errno.EFBIG)], x
    durable, last = int(x[3]), int(x[4])
    assert durable == reported and last == durable + 40  # the frame whose sync failed
    assert [a for a in lines if a.startswith("A ")] == ["A WalSyncError"]  # no append after it
    res = recover(d)
    assert durable <= res.last_seq <= last
    check_log(d, res.last_seq)  # every frame contiguous and byte-exact
    assert verify_chain(d).ok


def _fill_under_limit(path: str, limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        fill_file(fd, SEG, "zero")
    except OSError as e:
        os._exit(100 + e.errno)
    os._exit(0)


@pytest.mark.parametrize("limit", [SEG - 8192, 300_000])
def test_the_zero_fill_reports_a_short_write(tmp_path: Path, limit: int) -> None:
    """The last chunk written short (SEG - 8 KiB) used to return "done" with a short file."""
    import multiprocessing as mp

    path = tmp_path / "wal-next-0000000001.tmp"
    proc = mp.get_context("fork").Process(target=_fill_under_limit, args=(str(path), limit))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 100 + errno.EFBIG
    assert path.stat().st_size == limit  # written up to the limit, and no further
