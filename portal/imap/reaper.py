"""Ends runs whose worker is gone: a `running` run whose heartbeat is older than
IMAP_REAP_AFTER_SECONDS, or whose RQ job no longer exists or has ended, becomes `failed`
("Worker stopped ..."). scheduler.py runs this every IMAP_HOUSEKEEPING_SECONDS."""
import logging
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from ..extensions import db, get_redis
from ..models import utcnow
from .models import ImapAccount, SyncRun

log = logging.getLogger(__name__)

ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


def reap_stopped_runs() -> list[int]:
    """Fail the runs nobody is working on any more; returns their ids."""
    config = current_app.config
    now = utcnow()
    stale_before = now - timedelta(seconds=config["IMAP_REAP_AFTER_SECONDS"])
    # A job that has ended cannot stamp again: two missed beats are proof enough.
    quiet_before = now - timedelta(seconds=2 * config["IMAP_HEARTBEAT_SECONDS"])
    reaped = []
    for run in db.session.scalars(select(SyncRun).where(SyncRun.status == "running")):
        last_sign = run.heartbeat_at or run.started_at or run.created_at
        if last_sign < stale_before or (last_sign < quiet_before and _job_ended(run.job_id)):
            run.status = "failed"
            run.error = f"Worker stopped: no heartbeat since {last_sign:%Y-%m-%d %H:%M:%S} UTC ({run.worker_name or 'unknown worker'})"
            run.finished_at = now
            account = db.session.get(ImapAccount, run.account_id)
            if account is not None:
                account.last_sync_status = "failed"
                account.last_error = run.error
            reaped.append(run.id)
            log.warning("Sync run %s: %s", run.id, run.error)
    db.session.commit()
    return reaped


def _job_ended(job_id: str | None) -> bool:
    if job_id is None:
        return False
    try:
        return Job.fetch(job_id, connection=get_redis()).get_status() in ENDED
    except NoSuchJobError:
        return True
    except RedisError:  # cannot tell: the heartbeat's age decides
        return False
