#!/usr/bin/env bash
# Resolve the Apache Kafka broker jars named in infra/kafka/pom.xml (with their runtime
# dependencies) from Maven Central into $SPOTX_KAFKA_LIBS (default <repo>/var/kafka-libs).
#
# Skips when the cache already holds a resolution of this exact pom (a sha256 stamp). Resolves into
# a staging directory and swaps it in, so a failed download never leaves a half-filled cache. Jars
# are never replaced under a broker that is running from them: upgrading asks for a restart.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libs=${SPOTX_KAFKA_LIBS:-$root/var/kafka-libs}
data=${SPOTX_KAFKA_DATA:-$root/var/kafka}
say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: FAILED: %s\n' "$*" >&2; exit 1; }

stamp="$libs/.pom.sha256"
want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && compgen -G "$libs/kafka_2.13-*.jar" >/dev/null; then
  say "jars already resolved in $libs ($(basename "$(compgen -G "$libs/kafka_2.13-*.jar" | head -1)" .jar))"
  exit 0
fi
pidfile="$data/kafka.pid"
if compgen -G "$libs/*.jar" >/dev/null && [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  say "WARNING: pom.xml changed but a broker (pid $(cat "$pidfile")) runs from $libs;"
  say "         keeping the old jars. Run infra/kafka/stop.sh, then infra/kafka/start.sh to upgrade."
  exit 0
fi
command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
command -v java >/dev/null || die "java not found (apt-get install -y openjdk-17-jre-headless)"
say "resolving $(grep -oP '(?<=<kafka.version>)[^<]+' "$here/pom.xml" | sed 's/^/Apache Kafka /') from Maven Central into $libs"
mkdir -p "$(dirname "$libs")"
stage=$(mktemp -d "$libs.staging.XXXXXX")
trap 'rm -rf "$stage"' EXIT
t0=$SECONDS
(cd "$here" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$stage" 2>&1 | sed 's/\x1b\[[0-9;]*m//g') \
  || die "maven could not resolve the broker jars (is Maven Central reachable?)"
compgen -G "$stage/kafka_2.13-*.jar" >/dev/null || die "resolution finished without kafka_2.13 jar"
echo "$want" > "$stage/.pom.sha256"
rm -rf "$libs.old" && { [ ! -e "$libs" ] || mv "$libs" "$libs.old"; } && mv "$stage" "$libs" && rm -rf "$libs.old"
trap - EXIT
say "$(compgen -G "$libs/*.jar" | wc -l) jars resolved in $((SECONDS - t0)) s"
