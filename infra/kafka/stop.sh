#!/usr/bin/env bash
# Stop the broker started by infra/kafka/start.sh (the pid in $SPOTX_KAFKA_DATA/kafka.pid):
# SIGTERM for a controlled shutdown, SIGKILL if it is still alive after
# $SPOTX_KAFKA_STOP_TIMEOUT_S (default 30). Idempotent; never signals a pid that is not kafka.Kafka.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=${SPOTX_KAFKA_DATA:-$root/var/kafka}
grace=${SPOTX_KAFKA_STOP_TIMEOUT_S:-30}
pidfile="$data/kafka.pid"
say() { printf 'kafka: %s\n' "$*"; }

if [ ! -f "$pidfile" ]; then say "not running (no $pidfile)"; exit 0; fi
pid=$(cat "$pidfile")
if ! kill -0 "$pid" 2>/dev/null || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
  say "not running (stale pid file, pid $pid)"; rm -f "$pidfile"; exit 0
fi
t0=$SECONDS
kill -TERM "$pid"
end=$((SECONDS + grace))
while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
if kill -0 "$pid" 2>/dev/null; then
  kill -KILL "$pid" 2>/dev/null || true
  say "did not stop within ${grace} s: killed (pid $pid)"
else
  say "stopped (pid $pid) in $((SECONDS - t0)) s"
fi
rm -f "$pidfile"
