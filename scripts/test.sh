#!/usr/bin/env bash
# `make test`: the test suite, on this machine, by itself.
#
#   scripts/test.sh [pytest arguments...]      (make test ARGS="-k imap -x")
#
#   1. installs the system packages the tests need when missing (apt: dovecot-imapd, chromium;
#      the tests start their own private Dovecot, the system service is not used)
#   2. creates .venv (Python 3.11) if missing; installs requirements.txt when it changed
#   3. makes sure a Redis answers at TEST_REDIS_URL (default redis://127.0.0.1:6379/15); if none
#      does, starts a private redis-server on a free port in a temp dir, points TEST_REDIS_URL at
#      it (db 15) and stops it when the tests end
#   4. runs .venv/bin/python -m pytest with the arguments given
#
# Environment: DATABASE_URL (unset: a temp SQLite DB; e.g. postgresql+psycopg://postgres@127.0.0.1/test),
#              TEST_REDIS_URL. Exits with pytest's status (5: no tests were collected).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bootstrap.sh
. scripts/bootstrap.sh

REDIS_TMP=""
# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM HUP
    stop_redis
    [ -z "$REDIS_TMP" ] || rm -rf "$REDIS_TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ensure_test_packages
bootstrap_python

wanted_redis="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
if redis_ping "$wanted_redis"; then
    export TEST_REDIS_URL="$wanted_redis"
else
    log "No Redis answers at $(redact_url "$wanted_redis"); starting a private one for the tests"
    REDIS_TMP="$(mktemp -d "${TMPDIR:-/tmp}/portal-test-redis.XXXXXX")"
    redis_port="$(free_port)"
    start_redis "$REDIS_TMP" "$redis_port" --save "" --appendonly no
    export TEST_REDIS_URL="redis://127.0.0.1:$redis_port/15"
fi

if [ -n "${DATABASE_URL:-}" ]; then db_desc="$(redact_url "$DATABASE_URL")"; else db_desc="temp SQLite"; fi
log "pytest $*  (database: $db_desc; Redis: $(redact_url "$TEST_REDIS_URL"))"

set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    warn "pytest collected no tests"
fi
exit "$rc"
