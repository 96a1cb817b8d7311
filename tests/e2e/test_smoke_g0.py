"""Gate G0 (RUNBOOK §5): scripts/smoke_g0.sh itself, against real Postgres, on free ports."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from stackutil import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)
def test_smoke_g0_script(pg_dsn: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update({
        "SPOTX_DATA_DIR": str(tmp_path / "smoke"),
        "SPOTX_INSTANCE": f"g0{uuid.uuid4().hex[:6]}",
        "SPOTX_EDGE_REST_PORT": str(free_port()),
        "SPOTX_EDGE_WS_TRADE_PORT": str(free_port()),
        "SPOTX_MARKET_PORT": str(free_port()),
        "SPOTX_METRICS_PORT": str(free_port()),
        "SPOTX_ENGINE_WAIT": "park",
        "SPOTX_ENGINE_MAX_ORDERS": "65536",
        "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(8 << 20),
        "SMOKE_WS_LOG": str(tmp_path / "ws-events-smoke.log"),
    })
    p = subprocess.run(["bash", str(ROOT / "scripts" / "smoke_g0.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=280)
    out = p.stdout + p.stderr
    sys.stdout.write(out[-4000:])
    assert p.returncode == 0, out[-4000:]
    assert "smoke_g0_success=true" in p.stdout
    log = (tmp_path / "ws-events-smoke.log").read_text()
    assert '"TradeExecuted"' in log and '"CandleUpdated"' in log
