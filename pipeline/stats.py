"""Shared-memory stats blocks: counters, gauges and fixed-bucket histograms (DESIGN.md §11).

Layout. One block per process, a file ``<run_dir>/stats-<proc>.bin`` mmap'd by its single writer
(the process) and read by the one exporter. The file is: a 4 KiB-aligned JSON header (magic, the
schema: metric name, kind, label values, slot offset) padded with NULs, then an int64 array of slots.
A counter or gauge is one slot; a histogram is ``len(BUCKETS_NS) + 2`` slots: per-bucket counts
(non-cumulative, the last one +Inf) then the sum of observed values (ns).

Ordering. The writer is the only one to store into its block; readers see each int64 slot either
old or new (aligned 8-byte stores are atomic on x86-64), so a scrape may mix values from two
moments by at most the writes in flight: fine for monitoring, never used for money.

Hot path. ``Stats.slot(...)`` is cold (call it once at start-up); the hot path does ``data[i] += 1``
on the numpy array (or passes ``data`` and the index into a numba kernel). No syscalls, no locks.
Files (not /dev/shm) so that a crashed process's last numbers stay readable for forensics and the
stats of a stopped stack can still be collected; they live on tmpfs-speed page cache anyway.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.histogram import BUCKETS_NS as BUCKETS_NS
from pipeline.histogram import HIST_SLOTS as HIST_SLOTS
from pipeline.histogram import observe as observe

MAGIC = "spotx-stats-v1"
HEADER_BYTES = 1 << 16
KINDS = ("counter", "gauge", "histogram")


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[tuple[str, str], ...] = ()


class StatsError(RuntimeError):
    """A stats block is missing, full or malformed."""


class Stats:
    """The writer side: declare metrics, then ``freeze()`` to create the block file."""

    def __init__(self, run_dir: str | os.PathLike[str], proc: str, max_slots: int = 4096) -> None:
        self.path = Path(run_dir) / f"stats-{proc}.bin"
        self.proc = proc
        self._defs: list[tuple[MetricDef, int]] = []
        self._index: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._next = 0
        self._max = max_slots
        self.data: np.ndarray = np.zeros(max_slots, dtype=np.int64)  # replaced by the mmap at freeze
        self.words = self.data.data  # the same slots: Python ints in and out, ~2x numpy's speed
        self._mm: mmap.mmap | None = None

    def slot(self, name: str, kind: str = "counter", help: str = "", **labels: str) -> int:
        if kind not in KINDS:
            raise StatsError(f"metric {name}: kind must be one of {KINDS}, got {kind!r} "
                             f"(a label named 'kind' cannot be passed to slot())")
        key = (name, tuple(sorted(labels.items())))
        if key in self._index:
            return self._index[key]
        if self._mm is not None:
            raise StatsError(f"stats block {self.proc} is frozen; declare {name} before freeze()")
        width = HIST_SLOTS if kind == "histogram" else 1
        if self._next + width > self._max:
            raise StatsError(f"stats block {self.proc} is full ({self._max} slots)")
        off = self._next
        self._next += width
        self._index[key] = off
        self._defs.append((MetricDef(name, kind, help or name, key[1]), off))
        return off

    def freeze(self) -> np.ndarray:
        """Write the header and map the slots; returns the int64 slot array (the hot-path view)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({
            "magic": MAGIC, "proc": self.proc, "pid": os.getpid(), "slots": self._max,
            "buckets_ns": BUCKETS_NS,
            "metrics": [{"name": d.name, "kind": d.kind, "help": d.help, "labels": list(d.labels),
                         "offset": off} for d, off in self._defs],
        }).encode()
        if len(header) >= HEADER_BYTES:
            raise StatsError("stats header too large")
        size = HEADER_BYTES + self._max * 8
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(header.ljust(HEADER_BYTES, b"\0"))
            f.write(b"\0" * (self._max * 8))
        os.replace(tmp, self.path)
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.data = np.frombuffer(self._mm, dtype=np.int64, offset=HEADER_BYTES, count=self._max)
        self.words = self.data.data
        return self.data

    @property
    def frozen(self) -> bool:
        return self._mm is not None

    def samples(self) -> list[Sample]:
        """This block's current values (frozen or not: an unfrozen block is in-process memory)."""
        return _samples([{"name": d.name, "kind": d.kind, "help": d.help, "labels": d.labels,
                          "offset": off} for d, off in self._defs], self.data)

    def inc(self, off: int, n: int = 1) -> None:
        self.data[off] += n

    def set(self, off: int, value: int) -> None:
        self.data[off] = value

    def observe_ns(self, off: int, value_ns: int) -> None:
        observe(self.words, off, value_ns)

    def close(self) -> None:
        # Keep the file: the exporter and forensic bundles read a stopped process's last numbers.
        self.data = np.zeros(1, dtype=np.int64)
        self.words.release()
        self.words = self.data.data
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # a caller still holds the slot view; the map goes with it
            self._mm = None


@dataclass
class Sample:
    name: str
    kind: str
    help: str
    labels: tuple[tuple[str, str], ...]
    value: int | None  # counter / gauge
    buckets: list[int] | None  # histogram: per-bucket counts (last is +Inf)
    sum_ns: int | None


def read_block(path: str | os.PathLike[str]) -> tuple[dict[str, object], list[Sample]]:
    """Read one stats file (any process); returns its header and a sample per metric."""
    raw = Path(path).read_bytes()
    if len(raw) < HEADER_BYTES:
        raise StatsError(f"{path}: truncated stats block")
    header = json.loads(raw[:HEADER_BYTES].rstrip(b"\0"))
    if header.get("magic") != MAGIC:
        raise StatsError(f"{path}: not a spotx stats block")
    data = np.frombuffer(raw, dtype=np.int64, offset=HEADER_BYTES, count=int(header["slots"]))
    return header, _samples(header["metrics"], data)


def _samples(metrics: list[dict[str, Any]], data: np.ndarray) -> list[Sample]:
    out = []
    for m in metrics:
        off = int(m["offset"])
        labels = tuple((str(k), str(v)) for k, v in m["labels"])
        if m["kind"] == "histogram":
            b = [int(x) for x in data[off:off + HIST_SLOTS - 1]]
            out.append(Sample(m["name"], m["kind"], m["help"], labels, None, b, int(data[off + HIST_SLOTS - 1])))
        else:
            out.append(Sample(m["name"], m["kind"], m["help"], labels, int(data[off]), None, None))
    return out


def read_all(run_dir: str | os.PathLike[str]) -> list[tuple[dict[str, object], list[Sample]]]:
    out = []
    for p in sorted(Path(run_dir).glob("stats-*.bin")):
        try:
            out.append(read_block(p))
        except (StatsError, ValueError, OSError):
            continue  # a block being created right now; the next scrape will see it
    return out
