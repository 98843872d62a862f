"""The no-new-mail sync: how long one sync of a big, fully imported mailbox takes when
nothing arrived. Most scheduled syncs are like that, so this is the cost paid every few
minutes per mailbox.

End to end (the headline number): a `python worker.py` runs as a subprocess; the benchmark
sends `POST /api/imap/accounts/<id>/sync` (with an API token, through the app's own request
handling) and polls the run until it is finished, ``runs`` times after two warm-up syncs. The
breakdown per sync, from the timestamps the parts write themselves:

* enqueue: the POST (the queued run's INSERT + COMMIT, the RQ enqueue, the job id's COMMIT);
* dequeue: RQ's enqueued_at -> started_at (the worker wakes on the queue and takes the job);
* job start: RQ's started_at -> SyncRun.started_at (the app context, the run's COMMIT);
* IMAP: what the sync waited on the server (connect, login, SELECT, SEARCH, LOGOUT), from
  the worker's `sync ... ended` log line;
* DB and the rest: the sync's remaining time up to SyncRun.finished_at (the candidates query,
  the run's and the mailbox's final COMMIT);
* seen: SyncRun.finished_at -> the benchmark's poll seeing it (polled every millisecond).

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
import json
import os
import statistics
import subprocess
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
    account_id: int = 0


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
        # back to the common case for the end-to-end part: unread only, everything \Seen
        user.store_flags(uids, ["\\Seen"], add=True)
        account.process_unread_only = account.mark_as_read = True
        db.session.commit()
        db.session.remove()
    print(f"  {floor.label}: median {floor.median_ms:.1f} ms")
    return EmptySyncResult(count, first_seconds, results, problems, account_id)


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


@dataclass
class EndToEnd:
    totals_ms: list[float] = field(default_factory=list)
    parts_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.totals_ms)

    def add(self, total: float, parts: dict[str, float]) -> None:
        self.totals_ms.append(total)
        for name, value in parts.items():
            self.parts_ms.setdefault(name, []).append(value)


PARTS = ("enqueue", "dequeue", "job start", "IMAP", "DB and the rest", "seen")


def measure_end_to_end(env, account_id: int, runs: int, problems: list[str]) -> EndToEnd:
    """POST .../sync -> run finished, with a real `worker.py` subprocess (see the docstring)."""
    import ingest  # imports this module: not at the top
    from rq import Worker
    from rq.job import Job
    from sqlalchemy import bindparam, select

    from portal.auth import issue_api_token
    from portal.extensions import db, get_redis
    from portal.imap.models import SyncRun
    from portal.models import User

    with env.app.app_context():
        user = User(email="bench-admin@example.com", name="Bench", is_super_admin=True)
        user.set_password(os.urandom(16).hex())
        db.session.add(user)
        db.session.commit()
        token = issue_api_token(user, "bench")
        db.session.remove()
    log_path = env.tmp / "latency-worker.log"
    worker_env = {**os.environ, "LOG_FORMAT": "json"}
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, str(ingest.ROOT / "worker.py")], cwd=ingest.ROOT, env=worker_env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    result = EndToEnd()
    try:
        with env.app.app_context():
            redis = get_redis()
            deadline = time.monotonic() + 60
            while not Worker.all(connection=redis):
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"worker.py did not start; see {log_path}")
                time.sleep(0.05)
            client = env.app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            status_of = select(SyncRun.status).where(SyncRun.id == bindparam("run_id"))
            samples = []
            for number in range(runs + 2):
                wall, started = time.time(), time.perf_counter()
                response = client.post(f"/api/imap/accounts/{account_id}/sync", headers=headers)
                posted = time.perf_counter()
                if response.status_code != 202:
                    raise SystemExit(f"POST sync answered {response.status_code}: {response.get_data(as_text=True)}")
                run_id = response.get_json()["sync_run_id"]
                with db.engine.connect() as connection:
                    while connection.scalar(status_of, {"run_id": run_id}) in ("queued", "running"):
                        connection.rollback()
                        time.sleep(0.001)
                seen = time.perf_counter()
                if number >= 2:  # the first two warm the worker up
                    samples.append((run_id, wall, (posted - started) * 1000, (seen - started) * 1000))
            for run_id, wall, enqueue_ms, total_ms in samples:
                run = db.session.get(SyncRun, run_id)
                if run.status != "succeeded" or run.counts:
                    problems.append(f"end-to-end sync run {run_id}: {run.status} {run.counts} {run.error}")
                job = Job.fetch(run.job_id, connection=redis)
                imap_ms = _imap_ms(log_path, run_id)
                sync_ms = _ms(run.finished_at - run.started_at)
                result.add(total_ms, {
                    "enqueue": enqueue_ms,
                    "dequeue": _ms(job.started_at.replace(tzinfo=None) - job.enqueued_at.replace(tzinfo=None)),
                    "job start": _ms(run.started_at - job.started_at.replace(tzinfo=None)),
                    "IMAP": imap_ms,
                    "DB and the rest": sync_ms - imap_ms,
                    "seen": total_ms - enqueue_ms - _ms(run.finished_at - job.enqueued_at.replace(tzinfo=None)),
                })
            db.session.remove()
    finally:
        ingest.stop_process(worker)
    print(f"  end to end, POST -> finished (median of {runs}): {result.median_ms:.1f} ms "
          f"(runs: {', '.join(f'{t:.0f}' for t in result.totals_ms)} ms)")
    for name in PARTS:
        values = result.parts_ms.get(name, [])
        if values:
            print(f"    {name:>16}: median {statistics.median(values):6.1f} ms")
    return result


def _ms(delta) -> float:
    return delta.total_seconds() * 1000


def _imap_ms(log_path, run_id: int) -> float:
    """The IMAP wait of one sync, from the worker's JSON `sync ... ended` line."""
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("run_id") == run_id and "imap_ms" in record:
            return float(record["imap_ms"])
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--end-to-end-runs", type=int, default=20,
                        help="POST .../sync -> finished with a worker.py subprocess (0 skips it)")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module="rq_scheduler")
    import ingest  # the shared set-up (Dovecot, Redis, database, app)

    with ingest.BenchEnvironment(args.redis_url or ingest.DEFAULT_REDIS_URL, args.database_url) as env:
        result = measure(env.app, env.mailbox, args.count, args.runs)
        if args.end_to_end_runs:
            measure_end_to_end(env, result.account_id, args.end_to_end_runs, result.problems)
    for problem in result.problems:
        print("CHECK FAILED:", problem)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
