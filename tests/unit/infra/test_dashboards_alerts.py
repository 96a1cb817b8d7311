"""The committed Grafana dashboard is what its generator produces, and every metric that the
dashboard and the Prometheus alert rules query is one the code declares (a renamed metric must not
silently empty a panel or disarm an alert)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[3]
FUNCS = {"rate", "sum", "by", "histogram_quantile", "increase", "changes", "absent", "deriv",
         "and", "or", "le", "max", "min", "avg", "predict_linear"}


def _declared() -> str:
    """All source text that declares metrics (names appear as string literals there)."""
    parts = []
    for pkg in ("pipeline", "edge", "settle"):
        for p in (ROOT / pkg).rglob("*.py"):
            parts.append(p.read_text())
    return "\n".join(parts)


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # drop label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # drop ranges
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # drop grouping label lists
    names = set(re.findall(r"[a-z_][a-z0-9_]*", expr)) - FUNCS
    out = set()
    for n in names:
        if re.fullmatch(r"[0-9.]+", n):
            continue
        for suffix in ("_bucket", "_count", "_sum", "_total"):
            if n.endswith(suffix):
                n = n[: -len(suffix)]
                break
        out.add(n)
    return out


def _load_builder():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_dashboards",
                                                  ROOT / "infra" / "grafana" / "build_dashboards.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_dashboard_matches_generator() -> None:
    committed = (ROOT / "infra" / "grafana" / "dashboards" / "spotx.json").read_text()
    assert committed == _load_builder().render(), "run python infra/grafana/build_dashboards.py"


def test_every_queried_metric_is_declared_in_code() -> None:
    src = _declared()
    exprs = [t["expr"] for p in _load_builder().build()["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    missing = set()
    for e in exprs:
        for name in _metric_names(e):
            if not re.search(rf"[\"']{re.escape(name)}(_total)?[\"']", src):
                missing.add(name)
    assert not missing, f"queried but never declared: {sorted(missing)}"
