"""Faults of whole processes: a worker SIGKILLed mid-sync, two workers racing on one mailbox,
Redis losing every key. Real `python worker.py` / `python scheduler.py` processes."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import psutil
import pytest
from rq import Queue

from portal.extensions import db, get_redis, get_scheduler
from portal.imap.lease import lock_key
from portal.imap.models import SyncRun
from portal.imap.scheduling import job_id_for
from tests.faults.conftest import FAST, mails
from tests.faults.reconciliation import assert_reconciled
from tests.integration.imap_helpers import create_mailbox, sync
from tests.support import processes

pytestmark = pytest.mark.faults


@pytest.fixture
def start_process(app):
    started = []

    def start(*args, **env):
        proc = processes.start(app, *args, env={**FAST, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            processes.stop(proc)



def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the worker (it runs the job itself): nothing gets to clean up."""
    family = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(10)


def test_worker_killed_mid_sync(app_ctx, imap_account, fast_lease, start_process):
    from portal.imap.tasks import enqueue_sync

    uids = imap_account.fill_maildir(mails(1500, "Killed"))
    mailbox = create_mailbox(imap_account)
    run = enqueue_sync(mailbox)
    worker = start_process("worker.py")
    assert processes.wait_for(lambda: db.session.get(SyncRun, run.id).counts, timeout=60), "the sync never got going"
    kill_tree(worker)
    killed_at = time.monotonic()
    assert db.session.get(SyncRun, run.id).status == "running"
    start_process("scheduler.py", "--interval", "0.5")  # its housekeeping reaps the run
    assert processes.wait_for(lambda: not get_redis().exists(lock_key(mailbox.id)), timeout=60)
    assert processes.wait_for(lambda: db.session.get(SyncRun, run.id).status == "failed", timeout=60)
    assert time.monotonic() - killed_at < 60
    assert db.session.get(SyncRun, run.id).error.startswith("Worker stopped")
    assert sync(mailbox)["status"] == "succeeded"
    runs = assert_reconciled(mailbox, uids)
    assert [r.status for r in runs] == ["failed", "succeeded"]


def test_two_workers_racing_on_one_mailbox(app_ctx, imap_account, fast_lease, start_process):
    from portal.imap.tasks import enqueue_sync

    from rq import Worker

    uids = imap_account.fill_maildir(mails(1000, "Race"))
    mailbox = create_mailbox(imap_account)
    # Both workers wait for work before the two jobs arrive, so they take them at the same moment
    # (a worker that started late on a busy machine would find the first sync already done).
    start_process("worker.py")
    start_process("worker.py")
    assert processes.wait_for(lambda: len(Worker.all(connection=get_redis())) >= 2, timeout=60)
    first, second = enqueue_sync(mailbox), enqueue_sync(mailbox)
    ended = ("succeeded", "skipped", "failed")
    assert processes.wait_for(lambda: all(db.session.get(SyncRun, r.id).status in ended for r in (first, second)), timeout=90)
    statuses = sorted(db.session.get(SyncRun, r.id).status for r in (first, second))
    assert statuses == ["skipped", "succeeded"]
    skipped = next(db.session.get(SyncRun, r.id) for r in (first, second) if db.session.get(SyncRun, r.id).status == "skipped")
    assert "Already running" in skipped.error and not skipped.counts
    assert_reconciled(mailbox, uids)


@pytest.fixture
def private_redis(app):
    """A Redis of this test's own, so FLUSHALL flushes only what the test owns; the app points
    at it for the test."""
    binary = shutil.which("redis-server") or os.path.join(processes.ROOT, ".venv", "bin", "redis-server")
    directory = tempfile.mkdtemp(prefix="fault-redis-")
    from tests.support.dovecot import free_port

    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    saved = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = url
    app.extensions.pop("portal_redis", None)
    try:
        with app.app_context():
            assert processes.wait_for(lambda: _pings(), timeout=10)
        yield url
    finally:
        app.config["REDIS_URL"] = saved
        app.extensions.pop("portal_redis", None)
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _pings() -> bool:
    try:
        return get_redis().ping()
    except Exception:
        return False


def test_redis_flushed_schedules_come_back_and_syncs_complete(app_ctx, imap_account, private_redis, fast_lease, start_process):
    uids = imap_account.fill_maildir(mails(20, "After the flush"))
    mailbox = create_mailbox(imap_account, schedule_cron="0 0 1 1 *")
    start_process("scheduler.py", "--interval", "0.5", REDIS_URL=private_redis, IMAP_HOUSEKEEPING_SECONDS=30)
    scheduler = get_scheduler()
    assert processes.wait_for(lambda: job_id_for(mailbox.id) in scheduler, timeout=20)
    get_redis().flushall()
    flushed_at = time.monotonic()
    # Back long before the 30 s housekeeping tick: the scheduler saw the cron jobs missing.
    assert processes.wait_for(lambda: job_id_for(mailbox.id) in scheduler, timeout=20)
    assert time.monotonic() - flushed_at < 20
    assert sync(mailbox)["status"] == "succeeded"
    assert_reconciled(mailbox, uids)


def test_housekeeping_reconciles_a_lost_job_every_interval(app, app_ctx, private_redis, imap_account):
    """The periodic path: one job lost while others remain is back at the next tick."""
    import scheduler as scheduler_process

    keep = create_mailbox(imap_account, name="Keep")
    lost = create_mailbox(imap_account, name="Lost")
    housekeeping = scheduler_process.Housekeeping(app, every=0)
    housekeeping.tick()
    from portal.imap.scheduling import unschedule

    unschedule(lost.id)
    assert job_id_for(lost.id) not in get_scheduler()
    housekeeping.tick()
    assert {job_id_for(keep.id), job_id_for(lost.id)} <= {job.id for job in get_scheduler().get_jobs()}
    assert Queue("imap", connection=get_redis()).count == 0
