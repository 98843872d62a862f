"""Browser tests: the app served on a free loopback port, driven by Playwright in Debian's Chromium."""
import os
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from tests.support import processes

ARTIFACTS = os.path.join(processes.ROOT, "tests", "artifacts")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is required for the browser tests: apt-get install -y chromium ({CHROMIUM} missing)", pytrace=False)
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic",
        ],
    }


@pytest.fixture(scope="session")
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def worker(app):
    """A real `python worker.py` for the duration of one test."""
    proc = processes.start(app, "worker.py", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc
    processes.stop(proc)


@pytest.fixture
def shot(page):
    """Save a screenshot of the current screen at desktop and phone widths."""
    os.makedirs(ARTIFACTS, exist_ok=True)

    def take(name: str):
        for width, height in ((1280, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=os.path.join(ARTIFACTS, f"{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

    return take


def sign_in(page, live_server, email="admin@portal.test", password="password123"):
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
