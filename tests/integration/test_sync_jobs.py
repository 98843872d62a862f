"""Sync jobs through real RQ: the queue, the restart flag, bulk order, the CLI, and a dying server."""
import time

import pytest
from rq import Queue, SimpleWorker
from sqlalchemy import select

from portal.extensions import db, get_redis
from portal.imap.models import SyncRun
from tests.integration.imap_helpers import create_mailbox, sync, ticket_count, tickets
from tests.support.mail import make_email


def run_worker(with_scheduler=False):
    worker = SimpleWorker([Queue("imap", connection=get_redis())], connection=get_redis())
    worker.work(burst=True, with_scheduler=with_scheduler)
    db.session.expire_all()


def test_api_sync_runs_on_a_real_worker(api, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="Via worker"))
    queued = api.post(f"/api/imap/accounts/{mailbox.id}/sync").json
    assert queued["status"] == "queued"
    run_worker()
    run = db.session.get(SyncRun, queued["sync_run_id"])
    assert run.status == "succeeded" and run.counts == {"imported": 1} and run.trigger == "manual"
    assert run.job_id == queued["job_id"]
    assert [t.subject for t in tickets()] == ["Via worker"]


def test_restart_flag_defers_and_resumes_by_itself(app, app_ctx, imap_account):
    from portal.imap import maintenance
    from portal.imap.tasks import enqueue_sync

    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="After the upgrade"))
    runner = app.test_cli_runner()
    assert "Restart pending" in runner.invoke(args=["maintenance", "begin"]).output
    assert "Restart pending since" in runner.invoke(args=["maintenance", "status"]).output
    run = enqueue_sync(mailbox, trigger="manual")
    run_worker()
    db.session.refresh(run)
    assert run.status == "deferred" and "Restart pending" in run.error
    assert ticket_count() == 0
    time.sleep(1.2)  # RESTART_DEFER_SECONDS is 1 in tests
    run_worker(with_scheduler=True)  # flag still set: deferred again, nothing fetched
    assert ticket_count() == 0
    # Deferred twice, still the one run the client was given.
    assert db.session.scalars(select(SyncRun)).all() == [run]
    db.session.refresh(run)
    assert run.status == "deferred"
    assert "IMAP fetches resume" in runner.invoke(args=["maintenance", "end"]).output
    assert maintenance.status() is None
    time.sleep(1.2)
    run_worker(with_scheduler=True)
    assert [t.subject for t in tickets()] == ["After the upgrade"]
    assert db.session.scalars(select(SyncRun)).all() == [run]
    db.session.refresh(run)
    assert run.status == "succeeded" and run.trigger == "manual" and run.counts == {"imported": 1}


def test_sync_all_processes_in_priority_order(app, app_ctx, imap_account, dovecot_server):
    from tests.support.dovecot import ImapAccount as Box

    boxes = []
    for priority, name in [(10, "ten"), (0, "zero"), (10, "ten-b"), (5, "five")]:
        user, password = dovecot_server.new_user()
        box = Box(dovecot_server, user, password)
        box.append(make_email(subject=name))
        boxes.append(create_mailbox(box, name=name, priority=priority))
    create_mailbox(imap_account, name="paused", priority=0, active=False)
    result = app.test_cli_runner().invoke(args=["imap", "sync-all", "--inline"])
    assert result.exit_code == 0, result.output
    order = [line.split("(")[1].split(")")[0] for line in result.output.splitlines() if line.startswith("Mailbox")]
    assert order == ["zero", "five", "ten", "ten-b"]
    assert [t.subject for t in tickets()] == ["zero", "five", "ten", "ten-b"]
    runs = db.session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert [r.trigger for r in runs] == ["bulk"] * 4

    queued = app.test_cli_runner().invoke(args=["imap", "sync-all"])
    assert queued.output.count("Queued mailbox") == 4
    job_order = [Queue("imap", connection=get_redis()).fetch_job(j).args[0] for j in Queue("imap", connection=get_redis()).job_ids]
    assert job_order == [boxes[1].id, boxes[3].id, boxes[0].id, boxes[2].id]


def test_cli_sync_one_mailbox(app, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, name="Helpdesk")
    imap_account.append(make_email(subject="CLI"))
    result = app.test_cli_runner().invoke(args=["imap", "sync", str(mailbox.id), "--inline"])
    assert result.exit_code == 0
    assert f"Mailbox {mailbox.id} (Helpdesk): succeeded — imported=1" in result.output
    queued = app.test_cli_runner().invoke(args=["imap", "sync", str(mailbox.id)])
    assert "Queued sync run" in queued.output
    missing = app.test_cli_runner().invoke(args=["imap", "sync", "999", "--inline"])
    assert missing.exit_code != 0 and "Mailbox 999 not found" in missing.output


def test_failed_job_is_retried_with_backoff(api, app_ctx, imap_account):
    from rq.registry import ScheduledJobRegistry

    from tests.support.dovecot import free_port

    mailbox = create_mailbox(imap_account, port=free_port())
    queued = api.post(f"/api/imap/accounts/{mailbox.id}/sync").json
    run_worker()
    run = db.session.get(SyncRun, queued["sync_run_id"])
    assert run.status == "failed" and "Could not connect" in run.error
    registry = ScheduledJobRegistry("imap", connection=get_redis())
    assert queued["job_id"] in registry.get_job_ids()  # retried later, not dropped
    job = Queue("imap", connection=get_redis()).fetch_job(queued["job_id"])
    assert job.timeout == app_ctx.config["IMAP_SYNC_DEADLINE_SECONDS"] + 120  # bounded by the sync deadline

    # The retry succeeds: it is a run of its own, linked to the failure, which stays failed.
    mailbox.port = imap_account.port
    db.session.commit()
    registry.remove(job)
    Queue("imap", connection=get_redis()).enqueue_job(job)
    imap_account.append(make_email(subject="After the outage"))
    run_worker()
    db.session.refresh(run)
    retry = db.session.scalars(select(SyncRun).where(SyncRun.retry_of_id == run.id)).one()
    assert run.status == "failed" and "Could not connect" in run.error
    assert retry.status == "succeeded" and retry.counts == {"imported": 1} and retry.job_id == run.job_id


@pytest.fixture
def own_dovecot():
    """A Dovecot of this test's own, so it can be killed."""
    from tests.support.dovecot import DovecotServer

    server = DovecotServer(tls=False).start()
    yield server
    server.cleanup()


def test_server_killed_mid_sync_then_next_run_completes_without_loss_or_duplicates(app_ctx, own_dovecot, monkeypatch):
    from portal.imap.client import ImapSession
    from tests.support.dovecot import ImapAccount as Box

    user, password = own_dovecot.new_user()
    box = Box(own_dovecot, user, password)
    uids = box.append_many([make_email(subject=f"Mail {n}") for n in range(450)])
    mailbox = create_mailbox(box)
    original = ImapSession.fetch_messages
    calls = []

    def kill_after_first_batch(self, wanted, *args, **kwargs):
        calls.append(len(wanted))
        if len(calls) == 2:
            own_dovecot.kill()
        return original(self, wanted, *args, **kwargs)

    monkeypatch.setattr(ImapSession, "fetch_messages", kill_after_first_batch)
    first = sync(mailbox)
    assert first["status"] == "failed"
    imported_first = ticket_count()
    assert 0 < imported_first < 450
    assert first["counts"] == {"imported": imported_first}  # committed batch by batch, kept by the failure
    monkeypatch.undo()
    own_dovecot.start()
    second = sync(mailbox)
    assert second["status"] == "succeeded"
    assert ticket_count() == 450
    assert sorted(t.subject for t in tickets()) == sorted(f"Mail {n}" for n in range(450))
    flags = box.flags()
    assert all("\\Seen" in flags[uid] for uid in uids)
    assert sync(mailbox)["counts"] == {}


def test_failure_record_survives_a_busy_database_and_never_holds_sql(app_ctx, imap_account, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from portal.imap import runs, ticket_writer

    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="Busy"))
    locked = OperationalError("INSERT INTO tickets (subject) VALUES (?)", ("Busy",), Exception("database is locked"))
    armed = []

    def batch_meets_the_lock(*args, **kwargs):
        armed.append(1)
        raise locked

    monkeypatch.setattr(ticket_writer, "commit_batch", batch_meets_the_lock)
    from sqlalchemy.orm import Session

    real_commit = Session.commit
    refusals = []

    def commit_refused_twice(session):  # the failure record's own first two writes meet the busy database
        if armed and len(refusals) < 2:
            refusals.append(1)
            raise locked
        return real_commit(session)

    monkeypatch.setattr(runs, "RECORD_PAUSES", (0, 0.01, 0.01, 0.01))
    monkeypatch.setattr(Session, "commit", commit_refused_twice)
    result = sync(mailbox)
    monkeypatch.undo()
    assert len(refusals) == 2
    run = db.session.get(SyncRun, result["id"])
    assert run.status == "failed" and run.error == "Database busy: could not save the results"
    assert "INSERT" not in mailbox.last_error


def test_scheduled_run_of_a_paused_mailbox_is_skipped_but_manual_runs(app_ctx, imap_account):
    from portal.imap.tasks import sync_mailbox

    mailbox = create_mailbox(imap_account, active=False)
    imap_account.append(make_email(subject="While paused"))
    scheduled = sync_mailbox(mailbox.id, trigger="scheduled", raise_errors=False)
    assert scheduled["status"] == "skipped" and scheduled["error"] == "Mailbox is paused"
    assert ticket_count() == 0
    assert sync(mailbox)["counts"] == {"imported": 1}


def test_a_sync_requested_during_a_restart_keeps_its_run_id_until_it_succeeds(api, app_ctx, imap_account):
    from portal.imap import maintenance

    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="Queued during the upgrade"))
    maintenance.begin("upgrade")
    queued = api.post(f"/api/imap/accounts/{mailbox.id}/sync").json
    run_url = f"/api/imap/accounts/{mailbox.id}/sync-runs/{queued['sync_run_id']}"
    run_worker()
    deferred = api.get(run_url).json
    assert deferred["status"] == "deferred" and deferred["error"] == "Restart pending; sync deferred by 1s"
    assert deferred["job_id"] != queued["job_id"]  # the job that will wake it
    maintenance.end()
    time.sleep(1.2)
    run_worker(with_scheduler=True)
    done = api.get(run_url).json
    assert done["status"] == "succeeded" and done["counts"] == {"imported": 1} and done["error"] is None
    assert [r["id"] for r in api.get(f"/api/imap/accounts/{mailbox.id}/sync-runs").json["items"]] == [done["id"]]
    assert [t.subject for t in tickets()] == ["Queued during the upgrade"]


def test_scheduled_ticks_during_a_restart_fold_into_one_waiting_run(app_ctx, imap_account):
    from rq.job import Job

    from portal.extensions import get_scheduler
    from portal.imap import maintenance, scheduling

    mailbox = create_mailbox(imap_account, schedule_cron="* * * * *")
    scheduling.schedule(mailbox)
    imap_account.append(make_email(subject="Alert during the upgrade"))
    maintenance.begin()
    scheduler = get_scheduler()
    cron = Job.fetch(scheduling.job_id_for(mailbox.id), connection=get_redis())

    def tick():
        scheduler.enqueue_job(cron)  # what rq-scheduler does when the cron time comes
        run_worker()

    for _ in range(3):
        tick()
    [run] = db.session.scalars(select(SyncRun)).all()
    assert (run.status, run.trigger) == ("deferred", "scheduled")
    # A deferred run whose wake-up job is gone (Redis lost it) is not waiting: the next tick gets its own.
    Job.fetch(run.job_id, connection=get_redis()).delete()
    tick()
    assert len(db.session.scalars(select(SyncRun)).all()) == 2
    maintenance.end()
    time.sleep(1.2)
    run_worker(with_scheduler=True)
    newest = db.session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
    assert newest.status == "succeeded" and newest.trigger == "scheduled" and newest.counts == {"imported": 1}
    assert [t.subject for t in tickets()] == ["Alert during the upgrade"]
