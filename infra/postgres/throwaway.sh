#!/usr/bin/env bash
# A throw-away PostgreSQL cluster in a directory of its own, for tests that stop, kill and restart
# Postgres without touching the shared Debian cluster.
#
#   throwaway.sh start   DIR PORT   initdb on first use, start, ensure role/db exchange; prints DSN
#   throwaway.sh stop    DIR [MODE] pg_ctl stop -m MODE (smart|fast|immediate; default fast)
#   throwaway.sh status  DIR        exit 0 when running
#   throwaway.sh destroy DIR        stop (immediate) and delete DIR
#
# Layout: DIR/pgdata (cluster), DIR/sock (unix socket), DIR/server.log. The server listens on
# 127.0.0.1:PORT only; TCP needs a password (scram-sha-256), the local socket is trust for the
# admin. initdb and pg_ctl refuse to run as root, so as root everything runs as the `postgres` OS
# user (runuser) and DIR is chowned to it; DIR's parents must be traversable by that user (/tmp is).
# An `immediate` stop is a crash as far as Postgres is concerned: the next start runs recovery.
set -euo pipefail
say() { printf 'pg-throwaway: %s\n' "$*" >&2; }
die() { printf 'pg-throwaway: FAILED: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '5,8p' "$0" | sed 's/^# *//' >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
user=${SPOTX_PG_USER:-exchange} pass=${SPOTX_PG_PASSWORD:-exchange} db=${SPOTX_PG_DB:-exchange}

bin=$(dirname "$(compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" | sort -V | tail -1)")
[ -x "$bin/pg_ctl" ] || die "no PostgreSQL server installed (scripts/setup.sh installs it)"
if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; owner=postgres
else as_pg() { "$@"; }; owner=$(id -un); fi
pgdata=$dir/pgdata

case $cmd in
  start)
    [ $# -ge 3 ] || usage
    port=$3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$owner" "$dir"
    as_pg test -w "$dir" || die "$dir is not writable by $owner (its parents must be traversable)"
    if [ ! -f "$pgdata/PG_VERSION" ]; then
      say "initdb in $pgdata"
      as_pg mkdir -p "$dir/sock"
      as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
      as_pg sh -c "cat >> '$pgdata/postgresql.conf'" <<CONF
# throw-away cluster (infra/postgres/throwaway.sh)
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
max_connections = 50
shared_buffers = 32MB
CONF
      fresh=1
    else
      as_pg sed -i "s/^port = .*/port = $port/" "$pgdata/postgresql.conf"
      fresh=0
    fi
    if as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
      say "already running ($pgdata)"
    else
      as_pg "$bin/pg_ctl" -D "$pgdata" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -20 "$dir/server.log" >&2; die "pg_ctl start failed (see $dir/server.log)"; }
    fi
    if [ "$fresh" = 1 ]; then
      as_pg "$bin/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAX \
        -c "CREATE ROLE $user LOGIN CREATEDB PASSWORD '$pass'" -c "CREATE DATABASE $db OWNER $user" >/dev/null \
        || die "could not create role/database $user/$db"
    fi
    echo "postgresql://$user:$pass@127.0.0.1:$port/$db"
    ;;
  stop)
    mode=${3:-fast}
    [[ $mode =~ ^(smart|fast|immediate)$ ]] || die "stop mode must be smart, fast or immediate"
    if [ -f "$pgdata/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$pgdata" -m "$mode" -w -t 60 stop >/dev/null || die "pg_ctl stop failed"
      say "stopped ($mode)"
    else
      say "not running"
    fi
    ;;
  status)
    [ -f "$pgdata/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1
    ;;
  destroy)
    if [ -f "$pgdata/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$pgdata" -m immediate -w -t 60 stop >/dev/null || die "pg_ctl stop failed"
    fi
    rm -rf "$dir"
    ;;
  *) usage ;;
esac
