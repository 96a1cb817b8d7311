"""Integration fixtures: a throw-away PostgreSQL cluster that a test may stop, crash and restart.

``throwaway_pg`` -> ``ThrowawayPostgres``: its own cluster (``infra/postgres/throwaway.sh``) in a
directory under /tmp owned by the ``postgres`` OS user (initdb/pg_ctl refuse root), on a free
127.0.0.1 port, with role/database ``exchange`` (password ``exchange``). Destroyed after the test.
initdb costs ~2 s, so use it only for tests about Postgres going away; everything else takes
``pg_database`` from the root conftest.

Every test under ``tests/integration`` gets the ``integration`` marker.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
THROWAWAY = ROOT / "infra" / "postgres" / "throwaway.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def service_missing(what: str, why: object) -> NoReturn:
    """As in the root conftest (conftest modules cannot import each other): fail in CI, else skip."""
    msg = f"{what} unavailable: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayError(RuntimeError):
    pass


class ThrowawayPostgres:
    """A private cluster: ``dsn``, ``port``, ``start()``, ``stop(mode)``, ``crash()``, ``restart()``."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.dsn = f"postgresql://exchange:exchange@127.0.0.1:{port}/exchange"

    def _run(self, *args: str) -> str:
        p = subprocess.run(["bash", str(THROWAWAY), *args], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise ThrowawayError(f"throwaway.sh {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout.strip()

    def start(self) -> str:
        """Start (initdb on first use); returns the DSN. Safe to call when already running."""
        self._run("start", str(self.directory), str(self.port))
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (roll back sessions, checkpoint), ``smart`` or ``immediate`` (a crash)."""
        self._run("stop", str(self.directory), mode)

    def crash(self) -> None:
        self.stop("immediate")

    def restart(self, mode: str = "fast") -> str:
        self.stop(mode)
        return self.start()

    def running(self) -> bool:
        return subprocess.run(["bash", str(THROWAWAY), "status", str(self.directory)],
                              capture_output=True, timeout=60).returncode == 0

    def destroy(self) -> None:
        self._run("destroy", str(self.directory))


@pytest.fixture
def throwaway_pg() -> Iterator[ThrowawayPostgres]:
    if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("runuser") is None:
        service_missing("PostgreSQL server binaries", "no /usr/lib/postgresql/*/bin/initdb")
    directory = Path(tempfile.mkdtemp(prefix=f"spotx-pg-{os.getpid()}-", dir="/tmp"))
    pg = ThrowawayPostgres(directory, free_port())
    try:
        pg.start()
    except ThrowawayError as e:
        shutil.rmtree(directory, ignore_errors=True)
        service_missing("throw-away PostgreSQL cluster", e)
    try:
        yield pg
    finally:
        pg.destroy()
