#!/usr/bin/env bash
# Upgrade a running MyPortal in place: pause IMAP fetches, migrate, restart, resume.
#
# Usage:
#   scripts/upgrade.sh [--env-file FILE] [--restart CMD_OR_UNIT]...
#
#   --restart CMD_OR_UNIT  a restart to run after the migration, in the order given; repeatable.
#                          A command ("systemctl restart myportal-web", "kill -HUP 1234") runs
#                          with bash, without filename globbing (so "myportal-worker@*" reaches
#                          systemctl as written). A single word that is not a command, such as
#                          "myportal-web.service" or "myportal-worker@*", is taken as a systemd
#                          unit: systemctl restart UNIT.
#   --env-file FILE        read settings (SECRET_KEY, DATABASE_URL, REDIS_URL, ...) from FILE
#                          (shell syntax, KEY=value lines) before anything else. Otherwise the
#                          environment must already hold the same settings as the services.
#
# Example:
#   scripts/upgrade.sh --env-file /etc/myportal/env \
#       --restart "systemctl restart myportal-web" --restart "systemctl restart myportal-worker@*"
#
# Steps:
#   1. flask --app wsgi maintenance begin   marks a pending restart: workers stop fetching mail
#                                           (IMAP jobs are deferred, not lost)
#   2. flask --app wsgi db upgrade          migrates the database
#   3. the --restart commands, in order     (skipped when the migration failed)
#   4. flask --app wsgi maintenance end     always, also when a step failed or on Ctrl-C
# Exits 0 only when every step succeeded.
#
# The flask used is .venv/bin/flask of this checkout, or FLASK=/path/to/flask, or `flask` on PATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }
log() { printf '==> %s\n' "$*" >&2; }
err() { printf 'ERROR: %s\n' "$*" >&2; }

restarts=()
env_file=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --restart)
            [ "$#" -ge 2 ] || { err "--restart needs a command or a unit name"; exit 2; }
            restarts+=("$2"); shift 2 ;;
        --restart=*) restarts+=("${1#--restart=}"); shift ;;
        --env-file)
            [ "$#" -ge 2 ] || { err "--env-file needs a file"; exit 2; }
            env_file="$2"; shift 2 ;;
        --env-file=*) env_file="${1#--env-file=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
done

if [ -n "$env_file" ]; then
    [ -r "$env_file" ] || { err "cannot read $env_file"; exit 2; }
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
fi

if [ -n "${FLASK:-}" ]; then
    flask_bin="$FLASK"
elif [ -x .venv/bin/flask ]; then
    flask_bin="$PWD/.venv/bin/flask"
elif command -v flask >/dev/null 2>&1; then
    flask_bin="$(command -v flask)"
else
    err "no flask found (.venv/bin/flask, FLASK=..., or flask on PATH)"
    exit 2
fi
flask() { "$flask_bin" --app wsgi "$@"; }

failed=0
in_maintenance=0

finish() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM HUP
    if [ "$in_maintenance" -eq 1 ]; then
        log "Ending maintenance (flask maintenance end)"
        if ! flask maintenance end; then
            err "'flask --app wsgi maintenance end' failed: IMAP fetches stay paused until it succeeds"
            failed=1
        fi
    fi
    [ "$rc" -eq 0 ] && [ "$failed" -ne 0 ] && rc=1
    if [ "$rc" -eq 0 ]; then
        log "Upgrade done"
    else
        err "Upgrade finished with errors (exit $rc)"
    fi
    exit "$rc"
}
trap finish EXIT
trap 'failed=1; exit 130' INT
trap 'failed=1; exit 143' TERM
trap 'failed=1; exit 129' HUP

log "Marking a pending restart (flask maintenance begin)"
# Set before the call: if begin half-worked, end still runs.
in_maintenance=1
if ! flask maintenance begin; then
    err "'flask --app wsgi maintenance begin' failed; not migrating"
    exit 1
fi

log "Migrating the database (flask db upgrade)"
if ! flask db upgrade; then
    err "the migration failed; not restarting anything"
    exit 1
fi

for restart in "${restarts[@]+"${restarts[@]}"}"; do
    if [[ "$restart" != *[[:space:]]* ]] && ! command -v "$restart" >/dev/null 2>&1; then
        cmd="systemctl restart $restart"
    else
        cmd="$restart"
    fi
    log "Restarting: $cmd"
    if ! bash -f -c "$cmd"; then
        err "restart failed: $cmd"
        failed=1
    fi
done

[ "$failed" -eq 0 ] || exit 1
