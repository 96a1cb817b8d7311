"""pipeline.native: compiled modules are used only when they are a build of exactly these sources."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline import native


def _fake_build(tmp: Path, root: Path, change: str = "") -> Path:
    d = tmp / "native"
    (d / "edge").mkdir(parents=True)
    sources = {rel: native._digest(root / rel) for rel in native.MODULES}
    if change:
        sources[change] = "0" * 64
    (d / native.MANIFEST).write_text(json.dumps(
        {"python": native._py_tag(), "compiler": "test", "sources": sources}))
    return d


def test_a_build_of_other_sources_or_another_python_is_refused(tmp_path: Path) -> None:
    root = native.ROOT
    assert native.check(tmp_path / "none", root).startswith("not built")
    good = _fake_build(tmp_path / "a", root)
    assert native.check(good, root) == ""
    stale = _fake_build(tmp_path / "b", root, change="edge/views.py")
    assert native.check(stale, root) == "edge/views.py changed since the build"
    m = json.loads((good / native.MANIFEST).read_text())
    (good / native.MANIFEST).write_text(json.dumps({**m, "python": "cpython-27-x"}))
    assert "built for cpython-27-x" in native.check(good, root)
    (good / native.MANIFEST).write_text(json.dumps({**m, "sources": {"edge/views.py": "x"}}))
    assert native.check(good, root) == "built for another module list"


def test_activate_puts_a_usable_build_first_and_leaves_a_stale_one_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOTX_NATIVE", raising=False)
    path = ["/src/edge"]
    old = dict(native.STATE)
    stale = _fake_build(tmp_path / "b", native.ROOT, change="edge/schema.py")
    good = _fake_build(tmp_path / "a", native.ROOT)
    try:
        assert not native.activate("edge", path, stale) and path == ["/src/edge"]
        assert native.activate("edge", path, good) and path == [str(good / "edge"), "/src/edge"]
        monkeypatch.setenv("SPOTX_NATIVE", "0")
        path2 = ["/src/edge"]
        assert not native.activate("edge", path2, good) and path2 == ["/src/edge"]
    finally:
        native.STATE.update(old)


def test_the_installed_build_is_what_runs() -> None:
    """With a usable build (scripts/setup.sh makes one where a C compiler exists) the per-order
    modules are the compiled ones; in CI a machine with a compiler must have built them."""
    import edge.readmodel
    import edge.views

    why = native.check()
    if why:
        if os.environ.get("CI") and shutil.which("cc") and os.environ.get("SPOTX_NATIVE") != "0":
            pytest.fail(f"a C compiler is here but the edge runs interpreted: {why}")
        assert not native.STATE["active"]
        return
    if os.environ.get("SPOTX_NATIVE") == "0":
        return
    assert native.STATE["active"]
    for mod in (edge.views, edge.readmodel):
        assert mod.__file__ is not None and mod.__file__.endswith(".so")
        assert Path(mod.__file__).is_relative_to(native.NATIVE_DIR)
