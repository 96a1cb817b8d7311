#!/usr/bin/env bash
# spotx tests: ruff, mypy, then pytest against real PostgreSQL and real Kafka.
#
#   scripts/test.sh [pytest args...]        e.g. scripts/test.sh -k wal -x
#
# Starts PostgreSQL and Kafka when they are not running and stops them again on exit. The machine
# is shared, so services are reference-counted across concurrent test.sh runs (any checkout) in
# $SPOTX_SERVICES_DIR (default /tmp/spotx-services): the last run to leave stops what a test run
# started; services someone else started are never stopped. Exports SPOTX_PG_DSN and
# SPOTX_KAFKA_BOOTSTRAP for the tests. Exit status: the first failing step's (pytest collecting no
# tests counts as a failure).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf 'test: %s\n' "$*"; }
[ -x .venv/bin/python ] || { say "FAILED: no .venv; run scripts/setup.sh first" >&2; exit 1; }
export PATH="$root/.venv/bin:$PATH"
export SPOTX_PG_DSN=${SPOTX_PG_DSN:-postgresql://exchange:exchange@127.0.0.1:5432/exchange}
export SPOTX_KAFKA_BOOTSTRAP=${SPOTX_KAFKA_BOOTSTRAP:-127.0.0.1:9092}
export SPOTX_KAFKA_PORT=${SPOTX_KAFKA_BOOTSTRAP##*:}

# --- services, reference-counted ------------------------------------------------------------
reg=${SPOTX_SERVICES_DIR:-/tmp/spotx-services}
mkdir -p "$reg/users" || { say "FAILED: cannot create $reg" >&2; exit 1; }
exec 9>"$reg/lock"
me="$$:$(awk '{print $22}' /proc/$$/stat)"   # pid + start time: immune to pid reuse

live_users() {  # prune entries of runs that died, print the live ones
  local f pid st
  for f in "$reg"/users/*; do
    [ -e "$f" ] || continue
    IFS=: read -r pid st <"$f"
    if [ "$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)" = "$st" ]; then basename "$f"; else rm -f "$f"; fi
  done
}
pg_up() { .venv/bin/python - "$SPOTX_PG_DSN" <<'PY' 2>/dev/null
import asyncio, sys
import asyncpg
async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1], timeout=3)
    await conn.close()
asyncio.run(main())
PY
}
kafka_up() { .venv/bin/python - "$SPOTX_KAFKA_BOOTSTRAP" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
sys.exit(0 if AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0}).list_topics(timeout=3).brokers else 1)
PY
}
pg_online() { pg_lsclusters -h 2>/dev/null | awk '$2=="main" {print $4}' | grep -q online; }

release() {
  flock 9
  rm -f "$reg/users/$$"
  local others; others=$(live_users | wc -l)
  if [ "$others" -gt 0 ]; then
    [ -e "$reg/kafka.owner" ] || [ -e "$reg/postgres.owner" ] && say "leaving services running for $others other test run(s)"
  else
    if [ -e "$reg/kafka.owner" ]; then
      SPOTX_KAFKA_DATA=$(cat "$reg/kafka.owner") bash infra/kafka/stop.sh; rm -f "$reg/kafka.owner"
    fi
    if [ -e "$reg/postgres.owner" ]; then
      bash infra/postgres/stop.sh; rm -f "$reg/postgres.owner"
    fi
  fi
  flock -u 9
}

flock 9
echo "$me" >"$reg/users/$$"
trap release EXIT
trap 'exit 130' INT TERM
if ! pg_up; then
  if [ "$SPOTX_PG_DSN" != postgresql://exchange:exchange@127.0.0.1:5432/exchange ]; then
    say "FAILED: Postgres at custom SPOTX_PG_DSN does not answer; not starting anything for it" >&2; exit 1
  fi
  was_online=0; pg_online && was_online=1
  bash infra/postgres/start.sh || { say "FAILED: PostgreSQL could not start" >&2; exit 1; }
  [ "$was_online" = 0 ] && echo "$root" >"$reg/postgres.owner"
fi
if ! kafka_up; then
  [[ $SPOTX_KAFKA_BOOTSTRAP == 127.0.0.1:* ]] || { say "FAILED: Kafka at $SPOTX_KAFKA_BOOTSTRAP does not answer" >&2; exit 1; }
  data=${SPOTX_KAFKA_DATA:-$root/var/kafka}
  SPOTX_KAFKA_DATA=$data bash infra/kafka/start.sh || { say "FAILED: Kafka could not start" >&2; exit 1; }
  echo "$data" >"$reg/kafka.owner"
fi
flock -u 9

# --- checks -----------------------------------------------------------------------------------
rc=0
summary=()
step() {  # step <name> <cmd...>: run, remember the first failure
  local name=$1; shift
  printf '\n== %s\n' "$name"
  local t0=$SECONDS s=0
  "$@" || s=$?
  if [ "$name" = pytest ] && [ "$s" = 5 ]; then say "pytest collected no tests: that is a failure" >&2; fi
  summary+=("$(printf '%-7s %s (%d s)' "$name" "$([ $s = 0 ] && echo ok || echo "FAILED rc=$s")" $((SECONDS - t0)))")
  [ "$s" != 0 ] && [ "$rc" = 0 ] && rc=$s
  return 0
}
existing() { local d; for d in "$@"; do [ -n "$(find "$d" -name '*.py' -print -quit 2>/dev/null)" ] && printf '%s\n' "$d"; done; }
mapfile -t lint_dirs < <(existing pipeline ringbuf engine edge settle bench tests)
mapfile -t type_dirs < <(existing pipeline ringbuf engine edge settle)
if [ ${#lint_dirs[@]} -gt 0 ]; then step ruff ruff check "${lint_dirs[@]}"; fi
if [ ${#type_dirs[@]} -gt 0 ]; then step mypy mypy "${type_dirs[@]}"; fi
step pytest pytest "$@"

printf '\n'
for line in "${summary[@]}"; do say "$line"; done
say "exit $rc"
exit $rc
