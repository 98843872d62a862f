"""The SyncRun record of one attempt: started, counts committed batch by batch, finished.

Each attempt is its own run: an RQ retry of a job gets a new run linked to the one it retries
(`retry_of_id`), so a failure stays in the history. Finishing a run survives a busy database
(rollback, retry with backoff, then a log line; the reaper is the backstop), and a run's error
is a sentence for people, never a SQL statement."""
import logging
import os
import socket
import time

from rq import get_current_job
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import utcnow
from .models import ImapAccount, SyncRun
from .run_errors import describe_error
from .scheduling import JOB_PREFIX

log = logging.getLogger(__name__)

RECORD_PAUSES = (0, 0.5, 1, 2, 4, 8)  # seconds before each try of a run's final write


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def start_attempt(account_id: int, trigger: str, run_id: int | None) -> SyncRun:
    """The run this attempt records into: the queued run it was enqueued with, or a new run
    (linked to the previous attempt when the job is being retried)."""
    job = get_current_job()  # None when run inline (CLI --inline)
    previous = None
    if run_id is not None or (job is not None and not job.id.startswith(JOB_PREFIX)):
        # Cron jobs reuse their job id from tick to tick: only one-off jobs carry attempts.
        previous_id = (job.meta.get("sync_run_id") if job is not None else None) or run_id
        previous = db.session.get(SyncRun, previous_id) if previous_id else None
    if previous is not None and previous.status == "queued":
        run = previous
    else:
        run = SyncRun(account_id=account_id, trigger=trigger, counts={},
                      retry_of_id=previous.id if previous is not None else None)
        db.session.add(run)
    run.status = "running"
    run.error = None
    run.started_at = run.heartbeat_at = utcnow()
    run.finished_at = None
    run.worker_name = worker_name()
    if job is not None:
        run.job_id = job.id
    db.session.commit()
    if job is not None and job.meta.get("sync_run_id") != run.id and not job.id.startswith(JOB_PREFIX):
        job.meta["sync_run_id"] = run.id
        job.save_meta()
    return run


def record_counts(run_id: int, counts) -> None:
    """After a batch's COMMIT: the run shows what is committed so far (kept if the run fails)."""
    try:
        db.session.get(SyncRun, run_id).counts = dict(counts)
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("Sync run %s: counts not saved after a batch (%s)", run_id, exc.__class__.__name__)


def finish(run_id: int, account_id: int | None, status: str, error: str | None, counts=None) -> dict:
    """Write the run's end (and the mailbox's last sync) and return the run's JSON. A busy
    database is tried again with backoff; if it never answers the run stays `running` and the
    reaper ends it."""
    from .audit import sync_run_json

    for attempt, pause in enumerate(RECORD_PAUSES, start=1):
        time.sleep(pause)
        try:
            db.session.rollback()
            run = db.session.get(SyncRun, run_id)
            run.status = status
            run.error = error
            run.finished_at = utcnow()
            if counts is not None:
                run.counts = dict(counts)
            if account_id is not None:
                account = db.session.get(ImapAccount, account_id)
                if account is not None:
                    account.last_synced_at = run.finished_at
                    account.last_sync_status = status
                    account.last_error = error
            db.session.commit()
            return sync_run_json(run)
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("Sync run %s: could not record %s (try %d): %s", run_id, status, attempt, describe_error(exc))
    log.error("Sync run %s: gave up recording %s (%s); the reaper will end it", run_id, status, error)
    return {"id": run_id, "account_id": account_id, "status": status, "error": error, "counts": dict(counts or {})}
