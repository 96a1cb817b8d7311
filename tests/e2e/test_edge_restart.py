"""An edge restarts freely: after kill -9 the supervisor restarts it and it answers with the same
state (rebuilt from the WAL); after a clean stop the next start restores the edge (and the
publisher) from its snapshot and replays only what came after it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import Stack

from pipeline import edge_snapshot
from pipeline.publisher import snapshot as md_snapshot
from pipeline.supervisor import Supervisor

SYM = "BTC-USDT"


def order(price: str, cid: str) -> dict[str, str]:
    return {"symbol": SYM, "side": "BUY", "type": "LIMIT", "price": price, "quantity": "0.01",
            "clientOrderId": cid}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    st = Stack(tmp_path)
    st.start()
    try:
        yield st
    finally:
        st.sup.stop()


def test_edge_kill_9_then_clean_restart_from_snapshot(stack: Stack) -> None:
    stack.fund(3030, "USDT", "1000")
    c = stack.client(3030)
    ids = [c.call("POST", "/v1/orders", order(f"{600 + i}.00", f"keep-{i}")).json()["orderId"]
           for i in range(3)]
    gone = c.call("POST", "/v1/orders", order("590.00", "gone")).json()["orderId"]
    assert c.call("DELETE", f"/v1/orders/{gone}").json()["status"] == "CANCELED"

    def state() -> tuple[object, ...]:
        opened = sorted(o["orderId"] for o in c.call("GET", "/v1/orders").json())
        bal = c.call("GET", "/v1/balances").json()
        depth = c.call("GET", f"/v1/depth?symbol={SYM}").json()
        return opened, bal, depth["bids"], c.call("GET", f"/v1/orders/{gone}").json()["status"]

    before = state()
    assert before[0] == sorted(ids)

    edge = stack.sup.child("edge-1")
    os.kill(edge.proc.pid, signal.SIGKILL)
    edge.proc.join(10)
    assert stack.sup.poll() and stack.sup.child("edge-1").ready  # restarted
    assert stack.sup.child("edge-1").info["restored_from_seq"] == 0  # no snapshot: whole WAL
    assert state() == before

    assert stack.sup.child("publisher").info["restored_from_seq"] == 0  # first start: from seq 1
    stack.sup.stop()  # clean: the edge and the publisher write their snapshots on the way out
    assert edge_snapshot.snapshot_path(stack.cfg).is_file()
    assert md_snapshot.snapshot_path(stack.cfg).is_file()
    stack.sup = Supervisor(stack.cfg)
    stack.sup.start()
    info = stack.sup.child("edge-1").info
    assert info["restored_from_seq"] > 0 and info["replayed_events"] == 0
    pub = stack.sup.child("publisher").info
    assert pub["restored_from_seq"] == info["restored_from_seq"] and pub["events"] == 0
    assert state() == before
    c2 = stack.client(3030)  # and it trades on from there
    r = c2.call("POST", "/v1/orders", order("610.00", "after"))
    assert r.status_code == 200 and r.json()["status"] == "NEW", r.text
