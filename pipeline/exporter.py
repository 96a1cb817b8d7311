"""The one metrics exporter: reads every process's stats block and serves Prometheus text.

Two sources, merged into one ``/metrics``:
* ``pipeline.stats`` blocks (one file per process under ``<run_dir>/``) — written by numba loops
  and hot Python paths as plain int64 stores;
* prometheus_client's multiprocess files (``<run_dir>/prom/``): processes that use ordinary
  prometheus_client metric objects (edge, settle, fan-out) have ``PROMETHEUS_MULTIPROC_DIR``
  pointed there by the supervisor, so each of their updates is an mmap'd write, no syscall, and
  the exporter aggregates them across processes.

Runs in the supervisor (``spotx up``) on ``[metrics] host:port`` path ``/metrics``. Samples with the
same (name, labels) from several processes (e.g. N edge processes) are summed; gauges too (each
process reports its own share, e.g. connected clients). Histograms are exported in seconds with the
fixed buckets of ``pipeline.stats.BUCKETS_NS``. Built on prometheus_client's collector API and its
WSGI-free HTTP server; nothing here runs on a hot path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from pipeline.stats import BUCKETS_NS, Sample, Stats, read_all


class StatsCollector(Collector):
    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = run_dir

    def collect(self) -> Iterator[Metric]:
        return families([samples for _header, samples in read_all(self.run_dir)])


class LocalStatsCollector(Collector):
    """One in-process ``Stats`` block as a collector (a registry rendered outside the stack)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        return families([self.stats.samples()])


def families(blocks: list[list[Sample]]) -> Iterator[Metric]:
    """Prometheus metric families from stats samples, summed per (name, labels) across blocks."""
    merged: dict[str, dict[tuple[tuple[str, str], ...], Sample]] = {}
    kinds: dict[str, tuple[str, str]] = {}
    for samples in blocks:
        for s in samples:
            if kinds.setdefault(s.name, (s.kind, s.help))[0] != s.kind or \
                    s.kind not in ("counter", "gauge", "histogram"):
                continue  # one bad declaration must not break the whole scrape
            by_labels = merged.setdefault(s.name, {})
            prev = by_labels.get(s.labels)
            if prev is None:
                by_labels[s.labels] = Sample(s.name, s.kind, s.help, s.labels, s.value,
                                             list(s.buckets) if s.buckets else None, s.sum_ns)
            elif s.kind == "histogram" and prev.buckets is not None and s.buckets is not None:
                prev.buckets = [a + b for a, b in zip(prev.buckets, s.buckets, strict=True)]
                prev.sum_ns = (prev.sum_ns or 0) + (s.sum_ns or 0)
            else:
                prev.value = (prev.value or 0) + (s.value or 0)
    for name, by_labels in sorted(merged.items()):
        kind, help_text = kinds[name]
        label_names = sorted({k for labels in by_labels for k, _ in labels})
        fam: Any
        if kind == "counter":
            fam = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=label_names)
        elif kind == "gauge":
            fam = GaugeMetricFamily(name, help_text, labels=label_names)
        else:
            fam = HistogramMetricFamily(name, help_text, labels=label_names)
        for labels, s in sorted(by_labels.items()):
            d = dict(labels)
            values = [d.get(k, "") for k in label_names]
            if kind == "histogram" and s.buckets is not None:
                cum, acc = [], 0
                for le_ns, c in zip((*BUCKETS_NS, None), s.buckets, strict=True):
                    acc += c
                    cum.append(("+Inf" if le_ns is None else repr(le_ns / 1e9), acc))
                fam.add_metric(values, cum, (s.sum_ns or 0) / 1e9)
            else:
                fam.add_metric(values, s.value or 0)
        yield fam


class ProcessCollector(Collector):
    """CPU, RSS and restarts of every stack process, from the supervisor's status.json + psutil."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.status = os.path.join(os.fspath(run_dir), "status.json")

    def collect(self) -> Iterator[Metric]:
        import json

        import psutil

        try:
            with open(self.status) as f:
                procs = json.load(f).get("processes", [])
        except (OSError, ValueError):
            procs = []
        cpu = CounterMetricFamily("spotx_process_cpu_seconds", "CPU seconds (user+system) per process",
                                  labels=["process"])
        rss = GaugeMetricFamily("spotx_process_resident_memory_bytes", "RSS per process",
                                labels=["process"])
        up = GaugeMetricFamily("spotx_process_up", "1 while the process is alive and ready",
                               labels=["process"])
        restarts = CounterMetricFamily("spotx_process_restarts", "restarts by the supervisor",
                                       labels=["process"])
        for p in procs:
            name = str(p.get("name"))
            restarts.add_metric([name], float(p.get("restarts", 0)))
            up.add_metric([name], 1.0 if p.get("alive") and p.get("ready") else 0.0)
            pid = p.get("pid")
            if not pid:
                continue
            try:
                proc = psutil.Process(int(pid))
                t = proc.cpu_times()
                cpu.add_metric([name], t.user + t.system)
                rss.add_metric([name], float(proc.memory_info().rss))
            except (psutil.Error, OSError):
                continue
        yield from (cpu, rss, up, restarts)


class StorageCollector(Collector):
    """What the data dir holds on disk, read at scrape time (one directory listing, a stat per
    file, a ``statvfs``; nothing on a hot path). The WAL grows with every command until ``spotx
    wal prune`` (or the supervisor's scheduled ``[retention]`` run) archives the segments every
    reader has passed; these series are how oncall sees the disk fill and the retention work
    (RUNBOOK, "WAL disk"). The retention series come from ``<data_dir>/run/status.json``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = os.fspath(data_dir)

    def collect(self) -> Iterator[Metric]:
        from pathlib import Path

        from pipeline.wal.format import list_segments

        wal = Path(self.data_dir) / "wal"
        segs = list_segments(wal) if wal.is_dir() else []
        allocated = 0
        for p in (wal.iterdir() if wal.is_dir() else ()):
            if p.name.endswith(".seg") or p.name.startswith("wal-next-"):
                allocated += _allocated(p)
        yield GaugeMetricFamily("spotx_wal_segments", "WAL segment files on disk (the one being "
                                "written included, the prepared next one not)", value=len(segs))
        yield GaugeMetricFamily("spotx_wal_disk_bytes", "disk space the WAL's files take "
                                "(allocated blocks, the prepared next segment included)",
                                value=allocated)
        yield GaugeMetricFamily("spotx_wal_first_seq", "first command seq of the oldest WAL "
                                "segment on disk (1: the whole history is there)",
                                value=segs[0].first_seq if segs else 0)
        snaps = GaugeMetricFamily("spotx_snapshot_disk_bytes", "disk space snapshots take",
                                  labels=["kind"])
        for kind, sub in (("engine", "snapshots"), ("edge", "edge-state"), ("publisher", "md-state")):
            d = Path(self.data_dir) / sub
            snaps.add_metric([kind], float(sum(_allocated(f) for f in d.rglob("*") if f.is_file())
                                           if d.is_dir() else 0))
        yield snaps
        yield from _retention_series(Path(self.data_dir) / "run" / "status.json")
        try:
            st = os.statvfs(self.data_dir)
        except OSError:
            return
        yield GaugeMetricFamily("spotx_data_fs_free_bytes", "free bytes (for unprivileged "
                                "writers) on the file system of the data dir",
                                value=st.f_bavail * st.f_frsize)
        yield GaugeMetricFamily("spotx_data_fs_size_bytes", "size of the file system of the data "
                                "dir", value=st.f_blocks * st.f_frsize)


def _retention_series(status: os.PathLike[str]) -> Iterator[Metric]:
    """The scheduled WAL prune as the supervisor last wrote it in status.json."""
    try:
        with open(status) as f:
            r = json.load(f).get("retention") or {}
    except (OSError, ValueError):
        return
    on = bool(r.get("archive_dir"))
    yield GaugeMetricFamily("spotx_wal_retention_enabled", "1 when the supervisor prunes the "
                            "WAL on a schedule ([retention] archive_dir)", value=float(on))
    if not on:
        return
    yield CounterMetricFamily("spotx_wal_retention_runs", "scheduled WAL prune runs that ended",
                              value=float(r.get("runs") or 0))
    if r.get("last_exit") is not None:
        yield GaugeMetricFamily("spotx_wal_retention_last_exit_code", "exit code of the last "
                                "scheduled WAL prune (0 done; 2 a reader's position unreadable, "
                                "nothing moved; 1 failed)", value=float(r["last_exit"]))
        yield GaugeMetricFamily("spotx_wal_retention_last_end_seconds", "when the last scheduled "
                                "WAL prune ended (unix time)", value=float(r["last_end"] or 0))


def _allocated(p: os.PathLike[str]) -> int:
    try:
        return os.stat(p).st_blocks * 512
    except OSError:  # pruned or renamed between the listing and the stat
        return 0


def prom_dir(run_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(run_dir), "prom")


def make_registry(run_dir: str | os.PathLike[str],
                  data_dir: str | os.PathLike[str] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StatsCollector(run_dir))
    reg.register(ProcessCollector(run_dir))
    if data_dir is not None:
        reg.register(StorageCollector(data_dir))
    pdir = prom_dir(run_dir)
    if os.path.isdir(pdir):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(reg, path=pdir)
    return reg


def serve(run_dir: str | os.PathLike[str], host: str, port: int,
          data_dir: str | os.PathLike[str] | None = None) -> Any:
    """Start the /metrics HTTP server in a daemon thread; returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=make_registry(run_dir, data_dir))
