#!/usr/bin/env bash
# Start the Debian PostgreSQL cluster (no Docker) and make sure role/database `exchange` exist,
# reachable over TCP on 127.0.0.1 with a password. Idempotent. Prints what it did.
set -euo pipefail
PGUSER_NAME=${SPOTX_PG_USER:-exchange}
PGPASS=${SPOTX_PG_PASSWORD:-exchange}
PGDB=${SPOTX_PG_DB:-exchange}
PGPORT=${SPOTX_PG_PORT:-5432}

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "postgres: server not installed; installing the Debian package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$ver main$"; then
  echo "postgres: creating cluster $ver/main"
  pg_createcluster "$ver" main --port "$PGPORT" >/dev/null
fi
if pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
  echo "postgres: cluster $ver/main already running"
else
  echo "postgres: starting cluster $ver/main"
  pg_ctlcluster "$ver" main start
fi
for _ in $(seq 1 50); do
  runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p "$PGPORT" && break
  sleep 0.2
done
runuser -u postgres -- pg_isready -h 127.0.0.1 -p "$PGPORT" >/dev/null || { echo "postgres: not ready on 127.0.0.1:$PGPORT" >&2; exit 1; }
psql_admin() { runuser -u postgres -- psql -p "$PGPORT" -v ON_ERROR_STOP=1 -qtAX "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='$PGUSER_NAME'")" != "1" ]; then
  echo "postgres: creating role $PGUSER_NAME"
  psql_admin -c "CREATE ROLE $PGUSER_NAME LOGIN CREATEDB PASSWORD '$PGPASS'"
else
  psql_admin -c "ALTER ROLE $PGUSER_NAME LOGIN CREATEDB PASSWORD '$PGPASS'" >/dev/null
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$PGDB'")" != "1" ]; then
  echo "postgres: creating database $PGDB"
  psql_admin -c "CREATE DATABASE $PGDB OWNER $PGUSER_NAME"
fi
PGPASSWORD=$PGPASS psql -h 127.0.0.1 -p "$PGPORT" -U "$PGUSER_NAME" -d "$PGDB" -qtAX -c "SELECT 1" >/dev/null \
  || { echo "postgres: cannot log in as $PGUSER_NAME over TCP (check pg_hba.conf)" >&2; exit 1; }
echo "postgres: ready at postgresql://$PGUSER_NAME:***@127.0.0.1:$PGPORT/$PGDB"
