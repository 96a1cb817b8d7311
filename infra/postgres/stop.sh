#!/usr/bin/env bash
# Stop the Debian PostgreSQL cluster started by start.sh.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$ver" main stop -m fast
  echo "postgres: stopped $ver/main"
else
  echo "postgres: $ver/main not running"
fi
