"""The SyncRun record of one attempt: started, counts committed batch by batch, finished.

Each attempt is its own run: an RQ retry of a job gets a new run linked to the one it retries
(`retry_of_id`), so a failure stays in the history. A run deferred by a pending restart is not
an attempt: it keeps its id until it runs (`deferred`, then `running` and its outcome), and
scheduled ticks that meet a waiting deferred run of their mailbox fold into it. Finishing a run survives a busy database
(rollback, retry with backoff, then a log line; the reaper is the backstop), and a run's error
is a sentence for people, never a SQL statement."""
import logging
import os
import socket
import time

from redis.exceptions import RedisError
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db, get_redis
from ..models import utcnow
from .models import ImapAccount, SyncRun
from .run_errors import describe_error
from .throughput import commit_bookkeeping
from .scheduling import JOB_PREFIX

log = logging.getLogger(__name__)

RECORD_PAUSES = (0, 0.5, 1, 2, 4, 8)  # seconds before each try of a run's final write
# A run in one of these states has not been attempted yet: the job that carries it records into it.
NOT_ATTEMPTED = ("queued", "deferred")
# A run that ends so has searched its folder: if it recorded no candidates, it found none.
FOUND_ALL = ("succeeded", "completed_with_errors")
# The job of a deferred run that will still fire (or is firing now).
WAITING_JOB = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.STARTED)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def _carried_run(job, run_id: int | None) -> SyncRun | None:
    """The run the current job was enqueued with (or last recorded into); None for a cron tick."""
    if run_id is None and (job is None or job.id.startswith(JOB_PREFIX)):
        return None  # cron jobs reuse their job id from tick to tick: only one-off jobs carry runs
    previous_id = (job.meta.get("sync_run_id") if job is not None else None) or run_id
    return db.session.get(SyncRun, previous_id) if previous_id else None


def start_attempt(account_id: int, trigger: str, run_id: int | None) -> SyncRun:
    """The run this attempt records into: the queued or deferred run it was enqueued with, or a
    new run (linked to the previous attempt when the job is being retried)."""
    job = get_current_job()  # None when run inline (CLI --inline)
    previous = _carried_run(job, run_id)
    if previous is not None and previous.status in NOT_ATTEMPTED:
        run = previous
    else:
        run = SyncRun(account_id=account_id, trigger=trigger, counts={},
                      retry_of_id=previous.id if previous is not None else None)
        db.session.add(run)
    run.status = "running"
    run.error = None
    run.candidates = None
    run.started_at = run.heartbeat_at = utcnow()
    run.finished_at = None
    run.worker_name = worker_name()
    if job is not None:
        run.job_id = job.id
    commit_bookkeeping()
    if job is not None and job.meta.get("sync_run_id") != run.id and not job.id.startswith(JOB_PREFIX):
        job.meta["sync_run_id"] = run.id
        job.save_meta()
    return run


def waiting_deferred(account_id: int) -> SyncRun | None:
    """The mailbox's newest deferred run whose job will still fire (it syncs the mailbox when
    the restart is over), or None. A run whose job is gone (Redis lost it) is not waiting."""
    run = db.session.scalar(select(SyncRun).where(
        SyncRun.account_id == account_id, SyncRun.status == "deferred").order_by(SyncRun.id.desc()).limit(1))
    if run is None or not run.job_id:
        return None
    try:
        status = Job.fetch(run.job_id, connection=get_redis()).get_status()
    except (NoSuchJobError, RedisError):
        return None
    return run if status in WAITING_JOB else None


def defer(account_id: int, trigger: str, run_id: int | None, reason: str) -> tuple[SyncRun, bool]:
    """Record that this job waits for a pending restart. Returns the run and whether a job must
    be enqueued to wake it: the run the job carries keeps its id (`deferred` until it runs); a
    cron tick folds into the mailbox's waiting deferred run, if there is one (no new row, no new
    job), or else gets a run of its own."""
    job = get_current_job()
    carried = _carried_run(job, run_id)
    if carried is not None and carried.status in NOT_ATTEMPTED:
        run = carried
    else:
        if carried is None and (waiting := waiting_deferred(account_id)) is not None:
            return waiting, False
        run = SyncRun(account_id=account_id, trigger=trigger, counts={},
                      retry_of_id=carried.id if carried is not None else None)
        db.session.add(run)
    run.status = "deferred"
    run.error = reason
    run.finished_at = utcnow()
    db.session.commit()
    return run, True


def set_job(run: SyncRun, job_id: str) -> None:
    """The job that will run this run next (what the API shows as job_id)."""
    run.job_id = job_id
    db.session.commit()


def record_counts(run_id: int, counts) -> None:
    """After a batch's COMMIT: the run shows what is committed so far (kept if the run fails)."""
    try:
        db.session.get(SyncRun, run_id).counts = dict(counts)
        commit_bookkeeping()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("Sync run %s: counts not saved after a batch (%s)", run_id, exc.__class__.__name__)


def record_candidates(run_id: int, candidates: int) -> None:
    """Once the run's search is done: how many messages it sets out to decide (the "of 2,000"
    of its progress). Losing this write loses only the progress total, never mail."""
    try:
        db.session.get(SyncRun, run_id).candidates = candidates
        commit_bookkeeping()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("Sync run %s: candidates not saved (%s)", run_id, exc.__class__.__name__)


def finish(run_id: int, account_id: int | None, status: str, error: str | None, counts=None) -> dict:
    """Write the run's end (and the mailbox's last sync) and return the run's JSON. A busy
    database is tried again with backoff; if it never answers the run stays `running` and the
    reaper ends it."""
    from .audit import sync_run_json

    for attempt, pause in enumerate(RECORD_PAUSES, start=1):
        time.sleep(pause)
        try:
            db.session.rollback()
            now = utcnow()
            # Plain UPDATEs: a sync's end costs two statements and a COMMIT, no reads first.
            values = {"status": status, "error": error, "finished_at": now}
            if counts is not None:
                values["counts"] = dict(counts)
            if status in FOUND_ALL:  # it searched: no candidates recorded means none found
                values["candidates"] = func.coalesce(SyncRun.candidates, 0)
            db.session.execute(update(SyncRun).where(SyncRun.id == run_id).values(values),
                               execution_options={"synchronize_session": False})
            if account_id is not None:
                db.session.execute(
                    update(ImapAccount).where(ImapAccount.id == account_id)
                    .values(last_synced_at=now, last_sync_status=status, last_error=error),
                    execution_options={"synchronize_session": False})
            commit_bookkeeping()
            run = db.session.get(SyncRun, run_id)
            if run is not None:
                return sync_run_json(run)
            break
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("Sync run %s: could not record %s (try %d): %s", run_id, status, attempt, describe_error(exc))
    else:
        log.error("Sync run %s: gave up recording %s (%s); the reaper will end it", run_id, status, error)
    return {"id": run_id, "account_id": account_id, "status": status, "error": error, "counts": dict(counts or {})}
