#!/usr/bin/env bash
# Stop the Debian PostgreSQL cluster that infra/postgres/start.sh uses (newest version, `main`),
# with a fast shutdown (open sessions are rolled back). Idempotent.
set -euo pipefail
say() { printf 'postgres: %s\n' "$*"; }
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then say "not installed"; exit 0; fi
ver=$(basename "$(dirname "$(dirname "$(compgen -G "/usr/lib/postgresql/*/bin/postgres" | sort -V | tail -1)")")")
if pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$ver" main stop -m fast
  say "stopped cluster $ver/main"
else
  say "cluster $ver/main not running"
fi
