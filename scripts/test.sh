#!/usr/bin/env bash
# spotx tests: starts the services the tests need when they are not running (and stops what it
# started), then runs ruff, mypy and pytest. Extra arguments go to pytest (scripts/test.sh -k wal).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -x .venv/bin/python ] || { echo "test: no .venv; run scripts/setup.sh first" >&2; exit 1; }
export PATH="$root/.venv/bin:$PATH"
export SPOTX_PG_DSN=${SPOTX_PG_DSN:-postgresql://exchange:exchange@127.0.0.1:5432/exchange}
export SPOTX_KAFKA_BOOTSTRAP=${SPOTX_KAFKA_BOOTSTRAP:-127.0.0.1:9092}

started_pg=0
started_kafka=0
cleanup() {
  [ "$started_kafka" = 1 ] && bash infra/kafka/stop.sh || true
  [ "$started_pg" = 1 ] && bash infra/postgres/stop.sh || true
}
trap cleanup EXIT

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  bash infra/postgres/start.sh || { echo "test: postgres could not start" >&2; exit 1; }
  started_pg=1
fi
if ! .venv/bin/python -c "
from confluent_kafka.admin import AdminClient
AdminClient({'bootstrap.servers': '$SPOTX_KAFKA_BOOTSTRAP', 'log_level': 0}).list_topics(timeout=2)" 2>/dev/null; then
  bash infra/kafka/start.sh || { echo "test: kafka could not start" >&2; exit 1; }
  started_kafka=1
fi

rc=0
echo "== ruff"
ruff check pipeline ringbuf engine edge settle bench tests || rc=1
echo "== mypy"
mypy pipeline ringbuf engine edge settle || rc=1
echo "== pytest"
pytest "$@"
prc=$?
if [ "$prc" = 5 ]; then
  echo "test: pytest collected no tests: that is a failure" >&2
  prc=1
fi
[ "$prc" != 0 ] && rc=$prc
echo "== test.sh exit $rc"
exit $rc
