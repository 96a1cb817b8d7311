#!/usr/bin/env bash
# Start the Debian PostgreSQL cluster (no Docker) and make sure the project's role and database
# exist and answer over TCP on 127.0.0.1 with password auth:
#
#   role exchange (LOGIN CREATEDB, password exchange), database exchange owned by it
#   SPOTX_PG_USER / SPOTX_PG_PASSWORD / SPOTX_PG_DB override the names, SPOTX_PG_PORT the port of a
#   newly created cluster (default 5432).
#
# Installs the server with apt when /usr/lib/postgresql/*/bin/postgres is missing. Uses the newest
# installed major version's `main` cluster. Admin SQL runs as the postgres OS user over the local
# socket (runuser). Idempotent; prints what it does; the last line is the DSN (password hidden).
set -euo pipefail
user=${SPOTX_PG_USER:-exchange}
pass=${SPOTX_PG_PASSWORD:-exchange}
db=${SPOTX_PG_DB:-exchange}
say() { printf 'postgres: %s\n' "$*"; }
die() { printf 'postgres: FAILED: %s\n' "$*" >&2; exit 1; }
[[ $user =~ ^[a-z_][a-z0-9_]*$ && $db =~ ^[a-z_][a-z0-9_]*$ ]] || die "role/database names must be plain identifiers"
[[ $pass != *"'"* ]] || die "password must not contain a single quote"
[ "$(id -u)" = 0 ] || die "needs root (pg_ctlcluster, runuser); on a dev box run scripts/setup.sh with sudo"

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  say "server not installed: apt-get install -y postgresql"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
fi
ver=$(basename "$(dirname "$(dirname "$(compgen -G "/usr/lib/postgresql/*/bin/postgres" | sort -V | tail -1)")")")
cluster_status() { pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}'; }
if [ -z "$(cluster_status)" ]; then
  say "creating cluster $ver/main"
  pg_createcluster "$ver" main --port "${SPOTX_PG_PORT:-5432}" >/dev/null || die "pg_createcluster $ver main failed"
fi
port=$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $3}')
if cluster_status | grep -q online; then
  say "cluster $ver/main already running on port $port"
else
  say "starting cluster $ver/main on port $port"
  pg_ctlcluster "$ver" main start || die "pg_ctlcluster $ver main start failed (see /var/log/postgresql/postgresql-$ver-main.log)"
fi
ok=0
for _ in $(seq 1 100); do  # pg_ctlcluster waits already; this covers a cluster started by someone else
  if runuser -u postgres -- pg_isready -q -p "$port"; then ok=1; break; fi
  sleep 0.1
done
[ "$ok" = 1 ] || die "cluster $ver/main does not accept connections"

psql_admin() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qtAX "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='$user'")" = 1 ]; then
  psql_admin -c "ALTER ROLE $user LOGIN CREATEDB PASSWORD '$pass'" >/dev/null
  say "role $user present (LOGIN CREATEDB, password set)"
else
  say "creating role $user (LOGIN CREATEDB)"
  psql_admin -c "CREATE ROLE $user LOGIN CREATEDB PASSWORD '$pass'" >/dev/null
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$db'")" = 1 ]; then
  say "database $db present"
else
  say "creating database $db owned by $user"
  psql_admin -c "CREATE DATABASE $db OWNER $user" >/dev/null
fi

# pg_hba: the first rule that matches a TCP connection from 127.0.0.1 for user/db must ask for a
# password (md5 or scram). Debian's default does; add a rule in front when it does not.
listen=$(psql_admin -c "SHOW listen_addresses")
[[ $listen == *localhost* || $listen == *127.0.0.1* || $listen == *'*'* ]] \
  || die "listen_addresses='$listen' does not include 127.0.0.1 (edit postgresql.conf)"
method=$(psql_admin -c "
  SELECT auth_method FROM pg_hba_file_rules
  WHERE error IS NULL AND type IN ('host', 'hostnossl')
    AND database && ARRAY['all', 'sameuser', '$db'] AND user_name && ARRAY['all', '$user']
    AND CASE WHEN address IN ('all', 'samehost', 'samenet') THEN true
             WHEN netmask IS NULL OR address !~ '^[0-9.]+\$' THEN false
             ELSE (inet '127.0.0.1' & netmask::inet) = (address::inet & netmask::inet) END
  ORDER BY line_number LIMIT 1")
case $method in
  scram-sha-256|md5|password) say "pg_hba: 127.0.0.1 uses $method for $user" ;;
  *)
    hba=$(psql_admin -c "SHOW hba_file")
    say "pg_hba: 127.0.0.1 gives '${method:-no rule}' for $user; adding a scram-sha-256 rule at the top of $hba"
    cp "$hba" "$hba.spotx.bak"
    { echo "host    $db    $user    127.0.0.1/32    scram-sha-256    # added by spotx infra/postgres/start.sh"; cat "$hba.spotx.bak"; } > "$hba"
    psql_admin -c "SELECT pg_reload_conf()" >/dev/null
    ;;
esac
PGPASSWORD=$pass PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -qtAX -c "SELECT 1" >/dev/null \
  || die "cannot log in as $user over TCP on 127.0.0.1:$port with the password"
say "ready at postgresql://$user:***@127.0.0.1:$port/$db"
