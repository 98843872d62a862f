"""The no-new-mail sync: how long one sync of a big, fully imported mailbox takes when
nothing arrived. Most scheduled syncs are like that, so this is the cost paid every few
minutes per mailbox.

A Dovecot mailbox gets ``count`` small mails; a first sync_account() imports them all
(and sets \\Seen). Then sync_account() runs inline in an app context (connect, login,
SELECT, SEARCH, one query for the recorded UIDs, logout) ``runs`` times per mode, and the
median counts:

* unread only, mark_as_read on: every message is \\Seen, so `UID SEARCH UNSEEN` is empty;
* all mail (process_unread_only off): `UID SEARCH UID <last seen + 1>:*`;
* (info) unread only with mark_as_read off and all messages unseen again: the search
  returns every UID and the recorded ones are subtracted in the database;
* (info) the IMAP floor: plain imaplib connect, LOGIN, SELECT, UID SEARCH UNSEEN, LOGOUT
  against the same mailbox, which is what the server costs whatever the project does.

Run by bench/ingest.py; by itself: .venv/bin/python bench/empty_sync.py [--count 10000]
"""
from __future__ import annotations

import argparse
import imaplib
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field

import corpus


@dataclass
class Mode:
    label: str
    options: dict
    has_target: bool = True
    unseen: bool = False  # clear \Seen on every message first
    timings_ms: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.timings_ms)


def modes() -> list[Mode]:
    return [
        Mode("unread only, all \\Seen", {"process_unread_only": True, "mark_as_read": True}),
        Mode("all mail, UIDs above last seen", {"process_unread_only": False, "mark_as_read": True}),
        Mode("unread only, none \\Seen, mark_as_read off", {"process_unread_only": True, "mark_as_read": False},
             has_target=False, unseen=True),
    ]


@dataclass
class EmptySyncResult:
    count: int
    first_sync_seconds: float
    modes: list[Mode]
    problems: list[str]


def measure(app, make_mailbox, count: int, runs: int) -> EmptySyncResult:
    """``make_mailbox(name, raws, **options)`` -> (mailbox id, Dovecot user, UIDs)
    (BenchEnvironment.mailbox in bench/ingest.py)."""
    from portal.extensions import db
    from portal.imap.importer import sync_account
    from portal.imap.models import ImapAccount

    account_id, user, uids = make_mailbox("empty-sync", corpus.small_corpus(count),
                                          process_unread_only=True, mark_as_read=True)
    problems: list[str] = []
    with app.app_context():
        account = db.session.get(ImapAccount, account_id)
        started = time.perf_counter()
        first = sync_account(account)  # imports everything and sets \Seen
        first_seconds = time.perf_counter() - started
        print(f"  first sync imported {first.counts.get('imported', 0):,} in {first_seconds:.1f} s "
              f"({count / first_seconds:,.0f} msgs/s inline, small mails)")
        if first.counts.get("imported", 0) != count:
            problems.append(f"empty-sync mailbox: first sync recorded {dict(first.counts)}, expected {count} imported")
        floor = Mode("imaplib floor: login, SELECT, SEARCH, logout", {}, has_target=False)
        floor.timings_ms = [imap_floor_ms(user) for _ in range(runs)]
        results = [_time_mode(account, mode, runs, user, uids, problems) for mode in modes()] + [floor]
        db.session.remove()
    print(f"  {floor.label}: median {floor.median_ms:.1f} ms")
    return EmptySyncResult(count, first_seconds, results, problems)


def _time_mode(account, mode: Mode, runs: int, user, uids: list[int], problems: list[str]) -> Mode:
    from portal.extensions import db
    from portal.imap.importer import sync_account

    if mode.unseen:
        user.store_flags(uids, ["\\Seen"], add=False)
    for name, value in mode.options.items():
        setattr(account, name, value)
    db.session.commit()
    for _ in range(runs):
        started = time.perf_counter()
        result = sync_account(account)
        mode.timings_ms.append((time.perf_counter() - started) * 1000)
        if result.counts:
            problems.append(f"no-new-mail sync ({mode.label}) found something: {dict(result.counts)}")
    print(f"  {mode.label}: median {mode.median_ms:.1f} ms (runs: {', '.join(f'{t:.1f}' for t in mode.timings_ms)} ms)")
    return mode


def imap_floor_ms(user) -> float:
    """One connect, LOGIN, SELECT, UID SEARCH UNSEEN, LOGOUT with plain imaplib, in ms."""
    started = time.perf_counter()
    client = imaplib.IMAP4(user.host, user.port, timeout=30)
    client.login(user.username, user.password)
    client.select("INBOX")
    client.uid("SEARCH", "UNSEEN")
    client.logout()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module="rq_scheduler")
    import ingest  # the shared set-up (Dovecot, Redis, database, app)

    with ingest.BenchEnvironment(args.redis_url or ingest.DEFAULT_REDIS_URL, args.database_url) as env:
        result = measure(env.app, env.mailbox, args.count, args.runs)
    for problem in result.problems:
        print("CHECK FAILED:", problem)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
