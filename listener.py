"""The IMAP IDLE push listener: syncs a push mailbox as soon as its server reports new mail.

    python listener.py [--name NAME]

Run any number, on any machines that reach the same Redis and database: the push mailboxes are
shared out through Redis leases, each watched by exactly one listener (portal/imap/push.py).
SIGTERM or Ctrl-C hangs up and hands the mailboxes back at once; a killed listener's mailboxes
are taken by another within IMAP_PUSH_LEASE_SECONDS and a third of it.
"""
import argparse
import signal
import sys

from portal import create_app
from portal.imap.push import Listener, PushSettings
from portal.log_format import configure_logging


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", help="this listener's name in leases and push states (default host:pid)")
    args = parser.parse_args(argv)
    configure_logging()  # LOG_FORMAT=json: one JSON object per line
    app = create_app(web=False)
    listener = Listener(app, name=args.name, settings=PushSettings.from_env())

    def stop(signum, frame):
        listener.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    listener.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
