#!/usr/bin/env bash
# spotx set-up. Idempotent: run it again at any time; it only does what is missing.
#
#   1. .venv (python3 -m venv) with spotx installed editable plus its dev extra
#   2. PostgreSQL (Debian packages): cluster running, role/database `exchange` reachable over TCP
#      on 127.0.0.1:5432 with password `exchange`            (infra/postgres/start.sh)
#   3. Java 17+ and Maven, then the Apache Kafka broker jars from Maven Central into
#      var/kafka-libs                                          (infra/kafka/fetch.sh)
#      The broker itself is started by scripts/test.sh, `spotx up` or infra/kafka/start.sh.
#   4. kcat for oncall, when apt has it (optional)
#
# Needs root for apt and the Debian cluster. SPOTX_SETUP_FORCE=1 reinstalls the Python packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }
t_all=$SECONDS

apt_updated=0
apt_install() {  # apt_install <package>...
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $* (or install it yourself)"
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  say "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- 1. Python environment ------------------------------------------------------------------
t0=$SECONDS
py=${PYTHON:-python3}
command -v "$py" >/dev/null || die "$py not found (Python >= 3.11 is required)"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 required, $py is $("$py" -V 2>&1)"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$py" -V 2>&1)"
  if ! "$py" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv || die "python3 -m venv failed and python3-venv could not be installed"
    "$py" -m venv .venv || die "python3 -m venv .venv failed"
  fi
fi
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
stamp=.venv/.spotx-installed
if [ "${SPOTX_SETUP_FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && .venv/bin/python -c 'import pipeline, numba, asyncpg, confluent_kafka, uvloop, pytest' 2>/dev/null \
   && [ -x .venv/bin/ruff ] && [ -x .venv/bin/mypy ]; then
  say "python: .venv up to date with pyproject.toml (SPOTX_SETUP_FORCE=1 reinstalls)"
else
  say "python: upgrading pip"
  .venv/bin/python -m pip install -q --upgrade pip || die "pip upgrade failed (is PyPI reachable?)"
  say "python: pip install -e '.[dev]' (a first install takes a few minutes)"
  .venv/bin/python -m pip install -q -e '.[dev]' || die "pip install -e '.[dev]' failed"
  echo "$want" > "$stamp"
fi
# the edge's per-order modules compiled by mypyc (pipeline/native.py); interpreted if this fails
if .venv/bin/spotx native status >/dev/null 2>&1; then
  say "python: compiled edge modules up to date"
elif .venv/bin/spotx native build; then
  :
else
  say "WARNING: the edge's compiled modules could not be built (C compiler, Python headers?); the edge runs interpreted, ~1.3x slower"
fi
# the edge's numba kernels into numba's cache now (cold they take ~10 s; every process loads them)
.venv/bin/python -c "from edge.wire_fast import warm; from pipeline.publisher.flatbook import warm as w; print(f'{warm() + w():.1f}')" \
  | { read -r s && say "python: edge numba kernels ready (${s} s)"; } || say "WARNING: the edge's numba kernels did not compile"
say "python: done in $((SECONDS - t0)) s"

# --- 2. PostgreSQL ---------------------------------------------------------------------------
t0=$SECONDS
bash infra/postgres/start.sh || die "PostgreSQL is not ready (see the lines above)"
command -v psql >/dev/null || apt_install postgresql-client || die "psql missing and postgresql-client not installable"
say "postgres: done in $((SECONDS - t0)) s"

# --- 3. Java, Maven, Kafka jars --------------------------------------------------------------
t0=$SECONDS
java_major() { java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}' | cut -d. -f1; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  apt_install openjdk-17-jre-headless || die "could not install openjdk-17-jre-headless"
fi
[ "$(java_major)" -ge 17 ] 2>/dev/null || die "java on PATH is $(java_major); Kafka 4 needs 17+ (fix PATH or JAVA_HOME)"
command -v mvn >/dev/null || apt_install maven || die "could not install maven"
say "java $(java_major), $(mvn -v 2>/dev/null | head -1 | sed 's/\x1b\[[0-9;]*m//g')"
bash infra/kafka/fetch.sh || die "Kafka jars could not be resolved (see the lines above)"
say "kafka: done in $((SECONDS - t0)) s"

# --- 4. kcat (optional) ----------------------------------------------------------------------
if command -v kcat >/dev/null; then
  say "kcat: present"
elif [ "$(id -u)" = 0 ] && apt_install kcat 2>/dev/null; then
  say "kcat: installed"
else
  say "kcat: not available (optional; only oncall uses it)"
fi

say "ready in $((SECONDS - t_all)) s. Start the exchange: .venv/bin/spotx up   Run the tests: scripts/test.sh"
