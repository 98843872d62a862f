"""The one scheduler process: heals the cron jobs from the database, then runs rq-scheduler.

    python scheduler.py [--interval SECONDS]

Run exactly one per deployment. On start, every IMAP_HOUSEKEEPING_SECONDS after that, and at
once when Redis holds no cron job at all, it reconciles (adds missing jobs, fixes changed cron
strings, removes orphans) and ends the runs whose worker is gone (portal/imap/reaper.py).
This runs in the scheduler's own loop, not as a scheduled job: a job would live in Redis and
vanish with the data it is meant to restore.
"""
import argparse
import logging
import sys
import time

from redis.exceptions import RedisError, ResponseError
from rq_scheduler import Scheduler
from rq_scheduler.utils import get_next_scheduled_time, to_unix
from sqlalchemy import func, select

from portal import create_app
from portal.extensions import IMAP_QUEUE, db, get_redis
from portal.health import beat_scheduler
from portal.imap import reaper, scheduling
from portal.imap.accounts import clear_schedule_errors, live_query
from portal.imap.models import ImapAccount
from portal.log_format import configure_logging

log = logging.getLogger("scheduler")


class Housekeeping:
    """Reconcile and reap, every `every` seconds or when the cron jobs are gone from Redis."""

    def __init__(self, app, every: float):
        self.app = app
        self.every = every
        self.last = float("-inf")
        self.wants_jobs = True

    def tick(self) -> None:
        with self.app.app_context():
            try:
                due = time.monotonic() - self.last >= self.every
                if due or (self.wants_jobs and scheduling.schedule_missing()):
                    self.run()
            except Exception:  # a Redis or database outage must not stop the scheduler
                log.exception("housekeeping failed; trying again on the next tick")
                db.session.rollback()
            finally:
                db.session.remove()

    def run(self) -> None:
        self.last = time.monotonic()
        for change in scheduling.reconcile_all():
            log.info("schedule reconcile: %s", change)
        self.wants_jobs = bool(db.session.scalar(select(func.count()).where(ImapAccount.active.is_(True))))
        for run_id in reaper.reap_stopped_runs():
            log.info("reaped sync run %s (worker stopped)", run_id)


class HousekeepingScheduler(Scheduler):
    """rq-scheduler that does the housekeeping while it holds the scheduler lock, and folds a
    cron tick into the mailbox's previous one when that is still waiting in the queue."""

    housekeeping: Housekeeping | None = None

    def enqueue_job(self, job):
        cron_string = job.meta.get("cron_string")
        if cron_string and self._still_queued(job):
            # The waiting job will sync the mailbox; queueing it again would only let a backlog
            # grow (and run the same job twice). Only its next time is set.
            next_time = get_next_scheduled_time(cron_string, use_local_timezone=job.meta.get("use_local_timezone"))
            self.connection.zadd(self.scheduled_jobs_key, {job.id: to_unix(next_time)})
            log.info("%s: previous tick still queued; this one folds into it", job.description)
            return
        super().enqueue_job(job)

    def _still_queued(self, job) -> bool:
        try:
            return self.connection.lpos(self.get_queue_for_job(job).key, job.id) is not None
        except ResponseError:  # a Redis before 6.0.6 has no LPOS: queue the tick as rq-scheduler would
            return False

    def enqueue_jobs(self):
        if self.housekeeping is not None:
            self.housekeeping.tick()
        jobs = super().enqueue_jobs()
        try:  # the heartbeat /api/health reads: this scheduler holds the lock and loops
            beat_scheduler(self.connection, self._interval)
        except RedisError:
            log.warning("scheduler heartbeat not written (Redis unavailable)")
        return jobs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between checks for due jobs (a due sync waits at most this long)")
    parser.add_argument("--burst", action="store_true", help="reconcile, enqueue due jobs once, and exit")
    args = parser.parse_args(argv)
    configure_logging()  # LOG_FORMAT=json: one JSON object per line (rq-scheduler's lines too)
    app = create_app()
    with app.app_context():
        accounts = list(db.session.scalars(live_query()))
        for change in scheduling.reconcile(accounts):
            logging.info("schedule reconcile: %s", change)
        clear_schedule_errors(accounts)
        db.session.commit()
        connection = get_redis()
    scheduler = HousekeepingScheduler(queue_name=IMAP_QUEUE, connection=connection, interval=args.interval)
    scheduler.housekeeping = Housekeeping(app, app.config["IMAP_HOUSEKEEPING_SECONDS"])
    scheduler.run(burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
