#!/usr/bin/env bash
# Resolve the Apache Kafka broker jars (pom.xml) from Maven Central into $SPOTX_KAFKA_LIBS
# (default <repo>/var/kafka-libs). Skips when already resolved for this pom.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libs=${SPOTX_KAFKA_LIBS:-$root/var/kafka-libs}
stamp="$libs/.pom.sha256"
want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && ls "$libs"/kafka_2.13-*.jar >/dev/null 2>&1; then
  echo "kafka: jars already resolved in $libs"
  exit 0
fi
command -v mvn >/dev/null || { echo "kafka: mvn not found (apt-get install maven)" >&2; exit 1; }
command -v java >/dev/null || { echo "kafka: java not found (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
echo "kafka: resolving jars from Maven Central into $libs"
rm -rf "$libs" && mkdir -p "$libs"
(cd "$here" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$libs") \
  || { echo "kafka: maven could not resolve the broker jars" >&2; exit 1; }
echo "$want" > "$stamp"
echo "kafka: $(ls "$libs" | wc -l) jars resolved"
