#!/usr/bin/env bash
# spotx set-up: idempotent. Creates .venv with the project and its dev extra, makes sure a real
# PostgreSQL server runs with role/database `exchange` on 127.0.0.1, and resolves the Kafka broker
# jars from Maven Central. Prints what it does; fails loudly with a reason.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

apt_updated=0
need_pkg() {  # need_pkg <command> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$apt_updated" = 0 ]; then apt-get update -qq || die "apt-get update failed"; apt_updated=1; fi
  say "installing $2 (for $1)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null || die "could not install $2"
}

# 1. Python environment
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 required ($py)"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$py" -m venv .venv || die "python -m venv failed"
fi
say "installing spotx and its dev extra into .venv"
.venv/bin/python -m pip install -q --upgrade pip || die "pip upgrade failed"
.venv/bin/python -m pip install -q -e '.[dev]' || die "pip install -e '.[dev]' failed"

# 2. PostgreSQL (Debian packages, no Docker)
need_pkg psql postgresql-client
bash infra/postgres/start.sh || die "postgres start failed"
.venv/bin/python -m settle migrate >/dev/null 2>&1 && say "postgres: migrations applied" || true

# 3. Kafka (jars from Maven Central; the broker is started by scripts/test.sh or spotx up)
need_pkg java openjdk-17-jre-headless
need_pkg mvn maven
need_pkg bc bc
bash infra/kafka/fetch.sh || die "kafka jars could not be resolved"
command -v kcat >/dev/null 2>&1 || { need_pkg kcat kcat || say "kcat not available (optional)"; }

say "done. Start the exchange with: .venv/bin/spotx up   Run the tests with: scripts/test.sh"
