"""The project's own processes (worker.py, scheduler.py) started for a test, on the test's app settings."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def app_environment(app, **extra) -> dict:
    environment = dict(
        os.environ,
        PORTAL_ENV="testing",
        SECRET_KEY=app.config["SECRET_KEY"],
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        ATTACHMENT_DIR=app.config["ATTACHMENT_DIR"],
    )
    environment.update({key: str(value) for key, value in extra.items()})
    return environment


def start(app, *args, env: dict | None = None, **popen_kwargs) -> subprocess.Popen:
    """`python <args>` from the project root with the app's settings (plus `env`)."""
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=app_environment(app, **(env or {})), **popen_kwargs)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll `predicate` (reading the database afresh each time) until it holds or `timeout` passes."""
    from portal.extensions import db

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        if predicate():
            return True
        time.sleep(interval)
    return False
