#!/usr/bin/env bash
# Start a real single-node Apache Kafka (KRaft: one combined broker + controller) on 127.0.0.1 from
# the Maven-resolved jars (infra/kafka/fetch.sh). No Docker.
#
#   SPOTX_KAFKA_PORT             client port (default 9092)
#   SPOTX_KAFKA_CONTROLLER_PORT  controller port (default client port + 1, so 9093)
#   SPOTX_KAFKA_DATA             state dir (default <repo>/var/kafka): data/, kafka.log, kafka.pid
#   SPOTX_KAFKA_LIBS             jar cache (default <repo>/var/kafka-libs)
#   SPOTX_KAFKA_HEAP             JVM heap flags (default "-Xmx512m -Xms256m")
#   SPOTX_KAFKA_START_TIMEOUT_S  readiness deadline (default 90)
#
# Idempotent: a broker that already answers on the port is left alone (exit 0). Readiness is a real
# client call (confluent-kafka AdminClient.list_topics sees this broker), never a sleep. Prints the
# time from launch to ready.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libs=${SPOTX_KAFKA_LIBS:-$root/var/kafka-libs}
data=${SPOTX_KAFKA_DATA:-$root/var/kafka}
port=${SPOTX_KAFKA_PORT:-9092}
cport=${SPOTX_KAFKA_CONTROLLER_PORT:-$((port + 1))}
heap=${SPOTX_KAFKA_HEAP:--Xmx512m -Xms256m}
timeout_s=${SPOTX_KAFKA_START_TIMEOUT_S:-90}
py=${SPOTX_PYTHON:-$root/.venv/bin/python}
pidfile="$data/kafka.pid"
log="$data/kafka.log"
say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: FAILED: %s\n' "$*" >&2; exit 1; }

[ -x "$py" ] || die "no Python with confluent-kafka at $py (run scripts/setup.sh, or set SPOTX_PYTHON)"
command -v java >/dev/null || die "java not found (apt-get install -y openjdk-17-jre-headless)"
jv=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
[ "${jv%%.*}" -ge 17 ] 2>/dev/null || die "Kafka 4 needs Java 17+, found java $jv"

# wait_ready <deadline_s> [pid]: poll the broker with a real AdminClient call until it lists
# metadata with a live broker; fail early if the JVM died. Exit 0 ready, 1 not ready, 2 JVM gone.
wait_ready() {
  "$py" - "127.0.0.1:$port" "$1" "${2:-0}" <<'PY'
import os, sys, time
from confluent_kafka.admin import AdminClient
bootstrap, deadline_s, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.connection.setup.timeout.ms": 1000})
end = time.monotonic() + deadline_s
while True:
    try:
        if admin.list_topics(timeout=min(2.0, max(0.1, end - time.monotonic()))).brokers:
            sys.exit(0)
    except Exception:
        pass
    if pid:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(2)
    if time.monotonic() >= end:
        sys.exit(1)
    time.sleep(0.2)  # poll interval between real client calls, not a readiness guess
PY
}

ours_running() {  # the pid file names a live kafka.Kafka JVM
  [ -f "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'
}

if ours_running; then
  if wait_ready 10 "$(cat "$pidfile")"; then
    say "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; exit 0
  fi
  die "broker pid $(cat "$pidfile") is alive but does not answer on 127.0.0.1:$port; see $log (infra/kafka/stop.sh to reset)"
fi
if wait_ready 1; then
  say "a Kafka broker already answers on 127.0.0.1:$port (not started from $data); using it"; exit 0
fi
rm -f "$pidfile"

"$here/fetch.sh" || die "kafka jars could not be resolved"
mkdir -p "$data/data"
cat > "$data/server.properties" <<PROPS
# written by infra/kafka/start.sh — single node, KRaft, combined broker + controller, loopback only
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
PROPS
cat > "$data/log4j2.yaml" <<'L4J'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.BrokerServer
        level: INFO
      - name: kafka.server.ControllerServer
        level: INFO
      - name: kafka.server.KafkaRaftServer
        level: INFO
L4J
cp="$libs/*"
java_opts="$heap -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j2.configurationFile=$data/log4j2.yaml"
if [ ! -f "$data/data/meta.properties" ]; then
  cid=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  [ -n "$cid" ] || die "StorageTool random-uuid gave nothing (broken jar cache $libs?)"
  say "formatting KRaft storage in $data/data (cluster $cid)"
  # shellcheck disable=SC2086
  java $java_opts -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$data/server.properties" \
    >"$data/format.log" 2>&1 || { tail -20 "$data/format.log" >&2; die "storage format failed, see $data/format.log"; }
fi
t0=$(date +%s%N)
say "starting broker on 127.0.0.1:$port (controller $cport), log $log"
# shellcheck disable=SC2086
nohup java $java_opts -cp "$cp" kafka.Kafka "$data/server.properties" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$pidfile"
rc=0; wait_ready "$timeout_s" "$pid" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
case $rc in
  0) say "ready on 127.0.0.1:$port (pid $pid) in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s"; exit 0 ;;
  2) tail -30 "$log" >&2; rm -f "$pidfile"; die "broker exited during start-up (see $log)" ;;
  *) tail -30 "$log" >&2; kill -TERM "$pid" 2>/dev/null || true
     die "broker not ready after ${timeout_s} s (see $log); sent it SIGTERM" ;;
esac
