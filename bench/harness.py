"""Bench harness: the contract of DESIGN.md §12.

Every suite module in ``bench/`` exposes ``run(quick: bool) -> list[Result]``. The harness records
the machine, freezes the GC, pins the calling process where asked, and writes one JSON object:

    {"suite", "machine": {...}, "started", "durability", "results": [Result...]}

Latencies are recorded in HDR histograms (``hdrhistogram``) in nanoseconds and reported as p50/p99/
p99.9. A result always says whether the work it timed was checked (``correct``) and, where it has
one, which peer ran in the same process or run and the ratio against it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from pipeline.cpu import pin  # noqa: F401 - the benches pin their processes with it


@dataclasses.dataclass
class Result:
    name: str
    unit: str
    value: float | None
    p50: float | None = None
    p99: float | None = None
    p999: float | None = None
    peer: str | None = None
    peer_value: float | None = None
    ratio_vs_peer: float | None = None
    correct: bool | None = None
    notes: str | None = None

    def with_peer(self, peer: str, peer_value: float | None) -> Result:
        self.peer = peer
        self.peer_value = peer_value
        if peer_value and self.value is not None:
            self.ratio_vs_peer = round(self.value / peer_value, 3)
        return self


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for mod in ("numba", "numpy", "uvloop", "orjson", "asyncpg", "picows"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional module is a fact, not an error
            info[mod] = None
    info["virtualized"] = _virtualized()
    from pipeline import native  # the edge's per-order modules: compiled (mypyc) or interpreted

    why = native.check()
    info["edge_native"] = not why and os.environ.get("SPOTX_NATIVE", "1") != "0"
    info["edge_native_reason"] = why or native.STATE["reason"]
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _virtualized() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " hypervisor" in f.read()
    except OSError:
        return False


@contextmanager
def frozen_gc() -> Iterator[None]:
    gc.collect()
    gc.freeze()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        gc.unfreeze()


class Latency:
    """HDR histogram of nanosecond latencies (1 ns .. 60 s, 3 significant digits)."""

    def __init__(self) -> None:
        from hdrh.histogram import HdrHistogram

        self._h = HdrHistogram(1, 60_000_000_000, 3)

    def record(self, ns: int) -> None:
        self._h.record_value(max(1, int(ns)))

    def record_many(self, values_ns: Any) -> None:
        for v in values_ns:
            self._h.record_value(max(1, int(v)))

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def pct(self, q: float) -> float:
        return float(self._h.get_value_at_percentile(q))

    def summary_us(self) -> tuple[float, float, float]:
        """(p50, p99, p99.9) in microseconds."""
        return (self.pct(50) / 1e3, self.pct(99) / 1e3, self.pct(99.9) / 1e3)


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def write_report(suite: str, results: list[Result], path: str | None, durability: str | None = None,
                 started: str | None = None) -> dict[str, Any]:
    doc = {
        "suite": suite,
        "machine": machine_info(),
        "started": started or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "durability": durability,
        "results": [dataclasses.asdict(r) for r in results],
    }
    if path:
        with open(path, "wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return doc


def format_table(results: list[Result]) -> str:
    def f(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"

    head = f"{'name':44} {'value':>14} {'unit':10} {'p50':>9} {'p99':>9} {'p99.9':>9} {'peer':24} {'ratio':>7} ok"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.name[:44]:44} {f(r.value):>14} {r.unit[:10]:10} {f(r.p50):>9} {f(r.p99):>9} "
            f"{f(r.p999):>9} {(r.peer or '-')[:24]:24} {f(r.ratio_vs_peer):>7} "
            f"{'-' if r.correct is None else ('yes' if r.correct else 'NO')}"
        )
    return "\n".join(lines)
