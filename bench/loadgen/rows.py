"""Harness rows from a ``spotx-loadgen`` report (one regime -> one ``bench.harness.Result``).

A regime's row: value = achieved requests/s, p50/p99/p99.9 = order.place latency in us (from the
due time in open loop), ``correct`` = every request answered, no error answers, places NEW and
cancels CANCELED (``clean``); the notes carry the counts, cancel latency, generator send lag,
private pushes, the CPU share of every watched process over the regime and the time their threads
waited for a CPU (the run queue: on a shared core, contention a CPU share alone does not show).
"""

from __future__ import annotations

from typing import Any

from bench.harness import Result


def clean(r: dict[str, Any]) -> bool:
    """Every request answered, no error answer, places NEW and cancels CANCELED."""
    odd = {k for k in (r.get("outcomes") or {}) if k not in ("place:NEW", "cancel:CANCELED")}
    return (r["answered"] == r["sent"] and r["unanswered"] == 0 and r["errors"] == 0
            and r["late"] == 0 and not odd)


def _pct(s: dict[str, Any]) -> str:
    return f"{s['p50']:,.0f}/{s['p99']:,.0f}/{s['p999']:,.0f}"


def notes(r: dict[str, Any], where: str, target_rate: float = 0.0) -> str:
    """``where`` first; at ``target_rate`` (WS open loop) whether p50 < 0.5 ms and p99 < 2 ms."""
    lat, wall, cpu = r["latency_us"], r["wall_seconds"], r["cpu_seconds"]
    load = (f"open loop {r['offered']:,.0f}/s offered" if r["mode"] == "open"
            else f"closed loop {r['inflight']} in flight per connection")
    errs = f" {r['error_names']}" if r["error_names"] else ""
    n = [f"{where}; {load}, {r['connections']} {r['transport'].upper()} connections",
         f"sent {r['sent']} answered {r['answered']} errors {r['errors']}{errs} "
         f"outcomes {r['outcomes']}",
         f"latency us p50/p99/p99.9: place {_pct(lat['place'])}, cancel {_pct(lat['cancel'])}"]
    if r["mode"] == "open":
        n.append("generator send lag (due -> write, inside the latency) "
                 f"{_pct(r['send_lag_us'])} us")
    if r["transport"] == "ws":
        n.append(f"{r['pushes']} private pushes received")
    usage = ", ".join(f"{k} {v / wall:.0%}" for k, v in sorted(cpu.items()))
    per = ", ".join(f"{k} {v / max(r['answered'], 1) * 1e6:,.1f}" for k, v in sorted(cpu.items()))
    n.append(f"CPU of one core over {wall:.1f} s: {usage}; CPU per request (us): {per}")
    rq = r.get("runq_wait_seconds") or {}
    if rq:  # runnable but not running, summed over threads: contention for a shared core
        n.append("waiting for a CPU (run queue, all threads) over the regime: "
                 + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(rq.items())))
    if r["overloaded"]:
        n.append(f"OVERLOADED: stopped at {r['stopped_at_seconds']:.2f} s with more than "
                 "max_backlog_s of offered load outstanding; value = every answer over start .. "
                 "last answer (the server saturated); latencies cover every request sent")
    if target_rate and (r["mode"], r["transport"], r["offered"]) == ("open", "ws", target_rate):
        p = lat["place"]
        met = not r["overloaded"] and 0 < p["p50"] < 500 and p["p99"] < 2000
        n.append(f"target at {target_rate:,.0f}/s (p50 < 500 us, p99 < 2000 us): "
                 + ("met" if met else "NOT met"))
    return "; ".join(n)


def row(r: dict[str, Any], where: str, target_rate: float = 0.0) -> Result:
    """One regime as a harness Result: value = achieved rate, percentiles = order.place."""
    lat = r["latency_us"]["place"]
    return Result(r["name"], "orders/s", r["achieved"], p50=lat["p50"], p99=lat["p99"],
                  p999=lat["p999"], correct=clean(r), notes=notes(r, where, target_rate))


def lat_row(name: str, r: dict[str, Any], text: str, peer: str, peer_r: dict[str, Any]) -> Result:
    """A latency comparison: value = r's order.place p50 (us), peer = peer_r's."""
    lat = r["latency_us"]["place"]
    return Result(name, "us", lat["p50"], p50=lat["p50"], p99=lat["p99"], p999=lat["p999"],
                  correct=clean(r), notes=text).with_peer(
        peer, peer_r["latency_us"]["place"]["p50"])


def by_name(rep: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in (rep or {}).get("regimes", [])}


def best_closed(rep: dict[str, Any] | None) -> dict[str, Any] | None:
    closed = [r for r in by_name(rep).values() if r["mode"] == "closed"]
    return max(closed, key=lambda r: r["achieved"]) if closed else None
