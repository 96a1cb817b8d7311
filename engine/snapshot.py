"""Engine snapshots: the persisted state arrays plus a manifest (DESIGN.md §5).

Files in the snapshot directory, for last applied seq S:

    snapshot-<S:020d>.npz    the arrays of ``layout.PERSISTED``, deflated (scratch arrays are rebuilt)
    snapshot-<S:020d>.json   {"seq", "state_hash", "fencing_token", "config_hash",
                              "max_makers_per_order", "layout", "npz", "npz_sha256", "config"}

Each file is written to a ``.tmp`` name, fsynced, renamed, and the directory fsynced; the manifest
goes last, so a manifest only ever names a complete npz. ``load`` checks the config hash, the npz
digest, every array's dtype and shape against a fresh allocation, and recomputes the state hash
from scratch; any mismatch is a SnapshotError. Cost O(state) both ways.

A config change across a restart. The manifest keeps the engine config it was taken under
(``engine.state.engine_config_doc``). When the hash differs, ``load`` carries the state over if
``engine.state.config_change`` allows it: assets and symbols appended (their books, modes and
balance columns start empty; the new levels join the free list), and existing symbols' limits,
fees and price bands changed (the new symbol table). Sizing, an asset, or a symbol's assets, lot
or tick may not change (SnapshotError naming the change). The manifest returned then carries
``"migrated": [kind, what]``; the caller decides whether the WAL after the snapshot may be replayed
under the new config (``pipeline.engine_proc``: a limits or fee change only with nothing to
replay, since those commands ran under the old parameters).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from engine._batch import recompute_terms, state_hash
from engine.errors import EngineConfigError, SnapshotError
from engine.layout import (
    C_FREE_LEVEL,
    C_N_ASSETS,
    C_N_SYMBOLS,
    C_RESUME_SEQ,
    LAYOUT_VERSION,
    PERSISTED,
    State,
)
from engine.state import allocate, config_change, config_hash, engine_config_doc
from pipeline.config import Config
from pipeline.diskio import fsync_file

PREFIX = "snapshot-"


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write: Any, pace: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        fsync_file(f, pace)  # pace: a background child, to the disk a step at a time (diskio)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _savez_deflated(f: Any, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at zlib level 1 (numpy's uses the default, 6). The state is sized
    by capacity and mostly empty: the default 1 M orders are 157 MB of arrays, 2.9 MB deflated at
    either level, in 0.25 s of CPU at level 1 against 0.72 s at 6 and 0.46 s for the raw write +
    fsync; ``np.load`` reads it as any npz, in the same ~0.4 s. So a snapshot no longer floods
    the disk the WAL syncs on, and costs the CPU little."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(arr), allow_pickle=False)


def save(st: State, directory: Path, seq: int, shash: int, fencing: int, cfg_hash: str,
         max_makers: int, cfg_doc: dict[str, Any] | None = None, pace: bool = False) -> Path:
    """Write the snapshot files (npz, then the manifest naming it). ``pace``: written by a
    background child while the engine syncs the WAL on the same disk (``_write_atomic``)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{PREFIX}{seq:020d}"
    npz = directory / f"{stem}.npz"
    arrays = {name: getattr(st, name) for name in PERSISTED}
    _write_atomic(npz, lambda f: _savez_deflated(f, arrays), pace)
    manifest = {
        "seq": int(seq), "state_hash": int(shash), "fencing_token": int(fencing),
        "config_hash": cfg_hash, "max_makers_per_order": int(max_makers),
        "layout": LAYOUT_VERSION, "npz": npz.name, "npz_sha256": _sha256(npz),
        **({"config": cfg_doc} if cfg_doc is not None else {}),
    }
    path = directory / f"{stem}.json"
    _write_atomic(path, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return path


def prune(directory: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` (>= 1) snapshots; returns the deleted file names. Each
    manifest goes before its npz, so a manifest never names a missing npz. The WAL keeps every seq,
    so an older snapshot is never the only way back to a state."""
    gone = []
    for m in manifests(directory)[max(1, keep):]:
        try:
            npz = directory / str(read_manifest(m)["npz"])
        except SnapshotError:
            npz = None
        m.unlink(missing_ok=True)
        gone.append(m.name)
        if npz is not None and npz.exists():
            npz.unlink()
            gone.append(npz.name)
    if gone:
        _fsync_dir(directory)
    return gone


def manifests(directory: Path) -> list[Path]:
    """Manifest files in ``directory``, newest seq first."""
    return sorted(directory.glob(f"{PREFIX}*.json"), reverse=True)


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SnapshotError(f"unreadable manifest: {e}", str(path)) from e
    for key in ("seq", "state_hash", "fencing_token", "config_hash", "max_makers_per_order", "npz"):
        if key not in doc:
            raise SnapshotError(f"manifest lacks {key!r}", str(path))
    return dict(doc)


def load(path: Path, cfg: Config) -> tuple[State, dict[str, Any]]:
    """(state, manifest) from a manifest path, or from a directory's newest loadable snapshot."""
    if path.is_dir():
        errors = []
        for m in manifests(path):
            try:
                return load(m, cfg)
            except SnapshotError as e:
                errors.append(f"{m.name}: {e}")
        raise SnapshotError("no loadable snapshot" + ("; " + "; ".join(errors) if errors else ""),
                            str(path))
    doc = read_manifest(path)
    makers = int(doc["max_makers_per_order"])
    migrated = carry_over(doc, cfg, str(path))
    old_doc: dict[str, Any] | None = doc["config"] if migrated is not None else None
    npz = path.parent / str(doc["npz"])
    if "npz_sha256" in doc and (not npz.exists() or _sha256(npz) != doc["npz_sha256"]):
        raise SnapshotError("npz missing or its digest differs from the manifest", str(npz))
    fresh = allocate(cfg, makers)
    n_sym = len(old_doc["symbols"]) - 1 if old_doc else len(cfg.symbols)
    n_assets = len(old_doc["assets"]) if old_doc else len(cfg.assets)
    arrays: dict[str, np.ndarray] = {}
    with np.load(npz, allow_pickle=False) as z:
        for name in PERSISTED:
            a = z[name]
            ref = getattr(fresh, name)
            shape = _shape_under(name, ref.shape, n_sym, n_assets, int(cfg.engine.max_levels))
            if a.dtype != ref.dtype or a.shape != shape:
                raise SnapshotError(f"array {name}: {a.dtype}{a.shape}, expected "
                                    f"{ref.dtype}{shape}", str(npz))
            # view as the exact dtype object: the .npy header loses the aligned-struct flag, and
            # numba would type (and compile) the restored arrays as unaligned records
            arrays[name] = np.ascontiguousarray(a).view(ref.dtype)
    if migrated is None:
        st = fresh._replace(**arrays)
    else:
        st = _carry_over(arrays, fresh)
    if int(st.ctl[C_RESUME_SEQ]) != 0:
        raise SnapshotError("snapshot taken inside a split CANCEL_ALL", str(npz))
    # the hash covers balances, orders, modes and globals, not the layout: a carried-over state
    # verifies against the hash it was saved with
    if int(recompute_terms(st)) != int(st.hs[0]) or int(state_hash(st)) != int(doc["state_hash"]):
        raise SnapshotError("state hash does not verify", str(npz))
    return st, (doc if migrated is None else {**doc, "migrated": list(migrated)})


def carry_over(doc: dict[str, Any], cfg: Config, where: str = "") -> tuple[str, str] | None:
    """None if the manifest ``doc`` is of this config; else ``engine.state.config_change``'s
    (kind, what) for carrying its state over to ``cfg``. SnapshotError if it cannot be (also
    shared by ``pipeline.retention``, which counts the snapshots the engine could restore)."""
    makers = int(doc["max_makers_per_order"])
    want = config_hash(cfg, makers)
    if doc["config_hash"] == want:
        return None
    old_doc = doc.get("config")
    if not isinstance(old_doc, dict):
        raise SnapshotError(f"snapshot is for config {doc['config_hash']}, this config is "
                            f"{want} (and the manifest does not say what that config was)", where)
    try:
        return config_change(old_doc, engine_config_doc(cfg, makers))
    except (EngineConfigError, KeyError, TypeError) as e:
        raise SnapshotError(f"snapshot is for another config: {e}", where) from e


_BY_SYMBOL = ("bk_key", "bk_lv", "bk_n", "bk_orders", "sp", "smode")  # first axis: symbol id
_BY_ASSET = ("avail", "locked")  # second axis: asset id


def _shape_under(name: str, shape: tuple[int, ...], n_sym: int, n_assets: int,
                 max_levels: int) -> tuple[int, ...]:
    """The shape array ``name`` (``shape`` under this config) has under ``n_sym`` symbols and
    ``n_assets`` assets (the snapshot's config)."""
    if name in _BY_SYMBOL:
        return (n_sym + 1, *shape[1:])
    if name in _BY_ASSET:
        return (shape[0], n_assets + 1)
    if name == "levels":
        return (n_sym * 2 * max_levels,)
    return shape


def _carry_over(old: dict[str, np.ndarray], fresh: State) -> State:
    """The snapshot's arrays moved into ``fresh`` (allocated for the new config): appended
    symbols and assets start empty, the appended levels join the front of the free list, the
    symbol table is the new one."""
    out: dict[str, np.ndarray] = {}
    for name, a in old.items():
        ref = getattr(fresh, name)
        if name == "sp":
            out[name] = ref
        elif name in _BY_SYMBOL:
            b = ref.copy()
            b[:a.shape[0]] = a
            out[name] = b
        elif name in _BY_ASSET:
            b = ref.copy()
            b[:, :a.shape[1]] = a
            out[name] = b
        elif name == "levels":
            b = ref.copy()  # fresh: next_free = i + 1, the last -1
            n = len(a)
            b[:n] = a
            if len(b) > n:
                b["next_free"][-1] = int(old["ctl"][C_FREE_LEVEL])
            out[name] = b
        else:
            out[name] = a
    ctl = out["ctl"].copy()
    if len(out["levels"]) > len(old["levels"]):
        ctl[C_FREE_LEVEL] = len(old["levels"])
    ctl[C_N_SYMBOLS] = fresh.ctl[C_N_SYMBOLS]
    ctl[C_N_ASSETS] = fresh.ctl[C_N_ASSETS]
    out["ctl"] = ctl
    return fresh._replace(**out)
