#!/usr/bin/env bash
# RUNBOOK 3.1/3.3: collect WAL segments + snapshots + Kafka offsets + ledger entry range + configs
# into one .tar.gz (default: the current directory). Usage: scripts/forensic_bundle.sh [--out DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/.venv/bin/spotx" ${SPOTX_CONFIG:+--config "$SPOTX_CONFIG"} forensic-bundle "$@"
