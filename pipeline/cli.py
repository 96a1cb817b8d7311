"""``spotx`` — the operator's command line.

    spotx up [--config F] [--for S]        start the single-host stack (supervisor), Ctrl-C stops it
    spotx status [--config F] [--json]     processes, seq, queue depths, disk of a running stack
    spotx keys create --account N --role R issue an API key + secret into the key store
    spotx db migrate                       apply Postgres migrations (idempotent)
    spotx reconcile [--snapshot P]         engine balances vs ledger at the snapshot's seq (exit 1 on a diff)
    spotx check [--against-wal]            ledger invariants once (exit 1 on a violation)
    spotx ledger correct --asset --amount --from-account --to-account --reason --ticket
                                           a balanced, audited CORRECTION (two legs)
    spotx ledger repair --reason --ticket  counter-legs making the ledger equal the WAL (audited)
    spotx wal verify|dump [DIR] [--events] integrity roots / frame listing (--events: each event)
    spotx forensic-bundle [--out DIR]      WAL, snapshots, offsets, ledger range, configs (.tar.gz)
    spotx admin mode SYM MODE --reason --ticket     symbol mode (NORMAL|CANCEL_ONLY|SOFT_HALT|HARD_HALT)
    spotx admin global-mode MODE --reason --ticket  global SOFT_HALT / NORMAL
    spotx admin cancel-all SYM --reason --ticket    cancel every open order on SYM
    spotx admin withdrawals halt|resume --reason --ticket
    spotx admin audit [--limit N]                   the audit trail
    spotx deposit --account --asset --amount   fund an account (admin API, audited)

Every command takes ``--config`` (default: the embedded single-host config; env SPOTX_CONFIG).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pipeline import config as config_mod


def _out(*parts: object, file: Any = None, flush: bool = False) -> None:
    """The CLI's one writer to the terminal (library modules never print)."""
    stream = file or sys.stdout
    stream.write(" ".join(str(p) for p in parts) + "\n")
    if flush:
        stream.flush()


def _load(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(args.config or os.environ.get("SPOTX_CONFIG") or None)


def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.supervisor import Supervisor, SupervisorError

    cfg = _load(args)
    sup = Supervisor(cfg)
    try:
        sup.start()
    except SupervisorError as err:
        _out(f"spotx up: {err}", file=sys.stderr)
        return 1
    e = cfg.edge
    _out(f"spotx {cfg.instance} is up (data in {Path(cfg.data_dir).resolve()})")
    _out(f"  REST            http://{e.host}:{e.rest_port}/v1   (OpenAPI: /openapi.json)")
    _out(f"  WS order entry  ws://{e.host}:{e.ws_trade_port}{e.ws_trade_path}")
    _out(f"  WS market data  ws://{cfg.market.host}:{cfg.market.port}{cfg.market.path}")
    _out(f"  metrics         http://{cfg.metrics.host}:{cfg.metrics.port}/metrics")
    _out("  Ctrl-C (SIGINT) or SIGTERM stops the stack cleanly.", flush=True)
    return sup.watch(stop_after_s=args.for_seconds)


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.stats import read_all
    from pipeline.supervisor import run_dir

    cfg = _load(args)
    path = run_dir(cfg) / "status.json"
    if not path.exists():
        _out(f"no stack has run with data dir {cfg.data_dir}", file=sys.stderr)
        return 1
    status = json.loads(path.read_text())
    gauges: dict[str, Any] = {}
    for header, samples in read_all(run_dir(cfg)):
        for s in samples:
            if s.kind != "histogram" and s.name in ("engine_seq", "engine_queue_depth",
                                                    "wal_durable_seq", "ws_connected_clients"):
                key = s.name + "".join(f"{{{k}={v}}}" for k, v in s.labels) + f"@{header['proc']}"
                gauges[key] = s.value
    storage = _storage(cfg)
    if args.json:
        _out(json.dumps({"status": status, "gauges": gauges, "storage": storage}, indent=1))
        return 0
    _out(f"instance {status['instance']}  supervisor pid {status['supervisor_pid']}"
          f"{'  (stopped)' if status.get('stopped') else ''}")
    for p in status["processes"]:
        state = "ready" if p["ready"] and p["alive"] else ("starting" if p["alive"] else "down")
        modules = ""
        if "native" in p:  # edges: their per-order modules (pipeline.native) as loaded at start
            modules = "  modules " + ("compiled" if p["native"] else "interpreted")
        _out(f"  {p['name']:12} pid {p['pid'] or '-':>7}  {state:8} restarts {p['restarts']}{modules}")
    for k, v in sorted(gauges.items()):
        _out(f"  {k} = {v}")
    gib = 1 << 30
    first = storage.get("spotx_wal_first_seq", 0)
    _out(f"  disk: WAL {storage.get('spotx_wal_disk_bytes', 0) / gib:.2f} GiB in "
         f"{storage.get('spotx_wal_segments', 0):.0f} segments from seq {first:.0f} "
         f"({'nothing archived' if first <= 1 else 'older seqs archived'}), "
         f"{storage.get('spotx_data_fs_free_bytes', 0) / gib:.1f} GiB free of "
         f"{storage.get('spotx_data_fs_size_bytes', 0) / gib:.1f} GiB")
    r = status.get("retention") or {}
    if r.get("archive_dir"):
        _out(f"  retention: every {r['every_s']} s into {r['archive_dir']}; {r['runs']} run(s), "
             f"last exit {r['last_exit'] if r['last_exit'] is not None else '-'}")
    else:
        _out("  retention: off ([retention] archive_dir; spotx wal prune by hand)")
    return 0 if not status.get("stopped") else 1


def _storage(cfg: Any) -> dict[str, float]:
    """The exporter's storage series (pipeline.exporter.StorageCollector), as name -> value."""
    from pipeline.exporter import StorageCollector

    return {smp.name + "".join(f"{{{k}={v}}}" for k, v in sorted(smp.labels.items())): smp.value
            for fam in StorageCollector(cfg.data_dir).collect() for smp in fam.samples}


def cmd_keys(args: argparse.Namespace) -> int:
    from edge.auth import KeyStore

    cfg = _load(args)
    store = KeyStore(cfg.edge.key_store or str(Path(cfg.data_dir) / "keys.json"))
    key = store.create(account=args.account, role=args.role)
    _out(json.dumps({"apiKey": key.key_id, "secret": key.secret, "account": key.account,
                      "role": key.role}))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    import asyncio

    from settle.migrate import migrate

    cfg = _load(args)
    applied = asyncio.run(migrate(args.dsn or cfg.settle.pg_dsn))
    _out(f"migrations applied: {applied or 'none (up to date)'}")
    return 0


def cmd_settle(args: argparse.Namespace) -> int:
    """``spotx reconcile`` / ``spotx check``: thin wrappers over ``python -m settle``."""
    from settle.__main__ import main as settle_main

    path = args.config or os.environ.get("SPOTX_CONFIG")  # as _load: the settle CLI reads no env
    argv = (["--config", path] if path else [])
    if args.cmd == "reconcile":
        snap = args.snapshot
        if snap is None and args.engine_balances is None:
            from engine.snapshot import manifests

            cfg = _load(args)
            sdir = Path(cfg.data_dir) / "snapshots"
            found = manifests(sdir) if sdir.is_dir() else []
            if not found:
                _out("spotx reconcile: no engine snapshot yet (the engine writes one every "
                     "snapshot_every commands, on SNAPSHOT and at shutdown)", file=sys.stderr)
                return 2
            snap = str(found[0])  # the newest
        argv += ["reconcile"] + (["--snapshot", snap] if snap else
                                 ["--engine-balances", args.engine_balances])
    elif args.cmd == "ledger" and args.ledger_cmd == "repair":
        argv += ["repair", "--reason", args.reason, "--ticket", args.ticket]
        argv += (["--from-seq", str(args.from_seq)] if args.from_seq else [])
        argv += (["--actor", args.actor] if args.actor else [])
    elif args.cmd == "ledger":
        argv += ["correct", "--asset", args.asset, "--amount", args.amount,
                 "--from-account", str(args.from_account), "--to-account", str(args.to_account),
                 "--reason", args.reason, "--ticket", args.ticket]
        argv += (["--as-of-seq", str(args.as_of_seq)] if args.as_of_seq is not None else [])
        argv += (["--actor", args.actor] if args.actor else [])
    else:
        argv += ["check"] + (["--against-wal"] if args.against_wal else [])
    return int(settle_main(argv))


def cmd_wal(args: argparse.Namespace) -> int:
    from pipeline.wal.__main__ import main as wal_main

    cfg = _load(args)
    if args.action in ("prune", "unarchive"):
        return _wal_retention(args, cfg)
    extra = (["--events"] if getattr(args, "events", False) else []) + (
        ["--from-seq", str(args.from_seq)] if getattr(args, "from_seq", 0) else [])
    return int(wal_main([args.action, args.dir or str(Path(cfg.data_dir) / "wal"), *extra]) or 0)


def _wal_retention(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    """``spotx wal prune`` / ``spotx wal unarchive`` (pipeline.retention, pipeline.wal.archive)."""
    import getpass

    from pipeline import retention
    from pipeline.wal import WalError

    archive_dir = Path(args.archive or Path(cfg.data_dir) / "wal-archive")
    stored = 0
    actor = args.actor or f"cli:{getpass.getuser()}"
    try:
        if args.action == "unarchive":
            return _wal_unarchive(args, cfg, archive_dir, actor)
        if not args.apply:
            p = retention.plan(cfg, args.before_seq)
        else:
            if not args.reason or not args.ticket:
                _out("spotx wal prune --apply: --reason and --ticket are required (it is audited)",
                     file=sys.stderr)
                return 2
            p, moved = retention.apply(cfg, archive_dir, reason=args.reason, ticket=args.ticket,
                                       actor=actor, before_seq=args.before_seq,
                                       compress=not args.no_compress, online_nice=10)
            stored = sum(m.stored_bytes for m in moved)
    except (retention.RetentionError, WalError, OSError) as e:
        _out(f"spotx wal {args.action}: {e}", file=sys.stderr)
        return 1
    if args.json:
        _out(json.dumps({**p.as_dict(), "applied": bool(args.apply), "archive": str(archive_dir),
                         "stored_bytes": stored if args.apply else None}))
        return 0
    _out(f"WAL {p.wal_dir}: seqs {p.first_seq}..{p.durable_seq} durable")
    for n in p.needs:
        _out(f"  {n.reader:<11} needs seq {n.seq:>12}  ({n.why})")
    _out(f"  keep from seq {p.keep_from}")
    if not p.segments:
        _out("nothing to prune: the oldest segment holds a seq a reader still needs")
        return 0
    verb = "archived" if args.apply else "would archive"
    _out(f"{verb} {len(p.segments)} segment(s), seqs {p.segments[0][1]}..{p.segments[-1][2] - 1}, "
         f"{p.bytes / 1e6:.1f} MB, to {archive_dir}"
         + (f" ({stored / 1e6:.1f} MB stored)" if args.apply else ""))
    if not args.apply:
        _out("dry run: add --apply --reason R --ticket T (the stack may run: then only "
             "segments the engine has synced and left move)")
    elif archive_dir.resolve().is_relative_to(Path(cfg.data_dir).resolve()):
        _out("the archive is inside the data dir: move it off this volume to free the space")
    return 0


def _wal_unarchive(args: argparse.Namespace, cfg: config_mod.Config, archive_dir: Path,
                   actor: str) -> int:
    from pipeline import retention
    from pipeline.wal.archive import archived, first_retained_seq, unarchive

    wal = Path(cfg.data_dir) / "wal"
    want = args.from_seq or 1
    if not args.apply:
        have = sorted(archived(archive_dir).values(), key=lambda s: s.segno)
        _out(f"live WAL starts at seq {first_retained_seq(wal)}; the archive {archive_dir} holds "
             f"{len(have)} segment(s)" + (f" from seq {have[0].first_seq}" if have else ""))
        _out(f"dry run: stop the stack, then add --apply to put back what reaches seq {want}")
        return 0
    if retention.stack_running(cfg):  # its engine may be restarting: the lock would be free
        _out(f"spotx wal unarchive: a stack runs on {cfg.data_dir} (its run/status.json): stop it "
             f"first", file=sys.stderr)
        return 1
    moved = unarchive(wal, archive_dir, want)
    retention.record(cfg, {"action": "unarchive", "actor": actor, "archive": str(archive_dir),
                           "reason": args.reason or "", "ticket": args.ticket or "",
                           "moved": [dataclasses.asdict(m) for m in moved]})
    _out(f"put back {len(moved)} segment(s); the live WAL starts at seq {first_retained_seq(wal)} "
         f"and its hash chain verifies")
    return 0


def _admin_call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None) -> int:
    from pipeline.admin_client import AdminClientError, call

    cfg = _load(args)
    try:
        res = call(cfg, method, path, body, args.api_key, args.secret)
    except AdminClientError as e:
        _out(f"spotx admin: {e}", file=sys.stderr)
        return 1
    _out(json.dumps(res, indent=1))
    return 0


def _audit(args: argparse.Namespace) -> dict[str, str]:
    return {"reason": args.reason, "ticket": args.ticket}


def cmd_admin(args: argparse.Namespace) -> int:
    a = args.admin_cmd
    if a == "mode":
        return _admin_call(args, "POST", f"/v1/admin/symbols/{args.symbol}/mode",
                           {"mode": args.mode, **_audit(args)})
    if a == "global-mode":
        return _admin_call(args, "POST", "/v1/admin/mode", {"mode": args.mode, **_audit(args)})
    if a == "cancel-all":
        return _admin_call(args, "POST", f"/v1/admin/symbols/{args.symbol}/cancel-all", _audit(args))
    if a == "withdrawals":
        return _admin_call(args, "POST", "/v1/admin/withdrawals/halt",
                           {"on": args.state == "halt", **_audit(args)})
    if a == "audit":
        return _admin_call(args, "GET", f"/v1/admin/audit?limit={args.limit}", None)
    raise AssertionError(a)


def cmd_deposit(args: argparse.Namespace) -> int:
    return _admin_call(args, "POST", "/v1/admin/deposits",
                       {"account": args.account, "asset": args.asset, "amount": args.amount,
                        **_audit(args)})


def cmd_forensics(args: argparse.Namespace) -> int:
    from pipeline.forensics import build

    cfg = _load(args)
    path = build(cfg, args.out, args.config or os.environ.get("SPOTX_CONFIG"))
    _out(f"forensic bundle: {path}")
    return 0


def cmd_native(args: argparse.Namespace) -> int:
    from pipeline import native

    if args.action == "build":
        try:
            native.build()
        except (RuntimeError, OSError) as e:
            _out(f"spotx native: {e}", file=sys.stderr)
            return 1
        _out(f"spotx native: {len(native.MODULES)} modules compiled into {native.NATIVE_DIR}")
        return 0
    why = native.check()
    _out(f"edge modules: {'compiled (' + str(native.NATIVE_DIR) + ')' if not why else 'interpreted: ' + why}")
    return 0 if not why else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spotx", description="spotx exchange operator CLI")
    ap.add_argument("--config", default=None, help="spotx.toml (default: embedded single-host)")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start the stack")
    up.add_argument("--for", dest="for_seconds", type=float, default=None,
                    help="stop by itself after this many seconds (tests, demos)")
    up.set_defaults(fn=cmd_up)

    st = sub.add_parser("status", help="show a running stack")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    keys = sub.add_parser("keys", help="API keys")
    ks = keys.add_subparsers(dest="keys_cmd", required=True)
    kc = ks.add_parser("create")
    kc.add_argument("--account", type=int, required=True)
    kc.add_argument("--role", choices=("trade", "read", "admin"), required=True)
    kc.set_defaults(fn=cmd_keys)

    db = sub.add_parser("db", help="Postgres schema")
    dbs = db.add_subparsers(dest="db_cmd", required=True)
    dm = dbs.add_parser("migrate")
    dm.add_argument("--dsn", default=None)
    dm.set_defaults(fn=cmd_db)

    rc = sub.add_parser("reconcile", help="engine balances (snapshot) vs ledger at the same seq")
    rc.add_argument("--snapshot", default=None, help="default: the newest engine snapshot")
    rc.add_argument("--engine-balances", default=None, help="JSON of engine balances at a seq")
    rc.set_defaults(fn=cmd_settle)
    ck = sub.add_parser("check", help="run the ledger invariants once (exit 1 on a violation)")
    ck.add_argument("--against-wal", action="store_true", help="also recompute postings from the WAL")
    ck.set_defaults(fn=cmd_settle)

    led = sub.add_parser("ledger", help="ledger operations (Postgres)")
    leds = led.add_subparsers(dest="ledger_cmd", required=True)
    lc = leds.add_parser("correct", help="post a balanced CORRECTION: --amount of --asset from one "
                                         "account to another (audited; settle/correct.py)")
    lc.add_argument("--asset", required=True)
    lc.add_argument("--amount", required=True)
    lc.add_argument("--from-account", type=int, required=True)
    lc.add_argument("--to-account", type=int, required=True)
    lc.add_argument("--reason", required=True)
    lc.add_argument("--ticket", required=True)
    lc.add_argument("--actor", default=None)
    lc.add_argument("--as-of-seq", type=int, default=None)
    lc.set_defaults(fn=cmd_settle)
    lr = leds.add_parser("repair", help="post the counter-legs that make the ledger equal the WAL "
                                        "(corrupted, missing or extra legs; audited; idempotent)")
    lr.add_argument("--reason", required=True)
    lr.add_argument("--ticket", required=True)
    lr.add_argument("--actor", default=None)
    lr.add_argument("--from-seq", type=int, default=0,
                    help="default: the oldest seq in the live WAL")
    lr.set_defaults(fn=cmd_settle)

    wal = sub.add_parser("wal", help="WAL integrity tools")
    wal.add_argument("action", choices=("verify", "dump", "prune", "unarchive"),
                     help="prune: archive the segments every reader has passed (dry run unless "
                          "--apply; online or offline); unarchive: put archived segments back "
                          "(the stack stopped)")
    wal.add_argument("dir", nargs="?", default=None, help="verify/dump: the WAL directory")
    wal.add_argument("--events", action="store_true",
                     help="dump: one line per event (kind, order, account, reason name)")
    wal.add_argument("--from-seq", type=int, default=0,
                     help="dump: start at this seq; unarchive: put back until this seq is live")
    wal.add_argument("--apply", action="store_true", help="prune/unarchive: do it (else dry run)")
    wal.add_argument("--archive", default=None,
                     help="prune/unarchive: the archive directory (default <data_dir>/wal-archive)")
    wal.add_argument("--before-seq", type=int, default=None,
                     help="prune: keep every seq from this one even if all readers passed it")
    wal.add_argument("--reason", default=None)
    wal.add_argument("--ticket", default=None)
    wal.add_argument("--actor", default=None)
    wal.add_argument("--json", action="store_true", help="prune: the plan as JSON")
    wal.add_argument("--no-compress", action="store_true",
                     help="prune: keep plain .seg files in the archive (default: gzip level 1)")
    wal.set_defaults(fn=cmd_wal)
    def audited(p: argparse.ArgumentParser, default_reason: str | None = None) -> None:
        p.add_argument("--reason", required=default_reason is None, default=default_reason)
        p.add_argument("--ticket", required=default_reason is None, default="none")
        p.add_argument("--api-key", default=None)
        p.add_argument("--secret", default=None)

    adm = sub.add_parser("admin", help="emergency controls (audited, through the admin API)")
    adms = adm.add_subparsers(dest="admin_cmd", required=True)
    m = adms.add_parser("mode", help="set a symbol's mode")
    m.add_argument("symbol")
    m.add_argument("mode", choices=("NORMAL", "CANCEL_ONLY", "SOFT_HALT", "HARD_HALT"))
    audited(m)
    gm = adms.add_parser("global-mode", help="global SOFT_HALT or NORMAL")
    gm.add_argument("mode", choices=("NORMAL", "SOFT_HALT"))
    audited(gm)
    ca = adms.add_parser("cancel-all", help="cancel every open order on a symbol")
    ca.add_argument("symbol")
    audited(ca)
    wd = adms.add_parser("withdrawals", help="halt or resume withdrawals")
    wd.add_argument("state", choices=("halt", "resume"))
    audited(wd)
    au = adms.add_parser("audit", help="the audit trail (from the WAL)")
    au.add_argument("--limit", type=int, default=50)
    audited(au, default_reason="read")
    for p in (m, gm, ca, wd, au):
        p.set_defaults(fn=cmd_admin)

    dep = sub.add_parser("deposit", help="fund an account (admin API, audited)")
    dep.add_argument("--account", type=int, required=True)
    dep.add_argument("--asset", required=True)
    dep.add_argument("--amount", required=True, help="decimal string, e.g. 1000.5")
    audited(dep, default_reason="operator deposit")
    dep.set_defaults(fn=cmd_deposit)

    fb = sub.add_parser("forensic-bundle", help="WAL + snapshots + offsets + ledger range + configs")
    fb.add_argument("--out", default=".", help="directory for the .tar.gz")
    fb.set_defaults(fn=cmd_forensics)

    nat = sub.add_parser("native", help="the edge's compiled per-order modules (mypyc)")
    nat.add_argument("action", choices=("build", "status"))
    nat.set_defaults(fn=cmd_native)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.fn(args))
    except config_mod.ConfigError as e:
        _out(f"spotx: config: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
