"""``python -m bench SUITE [--quick] [--json PATH]`` — see DESIGN.md §12 and bench/README.md."""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import os
import sys

from bench.harness import format_table, frozen_gc, write_report

SUITES = ("ring", "wal", "engine", "engine_wal", "recovery", "e2e", "fanout", "settle")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("suite", choices=(*SUITES, "all"))
    ap.add_argument("--quick", action="store_true", help="finish in under a minute")
    ap.add_argument("--json", dest="json_path", default=None,
                    help="file for one suite; a directory for 'all' (also gets report.md + PNGs)")
    args = ap.parse_args(argv)
    if args.suite == "all":
        from bench.report import run_all

        return run_all(args.quick, args.json_path or "bench-results")
    mod = importlib.import_module(f"bench.{args.suite}")
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    with frozen_gc():
        results = mod.run(args.quick)
    print(f"suite {args.suite} ({'quick' if args.quick else 'full'}) on {os.cpu_count()} cores")
    print(format_table(results))
    write_report(args.suite, results, args.json_path, getattr(mod, "DURABILITY", None), started)
    return 0 if all(r.correct is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
