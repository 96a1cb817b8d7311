"""Forensic bundle (RUNBOOK 3.1 / 3.3): everything needed to reconstruct what happened.

``spotx forensic-bundle [--out DIR]`` writes ``spotx-forensics-<instance>-<utc>.tar.gz`` with:

* ``wal/``            every WAL segment and ``durable.pos`` (copied, never moved: the live WAL
                      stays untouched; not the preallocated next segment), plus
                      ``wal-verify.json`` (hash chains and integrity roots) and
                      ``wal-retention.jsonl`` (what ``spotx wal prune`` archived, by whom: the
                      bundle's WAL starts where the live one does; the archive is not copied);
* ``snapshots/``      every engine snapshot and manifest;
* ``run/``            ``status.json`` and each process's stats block (last counters, even of a
                      crashed process), the process logs if any;
* ``config/``         the effective config (secrets redacted) and the source TOML;
* ``kafka.json``      committed offsets of the ledger consumer group and topic end offsets;
* ``ledger.json``     ledger entry range (min/max seq, count per kind), settlement progress,
                      the last audit rows; ``ledger_entries.csv`` for the last N seqs;
* ``manifest.json``   what was collected, what could not be (with the error), sha256 of files.

Every section is best effort: a missing Postgres or broker is recorded in the manifest, never
aborts the bundle (an incident is exactly when parts are down).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from pipeline.config import Config

LEDGER_TAIL_SEQS = 10_000


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_tree(src: Path, dst: Path, pattern: str = "*", skip: str = "") -> list[str]:
    """Copy the files of ``src`` matching ``pattern`` (not ``skip``) in name order: for the WAL
    that is ``durable.pos`` before the segments, so the copied watermark never claims more than the
    copied segments hold (the writer goes on while we copy)."""
    out: list[str] = []
    if not src.is_dir():
        return out
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob(pattern)):
        if p.is_file() and not (skip and p.match(skip)):
            shutil.copy2(p, dst / p.name)
            out.append(p.name)
    return out


def _config_doc(cfg: Config) -> dict[str, Any]:
    doc = dataclasses.asdict(cfg)
    doc["settle"]["pg_dsn"] = "***"
    return doc


async def _ledger(cfg: Config, out: Path) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(cfg.settle.pg_dsn, timeout=5)
    try:
        rng = await conn.fetchrow(
            "SELECT min(seq) AS min_seq, max(seq) AS max_seq, count(*) AS n FROM ledger_entries")
        kinds = await conn.fetch("SELECT kind, count(*) AS n FROM ledger_entries GROUP BY kind")
        progress = await conn.fetch("SELECT * FROM settlement_progress")
        audit = await conn.fetch("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 200")
        max_seq = rng["max_seq"] or 0
        # copy_from_query accepts a path and writes the file itself (off the event loop thread)
        await conn.copy_from_query(
            "SELECT * FROM ledger_entries WHERE seq > $1 ORDER BY seq, leg", max_seq - LEDGER_TAIL_SEQS,
            output=str(out / "ledger_entries.csv"), format="csv", header=True)
    finally:
        await conn.close()

    def rows(rs: list[Any]) -> list[dict[str, Any]]:
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(r).items()}
                for r in rs]

    return {"range": dict(rng), "by_kind": rows(kinds), "progress": rows(progress),
            "audit_tail": rows(audit)}


def _kafka(cfg: Config, group: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": cfg.settle.kafka_bootstrap, "group.id": group,
                  "enable.auto.commit": False, "log_level": 0})
    try:
        md = c.list_topics(cfg.settle.kafka_topic, timeout=5)
        topic = md.topics.get(cfg.settle.kafka_topic)
        parts = sorted(topic.partitions) if topic and topic.partitions else []
        tps = [TopicPartition(cfg.settle.kafka_topic, p) for p in parts]
        committed = c.committed(tps, timeout=5) if tps else []
        out = []
        for tp in committed:
            lo, hi = c.get_watermark_offsets(tp, timeout=5)
            out.append({"partition": tp.partition, "committed": tp.offset, "low": lo, "high": hi})
        return {"topic": cfg.settle.kafka_topic, "group": group, "partitions": out}
    finally:
        c.close()


def build(cfg: Config, out_dir: str | os.PathLike[str] = ".", config_path: str | None = None,
          kafka_group: str | None = None) -> Path:
    """Write the bundle into ``out_dir``; returns its path. ``kafka_group``: the ledger consumer
    group whose offsets are reported (default: the settle process's, ``spotx-ledger``)."""
    from settle.process import CONSUMER_GROUP

    group = kafka_group or CONSUMER_GROUP
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"spotx-forensics-{cfg.instance}-{stamp}"
    data = Path(cfg.data_dir)
    manifest: dict[str, Any] = {"instance": cfg.instance, "created": stamp, "sections": {},
                                "errors": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / name
        root.mkdir()
        # not the next segment being prepared (wal-next-<n>.tmp: zeros, no evidence)
        manifest["sections"]["wal"] = _copy_tree(data / "wal", root / "wal", skip="*.tmp")
        try:
            from pipeline.wal.verify import verify_chain

            report = verify_chain(root / "wal")
            doc = dataclasses.asdict(report)  # plus the verdicts, which are properties
            doc = {"ok": report.ok, **doc}
            for seg, seg_doc in zip(report.segments, doc["segments"], strict=True):
                seg_doc["ok"] = seg.ok
            (root / "wal-verify.json").write_text(json.dumps(doc, default=str, indent=1))
            if not report.ok:
                manifest["errors"]["wal_verify"] = "; ".join(report.errors) or "a segment failed"
        except Exception as e:  # noqa: BLE001 - recorded, the bundle goes on
            manifest["errors"]["wal_verify"] = repr(e)
        from pipeline.retention import LOG as RETENTION_LOG

        if (data / RETENTION_LOG).is_file():
            shutil.copy2(data / RETENTION_LOG, root / RETENTION_LOG)
        manifest["sections"]["snapshots"] = _copy_tree(data / "snapshots", root / "snapshots")
        manifest["sections"]["run"] = _copy_tree(data / "run", root / "run")
        manifest["sections"]["logs"] = _copy_tree(data / "log", root / "log")
        (root / "config").mkdir()
        (root / "config" / "effective.json").write_text(json.dumps(_config_doc(cfg), indent=1))
        if config_path:
            shutil.copy2(config_path, root / "config" / Path(config_path).name)
        try:
            (root / "kafka.json").write_text(json.dumps(_kafka(cfg, group), indent=1))
        except Exception as e:  # noqa: BLE001
            manifest["errors"]["kafka"] = repr(e)
        try:
            ledger = asyncio.run(_ledger(cfg, root))
            (root / "ledger.json").write_text(json.dumps(ledger, indent=1, default=str))
        except Exception as e:  # noqa: BLE001
            manifest["errors"]["ledger"] = repr(e)
        manifest["sha256"] = {str(p.relative_to(root)): _sha256(p)
                              for p in sorted(root.rglob("*")) if p.is_file()}
        (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
        out = Path(out_dir) / f"{name}.tar.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz") as tar:
            tar.add(root, arcname=name)
    return out
