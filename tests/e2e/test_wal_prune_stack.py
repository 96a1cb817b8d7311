"""WAL pruning and a config change on the live stack: trade, prune online, trade on, stop
cleanly, prune again, start again under a config that lists a new symbol (with a new asset) and changes a
fee: every process comes back from its snapshot on the pruned WAL (carried over to the new
config), clients see the same orders, balances and book, the new symbol trades and the new fee
applies."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from stackutil import Stack

from bench.recovery import LISTING
from pipeline import cli, config, edge_snapshot
from pipeline.config import DEFAULT_TOML
from pipeline.supervisor import Supervisor, SupervisorError
from pipeline.wal import verify_chain
from pipeline.wal.archive import first_retained_seq
from pipeline.wal.format import list_segments

SYM = "BTC-USDT"


def order(price: str, cid: str) -> dict[str, str]:
    return {"symbol": SYM, "side": "BUY", "type": "LIMIT", "price": price, "quantity": "0.01",
            "clientOrderId": cid}


def test_prune_a_stopped_stack_and_start_it_again(tmp_path: Path, monkeypatch: Any,
                                                  capsys: Any, pg_database: str) -> None:
    stack = Stack(tmp_path, {"SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(64 << 10),
                             "SPOTX_ENGINE_SNAPSHOT_EVERY": "200", "SPOTX_SETTLE_ENABLED": "true",
                             "SPOTX_EDGE_SNAPSHOT_EVERY_EVENTS": "400",
                             "SPOTX_MARKET_SNAPSHOT_EVERY_EVENTS": "400",
                             "SPOTX_SETTLE_PG_DSN": pg_database})
    stack.start()
    try:
        stack.fund(3131, "USDT", "100000")
        c = stack.client(3131)
        keep = [c.call("POST", "/v1/orders", order(f"{500 + i}.00", f"k{i}")).json()["orderId"]
                for i in range(5)]
        def churn(n: int, tag: str) -> None:  # each place and each cancel is a batch of the WAL
            for i in range(n):
                oid = c.call("POST", "/v1/orders", order("400.00", f"{tag}{i}")).json()["orderId"]
                assert c.call("DELETE", f"/v1/orders/{oid}").status_code == 200

        churn(400, "a")
        for k, v in stack.env.items():
            monkeypatch.setenv(k, v)
        wal = Path(stack.cfg.data_dir) / "wal"
        # online, while the stack runs: only what every reader's restart point has passed
        assert cli.main(["wal", "prune", "--apply", "--reason", "disk", "--ticket", "OPS-6",
                         "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["segments"] and first_retained_seq(wal) > 1, doc
        churn(200, "b")  # the engine, edge, publisher and settlement go on

        def state() -> tuple[object, ...]:
            opened = sorted(o["orderId"] for o in c.call("GET", "/v1/orders").json())
            depth = c.call("GET", f"/v1/depth?symbol={SYM}").json()
            return opened, c.call("GET", "/v1/balances").json(), depth["bids"], depth["seq"]

        before = state()
        assert before[0] == sorted(keep)
        stack.sup.stop()  # clean: engine, edge and publisher snapshots on the way out
        n0 = len(list_segments(wal))
        assert cli.main(["wal", "prune", "--apply", "--reason", "disk", "--ticket", "OPS-7",
                         "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        moved = len(doc["segments"])
        assert moved > 0 and len(list_segments(wal)) == n0 - moved, doc
        assert first_retained_seq(wal) > 1 and verify_chain(wal).ok

        # an edge without its snapshot would need seq 1, which is archived: a loud refusal that
        # says what to do, reported by `spotx up`
        snap = edge_snapshot.snapshot_path(stack.cfg)
        snap.rename(tmp_path / "edge-snapshot.aside")
        stack.sup = Supervisor(stack.cfg)
        with pytest.raises(SupervisorError, match="edge-1 failed to start: WalGapError: seq 1 .*"
                                                  "spotx wal unarchive --apply"):
            stack.sup.start()
        (tmp_path / "edge-snapshot.aside").rename(snap)

        toml = tmp_path / "listed.toml"
        toml.write_text(DEFAULT_TOML.read_text().replace(
            "maker_fee_bps = 2\ntaker_fee_bps = 5", "maker_fee_bps = 2\ntaker_fee_bps = 7", 1)
            + LISTING)
        stack.cfg = config.load(toml, env=stack.env)
        stack.sup = Supervisor(stack.cfg)
        stack.sup.start()
        assert stack.sup.child("edge-1").info["restored_from_seq"] >= first_retained_seq(wal)
        after = state()
        assert after[1][-1] == {"asset": "NEW", "available": "0.000000", "locked": "0.000000"}
        assert (after[0], after[1][:-1], *after[2:]) == before  # plus the new asset, at zero
        r = c.call("POST", "/v1/orders", order("510.50", "after"))
        assert r.status_code == 200 and r.json()["status"] == "NEW", r.text
        syms = {x["symbol"]: x for x in c.call("GET", "/v1/symbols").json()}
        assert syms[SYM]["takerFeeBps"] == 7 and "NEW-USDT" in syms
        # the new symbol trades: fund both sides, cross, and the taker pays the new symbol's fee
        stack.fund(3132, "NEW", "1000")
        seller = stack.client(3132)
        sell = {"symbol": "NEW-USDT", "side": "SELL", "type": "LIMIT", "price": "2.000",
                "quantity": "10", "clientOrderId": "s1"}
        assert seller.call("POST", "/v1/orders", sell).json()["status"] == "NEW"
        buy = {**sell, "side": "BUY", "clientOrderId": "b1"}
        res = c.call("POST", "/v1/orders", buy).json()
        assert res["status"] == "FILLED", res
        assert [f["fee"] for f in res["fills"]] == ["0.006000"]  # 20 USDT notional x 3 bps
        stack.sup.stop()  # settlement drains what is durable on the way out
        monkeypatch.setenv("SPOTX_CONFIG", str(toml))
        assert cli.main(["check", "--against-wal"]) == 0, capsys.readouterr()
        out = capsys.readouterr().out
        assert "wal_mismatch" in out and "violations: 0" in out
    finally:
        stack.sup.stop()


def test_the_supervisor_prunes_on_schedule_while_trading(tmp_path: Path, monkeypatch: Any,
                                                        capsys: Any) -> None:
    arch = tmp_path / "cold"
    stack = Stack(tmp_path, {"SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(64 << 10),
                             "SPOTX_ENGINE_SNAPSHOT_EVERY": "200",
                             "SPOTX_EDGE_SNAPSHOT_EVERY_EVENTS": "300",
                             "SPOTX_MARKET_SNAPSHOT_EVERY_EVENTS": "300",
                             "SPOTX_RETENTION_ARCHIVE_DIR": str(arch),
                             "SPOTX_RETENTION_EVERY_S": "1"})
    stack.start()
    try:
        stack.fund(3133, "USDT", "100000")
        c = stack.client(3133)
        keep = c.call("POST", "/v1/orders", order("501.00", "keep")).json()["orderId"]
        deadline = time.monotonic() + 60
        i = 0
        while not list(arch.glob("*.seg.gz")):
            assert time.monotonic() < deadline, stack.sup.prune_runs
            for _ in range(50):
                oid = c.call("POST", "/v1/orders", order("400.00", f"c{i}")).json()["orderId"]
                assert c.call("DELETE", f"/v1/orders/{oid}").status_code == 200
                i += 1
            assert stack.sup.poll()  # what `spotx up`'s watch loop calls every 0.2 s
        wal = Path(stack.cfg.data_dir) / "wal"
        assert first_retained_seq(wal) > 1
        log = [json.loads(x) for x in
               (Path(stack.cfg.data_dir) / "wal-retention.jsonl").read_text().splitlines()]
        assert {(x["actor"], x["online"]) for x in log} == {("supervisor", True)}
        assert [o["orderId"] for o in c.call("GET", "/v1/orders").json()] == [keep]
        r = c.call("POST", "/v1/orders", order("502.00", "after"))
        assert r.status_code == 200 and r.json()["status"] == "NEW", r.text
        while stack.sup.prune_runs["last_exit"] is None:  # the run that moved them: collected
            assert time.monotonic() < deadline and stack.sup.poll()
            time.sleep(0.1)
        status = json.loads((stack.sup.run_dir / "status.json").read_text())
        assert status["retention"]["archive_dir"] == str(arch)
        for k, v in stack.env.items():
            monkeypatch.setenv(k, v)
        assert cli.main(["status"]) == 0
        out = capsys.readouterr().out
        assert "(older seqs archived)" in out and f"into {arch};" in out, out
        import httpx

        metrics = httpx.get(stack.metrics_url, timeout=10).text
        assert "spotx_wal_retention_enabled 1.0" in metrics
        assert "spotx_wal_retention_last_exit_code 0.0" in metrics
        assert re.search(r"^spotx_wal_retention_runs_total [1-9]", metrics, re.M), metrics
    finally:
        stack.sup.stop()
