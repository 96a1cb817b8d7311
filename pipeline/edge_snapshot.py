"""Edge state snapshots: an edge restarts from the newest snapshot plus the WAL after it.

Why. Before it serves, an edge rebuilds its read model (orders, fills, balances, modes) and its
market state (books, trades, candles, tickers) from durable events. From the start of the WAL that
is linear in the WAL (~0.26 M events/s here, ``python -m bench recovery``): a long WAL made an edge
restart take minutes. With a snapshot it is bounded by the events since the snapshot.

What. One file ``<data_dir>/edge-state/edge-snapshot.pickle``, shared by every edge of the host
(they all hold the same durable-event-derived state at a given seq): the read model's state (not
its subscribers), the market deriver, the admin audit notes, and where to resume — ``resume_seq``,
the first seq of the batch after the last one folded in (taken only at a batch boundary, right
after an EVENTS frame, so ``WalReader.tail(resume_seq)`` starts exactly at the next batch). Pickle
is the format because the state is this code's own objects and the file never crosses a trust
boundary (it lives next to the WAL, written by the same user); it is never read if any check fails.

Checks before use (else: a full replay, with the reason logged): format ``VERSION``; the WAL id
(a snapshot of another WAL is never applied); ``resume_seq - 1`` not beyond the durable
watermark; a fingerprint of the config parts the state depends on (symbols, assets, history
bounds). A snapshot of an earlier config is carried over when that config only appended assets
and symbols or changed the history bounds (``carry_over_refusal``, from the ``config_doc`` the
snapshot keeps): the new symbols' market state starts empty and the histories are re-bounded
(``MarketDeriver.adopt``); the read model holds no config.

Writing. Periodically (``[edge] snapshot_every_events``) by a forked child: the child pickles the
copy-on-write image of the state as of the fork and exits; the edge's loop never stalls on it.
Synchronously at a clean shutdown. Atomic: temp file, fsync, rename, fsync of the directory; the
last writer wins, and every complete file is a valid state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.diskio import fsync_file
from pipeline.wal.segment import fsync_dir

log = logging.getLogger("spotx.edge_snapshot")

VERSION = 1
FILE = "edge-snapshot.pickle"


@dataclass
class EdgeSnapshot:
    version: int
    wal_id: int
    resume_seq: int
    fingerprint: str
    events: int  # durable events folded in (information)
    readmodel: dict[str, Any]
    market: Any  # pipeline.publisher.derive.MarketDeriver, or None
    audit: list[dict[str, Any]]
    config: dict[str, Any] | None = None  # config_doc of the config it is of


def snapshot_path(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "edge-state" / FILE


def fingerprint(cfg: Config) -> str:
    """What the snapshot's state depends on: symbols, assets, market-data history bounds."""
    parts = (repr(cfg.symbols), repr(cfg.assets), cfg.market.trade_history,
             cfg.market.candle_history)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def config_doc(cfg: Config) -> dict[str, Any]:
    """What a snapshot needs to know of its config to be carried over to another one: the assets,
    each symbol's identity and integer units, the history bounds."""
    return {"assets": [[a.asset_id, a.name, a.scale] for a in cfg.assets],
            "symbols": [[s.symbol_id, s.name, s.base_id, s.quote_id, s.tick_minor, s.lot_minor,
                         s.base_scale, s.quote_scale] for s in cfg.symbols],
            "history": [cfg.market.trade_history, cfg.market.candle_history]}


def carry_over_refusal(old: dict[str, Any] | None, cfg: Config) -> str | None:
    """None if a snapshot of config ``old`` (``config_doc``) can be carried over to ``cfg``:
    assets and symbols only appended, every existing symbol with the same assets and units (the
    history bounds may change: ``MarketDeriver.adopt``). Else why not."""
    if old is None:
        return "symbols, assets or history bounds changed (and the snapshot predates carry-over)"
    new = config_doc(cfg)
    if new["assets"][:len(old["assets"])] != old["assets"]:
        return "assets changed (they may only be appended)"
    if new["symbols"][:len(old["symbols"])] != old["symbols"]:
        return "a symbol was removed, renamed or its units changed (symbols may only be appended)"
    return None


_META_KEYS = ("version", "wal_id", "resume_seq", "fingerprint", "events", "config")


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def write(path: Path, snap: object, pace: bool = False) -> None:
    """Write atomically: temp file, fsync, rename, fsync the directory. Then the same for a small
    JSON of the snapshot's header fields (``<file>.meta.json``), which ``pipeline.retention``
    reads instead of unpickling the whole state. It goes second, so it never describes a newer
    snapshot than the one on disk (at worst an older one: an earlier resume seq, the safe side).
    ``pace`` (a background child): the file goes to the disk a step at a time before its fsync
    (``pipeline.diskio.fsync_file``), so the engine's WAL syncs never wait behind it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        pickle.dump(snap, _Hashing(f, h), protocol=pickle.HIGHEST_PROTOCOL)
        fsync_file(f, pace)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if all(hasattr(snap, k) for k in _META_KEYS):
        meta = meta_path(path)
        tmp = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump({**{k: getattr(snap, k) for k in _META_KEYS}, "sha256": h.hexdigest()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, meta)
        fsync_dir(path.parent)


class _Hashing:
    """A binary writer that hashes what goes through it (pickle.dump's file)."""

    def __init__(self, f: Any, h: Any) -> None:
        self.f, self.h = f, h

    def write(self, b: Any) -> int:
        self.h.update(b)
        return int(self.f.write(b))


def inspect_meta(path: Path, version: int, cfg: Config, wal_id: int,
                 durable_seq: int) -> tuple[int | None, str | None]:
    """(resume_seq, None) if the snapshot ``path``'s meta JSON says it fits this WAL and config
    (the checks of ``inspect``, without unpickling) and the snapshot file is the one it describes
    (its SHA-256: a missing, truncated or damaged file would make its reader start over), (None,
    why) if it does not fit, (None, None) when there is no readable meta or it describes another
    file (the caller unpickles instead)."""
    try:
        with open(meta_path(path)) as f:
            m = json.load(f)
        resume, fp, ver, wid = int(m["resume_seq"]), str(m["fingerprint"]), m["version"], m["wal_id"]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != m["sha256"]:
            return None, None
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    if ver != version:
        return None, "format version differs"
    if wid != wal_id:
        return None, f"it is of WAL {wid}, this WAL is {wal_id}"
    if resume - 1 > durable_seq:
        return None, f"it resumes at seq {resume}, beyond the durable seq {durable_seq}"
    if fp != fingerprint(cfg):
        why = carry_over_refusal(m.get("config"), cfg)
        if why is not None:
            return None, why
    return resume, None


def write_in_child(path: Path, snap: object) -> int:
    """Fork; the child writes ``snap`` (its copy-on-write image) and exits. Returns the child pid
    (collect it with ``reap``)."""
    return run_in_child(lambda: write(path, snap, pace=True))


def run_in_child(fn: Callable[[], object], nice: int = 0) -> int:
    """Fork; the child runs ``fn`` on the copy-on-write image of this process (``nice`` below
    the parent's CPU priority) and exits 0, or 1 if it raised. Returns the child pid. Shared by
    the edge's, the publisher's and the engine's background snapshots."""
    pid = os.fork()
    if pid == 0:  # the child: touch nothing of the parent's loop, sockets or threads
        code = 0
        try:
            if nice:
                os.nice(nice)
            fn()
        except BaseException:  # noqa: BLE001 - report through the exit code, never unwind
            code = 1
        os._exit(code)
    return pid


def reap(pid: int, block: bool = False) -> int | None:
    """A ``run_in_child`` child's exit code once it has ended (``block``: wait for it); None
    while it runs. A child already collected elsewhere counts as done (0)."""
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return 0
    return os.waitstatus_to_exitcode(status) if done else None


def read(cfg: Config, wal_id: int, durable_seq: int) -> EdgeSnapshot | None:
    """The snapshot if it exists and fits this WAL and config; None (reason logged) otherwise."""
    snap = read_checked(snapshot_path(cfg), EdgeSnapshot, VERSION, cfg, wal_id, durable_seq,
                        "edge snapshot", "replaying the whole WAL")
    return snap if isinstance(snap, EdgeSnapshot) else None


def read_checked(path: Path, cls: Any, version: int, cfg: Config, wal_id: int, durable_seq: int,
                 what: str, fallback: str) -> Any:
    """A snapshot file of ``cls`` (with ``version``, ``wal_id``, ``fingerprint``, ``resume_seq``)
    if it exists, unpickles and fits this WAL and config; None otherwise, the reason logged as
    "<what> <path> not used (<reason>): <fallback>". Shared by the edge and publisher snapshots."""
    snap, why = inspect(path, cls, version, cfg, wal_id, durable_seq)
    if why is not None:
        log.warning("%s %s not used (%s): %s", what, path, why, fallback)
    return snap


def inspect(path: Path, cls: Any, version: int, cfg: Config, wal_id: int,
            durable_seq: int) -> tuple[Any, str | None]:
    """(snapshot, None) if the file fits this WAL and config, else (None, why); (None, None) when
    there is no file. The checks of ``read_checked``, for callers that report the reason
    themselves (``pipeline.retention``)."""
    snap: Any
    try:
        with open(path, "rb") as f:
            snap = pickle.load(f)
    except FileNotFoundError:
        return None, None
    except Exception as e:  # noqa: BLE001 - a damaged snapshot only costs a full replay
        return None, f"unreadable: {e}"
    why = None
    if not isinstance(snap, cls) or snap.version != version:
        why = "format version differs"
    elif snap.wal_id != wal_id:
        why = f"it is of WAL {snap.wal_id}, this WAL is {wal_id}"
    elif snap.resume_seq - 1 > durable_seq:
        why = f"it resumes at seq {snap.resume_seq}, beyond the durable seq {durable_seq}"
    elif snap.fingerprint != fingerprint(cfg):
        why = carry_over_refusal(getattr(snap, "config", None), cfg)
        if why is None:  # appended symbols: their state starts empty
            market = getattr(snap, "market", None) or getattr(snap, "deriver", None)
            if market is not None:
                market.adopt(cfg)
            log.info("snapshot %s is of an earlier config (symbols or assets appended since): "
                     "carried over", path)
    return (None, why) if why is not None else (snap, None)
