"""The order-entry load generator (Go, this folder) as seen from Python: build it, run it.

``build()`` compiles ``bench/loadgen/*.go`` into ``var/loadgen/spotx-loadgen`` (repo-relative, never
committed) when the binary is missing or older than any source file; the build goes to a temporary
name and is renamed into place, so concurrent callers never run a half-written binary. Modules
come from the Go module proxy (``go.sum`` pins them) into the user's module cache.

``sink()`` starts the generator's stand-in edge (``spotx-loadgen sink``) for its self-test.

``run(spec)`` feeds one JSON spec to the binary on stdin and returns its JSON report; see
``main.go`` for the spec (``ws_url``, ``rest_url``, ``symbol``, ``ws_accounts``, ``rest_accounts``,
``open_orders``, ``drain_seconds``, ``watch_pids``, ``regimes``) and the workload it drives. The
generator's stderr (one progress line per regime) is kept and returned as ``report["stderr"]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent
BIN = SRC.parents[1] / "var" / "loadgen" / "spotx-loadgen"
BUILD_TIMEOUT_S = 300.0


class LoadgenError(RuntimeError):
    """The load generator could not be built, or its run failed; the message says why."""


def _stale(binary: Path) -> bool:
    if not binary.exists():
        return True
    built = binary.stat().st_mtime
    return any(p.stat().st_mtime > built for p in SRC.iterdir()
               if p.suffix == ".go" or p.name in ("go.mod", "go.sum"))


def build(binary: Path = BIN) -> Path:
    """The path of an up-to-date generator binary (built with ``go build`` when stale)."""
    if not _stale(binary):
        return binary
    go = shutil.which("go")
    if go is None:
        raise LoadgenError("the Go toolchain ('go') is not on PATH; it builds bench/loadgen")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    try:
        proc = subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=SRC, env=env,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise LoadgenError(f"go build did not finish within {BUILD_TIMEOUT_S:.0f} s") from e
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LoadgenError(f"go build failed:\n{proc.stderr.strip()}")
    os.replace(tmp, binary)
    return binary


def run(spec: dict[str, Any], timeout_s: float, binary: Path | None = None,
        env: dict[str, str] | None = None, cores: set[int] | None = None) -> dict[str, Any]:
    """Run one spec to completion (killed after ``timeout_s``); returns the generator's report.

    ``cores``: CPU affinity of the generator (every thread of it), e.g. ``{0}``; None = unpinned.
    """
    exe = binary or build()

    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, cores)

    try:
        proc = subprocess.run([str(exe)], input=json.dumps(spec), capture_output=True, text=True,
                              timeout=timeout_s, env={**os.environ, **(env or {})},
                              preexec_fn=pin if cores else None)
    except subprocess.TimeoutExpired as e:
        raise LoadgenError(f"load generator still running after {timeout_s:.0f} s: killed") from e
    if proc.returncode != 0:
        raise LoadgenError(f"load generator exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-2000:]}")
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as e:
        raise LoadgenError(f"load generator printed no report: {proc.stdout[:500]!r}") from e
    report["stderr"] = proc.stderr
    return report


class Sink:
    """``spotx-loadgen sink 127.0.0.1:0`` as a context manager; ``url`` is its WS address."""

    def __init__(self, cores: set[int] | None = None, binary: Path | None = None) -> None:
        exe = binary or build()
        self.proc = subprocess.Popen(
            [str(exe), "sink", "127.0.0.1:0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.close()
            raise LoadgenError(f"sink did not start: {line!r}")
        self.url = f"ws://{line[1]}/v1/ws/trade"
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF on stdin stops the sink
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
