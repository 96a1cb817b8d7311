"""pipeline.diskio: a file handed to the disk a step at a time (no cache flush), paced."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pipeline import diskio


def test_paced_write_back_covers_the_file_in_steps(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ranges: list[tuple[int, int]] = []
    sleeps: list[float] = []
    real = diskio.write_back

    def rec(fd: int, off: int, n: int) -> None:
        ranges.append((off, n))
        real(fd, off, n)

    monkeypatch.setattr(diskio, "write_back", rec)
    monkeypatch.setattr(diskio.time, "sleep", sleeps.append)
    size = 3 * diskio.STEP + 777
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        diskio.write_back_paced(f.fileno(), size)
    assert ranges == [(0, diskio.STEP), (diskio.STEP, diskio.STEP),
                      (2 * diskio.STEP, diskio.STEP), (3 * diskio.STEP, 777)]
    assert len(sleeps) == 4 and all(s >= 0 for s in sleeps)
    sleeps.clear()
    with open(path, "rb+") as f:
        diskio.write_back_paced(f.fileno(), size, duty=0.0)  # unpaced: no sleep at all
    assert sleeps == []


def test_write_back_errors_are_raised() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as e:
        diskio.write_back_paced(r, 10)
    assert e.value.errno == errno.EBADF


def test_an_unsupported_file_is_synced_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without sync_file_range (EINVAL and the like) gets an fdatasync: the data
    still reaches the disk, and the snapshot or fill that asked goes on."""
    synced: list[int] = []
    monkeypatch.setattr(diskio, "_sync_file_range", lambda *a: -1)
    monkeypatch.setattr(diskio.ctypes, "get_errno", lambda: errno.EINVAL)
    monkeypatch.setattr(os, "fdatasync", synced.append)
    diskio.write_back(7, 0, 10)
    assert synced == [7]
    monkeypatch.setattr(diskio.ctypes, "get_errno", lambda: errno.EIO)
    with pytest.raises(OSError) as e:
        diskio.write_back(7, 0, 10)
    assert e.value.errno == errno.EIO and synced == [7]
