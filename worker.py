"""RQ worker for the `imap` queue; every job runs inside an app context.

Run any number of these, on any machines that reach the same Redis and database:
    python worker.py [--burst]
"""
import gc
import logging
import sys

from rq import Worker

from portal import create_app
from portal.extensions import IMAP_QUEUE, db, get_redis


class AppContextWorker(Worker):
    """Pushes a fresh Flask app context around each job (and tears it down after)."""

    flask_app = None

    def perform_job(self, *args, **kwargs):
        with self.flask_app.app_context():
            # A forked work horse must not reuse the parent's pooled DB connections.
            db.engine.dispose(close=False)
            try:
                return super().perform_job(*args, **kwargs)
            finally:
                db.session.remove()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(web=False)
    AppContextWorker.flask_app = app
    with app.app_context():
        connection = get_redis()
    worker = AppContextWorker([IMAP_QUEUE], connection=connection)
    # Everything loaded so far lives as long as the worker: keep it out of the cyclic GC, so
    # forked work horses neither rescan it nor dirty its copy-on-write pages. A sync allocates
    # millions of short-lived, acyclic objects (parsed mail); collect cycles less eagerly.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    worker.work(burst="--burst" in argv, with_scheduler=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
