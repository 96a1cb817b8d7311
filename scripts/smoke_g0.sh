#!/usr/bin/env bash
# Gate G0 smoke (RUNBOOK §5): order accepted -> trade settled in Postgres -> WS trade and candle
# updates delivered. Prints smoke_g0_success=true only when all of it holds.
#
# Where Docker runs: uses `docker compose -f infra/compose/docker-compose.yml` (stack in containers).
# Here (no Docker engine): the no-Docker path — Postgres from Debian packages, `spotx up` started in
# the background with its log in /tmp/edge-gateway-smoke.log, stopped again at the end.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py="$root/.venv/bin/python"
export SPOTX_DATA_DIR=${SPOTX_DATA_DIR:-$root/var/smoke}
log=/tmp/edge-gateway-smoke.log
started=""

cleanup() {
  if [ -n "$started" ] && kill -0 "$started" 2>/dev/null; then
    kill -TERM "$started"; for _ in $(seq 1 60); do kill -0 "$started" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$started" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if docker info >/dev/null 2>&1; then
  echo "smoke: using docker compose"
  docker compose -f infra/compose/docker-compose.yml up -d || { echo "smoke_g0_success=false reason=compose up failed"; exit 1; }
  docker compose -f infra/compose/docker-compose.yml exec -T postgres pg_isready -U exchange -d exchange \
    || { echo "smoke_g0_success=false reason=postgres not ready"; exit 1; }
else
  echo "smoke: no Docker engine here; using the no-Docker stack (data in $SPOTX_DATA_DIR)"
  bash infra/postgres/start.sh >/dev/null || { echo "smoke_g0_success=false reason=postgres start failed"; exit 1; }
  "$root/.venv/bin/spotx" db migrate >/dev/null || { echo "smoke_g0_success=false reason=migrations failed"; exit 1; }
  # The smoke stack settles into its own ledger shard: a shard is bound to one WAL (shard_wal), and
  # a fresh smoke data dir is a new WAL. Allocate a new shard (>= 100) for a new data dir.
  mkdir -p "$SPOTX_DATA_DIR"
  if [ ! -s "$SPOTX_DATA_DIR/shard" ]; then
    PGPASSWORD=exchange psql -h 127.0.0.1 -U exchange -d exchange -tAX \
      -c "SELECT GREATEST(100, COALESCE(max(shard), 99) + 1) FROM shard_wal" > "$SPOTX_DATA_DIR/shard" \
      || { echo "smoke_g0_success=false reason=could not allocate a ledger shard"; exit 1; }
  fi
  export SPOTX_SHARD=$(cat "$SPOTX_DATA_DIR/shard")
  echo "smoke: ledger shard $SPOTX_SHARD"
  "$root/.venv/bin/spotx" up >"$log" 2>&1 &
  started=$!
fi
# an admin key for the signed smoke call (the smoke route is admin-only)
"$py" - <<'PY' || { echo "smoke_g0_success=false reason=could not create an admin key"; exit 1; }
import os
from pathlib import Path
from edge.auth import KeyStore
from pipeline import config
cfg = config.load(os.environ.get("SPOTX_CONFIG") or None)
store = KeyStore(cfg.edge.key_store or str(Path(cfg.data_dir) / "keys.json"))
if not any(k.role == "admin" for k in store.keys()):
    store.create(1000, "admin")
PY
"$py" scripts/smoke_g0.py
rc=$?
[ $rc -ne 0 ] && echo "smoke: edge log tail:" && tail -20 "$log" 2>/dev/null
exit $rc
