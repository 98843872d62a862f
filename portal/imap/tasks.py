"""RQ job functions: sync_mailbox(id, trigger) and sync_all(). Plain functions with explicit
arguments; the worker pushes the app context."""
import logging
import uuid
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import select

from ..extensions import db, get_queue, get_redis
from ..log_format import sync_log_context
from ..models import utcnow
from . import audit, maintenance, runs, scheduling
from .importer import sync_account
from .lease import MailboxLease
from .oauth_access import SignInNeedsAction
from .models import ImapAccount, SyncRun, task_id_for
from .run_errors import describe_error
from .scheduling import SYNC_FUNC

log = logging.getLogger(__name__)

# A dead server fails the run; RQ retries the job with growing delays.
RETRY = Retry(max=3, interval=[30, 120, 600])


def job_timeout() -> int:
    """RQ's hard stop for a sync job: the sync's own deadline plus room to record its end."""
    return int(current_app.config["IMAP_SYNC_DEADLINE_SECONDS"]) + 120


def enqueue_sync(account: ImapAccount, trigger: str = "manual") -> SyncRun:
    """Record a queued run and put its job on the `imap` queue (raises RedisError if Redis is down).
    The job's id is chosen first, so the run is written once, before any worker can see the job."""
    run = SyncRun(account_id=account.id, trigger=trigger, status="queued", counts={}, job_id=uuid.uuid4().hex)
    db.session.add(run)
    db.session.commit()
    try:
        get_queue().enqueue(
            SYNC_FUNC,
            account.id,
            job_id=run.job_id,
            trigger=trigger,
            run_id=run.id,
            job_timeout=job_timeout(),
            retry=RETRY,
            description=f"{task_id_for(account.id)} ({trigger})",
            meta={"task": task_id_for(account.id), "sync_run_id": run.id},
        )
    except RedisError:
        run.status = "failed"
        run.error = "Not queued: Redis is unavailable"
        run.job_id = None
        run.finished_at = utcnow()
        db.session.commit()
        raise
    return run


def retry_failed(account: ImapAccount, message) -> SyncRun:
    """A dead-lettered message gets fresh attempts and a sync is queued to take them."""
    audit.reset_for_retry(message)
    return enqueue_sync(account, trigger="manual")


def _defer(account_id: int, trigger: str, run_id: int | None) -> dict:
    """A restart is pending: the run waits (same id) and a job wakes it after a delay; a cron
    tick that finds the mailbox's deferred run already waiting adds nothing (runs.defer)."""
    delay = current_app.config["RESTART_DEFER_SECONDS"]
    run, needs_job = runs.defer(account_id, trigger, run_id, f"Restart pending; sync deferred by {delay}s")
    if needs_job:
        job = get_queue().enqueue_in(
            timedelta(seconds=delay),
            SYNC_FUNC,
            account_id,
            trigger=run.trigger,
            run_id=run.id,
            job_timeout=job_timeout(),
            retry=RETRY,
            description=f"{task_id_for(account_id)} ({run.trigger}, deferred)",
            meta={"task": task_id_for(account_id), "sync_run_id": run.id},
        )
        runs.set_job(run, job.id)
    return audit.sync_run_json(run)


def _deleted(account_id: int, trigger: str, run_id: int | None) -> dict:
    """A job of a deleted mailbox (queued before the delete, or a cron job Redis kept): skipped."""
    run = runs.start_attempt(account_id, trigger, run_id)
    if trigger == "scheduled":
        scheduling.remove(account_id)
    return runs.finish(run.id, None, "skipped", "Mailbox was deleted")


def _lease(account_id: int, run: SyncRun) -> MailboxLease:
    config = current_app.config
    return MailboxLease(
        get_redis(), db.engine, account_id, run.id,
        ttl=config["IMAP_LOCK_SECONDS"],
        beat=config["IMAP_HEARTBEAT_SECONDS"],
        deadline_seconds=config["IMAP_SYNC_DEADLINE_SECONDS"],
        worker_name=run.worker_name,
    )


class RunGuard:
    """What the importer consults around each batch: the lease before a write, the run's
    candidates once known and its counts after a COMMIT."""

    def __init__(self, lease: MailboxLease, run_id: int):
        self.lease = lease
        self.run_id = run_id

    def watch(self, session) -> None:
        self.lease.watch(session)

    def started(self, candidates: int) -> None:
        runs.record_candidates(self.run_id, candidates)

    def before_write(self) -> None:
        self.lease.check()

    def committed(self, counts) -> None:
        runs.record_counts(self.run_id, counts)


def sync_mailbox(account_id: int, trigger: str = "scheduled", run_id: int | None = None, *, raise_errors=True) -> dict:
    """Sync one mailbox under its fleet-wide lease; returns the run's JSON."""
    account = db.session.get(ImapAccount, account_id)
    if account is None:
        log.warning("imap_sync:%s: mailbox no longer exists; nothing to do", account_id)
        return {"status": "skipped", "error": "Mailbox no longer exists"}
    if account.deleted_at is not None:
        return _deleted(account_id, trigger, run_id)
    paused = trigger == "scheduled" and not account.active
    if not paused and maintenance.restart_pending():
        return _defer(account_id, trigger, run_id)
    run = runs.start_attempt(account_id, trigger, run_id)
    if paused:
        return runs.finish(run.id, None, "skipped", "Mailbox is paused")

    lease = _lease(account_id, run)
    if not lease.acquire():
        return runs.finish(run.id, None, "skipped", "Already running: another sync of this mailbox holds the lock")
    guard = RunGuard(lease, run.id)
    try:
        with lease, sync_log_context(account_id, run.id, run.job_id) as measured:
            result = sync_account(account, guard)
            measured["imap_seconds"] = result.imap_seconds
    except Exception as exc:
        db.session.rollback()
        # A stop (lost lock, deadline) cuts the connection: say why, not what the cut broke.
        error = lease.stop_reason or describe_error(exc)
        log.warning("imap_sync:%s failed: %s", account_id, error)
        finished = runs.finish(run.id, account_id, "failed", error)  # keeps the counts committed batch by batch
        # Only a person can fix a sign-in that needs action: retrying would only ask the provider again.
        if raise_errors and not isinstance(exc, SignInNeedsAction):
            raise
        return finished
    error = "; ".join(result.errors[:5]) or None
    return runs.finish(run.id, account_id, result.status, error, result.counts)


def active_accounts_in_order() -> list[ImapAccount]:
    return list(
        db.session.scalars(
            select(ImapAccount)
            .where(ImapAccount.active.is_(True), ImapAccount.deleted_at.is_(None))
            .order_by(ImapAccount.priority, ImapAccount.id)
        )
    )


def sync_all(trigger: str = "bulk") -> list[int]:
    """Queue a sync of every active mailbox, lowest priority number first."""
    queued = []
    for account in active_accounts_in_order():
        enqueue_sync(account, trigger=trigger)
        queued.append(account.id)
    return queued
