#!/usr/bin/env bash
# Stop the broker started by start.sh: SIGTERM (controlled shutdown), SIGKILL after 30 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=${SPOTX_KAFKA_DATA:-$root/var/kafka}
pidfile="$data/kafka.pid"
if [ ! -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "kafka: not running"; rm -f "$pidfile"; exit 0
fi
pid=$(cat "$pidfile")
kill -TERM "$pid"
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "kafka: killed (pid $pid)"; else echo "kafka: stopped (pid $pid)"; fi
rm -f "$pidfile"
