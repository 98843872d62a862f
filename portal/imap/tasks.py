"""RQ job functions: sync_mailbox(id, trigger) and sync_all(). Plain functions with explicit
arguments; the worker pushes the app context."""
import logging
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError
from rq import Retry, get_current_job
from sqlalchemy import select

from ..extensions import db, get_queue, get_redis
from ..models import utcnow
from . import audit, maintenance
from .client import ImapError
from .importer import sync_account
from .models import ImapAccount, SyncRun, task_id_for
from .scheduling import SYNC_FUNC

log = logging.getLogger(__name__)

LOCK_SECONDS = 300
# A dead server fails the run; RQ retries the job with growing delays.
RETRY = Retry(max=3, interval=[30, 120, 600])


def lock_key(account_id: int) -> str:
    return f"imap:lock:{account_id}"


def enqueue_sync(account: ImapAccount, trigger: str = "manual") -> SyncRun:
    """Record a queued run and put its job on the `imap` queue (raises RedisError if Redis is down)."""
    run = SyncRun(account_id=account.id, trigger=trigger, status="queued", counts={})
    db.session.add(run)
    db.session.commit()
    try:
        job = get_queue().enqueue(
            SYNC_FUNC,
            account.id,
            trigger=trigger,
            run_id=run.id,
            job_timeout=3600,
            retry=RETRY,
            description=f"{task_id_for(account.id)} ({trigger})",
            meta={"task": task_id_for(account.id), "sync_run_id": run.id},
        )
    except RedisError:
        run.status = "failed"
        run.error = "Not queued: Redis is unavailable"
        run.finished_at = utcnow()
        db.session.commit()
        raise
    run.job_id = job.id
    db.session.commit()
    return run


def retry_failed(account: ImapAccount, message) -> SyncRun:
    """A dead-lettered message gets fresh attempts and a sync is queued to take them."""
    audit.reset_for_retry(message)
    return enqueue_sync(account, trigger="manual")


def _start_run(account_id: int, trigger: str, run_id: int | None) -> SyncRun:
    run = db.session.get(SyncRun, run_id) if run_id else None
    if run is None:
        run = SyncRun(account_id=account_id, trigger=trigger, counts={})
        db.session.add(run)
    job = get_current_job()  # None when run inline (CLI --inline)
    if job is not None:
        run.job_id = job.id
    run.status = "running"
    run.error = None
    run.started_at = utcnow()
    run.finished_at = None
    db.session.commit()
    return run


def _finish(run: SyncRun, account: ImapAccount | None, status: str, error: str | None, counts=None) -> None:
    run.status = status
    run.error = error
    run.finished_at = utcnow()
    if counts is not None:
        run.counts = dict(counts)
    if account is not None and status not in ("deferred", "skipped"):
        account.last_synced_at = run.finished_at
        account.last_sync_status = status
        account.last_error = error
    db.session.commit()


def _defer(account_id: int, trigger: str, run: SyncRun) -> None:
    delay = current_app.config["RESTART_DEFER_SECONDS"]
    _finish(run, None, "deferred", f"Restart pending; sync deferred by {delay}s")
    get_queue().enqueue_in(
        timedelta(seconds=delay),
        SYNC_FUNC,
        account_id,
        trigger=trigger,
        job_timeout=3600,
        retry=RETRY,
        description=f"{task_id_for(account_id)} ({trigger}, deferred)",
        meta={"task": task_id_for(account_id)},
    )


def sync_mailbox(account_id: int, trigger: str = "scheduled", run_id: int | None = None, *, raise_errors=True) -> dict:
    """Sync one mailbox under its fleet-wide lock; returns the run's JSON."""
    account = db.session.get(ImapAccount, account_id)
    if account is None:
        log.warning("imap_sync:%s: mailbox no longer exists; nothing to do", account_id)
        return {"status": "skipped", "error": "Mailbox no longer exists"}
    run = _start_run(account_id, trigger, run_id)
    if trigger == "scheduled" and not account.active:
        _finish(run, None, "skipped", "Mailbox is paused")
        return audit.sync_run_json(run)

    if maintenance.restart_pending():
        _defer(account_id, trigger, run)
        return audit.sync_run_json(run)

    lock = get_redis().lock(lock_key(account_id), timeout=LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        _finish(run, None, "skipped", "Already running: another sync of this mailbox holds the lock")
        return audit.sync_run_json(run)
    try:
        result = sync_account(account, heartbeat=lambda: lock.extend(LOCK_SECONDS, replace_ttl=True))
    except Exception as exc:
        db.session.rollback()
        error = str(exc) if isinstance(exc, ImapError) else f"{exc.__class__.__name__}: {exc}"
        log.warning("imap_sync:%s failed: %s", account_id, error)
        _finish(run, account, "failed", error)
        if raise_errors:
            raise
        return audit.sync_run_json(run)
    finally:
        try:
            lock.release()
        except Exception:  # expired or Redis gone; the TTL cleans up
            pass
    error = "; ".join(result.errors[:5]) or None
    _finish(run, account, result.status, error, result.counts)
    return audit.sync_run_json(run)


def active_accounts_in_order() -> list[ImapAccount]:
    return list(
        db.session.scalars(
            select(ImapAccount).where(ImapAccount.active.is_(True)).order_by(ImapAccount.priority, ImapAccount.id)
        )
    )


def sync_all(trigger: str = "bulk") -> list[int]:
    """Queue a sync of every active mailbox, lowest priority number first."""
    queued = []
    for account in active_accounts_in_order():
        enqueue_sync(account, trigger=trigger)
        queued.append(account.id)
    return queued
