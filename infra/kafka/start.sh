#!/usr/bin/env bash
# Start a real single-node Kafka (KRaft, broker+controller) on 127.0.0.1 from the Maven-resolved
# jars. Data under $SPOTX_KAFKA_DATA (default <repo>/var/kafka). Idempotent: a running broker is
# left alone. Readiness is a real client call (AdminClient.list_topics), never a sleep.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libs=${SPOTX_KAFKA_LIBS:-$root/var/kafka-libs}
data=${SPOTX_KAFKA_DATA:-$root/var/kafka}
port=${SPOTX_KAFKA_PORT:-9092}
cport=${SPOTX_KAFKA_CONTROLLER_PORT:-9093}
heap=${SPOTX_KAFKA_HEAP:--Xmx512m -Xms256m}
py=${SPOTX_PYTHON:-$root/.venv/bin/python}
pidfile="$data/kafka.pid"
log="$data/kafka.log"

ready() {
  "$py" - "$port" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
try:
    AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}", "log_level": 0}).list_topics(timeout=2)
except Exception:
    sys.exit(1)
PY
}

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && ready; then
  echo "kafka: already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
  exit 0
fi
ls "$libs"/kafka_2.13-*.jar >/dev/null 2>&1 || "$here/fetch.sh"
mkdir -p "$data/logs"
cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
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
      - name: kafka.server.KafkaServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
L4J
cp="$libs/*"
java_opts="$heap -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j2.configurationFile=$data/log4j2.yaml"
if [ ! -f "$data/logs/meta.properties" ]; then
  cid=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  echo "kafka: formatting KRaft storage (cluster $cid)"
  java $java_opts -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$data/server.properties" >"$data/format.log" 2>&1 \
    || { echo "kafka: storage format failed, see $data/format.log" >&2; exit 1; }
fi
t0=$(date +%s.%N)
nohup java $java_opts -cp "$cp" kafka.Kafka "$data/server.properties" >"$log" 2>&1 &
echo $! > "$pidfile"
for _ in $(seq 1 120); do
  if ready; then
    printf 'kafka: ready on 127.0.0.1:%s (pid %s) in %.1f s\n' "$port" "$(cat "$pidfile")" "$(echo "$(date +%s.%N) - $t0" | bc)"
    exit 0
  fi
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "kafka: broker exited, see $log" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 0.5
done
echo "kafka: not ready after 60 s, see $log" >&2
exit 1
