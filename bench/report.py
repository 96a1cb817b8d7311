"""``python -m bench all [--quick] --json DIR``: every suite, one JSON each, plus ``report.md`` and
PNG plots (latency percentiles per suite; throughput per result), so a performance engineer can
look rather than read. matplotlib is imported here only (never from engine/ or edge/)."""

from __future__ import annotations

import datetime as _dt
import importlib
import traceback
from pathlib import Path

from bench.harness import Result, format_table, frozen_gc, machine_info, write_report

ORDER = ("ring", "wal", "engine", "engine_wal", "recovery", "e2e", "fanout", "settle")


def _plot(suite: str, results: list[Result], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    lat = [r for r in results if r.p50 is not None and r.p99 is not None]
    if lat:
        fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(lat)))
        names = [r.name[:48] for r in lat]
        for label, attr in (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999")):
            ax.scatter([getattr(r, attr) or 0 for r in lat], names, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("latency (unit of each row: us unless the row says otherwise)")
        ax.legend()
        ax.set_title(f"{suite}: latency percentiles")
        fig.tight_layout()
        p = out / f"{suite}-latency.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p.name)
    thr = [r for r in results if r.value is not None and r.unit.endswith("/s") or
           (r.unit or "").startswith(("records/s", "commands/s", "orders/s", "trades/s", "frames"))]
    if thr:
        fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(thr)))
        ax.barh([r.name[:48] for r in thr], [r.value or 0 for r in thr], label="spotx")
        peers = [r.peer_value or 0 for r in thr]
        if any(peers):
            ax.barh([r.name[:48] for r in thr], peers, label="peer (same run)", alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("per second")
        ax.legend()
        ax.set_title(f"{suite}: throughput vs peer")
        fig.tight_layout()
        p = out / f"{suite}-throughput.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p.name)
    return files


def run_all(quick: bool, out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# spotx bench report ({'quick' if quick else 'full'})", "",
             f"started {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}", "",
             f"machine: `{machine_info()}`", ""]
    ok = True
    for suite in ORDER:
        lines += [f"## {suite}", ""]
        try:
            mod = importlib.import_module(f"bench.{suite}")
            with frozen_gc():
                results = mod.run(quick)
        except Exception:  # noqa: BLE001 - one broken suite must not hide the others
            ok = False
            lines += ["suite failed:", "", "```", traceback.format_exc()[-3000:], "```", ""]
            continue
        write_report(suite, results, str(out / f"{suite}.json"), getattr(mod, "DURABILITY", None))
        ok = ok and all(r.correct is not False for r in results)
        lines += ["```", format_table(results), "```", ""]
        for f in _plot(suite, results, out):
            lines.append(f"![{f}]({f})")
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    return 0 if ok else 1
