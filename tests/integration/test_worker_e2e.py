"""End to end: `python worker.py` and `python scheduler.py` as real processes import mail on a cron schedule."""
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal.extensions import db, get_redis, get_scheduler
from portal.imap.models import SyncRun
from tests.integration.imap_helpers import ticket_count, tickets
from tests.support import processes
from tests.support.mail import make_email


@pytest.fixture
def start_process(app):
    started = []

    def start(*args):
        proc = processes.start(app, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        processes.stop(proc)



def test_worker_and_scheduler_processes_import_on_schedule(api, app_ctx, imap_account, start_process):
    imap_account.append(make_email(subject="Scheduled import"))
    created = api.post(
        "/api/imap/accounts",
        json={
            "name": "Cron box",
            "host": imap_account.host,
            "port": imap_account.port,
            "security": "none",
            "allow_plaintext": True,
            "username": imap_account.username,
            "password": imap_account.password,
            "schedule_cron": "* * * * *",
        },
    ).json
    get_redis().flushdb()  # the scheduler process must rebuild the cron job from the database on start
    scheduler_proc = start_process("scheduler.py", "--interval", "0.5")
    worker_proc = start_process("worker.py")
    scheduler = get_scheduler()
    assert processes.wait_for(lambda: "imap_sync-%d" % created["id"] in scheduler, timeout=20), "scheduler did not reconcile"
    # Bring the next cron tick forward so the test need not wait for the minute to turn.
    job = next(j for j in scheduler.get_jobs() if j.id == "imap_sync-%d" % created["id"])
    scheduler.change_execution_time(job, datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(seconds=1))
    assert processes.wait_for(lambda: ticket_count() == 1, timeout=40), _output(scheduler_proc, worker_proc)
    assert [t.subject for t in tickets()] == ["Scheduled import"]
    run = db.session.scalars(select(SyncRun).where(SyncRun.account_id == created["id"])).first()
    assert processes.wait_for(lambda: db.session.get(SyncRun, run.id).status == "succeeded")
    assert run.trigger == "scheduled"
    # The scheduler put the job back for the next minute boundary.
    times = dict((j.id, t) for j, t in scheduler.get_jobs(with_times=True))
    next_time = times["imap_sync-%d" % created["id"]]
    assert next_time.second == 0 and next_time > datetime.now(timezone.utc).replace(tzinfo=None)
    assert "\\Seen" in next(iter(imap_account.flags().values()))


def _output(*procs):
    for proc in procs:
        proc.terminate()
    return "\n".join(proc.communicate(timeout=10)[0].decode(errors="replace")[-3000:] for proc in procs)


def test_a_tick_whose_previous_one_still_waits_in_the_queue_is_folded_into_it(api, app_ctx, imap_account, start_process):
    """No worker runs: the scheduler meets the mailbox's job still queued at the next tick and
    does not queue it again (a backlog must not grow), yet keeps it on the schedule."""
    created = api.post("/api/imap/accounts", json={
        "name": "Backlogged box", "host": imap_account.host, "port": imap_account.port, "security": "none",
        "allow_plaintext": True, "username": imap_account.username, "password": imap_account.password,
        "schedule_cron": "* * * * *",
    }).json
    job_id = "imap_sync-%d" % created["id"]
    scheduler = get_scheduler()
    queue_key = "rq:queue:imap"
    scheduler_proc = start_process("scheduler.py", "--interval", "0.2")

    def bring_tick_forward():
        job = next(j for j in scheduler.get_jobs() if j.id == job_id)
        scheduler.change_execution_time(job, datetime.now(timezone.utc).replace(tzinfo=None))

    bring_tick_forward()
    assert processes.wait_for(lambda: get_redis().lrange(queue_key, 0, -1) == [job_id.encode()], timeout=20), \
        _output(scheduler_proc)
    assert processes.wait_for(lambda: job_id in scheduler, timeout=10)  # rescheduled for the next minute
    bring_tick_forward()
    assert processes.wait_for(lambda: scheduler.get_jobs(with_times=True) and all(
        t > datetime.now(timezone.utc).replace(tzinfo=None) for _, t in scheduler.get_jobs(with_times=True)), timeout=10)
    assert get_redis().lrange(queue_key, 0, -1) == [job_id.encode()]  # still one: the tick folded
    output = _output(scheduler_proc)
    assert f"imap_sync:{created['id']}: previous tick still queued; this one folds into it" in output


def test_a_worker_loads_the_oauth2_http_client_only_when_a_token_is_asked_for(app):
    """A worker of password mailboxes does not carry Authlib, requests and joserfc (about 16 MB)."""
    code = ("import sys, worker; from portal import create_app; create_app(web=False); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'authlib', 'requests', 'joserfc'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    code = "import sys, portal.imap.oauth_tokens as t; t._http(); print('authlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
