"""``spotx forensic-bundle`` (RUNBOOK 3.1 / 3.3) against a settled WAL with real Postgres and Kafka,
and with both services down (an incident is when parts are down: the bundle must still come)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import socket
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from settleutil import wait_settled, wal_with_trades

from pipeline import config
from pipeline.forensics import build
from pipeline.wal import WalWriter
from settle.catalog import Catalog
from settle.postings import concat_events
from settle.process import serve
from settle.synth import Synth, append_batches


def _settle(cfg: config.Config, pg: str, last: int, group: str) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        ready: list[dict[str, Any]] = []  # connect once it migrated the database
        task = asyncio.create_task(serve(cfg, stop, ready.append, group=group))
        try:
            await (await wait_settled(pg, last, task, lambda: bool(ready))).close()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(go())


def _unpack(bundle: Path, into: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(into, filter="data")
    (root,) = into.iterdir()
    return root


def test_bundle_collects_wal_ledger_offsets_and_config(pg_database: str, kafka_bootstrap: str,
                                                       kafka_topic: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = config.load(env={}, overrides={"data_dir": str(data), "settle.pg_dsn": pg_database,
                                         "settle.mode": "kafka", "settle.kafka_topic": kafka_topic,
                                         "settle.kafka_bootstrap": kafka_bootstrap})
    last = wal_with_trades(data, Catalog.from_config(cfg))
    _settle(cfg, pg_database, last, group=kafka_topic)  # a group of its own (test isolation)
    (data / "snapshots").mkdir()
    (data / "snapshots" / "snap-1.manifest.json").write_text('{"seq": 1}')

    bundle = build(cfg, tmp_path / "out", kafka_group=kafka_topic)
    assert bundle.name.startswith(f"spotx-forensics-{cfg.instance}-") and bundle.suffixes[-2:] == [".tar", ".gz"]
    root = _unpack(bundle, tmp_path / "x")
    man = json.loads((root / "manifest.json").read_text())
    assert man["errors"] == {}, man["errors"]

    wal = man["sections"]["wal"]
    assert "durable.pos" in wal and any(n.endswith(".seg") for n in wal)
    assert not [n for n in wal if n.endswith(".tmp")]  # the prepared next segment is no evidence
    report = json.loads((root / "wal-verify.json").read_text())
    assert report["ok"] is True and report["last_seq"] == last
    assert man["sections"]["snapshots"] == ["snap-1.manifest.json"]

    ledger = json.loads((root / "ledger.json").read_text())
    assert ledger["range"]["max_seq"] == last and ledger["range"]["n"] > 0
    assert sum(k["n"] for k in ledger["by_kind"]) == ledger["range"]["n"]
    with open(root / "ledger_entries.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == ledger["range"]["n"] and {"seq", "leg"} <= set(rows[0])

    kafka = json.loads((root / "kafka.json").read_text())
    assert kafka["topic"] == kafka_topic and kafka["group"] == kafka_topic
    parts = kafka["partitions"]
    assert parts and all(0 < p["committed"] <= p["high"] for p in parts), parts

    eff = json.loads((root / "config" / "effective.json").read_text())
    assert eff["settle"]["pg_dsn"] == "***" and eff["settle"]["kafka_topic"] == kafka_topic
    password = pg_database.split("://", 1)[1].split("@", 1)[0].split(":", 1)[-1]
    for rel, digest in man["sha256"].items():  # every file listed, as it is in the bundle
        body = (root / rel).read_bytes()
        assert hashlib.sha256(body).hexdigest() == digest, rel
        assert password.encode() not in body, f"the Postgres password leaked into {rel}"
    listed = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert listed - set(man["sha256"]) == {"manifest.json"}


def test_bundle_is_built_with_postgres_and_kafka_down(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    overrides: dict[str, Any] = {"data_dir": str(data),
                                 "settle.pg_dsn": f"postgresql://x:y@127.0.0.1:{dead}/none",
                                 "settle.kafka_bootstrap": f"127.0.0.1:{dead}"}
    cfg = config.load(env={}, overrides=overrides)
    last = wal_with_trades(data, Catalog.from_config(cfg))
    t0 = time.monotonic()
    bundle = build(cfg, tmp_path / "out")
    assert time.monotonic() - t0 < 60
    root = _unpack(bundle, tmp_path / "x")
    man = json.loads((root / "manifest.json").read_text())
    assert set(man["errors"]) == {"ledger", "kafka"}, man["errors"]
    assert json.loads((root / "wal-verify.json").read_text())["last_seq"] == last
    assert not (root / "ledger.json").exists() and not (root / "kafka.json").exists()


@pytest.mark.parametrize("appending", [True, False])
def test_bundle_of_a_live_wal_never_claims_more_than_it_copied(tmp_path: Path, appending: bool) -> None:
    """The engine keeps appending and syncing while the bundle copies: ``durable.pos`` is copied
    before the segments, so the copy verifies whatever the timing (frames past the copied
    watermark are a torn tail at most), and the prepared next segment is left out."""
    import threading

    data = tmp_path / "data"
    cfg = config.load(env={}, overrides={"data_dir": str(data),
                                         "settle.pg_dsn": "postgresql://x:y@127.0.0.1:9/none",
                                         "settle.kafka_bootstrap": "127.0.0.1:9"})
    s = Synth(Catalog.from_config(cfg), accounts=6)
    ev = concat_events([s.deposits(ts_ns=time.time_ns()), s.trades(3000, fills=1, ts_ns=time.time_ns())])
    cut = int(ev["seq"][len(ev) // 20])
    (data / "wal").mkdir(parents=True)
    with WalWriter(data / "wal", segment_bytes=1 << 20, fencing_token=1) as w:
        last = append_batches(w, ev[ev["seq"] <= cut], seqs_per_batch=16)
    rest = ev[ev["seq"] > cut]
    bounds = np.unique(rest["seq"])[::2]  # one append_batches call (and fdatasync) per 2 seqs:
    # ~1 s of appending, which the copy of the WAL (started at once) falls inside
    opened, bundled, done = threading.Event(), threading.Event(), threading.Event()
    grown = [last]

    def engine() -> None:  # the writer, open (next segment prepared) until the bundle is built
        with WalWriter(data / "wal", segment_bytes=1 << 20, fencing_token=1) as w:
            opened.set()
            for lo, hi in zip(bounds, [*bounds[1:], 1 << 62], strict=True):
                if not appending:
                    break
                append_batches(w, rest[(rest["seq"] >= lo) & (rest["seq"] < hi)], seqs_per_batch=4)
            grown[0] = w.durable_seq
            done.set()
            bundled.wait(60)

    t = threading.Thread(target=engine)
    t.start()
    try:
        assert opened.wait(30)
        time.sleep(0.05)  # the preallocator has created its file
        assert list((data / "wal").glob("*.tmp")), "an open writer has its next segment prepared"
        root = _unpack(build(cfg, tmp_path / "out"), tmp_path / "x")
    finally:
        bundled.set()
        t.join(60)
    assert done.is_set()
    report = json.loads((root / "wal-verify.json").read_text())
    assert report["ok"] is True, report["errors"]
    assert last <= report["last_seq"] <= grown[0], (last, report["last_seq"], grown[0])
    assert (last < report["last_seq"] < grown[0]) if appending else report["last_seq"] == last
    wal = json.loads((root / "manifest.json").read_text())["sections"]["wal"]
    assert "durable.pos" in wal and not [n for n in wal if n.endswith(".tmp")]
