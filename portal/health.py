"""Is the service healthy? The checks behind /healthz, /api/health and the workspace's status strip.

Everything is read where it lives, so any web process on any machine gives the same answer: the
database (SELECT 1 and a few counts), Redis (PING), the scheduler's heartbeat key (scheduler.py
writes it on every loop), rq's registry of live workers, the `imap` queue, the pending-restart
flag. Overall: `down` when the database or Redis cannot be reached (nothing can sync, and the
load balancer should look elsewhere), `degraded` when something needs an operator (no scheduler
heartbeat, no worker, a queue that does not drain, mailboxes failing or needing a new sign-in,
a restart pending), else `ok`. `problems` says each of those in a sentence."""
import json
import os
import socket
import time
from datetime import datetime, timezone

from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from .extensions import IMAP_QUEUE, db, get_redis
from .models import isoformat

SCHEDULER_HEARTBEAT_KEY = "portal:scheduler:heartbeat"
SCHEDULER_HEARTBEAT_TTL = 24 * 3600  # long enough to say "last seen 3 h ago" rather than "never"
# The heartbeat is stale after this long plus three of the scheduler's own intervals (a loop
# that reconciles a thousand mailboxes may take a while).
SCHEDULER_STALE_SECONDS = 60
# A queued job older than this means the workers do not keep up (or none is taking jobs).
QUEUE_STALE_SECONDS = 300
LISTED = 20  # at most this many mailboxes named per problem (the counts are exact)

OK, DEGRADED, DOWN = "ok", "degraded", "down"


# --- written by the scheduler ---------------------------------------------------------


def beat_scheduler(redis, interval: float) -> None:
    """The scheduler is alive: when, where, and how often it loops."""
    value = {"at": time.time(), "host": socket.gethostname(), "pid": os.getpid(), "interval": interval}
    redis.set(SCHEDULER_HEARTBEAT_KEY, json.dumps(value), ex=SCHEDULER_HEARTBEAT_TTL)


# --- the checks ------------------------------------------------------------------------


def _error(exc: Exception) -> str:
    """What failed, without the connection string (it may hold a password)."""
    return type(exc).__name__


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return {"ok": False, "error": _error(exc), "latency_ms": None}
    return {"ok": True, "error": None, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def check_redis() -> dict:
    started = time.perf_counter()
    try:
        get_redis().ping()
    except (RedisError, OSError) as exc:
        return {"ok": False, "error": _error(exc), "latency_ms": None}
    return {"ok": True, "error": None, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def alive() -> bool:
    """/healthz: can this process reach the database and Redis?"""
    return check_database()["ok"] and check_redis()["ok"]


def _age(moment: datetime | float | None, now: float) -> float | None:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        moment = moment.timestamp()
    return round(max(0.0, now - moment), 1)


def scheduler_state(redis, now: float) -> dict:
    raw = redis.get(SCHEDULER_HEARTBEAT_KEY)
    try:
        beat = json.loads(raw) if raw else None
    except ValueError:
        beat = None
    if not isinstance(beat, dict) or not isinstance(beat.get("at"), (int, float)):
        return {"ok": False, "heartbeat_age_seconds": None, "host": None, "pid": None, "stale_after_seconds": SCHEDULER_STALE_SECONDS}
    interval = beat.get("interval") if isinstance(beat.get("interval"), (int, float)) else 5.0
    stale_after = SCHEDULER_STALE_SECONDS + 3 * interval
    age = _age(beat["at"], now)
    return {
        "ok": age <= stale_after,
        "heartbeat_age_seconds": age,
        "host": str(beat.get("host") or "") or None,
        "pid": beat.get("pid") if isinstance(beat.get("pid"), int) else None,
        "stale_after_seconds": stale_after,
    }


def workers_state(redis, now: float) -> dict:
    """rq's registry of the workers on the `imap` queue: a worker's entry expires when it stops beating."""
    from rq import Queue, Worker

    workers = []
    for worker in Worker.all(queue=Queue(IMAP_QUEUE, connection=redis)):
        workers.append({
            "name": worker.name,
            "hostname": worker.hostname,
            "pid": worker.pid,
            "state": str(worker.get_state()),
            "current_job_id": worker.get_current_job_id(),
            "heartbeat_age_seconds": _age(worker.last_heartbeat, now),
        })
    workers.sort(key=lambda item: item["name"])
    return {"alive": len(workers), "busy": sum(w["state"] == "busy" for w in workers), "workers": workers}


def listeners_state(redis=None, now: float | None = None) -> dict:
    """IMAP IDLE listeners (listener.py): each one's heartbeat key, which expires two lease
    periods after its last beat (portal/imap/push.py)."""
    if redis is None:
        return {"alive": 0, "listeners": []}
    from .imap.push import listeners

    now = time.time() if now is None else now
    found = []
    for beat in listeners(redis):
        found.append({
            "name": str(beat.get("name") or ""),
            "hostname": str(beat.get("host") or "") or None,
            "pid": beat.get("pid") if isinstance(beat.get("pid"), int) else None,
            "mailboxes": int(beat.get("mailboxes") or 0),
            "listening": int(beat.get("listening") or 0),
            "paused": bool(beat.get("paused")),
            "heartbeat_age_seconds": _age(beat["at"], now) if isinstance(beat.get("at"), (int, float)) else None,
        })
    return {"alive": len(found), "listeners": found}


def queue_state(redis, now: float) -> dict:
    from rq import Queue
    from rq.job import Job

    queue = Queue(IMAP_QUEUE, connection=redis)
    depth = queue.count
    oldest = None
    # The head of the list is the oldest job; a job whose hash vanished is skipped.
    for job_id in queue.get_job_ids(0, 5):
        job = Job.fetch(job_id, connection=redis) if redis.exists(Job.key_for(job_id)) else None
        if job is not None and job.enqueued_at is not None:
            oldest = _age(job.enqueued_at, now)
            break
    return {"name": IMAP_QUEUE, "depth": depth, "oldest_job_age_seconds": oldest}


def mailboxes_state() -> dict:
    from .imap.models import ImapAccount

    live = ImapAccount.deleted_at.is_(None)
    total, active = db.session.execute(
        select(func.count(ImapAccount.id), func.count(ImapAccount.id).filter(ImapAccount.active.is_(True))).where(live)
    ).one()

    def listed(condition):
        rows = db.session.execute(
            select(ImapAccount.id, ImapAccount.name).where(live, condition).order_by(ImapAccount.id).limit(LISTED)
        ).all()
        count = db.session.scalar(select(func.count(ImapAccount.id)).where(live, condition))
        return count, [{"id": row.id, "name": row.name} for row in rows]

    failing, failing_list = listed(ImapAccount.active.is_(True) & (ImapAccount.last_sync_status == "failed"))
    reauth, reauth_list = listed(ImapAccount.oauth_status == "needs_reauthorization")
    push = db.session.scalar(select(func.count(ImapAccount.id)).where(
        live, ImapAccount.active.is_(True), ImapAccount.push_enabled.is_(True)))
    return {
        "total": total, "active": active, "push": push,
        "failing": failing, "failing_mailboxes": failing_list,
        "needs_reauthorization": reauth, "needs_reauthorization_mailboxes": reauth_list,
    }


def restart_state(redis) -> dict:
    from .imap.maintenance import RESTART_KEY

    raw = redis.get(RESTART_KEY)
    if raw is None:
        return {"pending": False, "since": None, "reason": None}
    try:
        value = json.loads(raw)
    except ValueError:
        value = {}
    since = value.get("since") if isinstance(value, dict) else None
    since_at = datetime.fromtimestamp(since, timezone.utc) if isinstance(since, (int, float)) else None
    return {"pending": True, "since": isoformat(since_at), "reason": (value.get("reason") or None) if isinstance(value, dict) else None}


# --- the report ------------------------------------------------------------------------


def report() -> dict:
    """The whole picture, for /api/health and the status strip; never raises for an outage."""
    now = time.time()
    database = check_database()
    redis_check = check_redis()
    result = {
        "status": OK,
        "checked_at": isoformat(datetime.now(timezone.utc)),
        "problems": [],
        "database": database,
        "redis": redis_check,
        "scheduler": None,
        "workers": None,
        "listeners": listeners_state(),
        "queue": None,
        "mailboxes": None,
        "restart": None,
    }
    if database["ok"]:
        try:
            result["mailboxes"] = mailboxes_state()
        except SQLAlchemyError as exc:
            db.session.rollback()
            database.update(ok=False, error=_error(exc))
    if redis_check["ok"]:
        redis = get_redis()
        try:
            result["scheduler"] = scheduler_state(redis, now)
            result["workers"] = workers_state(redis, now)
            result["listeners"] = listeners_state(redis, now)
            result["queue"] = queue_state(redis, now)
            result["restart"] = restart_state(redis)
        except (RedisError, OSError) as exc:
            redis_check.update(ok=False, error=_error(exc))
    result["problems"] = problems(result)
    if not (database["ok"] and redis_check["ok"]):
        result["status"] = DOWN
    elif result["problems"]:
        result["status"] = DEGRADED
    return result


def problems(result: dict) -> list[str]:
    """Each thing an operator should look at, as a sentence."""
    found = []
    if not result["database"]["ok"]:
        found.append(f"The database is unreachable ({result['database']['error']}).")
    if not result["redis"]["ok"]:
        found.append(f"Redis is down ({result['redis']['error']}): no sync can be queued or run.")
    scheduler = result["scheduler"]
    if scheduler is not None and not scheduler["ok"]:
        age = scheduler["heartbeat_age_seconds"]
        found.append("No scheduler has ever reported: scheduled syncs do not run (start scheduler.py)."
                     if age is None else f"The scheduler last reported {_duration(age)} ago: scheduled syncs do not run.")
    workers = result["workers"]
    if workers is not None and workers["alive"] == 0:
        found.append("No worker is running: queued syncs wait (start worker.py).")
    queue = result["queue"]
    if queue is not None and (queue["oldest_job_age_seconds"] or 0) > QUEUE_STALE_SECONDS:
        found.append(f"The oldest queued sync has waited {_duration(queue['oldest_job_age_seconds'])} "
                     f"({queue['depth']} queued): the workers do not keep up.")
    mailboxes = result["mailboxes"]
    if mailboxes is not None:
        if mailboxes["failing"]:
            found.append(f"{_count(mailboxes['failing'], 'mailbox')} failed at the last sync.")
        if mailboxes["needs_reauthorization"]:
            count = mailboxes["needs_reauthorization"]
            found.append(f"{_count(count, 'mailbox')} {'needs' if count == 1 else 'need'} a new sign-in.")
    listening = result["listeners"]
    if mailboxes is not None and mailboxes["push"] and result["workers"] is not None and not listening["alive"]:
        count = mailboxes["push"]
        found.append(f"No push listener is running: {_count(count, 'push mailbox')} "
                     f"{'syncs on its' if count == 1 else 'sync on their'} schedule only (start listener.py).")
    restart = result["restart"]
    if restart is not None and restart["pending"]:
        found.append("A restart is pending: syncs are deferred until it completes.")
    return found


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else ("es" if noun.endswith("x") else "s"))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
