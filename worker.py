"""RQ worker for the `imap` queue; every job runs inside an app context.

Run any number of these, on any machines that reach the same Redis and database:
    python worker.py [--burst]

Jobs run in the worker process itself (rq's SimpleWorker), one after the other: no fork, no
import and no new database connection per job, which is what makes a sync that finds nothing
cost milliseconds, and a thousand mailboxes a minute fit on two workers. A sync cannot hang
the worker (socket timeouts, the lease's deadline cuts the connection, rq's job timeout); a
worker that dies (SIGKILL, out of memory) loses no mail: its lease expires, the reaper ends
its run, and the supervisor (honcho, systemd) starts it again.
"""
import gc
import sys

from rq import SimpleWorker

from portal import create_app
from portal.extensions import IMAP_QUEUE, db, get_redis
from portal.imap import tasks  # noqa: F401  (imported once here, not at each job's start)
from portal.imap.scheduling import SYNC_FUNC
from portal.log_format import configure_logging, log_context


def job_log_ids(job) -> dict:
    """The ids every log line of this job carries (the run's id is added once the sync has one)."""
    mailbox_id = job.args[0] if job.func_name == SYNC_FUNC and job.args else None
    return {"job_id": job.id, "mailbox_id": mailbox_id if isinstance(mailbox_id, int) else None}


class AppContextWorker(SimpleWorker):
    """Pushes a fresh Flask app context around each job (and tears it down after); the
    database connection pool lives as long as the worker."""

    flask_app = None

    def perform_job(self, job, *args, **kwargs):
        with self.flask_app.app_context(), log_context(**job_log_ids(job)):
            try:
                return super().perform_job(job, *args, **kwargs)
            finally:
                db.session.remove()


def main(argv: list[str]) -> int:
    configure_logging()  # LOG_FORMAT=json: one JSON object per line
    app = create_app(web=False)
    AppContextWorker.flask_app = app
    with app.app_context():
        connection = get_redis()
    worker = AppContextWorker([IMAP_QUEUE], connection=connection)
    # Everything loaded so far lives as long as the worker: keep it out of the cyclic GC's
    # scans. A sync allocates millions of short-lived, acyclic objects (parsed mail); collect
    # cycles less eagerly.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    worker.work(burst="--burst" in argv, with_scheduler=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
