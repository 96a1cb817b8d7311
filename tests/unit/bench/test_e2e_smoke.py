"""The e2e load generator builds and drives a real server: a few hundred orders, all answered.

Server: ``python -m edge --inproc`` (real sockets, real engine kernels, no WAL) started by
``bench.e2e.run_inproc``, exactly as the bench suite starts its comparison edge. No timing is
asserted (speed figures come from ``python -m bench e2e`` only); what is checked is that the
generator sent what it says, that every request was answered with the expected order status, that
the latency histograms saw every measured request, and that nothing is left running.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import e2e, loadgen
from bench.loadgen import rows

PLAN = e2e.Plan(ws_rates=(), seconds=0.6, warmup=0.1, inflight=(), rest_rate=100,
                inproc_rates=(), inproc_inflight=(), drain_s=10.0, max_backlog_s=5.0)


def test_generator_builds_and_is_current() -> None:
    exe = loadgen.build()
    assert exe.is_file() and os.access(exe, os.X_OK)
    assert not loadgen._stale(exe)
    assert exe.is_relative_to(Path(__file__).resolve().parents[3] / "var")


def test_generator_go_unit_tests() -> None:
    """``go test`` in bench/loadgen: the raw WebSocket client's framing (masking, every length
    encoding, fragments, ping, close, oversized frames), which the servers here never exercise."""
    import shutil
    import subprocess

    go = shutil.which("go")
    assert go, "the Go toolchain builds bench/loadgen and must be on PATH"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    proc = subprocess.run([go, "test", "-count=1", "."], cwd=loadgen.SRC, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generator_refuses_a_bad_spec() -> None:
    with pytest.raises(loadgen.LoadgenError, match="open_orders"):
        loadgen.run({"symbol": "BTC-USDT", "open_orders": 0, "drain_seconds": 1,
                     "max_backlog_s": 1, "regimes": []}, timeout_s=30)


def test_generator_against_its_stand_in_edge() -> None:
    regimes = [e2e.regime("open", PLAN, rate=1000.0), e2e.regime("closed", PLAN, inflight=2)]
    with loadgen.Sink() as sink:
        rep = loadgen.run({"ws_url": sink.url, "rest_url": "", "symbol": "BTC-USDT",
                           "ws_accounts": [{"key": "a", "secret": "s"}, {"key": "b", "secret": "s"}],
                           "rest_accounts": [], "open_orders": 8, "drain_seconds": 5,
                           "max_backlog_s": 5, "watch_pids": {"sink": sink.pid},
                           "regimes": regimes}, timeout_s=60)
        assert sink.proc.poll() is None
    assert sink.proc.returncode is not None  # stopped by closing its stdin
    op, cl = rep["regimes"]
    assert op["sent"] == op["answered"] == 600 and op["pushes"] == 2 * 600
    assert op["places"] == 16 + (600 - 16) // 2 and rows.clean(op)
    assert cl["sent"] == cl["answered"] > 4 and rows.clean(cl)
    assert rep["cleanup"]["cancel_alls"] == 2
    row = rows.row(op, "sink", target_rate=1000.0)
    assert row.correct and row.value == pytest.approx(1000, rel=0.2) and row.p50 and row.p50 > 0
    assert "target at 1,000/s" in (row.notes or "")
    # a single error answer, or a place that did not rest, makes the row incorrect
    assert not rows.clean({**op, "errors": 1, "error_names": {"INSUFFICIENT_BALANCE": 1}})
    assert not rows.clean({**op, "outcomes": {**op["outcomes"], "place:EXPIRED": 1}})
    assert not rows.clean({**op, "unanswered": 1})


@pytest.mark.timeout(120)
def test_a_few_hundred_orders_against_the_inprocess_edge() -> None:
    regimes = [e2e.regime("open", PLAN, rate=500.0),  # 300 requests over 2 connections
               e2e.regime("closed", PLAN, inflight=4),
               e2e.regime("rest", PLAN, "rest", rate=100.0)]
    before = set(_children())  # other tests' long-lived helpers are not this test's business
    rep = e2e.run_inproc(PLAN, regimes, ws=2, rest=1)
    by = {r["name"]: r for r in rep["regimes"]}

    op = by["open"]
    assert op["sent"] == 300 and op["answered"] == 300
    assert op["errors"] == 0 and op["unanswered"] == 0 and not op["overloaded"]
    # 2 connections x 32 resting orders, then cancel-oldest / place alternately
    assert op["outcomes"] == {"place:NEW": op["places"], "cancel:CANCELED": op["cancels"]}
    assert op["places"] == 64 + (300 - 64 + 1) // 2 and op["cancels"] == 300 - op["places"]
    assert op["latency_us"]["all"]["count"] == 250  # due after the 0.1 s warm-up
    assert op["latency_us"]["warmup"]["count"] == 50
    assert 0 < op["latency_us"]["place"]["p50"] <= op["latency_us"]["place"]["p99"]
    assert op["pushes"] > 0  # OrderUpdate / BalanceUpdate of the session's own orders
    assert rows.clean(op)

    cl = by["closed"]
    assert cl["mode"] == "closed" and cl["sent"] == cl["answered"] > 8 and cl["errors"] == 0
    assert rows.clean(cl)

    rest = by["rest"]
    assert rest["transport"] == "rest" and rest["sent"] == rest["answered"] == 60
    assert rest["outcomes"] == {"place:NEW": 32 + 14, "cancel:CANCELED": 14}
    assert rows.clean(rest)

    # the closing cancelAll per WS connection removes exactly the orders still resting
    open_left = sum(r["places"] - r["cancels"] for r in (op, cl))
    assert rep["cleanup"]["cancel_alls"] == 2 and rep["cleanup"]["errors"] == 0
    assert rep["cleanup"]["canceled_by_cancel_all"] == open_left
    assert rep["regimes"][0]["cpu_seconds"]["edge"] > 0
    assert set(_children()) - before == set()  # the edge and the generator were stopped, reaped


def _children() -> list[str]:
    out: list[str] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        out += (task / "children").read_text().split()
    return out



def _regime(name: str, mode: str, offered: float, achieved: float, p50: float,
            overloaded: bool = False) -> dict:  # type: ignore[type-arg]
    lat = {"p50": p50, "p99": 2 * p50, "p999": 3 * p50}
    return {"name": name, "mode": mode, "transport": "ws", "offered": offered,
            "achieved": achieved, "overloaded": overloaded, "sent": 10, "answered": 10,
            "unanswered": 0, "errors": 0, "late": 0, "outcomes": {"place:NEW": 10},
            "latency_us": {"place": lat}}


def test_max_row_names_the_best_closed_loop_and_the_highest_rate_held() -> None:
    plan = e2e.QUICK
    stack = {"regimes": [_regime("e2e.ws.closed.64x16", "closed", 0, 51_000, 18_000),
                         _regime("e2e.ws.open.20k", "open", 20_000, 19_990, 1_900),
                         _regime("e2e.ws.open.50k", "open", 50_000, 49_900, 8_600)]}
    inproc = {"regimes": [_regime("e2e.inproc.ws.closed.64x16", "closed", 0, 68_000, 12_000)]}
    r = e2e._max_row(stack, inproc, plan)
    assert r is not None and r.value == 51_000
    assert "50,000/s, ack p50 there 8.6 ms; no open-loop regime overloaded" in r.notes
    assert "NOT met" in r.notes
    stack["regimes"][2] = _regime("e2e.ws.open.50k", "open", 50_000, 32_000, 3e6, overloaded=True)
    r = e2e._max_row(stack, inproc, plan)
    assert r is not None
    assert "20,000/s, ack p50 there 1.9 ms; overloaded open-loop regimes were answered at up to " \
           "32,000/s" in r.notes


def test_the_max_row_is_the_median_of_interleaved_closed_runs() -> None:
    """``e2e.ws.max`` holds the median run of the closed-loop load with the highest median, not
    the single luckiest run, and names every run."""
    def closed(n: int, rate: float, name: str) -> dict[str, object]:
        lat = {"p50": 1000.0, "p99": 2000.0, "p999": 3000.0}
        return {"name": name, "mode": "closed", "transport": "ws", "inflight": n,
                "achieved": rate, "offered": 0, "overloaded": False, "answered": 10, "sent": 10,
                "unanswered": 0, "errors": 0, "late": 0, "outcomes": {"place:NEW": 10},
                "latency_us": {"place": lat}}

    stack = {"regimes": [closed(16, 90_000, "c16"), closed(64, 130_000, "c64"),
                         closed(16, 95_000, "c16.run2"), closed(64, 96_000, "c64.run2"),
                         closed(16, 93_000, "c16.run3"), closed(64, 99_000, "c64.run3")]}
    run, rates = e2e.median_closed(stack) or ({}, [])
    assert run["name"] == "c64.run3" and rates == [130_000, 96_000, 99_000]  # median 99 k > 93 k
    row = e2e._max_row(stack, {"regimes": []}, PLAN)
    assert row is not None and row.value == 99_000 and "NOT met" in (row.notes or "")
    assert "the median of 3 interleaved runs: 130,000, 96,000, 99,000" in (row.notes or "")
    assert e2e.median_closed({"regimes": []}) is None


def test_stack_vs_inproc_at_each_rate_both_ran() -> None:
    """The comparison with the in-process edge is made at 1 k/s and at the target rate (QUICK
    runs the in-process edge at both), from the place p50s of the two runs; a rate only one side
    ran gives no row."""
    plan = e2e.QUICK
    assert e2e.TARGET_RATE in plan.inproc_rates and e2e.TARGET_RATE in plan.ws_rates
    ws = {r["name"]: r for r in (_regime("e2e.ws.open.1k", "open", 1_000, 1_000, 700),
                                 _regime("e2e.ws.open.50k", "open", 50_000, 49_900, 2_000),
                                 _regime("e2e.ws.open.5k", "open", 5_000, 5_000, 900))}
    inp = {r["name"]: r for r in (_regime("e2e.inproc.ws.open.1k", "open", 1_000, 1_000, 300),
                                  _regime("e2e.inproc.ws.open.50k", "open", 50_000, 49_800, 1_600))}
    out = e2e.stack_vs_inproc(ws, inp, plan)
    assert [r.name for r in out] == ["e2e.stack_vs_inproc.place_p50.1k",
                                     "e2e.stack_vs_inproc.place_p50.50k"]
    assert (out[1].value, out[1].peer_value, out[1].ratio_vs_peer) == (2_000, 1_600, 1.25)
    assert "50,000/s" in (out[1].notes or "")
    del inp["e2e.inproc.ws.open.50k"]
    assert [r.name for r in e2e.stack_vs_inproc(ws, inp, plan)] == [
        "e2e.stack_vs_inproc.place_p50.1k"]
