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
from settleutil import wait_settled, wal_with_trades

from pipeline import config
from settle.catalog import Catalog
from settle.process import serve


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
            conn = await wait_settled(pg_database, last, task, lambda: bool(ready))
            deadline = time.monotonic() + 60
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
