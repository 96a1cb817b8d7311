"""The settle process as the supervisor runs it (``settle.process.serve``), in both modes: it
migrates, settles what the WAL holds, writes the throttle flag, and stops cleanly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from pipeline import config
from pipeline.wal import WalWriter
from settle.catalog import Catalog
from settle.postings import concat_events
from settle.process import serve
from settle.synth import Synth, append_batches


def wal_with_trades(data: Path, catalog: Catalog) -> int:
    (data / "wal").mkdir(parents=True)
    s = Synth(catalog, accounts=6)
    ev = concat_events([s.deposits(ts_ns=time.time_ns()), s.trades(80, fills=2, ts_ns=time.time_ns())])
    with WalWriter(data / "wal", segment_bytes=1 << 20, fencing_token=1) as w:
        return append_batches(w, ev, seqs_per_batch=16)


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_serve_settles_the_wal_and_stops(pg_database: str, tmp_path: Path, mode: str,
                                         request: pytest.FixtureRequest) -> None:
    overrides: dict[str, Any] = {"data_dir": str(tmp_path), "settle.pg_dsn": pg_database,
                                 "settle.mode": mode}
    if mode == "kafka":
        overrides["settle.kafka_bootstrap"] = request.getfixturevalue("kafka_bootstrap")
        overrides["settle.kafka_topic"] = request.getfixturevalue("kafka_topic")
    cfg = config.load(env={}, overrides=overrides)
    last = wal_with_trades(tmp_path, Catalog.from_config(cfg))
    errors0 = REGISTRY.get_sample_value("settle_lag_command_errors_total") or 0.0

    async def go() -> None:
        stop = asyncio.Event()
        ready: list[dict[str, Any]] = []
        group = overrides.get("settle.kafka_topic", "spotx-ledger")  # a group of its own
        task = asyncio.create_task(serve(cfg, stop, ready.append, group=group))
        conn: asyncpg.Connection | None = None
        try:
            deadline = time.monotonic() + 60
            settled = 0
            while settled < last:
                assert time.monotonic() < deadline, f"settled {settled} of {last}"
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
                if conn is None and ready:
                    conn = await asyncpg.connect(pg_database)
                if conn is not None:
                    settled = int(await conn.fetchval(
                        "SELECT coalesce(max(last_seq), 0) FROM settlement_progress"))
            assert ready == [{"ready": True, "mode": mode}]
            # caught up: the policy's flag for the edges says "no throttle" (it may have said
            # "throttle" while a slow start-up, e.g. the Kafka group join, held settlement back)
            flag = tmp_path / "run" / "settle-throttle"
            while not (flag.exists() and flag.read_text() == "0\n"):
                assert time.monotonic() < deadline, "the throttle flag never said 0"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            if conn is not None:
                await conn.close()

    asyncio.run(go())
    # the policy's start-up LIFT had no admin ring to go to: counted, retried, never fatal
    assert (REGISTRY.get_sample_value("settle_lag_command_errors_total") or 0.0) > errors0
