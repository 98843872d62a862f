"""rq-scheduler cron jobs, one per active mailbox.

The task of mailbox 7 is called `imap_sync:7` (what the API shows and what the job
carries in its description and meta); RQ refuses ':' in job ids, so its scheduler job
id is `imap_sync-7`. `job_id_for` is the one place that maps one to the other.
"""
from datetime import datetime, timedelta, timezone

from crontab import CronTab
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job

from ..extensions import IMAP_QUEUE, get_redis, get_scheduler
from .models import task_id_for

SYNC_FUNC = "portal.imap.tasks.sync_mailbox"
JOB_PREFIX = "imap_sync-"


def job_id_for(account_id: int) -> str:
    return JOB_PREFIX + str(account_id)


def next_runs(cron_string: str, count: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next run times as naive UTC, computed the way rq-scheduler computes them: the
    crontab parser applied to the server's local wall clock (UTC on a UTC server)."""
    cron = CronTab(cron_string)
    moment = now.astimezone().replace(tzinfo=None) if now else datetime.now()
    runs = []
    for _ in range(count):
        delay = cron.next(now=moment, default_utc=False)
        if delay is None:
            break
        moment = moment + timedelta(seconds=delay)
        runs.append(moment.astimezone(timezone.utc).replace(tzinfo=None))
    return runs


def schedule(account) -> None:
    """Create or replace the cron job of an active mailbox (raises RedisError)."""
    scheduler = get_scheduler()
    task = task_id_for(account.id)
    scheduler.cron(
        account.schedule_cron,
        func=SYNC_FUNC,
        args=[account.id],
        kwargs={"trigger": "scheduled"},
        id=job_id_for(account.id),
        queue_name=IMAP_QUEUE,
        description=task,
        meta={"task": task, "account_id": account.id},
        result_ttl=3600,
        timeout=3600,
    )


def unschedule(account_id: int) -> None:
    """Take the job off the schedule and delete its hash (cancel alone leaves it)."""
    scheduler = get_scheduler()
    job_id = job_id_for(account_id)
    scheduler.cancel(job_id)
    try:
        Job.fetch(job_id, connection=get_redis()).delete()
    except NoSuchJobError:
        pass


def apply(account) -> str | None:
    """Make Redis match this mailbox; returns an error text instead of raising when Redis is down."""
    if not account.active:
        return remove(account.id)
    return _unless_redis_down(schedule, account)


def remove(account_id: int) -> str | None:
    """Remove a mailbox's job; returns an error text instead of raising when Redis is down."""
    return _unless_redis_down(unschedule, account_id)


def _unless_redis_down(action, argument) -> str | None:
    try:
        action(argument)
    except RedisError as exc:
        return f"Schedule pending: Redis is unavailable ({exc.__class__.__name__}); run `flask imap schedules reconcile` or wait for the scheduler to start"
    return None


def next_run_times(account_ids: list[int]) -> dict[int, datetime]:
    """Scheduled next run per mailbox, read in one round trip; empty when Redis is down."""
    if not account_ids:
        return {}
    try:
        pipe = get_redis().pipeline()
        for account_id in account_ids:
            pipe.zscore(get_scheduler().scheduled_jobs_key, job_id_for(account_id))
        scores = pipe.execute()
    except RedisError:
        return {}
    return {
        account_id: datetime.fromtimestamp(score, timezone.utc).replace(tzinfo=None)
        for account_id, score in zip(account_ids, scores)
        if score is not None
    }


def scheduled_jobs() -> dict[int, Job]:
    """The mailbox cron jobs currently in Redis, by mailbox id."""
    scheduler = get_scheduler()
    connection = get_redis()
    job_ids = [job_id for raw_id in connection.zrange(scheduler.scheduled_jobs_key, 0, -1)
               if (job_id := raw_id.decode()).startswith(JOB_PREFIX) and job_id[len(JOB_PREFIX):].isdigit()]
    jobs = {}
    # one pipelined round trip for all of them: a fleet of a thousand mailboxes is reconciled
    # in the scheduler's own loop, between two enqueue checks
    for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=connection)):
        if job is None:
            scheduler.cancel(job_id)
        jobs[int(job_id[len(JOB_PREFIX):])] = job
    return jobs


def reconcile(accounts) -> list[str]:
    """Make Redis match the database; returns one line per change."""
    changes = []
    existing = scheduled_jobs()
    wanted = {a.id: a for a in accounts if a.active and a.deleted_at is None}
    for account_id, account in sorted(wanted.items()):
        job = existing.get(account_id)
        if job is None:
            schedule(account)
            changes.append(f"added {task_id_for(account_id)} ({account.schedule_cron})")
        elif job.meta.get("cron_string") != account.schedule_cron or job.func_name != SYNC_FUNC:
            schedule(account)
            changes.append(
                f"updated {task_id_for(account_id)}: {job.meta.get('cron_string')} -> {account.schedule_cron}"
            )
    for account_id in sorted(set(existing) - set(wanted)):
        unschedule(account_id)
        changes.append(f"removed {task_id_for(account_id)}")
    return changes


def reconcile_all() -> list[str]:
    """Reconcile every live mailbox of the database with Redis (raises RedisError); the jobs of
    deleted mailboxes are orphans and go."""
    from sqlalchemy import select

    from ..extensions import db
    from .models import ImapAccount

    return reconcile(list(db.session.scalars(select(ImapAccount).where(ImapAccount.deleted_at.is_(None)))))


def schedule_missing() -> bool:
    """True when Redis holds no cron job at all (lost its data): one round trip."""
    return not get_redis().exists(get_scheduler().scheduled_jobs_key)
