"""The one scheduler process: heals the cron jobs from the database, then runs rq-scheduler.

    python scheduler.py [--interval SECONDS]

Run exactly one per deployment. On start it reconciles (adds missing jobs, fixes changed
cron strings, removes orphans), so a Redis that lost its data heals itself.
"""
import argparse
import logging
import sys

from rq_scheduler import Scheduler
from rq_scheduler.utils import setup_loghandlers
from sqlalchemy import select

from portal import create_app
from portal.extensions import IMAP_QUEUE, db, get_redis
from portal.imap import scheduling
from portal.imap.models import ImapAccount


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
    parser.add_argument("--burst", action="store_true", help="reconcile, enqueue due jobs once, and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    setup_loghandlers("INFO")
    app = create_app()
    with app.app_context():
        accounts = list(db.session.scalars(select(ImapAccount)))
        for change in scheduling.reconcile(accounts):
            logging.info("schedule reconcile: %s", change)
        for account in accounts:
            account.schedule_error = None
        db.session.commit()
        connection = get_redis()
    scheduler = Scheduler(queue_name=IMAP_QUEUE, connection=connection, interval=args.interval)
    scheduler.run(burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
