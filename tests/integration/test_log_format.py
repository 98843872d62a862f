"""LOG_FORMAT=json end to end: a real `python worker.py` syncs a real mailbox and every line it
prints is a JSON object; the sync's lines carry its mailbox, run and job ids, and no secret."""
import json
import subprocess

from portal.extensions import db
from portal.imap.models import SyncRun
from portal.imap.tasks import enqueue_sync
from tests.integration.imap_helpers import create_mailbox, ticket_count
from tests.support import processes
from tests.support.mail import make_email


def test_worker_json_lines_carry_the_ids_and_no_secret(app, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, name="Json box")
    imap_account.append(make_email(subject="Logged import"))
    run = enqueue_sync(mailbox)
    worker = processes.start(app, "worker.py", "--burst", env={"LOG_FORMAT": "json"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output = worker.communicate(timeout=60)[0].decode()
    finally:
        processes.stop(worker)
    assert worker.returncode == 0, output[-3000:]
    assert ticket_count() == 1
    db.session.expire_all()
    run = db.session.get(SyncRun, run.id)
    assert run.status == "succeeded", output[-3000:]

    lines = [line for line in output.splitlines() if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    sync_lines = [e for e in entries if e.get("run_id") == run.id]
    assert [e["message"] for e in sync_lines][0] == f"sync of mailbox {mailbox.id} started (run {run.id})"
    assert any(e["message"].startswith(f"sync of mailbox {mailbox.id} ended after") for e in sync_lines)
    for entry in sync_lines:
        assert entry["mailbox_id"] == mailbox.id and entry["job_id"] == run.job_id
    # rq's own lines about the job carry the job and the mailbox too.
    assert any(e.get("job_id") == run.job_id and e["logger"].startswith("rq") and e.get("mailbox_id") == mailbox.id
               for e in entries), output[-3000:]
    for secret in (imap_account.password, app.config["SECRET_KEY"], mailbox.password_encrypted):
        assert secret not in output


def test_worker_logs_readable_lines_by_default(app, app_ctx):
    worker = processes.start(app, "worker.py", "--burst", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output = worker.communicate(timeout=60)[0].decode()
    finally:
        processes.stop(worker)
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(" INFO rq.worker: " in line for line in lines), output[-2000:]


def test_scheduler_json_lines_and_heartbeat(app, api, app_ctx):
    scheduler = processes.start(app, "scheduler.py", "--burst", env={"LOG_FORMAT": "json"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output = scheduler.communicate(timeout=60)[0].decode()
    finally:
        processes.stop(scheduler)
    assert scheduler.returncode == 0, output[-3000:]
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert any(e["logger"] == "rq_scheduler.scheduler" for e in entries), output[-2000:]
    # The loop it ran wrote the heartbeat the health report reads.
    report = api.get("/api/health").json
    assert report["scheduler"]["ok"] is True and report["scheduler"]["heartbeat_age_seconds"] < 30


def test_gunicorn_json_lines_for_the_app_and_access_log(app, app_ctx):
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    web = processes.start(app, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                          "--access-logfile", "-", "wsgi:app", env={"LOG_FORMAT": "json"},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    assert answer.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
    finally:
        processes.stop(web)
    output = web.communicate(timeout=10)[0].decode()
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries), output
    assert any(e["logger"] == "gunicorn.access" and "GET /healthz" in e["message"] for e in entries), output
