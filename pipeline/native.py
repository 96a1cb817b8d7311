"""The per-order modules compiled to C with mypyc, used only when they match their sources.

Why. An edge spends its CPU in Python per order: validation, the read model, order views, the
dispatcher. Compiled by mypyc (the mypy project's compiler: the same type annotations, checked at
run time, native classes with C-struct attributes) the same code answered 1.3-1.6x the orders per
CPU second (``python -m bench e2e``: in-process edge, closed loop, interpreted vs compiled). Nothing is rewritten for it: the
modules stay plain, type-checked Python and run interpreted wherever the build is absent.

Build. ``spotx native build`` (``scripts/setup.sh`` runs it; ``spotx native status`` checks)
compiles ``MODULES`` into ``var/native/`` (never into the source tree; mypyc's shared runtime
library alone in ``var/native/runtime/``, the one directory put on ``sys.path``) and writes
``manifest.json``: the SHA-256 of each source, the Python version and the compiler's version. It needs a C compiler and Python headers; if
it fails, the edge runs interpreted (setup says so).

Use. Each package holding listed modules (``edge``, ``pipeline``, ``pipeline.publisher``) calls
``activate`` from its ``__init__``: when ``SPOTX_NATIVE`` is not ``0`` and the manifest matches this
interpreter and *every* listed source byte for byte, ``var/native/<package>`` is put first on the
package's path, so ``import edge.readmodel`` loads the compiled module. Any edit to a listed module
(or a different Python) turns the whole set off until the next build: never a compiled module older
than its source, never half a set. ``STATE`` says which (``spotx native status``, the edge's ready
log line and the bench's machine facts report it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NATIVE_DIR = ROOT / "var" / "native"
MANIFEST = "manifest.json"
RUNTIME = "runtime"
# The per-order path of the edge. Left out: ws_trade (picows' listener and the server: a native
# class cannot subclass picows' Cython listener, so the session logic lives in ws_session) and the
# market-state derivation apart from the order book (its numpy work gains nothing; the book's
# classes unpickle through explicit __reduce__, as a native class has no bare __new__).
MODULES = ("edge/fast_orders.py", "edge/views_text.py", "edge/views.py", "edge/readmodel.py",
           "edge/recio.py", "edge/gateway.py", "edge/convert.py", "edge/ratelimit.py",
           "edge/service.py", "edge/orders.py", "edge/inproc.py", "edge/schema.py",
           "pipeline/link.py", "edge/ws_session.py", "pipeline/cid.py",
           "pipeline/publisher/book.py", "pipeline/histogram.py", "edge/wire_fast.py")
STATE = {"active": False, "reason": "not checked"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _py_tag() -> str:
    return f"{sys.implementation.cache_tag}-{sys.platform}"


def _compiler_version() -> str:
    try:
        from mypy.version import __version__
    except ImportError:
        return "?"
    return str(__version__)


def check(native_dir: Path = NATIVE_DIR, root: Path = ROOT) -> str:
    """Why the build in ``native_dir`` cannot be used for the sources under ``root`` ('' = it can)."""
    try:
        m = json.loads((native_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return "not built (spotx native build)"
    except (OSError, ValueError) as e:
        return f"unreadable manifest: {e}"
    if m.get("python") != _py_tag():
        return f"built for {m.get('python')}, running {_py_tag()}"
    sources = m.get("sources", {})
    if sorted(sources) != sorted(MODULES):
        return "built for another module list"
    for rel, digest in sources.items():
        try:
            if _digest(root / rel) != digest:
                return f"{rel} changed since the build"
        except OSError as e:
            return f"{rel}: {e}"
    return ""


def activate(package: str, package_path: list[str], native_dir: Path = NATIVE_DIR) -> bool:
    """Put the compiled modules of ``package`` first on its ``__path__`` if they may be used."""
    if os.environ.get("SPOTX_NATIVE", "1") == "0":
        STATE.update(active=False, reason="SPOTX_NATIVE=0")
        return False
    why = _checked.get(native_dir)
    if why is None:
        why = _checked[native_dir] = check(native_dir)
    if why:
        STATE.update(active=False, reason=why)
        return False
    compiled = str(native_dir.joinpath(*package.split(".")))
    if compiled not in package_path:
        package_path.insert(0, compiled)
    runtime = str(native_dir / RUNTIME)
    if runtime not in sys.path:
        # mypyc's shared library is a top-level module; it lives alone in its directory, so that
        # directory on sys.path (inherited by spawned children) can never shadow a package
        sys.path.append(runtime)
    STATE.update(active=True, reason=f"{len(MODULES)} modules compiled by mypyc")
    return True


_checked: dict[Path, str] = {}  # one check of the sources per process and build directory


def build(native_dir: Path = NATIVE_DIR) -> None:
    """Compile ``MODULES`` into ``native_dir`` and write its manifest (raises on failure)."""
    tmp = native_dir.with_name(native_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digests = {rel: _digest(ROOT / rel) for rel in MODULES}
    code = ("from setuptools import setup\nfrom mypyc.build import mypycify\n"
            f"setup(name='spotx-native', ext_modules=mypycify({list(MODULES)!r}, opt_level='3',"
            f" target_dir={str(tmp / 'c')!r}),"
            f" script_args=['build_ext', '--build-lib', {str(tmp / 'lib')!r},"
            f" '--build-temp', {str(tmp / 'obj')!r}])\n")
    env = {**os.environ, "SPOTX_NATIVE": "0"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
        raise RuntimeError("mypyc build failed:\n" + "\n".join(tail))
    if any(_digest(ROOT / rel) != d for rel, d in digests.items()):
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError("sources changed during the build; run it again")
    lib = tmp / "lib"
    (lib / RUNTIME).mkdir()
    for so in lib.glob("*__mypyc*"):
        so.rename(lib / RUNTIME / so.name)
    shutil.rmtree(native_dir, ignore_errors=True)
    lib.rename(native_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    (native_dir / MANIFEST).write_text(json.dumps(
        {"python": _py_tag(), "compiler": f"mypyc {_compiler_version()}", "sources": digests},
        indent=1) + "\n")
