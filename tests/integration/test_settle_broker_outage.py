"""RUNBOOK 3.5: the Kafka broker goes away mid-stream and comes back. The WAL writer (the engine's
journal) never waits for it, the outbox backs up with a bounded backlog, drains when the broker
returns, and the ledger consumer catches up with nothing missing and nothing doubled.

Uses a private single-node broker (infra/kafka/start.sh on a free port, its own data dir) so the
outage does not disturb the shared one."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from test_settle_kafka import CAT, consume_until, prepare

from pipeline.wal import WalWriter
from settle.consumer import KafkaLedgerConsumer
from settle.invariants import check_against_wal, check_all
from settle.ledger import LedgerWriter
from settle.outbox import Outbox
from settle.postings import concat_events
from settle.synth import Synth, append_batches

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, data: Path) -> None:
        self.port = _free_port()
        self.env = dict(os.environ, SPOTX_KAFKA_PORT=str(self.port),
                        SPOTX_KAFKA_CONTROLLER_PORT=str(_free_port()), SPOTX_KAFKA_DATA=str(data))
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _run(self, script: str) -> None:
        p = subprocess.run(["bash", str(ROOT / "infra" / "kafka" / script)], env=self.env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr

    def start(self) -> None:
        self._run("start.sh")

    def stop(self) -> None:
        self._run("stop.sh")


@pytest.mark.timeout(300)
def test_broker_outage_mid_stream(pg_database: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "kafka")
    wal = tmp_path / "wal"
    topic = "spotx.outage"
    synth = Synth(CAT, accounts=8)
    now = time.time_ns()
    part1 = concat_events([synth.deposits(ts_ns=now), synth.trades(150, fills=2, ts_ns=now)])
    part2 = synth.trades(150, fills=2, ts_ns=now)
    broker.start()
    try:
        with WalWriter(wal, segment_bytes=1 << 20) as w:
            append_batches(w, part1, seqs_per_batch=16)
        ob = Outbox(wal, wal / "outbox.cursor", broker.bootstrap, topic, CAT, max_queue=200,
                    producer_config={"message.timeout.ms": 120000})
        assert ob.flush(60), "outbox did not drain before the outage"
        broker.stop()
        # the engine keeps trading: its journal appends and syncs without waiting for Kafka
        t0 = time.monotonic()
        with WalWriter(wal, segment_bytes=1 << 20) as w:
            append_batches(w, part2, seqs_per_batch=16)
        assert time.monotonic() - t0 < 10
        for _ in range(50):  # the outbox keeps returning while the broker is down
            ob.step(0.0)
        assert ob.backlog() > 0
        broker.start()
        assert ob.flush(90), "outbox did not drain after the broker returned"
        ob.close()
        last = int(part2["seq"][-1])

        async def settle() -> None:
            conn = await prepare(pg_database)
            w = LedgerWriter(pg_database, retry_max_s=30)
            c = KafkaLedgerConsumer(broker.bootstrap, topic, w, CAT, group="outage", max_batch=500)
            try:
                await c.start()
                await consume_until(c, last, timeout_s=60)
                assert (await check_against_wal(conn, wal, CAT)).ok  # nothing missing or extra
                assert (await check_all(conn, external_account=CAT.external_account, grace_s=0)).ok
                dupes = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT shard, seq, leg FROM ledger_entries "
                    "GROUP BY 1, 2, 3 HAVING count(*) > 1) d")
                assert dupes == 0
            finally:
                await c.close()
                await w.close()
                await conn.close()

        asyncio.run(settle())
    finally:
        broker.stop()
