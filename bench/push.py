"""Push benchmark: how soon new mail in one of many IDLE-watched mailboxes is a ticket in the API,
and what one listener holding them all costs. A report, not a test: exit 0 when everything was
measured and every mail became exactly one ticket (even with targets MISSED), 1 otherwise.

    .venv/bin/python bench/push.py [--mailboxes 200] [--messages 60] [--burst 50]

One run:
1. A private Dovecot (tests/support/dovecot.py) with one user per mailbox, a fresh database
   (SQLite unless --database-url), a flushed Redis DB (--redis-url), --mailboxes mailboxes made
   by create_account() with push_enabled and a cron that never fires.
2. `python listener.py` and --workers `python worker.py` as subprocesses. It waits until every
   mailbox's push_state is `listening` and the catch-up sync of each connection has finished.
3. TRICKLE: --messages mails, one every --interval seconds, each APPENDed to a random mailbox.
   Latency = the APPEND's tagged OK -> the ticket first listed by `GET /api/tickets` (Flask test
   client, an API token; one request per poll, every --poll seconds).
4. BURST: --burst mails APPENDed one after another into one mailbox: their latency, and how many
   syncs the burst caused (debounce: one, two when the first started before the burst ended).
5. Every appended mail is exactly one ticket; listener RSS (VmRSS, VmHWM) and threads, sampled
   from /proc during the whole run.
6. RESTART: the listener is stopped and another started: how soon all listen again, and how many
   syncs the new connections queued (none: nothing came meanwhile).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import DEFAULT_REDIS_URL, BenchEnvironment, Periodic, stop_process  # noqa: E402
from tests.support.dovecot import DovecotServer  # noqa: E402
from tests.support.dovecot import ImapAccount as MailUser  # noqa: E402

TARGET_P95_SECONDS = 3.0
TARGET_RSS_MB = 200
MB = 1024 * 1024
SUBJECT = "Push bench"

# The bench's own Dovecot, sized for hundreds of IDLE sessions: more login and imap processes
# than the defaults (100), and a 1 s mailbox check. Dovecot wakes an IDLE through inotify, but
# the kernel allows 128 inotify instances per user by default (fs.inotify.max_user_instances)
# and every IDLE session is one: above that Dovecot falls back to looking every
# mailbox_idle_check_interval (30 s by default), for every session past the limit.
DOVECOT_EXTRA = """
default_process_limit = 1000
default_client_limit = 5000
mailbox_idle_check_interval = {check} secs
"""


class PushBenchEnvironment(BenchEnvironment):
    def __init__(self, redis_url: str, database_url: str | None, idle_check_seconds: int) -> None:
        super().__init__(redis_url, database_url)
        self.idle_check_seconds = idle_check_seconds

    def _start_dovecot(self) -> DovecotServer:
        server = DovecotServer(tls=False, extra_config=DOVECOT_EXTRA.format(check=self.idle_check_seconds))
        self.stack.callback(server.cleanup)
        return server.start()


# ---------------------------------------------------------------------- measuring
class ListenerSampler(Periodic):
    """VmRSS, VmHWM and Threads of one process from /proc, every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(interval, "listener-sampler")
        self.pid = pid
        self.samples: list[dict] = []

    def sample(self) -> None:
        found = proc_status(self.pid)
        if found:
            self.samples.append(found)

    def peak(self, key: str) -> int:
        return max((s[key] for s in self.samples), default=0)

    def last(self, key: str) -> int:
        return self.samples[-1][key] if self.samples else 0


def proc_status(pid: int) -> dict | None:
    wanted = {"VmRSS": "rss", "VmHWM": "hwm", "Threads": "threads"}
    found = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in wanted:
                    number = int(value.split()[0])
                    found[wanted[key]] = number * 1024 if key != "Threads" else number
    except (OSError, ValueError):
        return None
    return found if len(found) == 3 else None


class TicketWatcher:
    """Polls `GET /api/tickets` (newest first) and notes when each subject is first listed."""

    def __init__(self, app, token: str, poll: float) -> None:
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}
        self.poll = poll
        self.seen: dict[str, float] = {}
        self.requests = 0
        self.errors = 0

    def look(self) -> None:
        response = self.client.get("/api/tickets?per_page=100", headers=self.headers)
        now = time.monotonic()
        self.requests += 1
        if response.status_code != 200:
            self.errors += 1
            return
        for ticket in response.get_json()["items"]:
            self.seen.setdefault(ticket["subject"], now)

    def wait_for(self, subjects, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.look()
            if all(s in self.seen for s in subjects):
                return True
            time.sleep(self.poll)
        return False


@dataclass
class Appended:
    subject: str
    mailbox_id: int
    at: float  # monotonic, when the server answered the APPEND with OK
    wall: float = 0.0  # the same moment, time.time()


def make_mail(subject: str, sender: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {sender} <customer{sender}@example.com>"
    message["To"] = "support@example.com"
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain="bench.example.com")
    message.set_content(f"{subject}\n\nThe printer on the third floor is offline again.\n")
    return message.as_bytes()


def append(user: MailUser, raw: bytes, client=None) -> float:
    """APPEND ``raw``; returns the monotonic time of the server's OK."""
    own = client is None
    client = client or user.connect()
    try:
        typ, data = client.append("INBOX", "", None, raw)
        at = time.monotonic()
        if typ != "OK":
            raise RuntimeError(f"APPEND failed: {typ} {data!r}")
        return at
    finally:
        if own:
            client.logout()


@dataclass
class Mailboxes:
    ids: list[int] = field(default_factory=list)
    users: dict[int, MailUser] = field(default_factory=dict)


def make_mailboxes(env: PushBenchEnvironment, count: int) -> Mailboxes:
    made = Mailboxes()
    for n in range(count):
        account_id, user, _ = env.mailbox(f"push{n}", [], push_enabled=True, schedule_cron="0 0 1 1 *")
        made.ids.append(account_id)
        made.users[account_id] = user
    return made


def api_token(env: PushBenchEnvironment) -> str:
    from portal.auth import issue_api_token
    from portal.models import User

    with database(env) as session:
        user = User(email="bench@example.com", name="bench", is_super_admin=True, is_active=True)
        user.set_password(secrets.token_urlsafe(16))
        session.add(user)
        session.commit()
        return issue_api_token(user, "push bench")


@contextlib.contextmanager
def database(env: PushBenchEnvironment):
    """The app's database session, in an app context; handed back at the end."""
    from portal.extensions import db

    with env.app.app_context():
        try:
            yield db.session
        finally:
            db.session.remove()


OPEN = ("queued", "running", "deferred")


def open_runs(env: PushBenchEnvironment) -> int:
    from portal.imap.models import SyncRun

    with database(env) as session:
        return session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.status.in_(OPEN)))


def synced_mailboxes(env: PushBenchEnvironment) -> int:
    """Mailboxes with a finished run (each connection's catch-up sync)."""
    from portal.imap.models import SyncRun

    with database(env) as session:
        return session.scalar(select(func.count(func.distinct(SyncRun.account_id))).where(
            SyncRun.status.not_in(OPEN)))


def runs_of(env: PushBenchEnvironment, account_id: int) -> int:
    from portal.imap.models import SyncRun

    with database(env) as session:
        return session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.account_id == account_id))


def all_runs(env: PushBenchEnvironment) -> dict[str, int]:
    from portal.imap.models import SyncRun

    with database(env) as session:
        return dict(session.execute(select(SyncRun.status, func.count()).group_by(SyncRun.status)).all())


def tickets_per_subject(env: PushBenchEnvironment) -> dict[str, int]:
    from portal.models import Ticket

    with database(env) as session:
        return dict(session.execute(select(Ticket.subject, func.count()).where(
            Ticket.subject.like(f"{SUBJECT} %")).group_by(Ticket.subject)).all())


STAGES = ("APPEND -> run queued (IDLE, debounce, enqueue)", "queued -> run started (queue, worker)",
          "started -> mail committed (the sync)", "committed -> run finished", "finished -> listed by the API")


def stages(env: PushBenchEnvironment, appended: list[Appended], seen: dict[str, float]) -> dict[str, list[float]]:
    """Per mail, where its time went: the run that wrote it (started <= committed <= finished) and
    the API poll that first listed it. Database times are UTC wall clock, ms."""
    from portal.imap.models import ProcessedMessage, SyncRun

    found: dict[str, list[float]] = {name: [] for name in STAGES}
    by_subject = {a.subject: a for a in appended}
    epoch = datetime(1970, 1, 1)
    with database(env) as session:
        rows = session.execute(select(ProcessedMessage.subject, ProcessedMessage.account_id,
                                      ProcessedMessage.created_at).where(
            ProcessedMessage.subject.in_(list(by_subject)))).all()
        for subject, account_id, committed in rows:
            run = session.scalars(select(SyncRun).where(
                SyncRun.account_id == account_id, SyncRun.started_at <= committed,
                SyncRun.finished_at >= committed).order_by(SyncRun.id).limit(1)).first()
            mail = by_subject[subject]
            if run is None or subject not in seen:
                continue
            wall = [(t - epoch).total_seconds() for t in (run.created_at, run.started_at, committed, run.finished_at)]
            seen_wall = mail.wall + (seen[subject] - mail.at)
            points = [mail.wall, *wall, seen_wall]
            for name, start, end in zip(STAGES, points, points[1:]):
                found[name].append(end - start)
    return found


def states(env: PushBenchEnvironment, ids: list[int]) -> dict[str, int]:
    from redis import Redis

    from portal.imap.push import push_states

    counts: dict[str, int] = {}
    for state in push_states(ids, redis=Redis.from_url(env.redis_url)).values():
        counts[state["state"]] = counts.get(state["state"], 0) + 1
    return counts


def wait_until(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


# ---------------------------------------------------------------------- processes
def start(env: PushBenchEnvironment, args: list[str], log_name: str, extra_env: dict) -> subprocess.Popen:
    log = open(env.tmp / log_name, "wb")
    env.stack.callback(log.close)
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **extra_env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env.stack.callback(stop_process, proc)
    return proc


def log_tail(env: PushBenchEnvironment, name: str, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join((env.tmp / name).read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def count_in_log(env: PushBenchEnvironment, name: str, text: str) -> int:
    with contextlib.suppress(OSError):
        return (env.tmp / name).read_text(errors="replace").count(text)
    return 0


# ---------------------------------------------------------------------- report
def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latencies(appended: list[Appended], seen: dict[str, float]) -> list[float]:
    return [seen[a.subject] - a.at for a in appended if a.subject in seen]


def describe(values: list[float]) -> str:
    if not values:
        return "none measured"
    return (f"p50 {statistics.median(values):.2f} s, p95 {percentile(values, 95):.2f} s, "
            f"max {max(values):.2f} s (n={len(values)})")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# ---------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mailboxes", type=int, default=200, help="push mailboxes, one listener (default 200)")
    parser.add_argument("--messages", type=int, default=60, help="trickled mails (default 60)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between trickled mails (default 0.5)")
    parser.add_argument("--burst", type=int, default=50, help="mails in the burst into one mailbox (default 50; 0 skips)")
    parser.add_argument("--workers", type=int, default=2, help="worker.py processes (default 2)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between API polls (default 0.1)")
    parser.add_argument("--idle-check", type=int, default=1,
                        help="the bench Dovecot's mailbox_idle_check_interval in seconds (default 1; see bench/README.md)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the mailbox choice (default 1)")
    parser.add_argument("--database-url", help="a throw-away, empty database (default: a temp SQLite file)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help=f"a Redis DB this run may flush (default $BENCH_REDIS_URL or {DEFAULT_REDIS_URL})")
    return parser.parse_args(argv)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    rng = random.Random(args.seed)
    try:
        with PushBenchEnvironment(args.redis_url, args.database_url, args.idle_check) as env:
            return run(args, env, rng)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped")
        return 130


def run(args, env: PushBenchEnvironment, rng: random.Random) -> int:
    started = time.monotonic()
    print(f"database: {'SQLite' if env.is_sqlite else env.database_url.split('@')[-1]}, "
          f"Dovecot on {env.dovecot.host}:{env.dovecot.port}")
    mailboxes = make_mailboxes(env, args.mailboxes)
    token = api_token(env)
    print(f"{len(mailboxes.ids)} push mailboxes made in {time.monotonic() - started:.1f} s")

    listener = start(env, ["listener.py", "--name", "bench-listener"], "listener.log", {})
    workers = [start(env, ["worker.py"], f"worker{n}.log", {}) for n in range(args.workers)]
    checks: list[str] = []
    with ListenerSampler(listener.pid) as sampler:
        t0 = time.monotonic()
        listening = wait_until(lambda: states(env, mailboxes.ids).get("listening", 0) == len(mailboxes.ids),
                               timeout=60 + args.mailboxes * 0.5)
        all_listening = time.monotonic() - t0
        print(f"listening: {states(env, mailboxes.ids)} after {all_listening:.1f} s")
        if not listening:
            print(log_tail(env, "listener.log"))
            checks.append("not every mailbox reached `listening`")
        caught_up = wait_until(lambda: synced_mailboxes(env) == len(mailboxes.ids) and open_runs(env) == 0,
                               timeout=60 + args.mailboxes * 2.0)
        catch_up = time.monotonic() - t0
        print(f"catch-up syncs done after {catch_up:.1f} s: {all_runs(env)}")
        if not caught_up:
            checks.append("the catch-up syncs did not finish")
        rss_before = sampler.last("rss")

        watcher = TicketWatcher(env.app, token, args.poll)
        trickle = trickle_mail(args, env, mailboxes, rng, watcher)
        burst, burst_syncs = burst_mail(args, env, mailboxes, rng, watcher)
        time.sleep(1.0)
    dead = [p.args[1] for p in [listener, *workers] if p.poll() is not None]
    restart = restart_listener(env, mailboxes, listener)
    if dead:
        checks.append(f"exited early: {', '.join(dead)}")

    per_subject = tickets_per_subject(env)
    expected = {a.subject for a in trickle + burst}
    missing = sorted(expected - set(per_subject))
    doubled = sorted(s for s, n in per_subject.items() if n != 1)
    extra = sorted(set(per_subject) - expected)
    if missing or doubled or extra:
        checks.append(f"tickets: {len(missing)} mails without one, {len(doubled)} with more than one, "
                      f"{len(extra)} unexpected")
    trickle_lat = latencies(trickle, watcher.seen)
    burst_lat = latencies(burst, watcher.seen)
    p95 = percentile(trickle_lat, 95) if trickle_lat else float("inf")
    hwm = sampler.peak("hwm")
    load = os.getloadavg()
    warnings = count_in_log(env, "listener.log", "WARNING")

    print()
    print(f"## Push bench: {args.mailboxes} mailboxes, one listener, {args.workers} workers, "
          f"{'SQLite' if env.is_sqlite else 'PostgreSQL'}")
    print(f"all listening after           {all_listening:.1f} s; catch-up syncs done after {catch_up:.1f} s")
    print(f"trickle ({args.messages} mails, one per {args.interval} s): {describe(trickle_lat)}")
    print(f"burst ({args.burst} mails, one mailbox):  {describe(burst_lat)}; syncs for the burst: {burst_syncs}")
    for name, values in stages(env, trickle, watcher.seen).items():
        if values:
            print(f"  trickle: {name:<50} median {statistics.median(values):.3f} s, "
                  f"max {max(values):.3f} s")
    print(f"listener restart              all listening again after {restart[0]:.1f} s; "
          f"syncs the new connections queued: {restart[1]}")
    print(f"listener RSS                  peak (VmHWM) {hwm / MB:.1f} MB, before the mail {rss_before / MB:.1f} MB, "
          f"at the end {sampler.last('rss') / MB:.1f} MB; threads {sampler.peak('threads')}")
    print(f"listener warnings in its log  {warnings}")
    print(f"API polls                     {watcher.requests} ({watcher.errors} not 200)")
    print(f"runs                          {all_runs(env)}")
    print(f"exactly one ticket per mail   {'yes' if not (missing or doubled or extra) else 'NO'} "
          f"({len(expected)} mails, {sum(per_subject.values())} tickets)")
    print(f"load average                  {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    print("| measure | value | target | |")
    print("| --- | --- | --- | --- |")
    print(f"| new mail -> ticket in the API, p95 | {p95:.2f} s | <= {TARGET_P95_SECONDS:g} s | "
          f"{verdict(p95 <= TARGET_P95_SECONDS)} |")
    print(f"| listener peak RSS ({args.mailboxes} mailboxes) | {hwm / MB:.1f} MB | <= {TARGET_RSS_MB} MB | "
          f"{verdict(hwm <= TARGET_RSS_MB * MB)} |")
    for problem in checks:
        print(f"CHECK FAILED: {problem}")
    if checks:
        print(log_tail(env, "listener.log"))
    return 1 if checks else 0


def restart_listener(env, mailboxes: Mailboxes, listener: subprocess.Popen) -> tuple[float, int]:
    """SIGTERM the listener, start another: (seconds until all listen again, syncs it queued).
    Nothing came meanwhile, so no connection needs a catch-up sync."""
    stop_process(listener)
    before = sum(all_runs(env).values())
    started = time.monotonic()
    start(env, ["listener.py", "--name", "bench-listener-2"], "listener2.log", {})
    wait_until(lambda: states(env, mailboxes.ids).get("listening", 0) == len(mailboxes.ids), timeout=120)
    listening = time.monotonic() - started
    time.sleep(3.0)  # past IMAP_PUSH_QUIET_SECONDS: a catch-up sync would be queued by now
    return listening, sum(all_runs(env).values()) - before


def trickle_mail(args, env, mailboxes: Mailboxes, rng: random.Random, watcher: TicketWatcher) -> list[Appended]:
    """One mail every --interval s into a random mailbox (from a thread); polls the API meanwhile."""
    appended: list[Appended] = []
    run_token = secrets.token_hex(3)

    def send() -> None:
        for n in range(args.messages):
            account_id = rng.choice(mailboxes.ids)
            subject = f"{SUBJECT} {run_token} trickle {n}"
            at = append(mailboxes.users[account_id], make_mail(subject, n % 50))
            appended.append(Appended(subject, account_id, at, time.time() - (time.monotonic() - at)))
            time.sleep(max(0.0, args.interval - (time.monotonic() - at)))

    sender = threading.Thread(target=send, name="trickle", daemon=True)
    sender.start()
    while sender.is_alive():
        watcher.look()
        time.sleep(args.poll)
    watcher.wait_for([a.subject for a in appended], timeout=60)
    return appended


def burst_mail(args, env, mailboxes: Mailboxes, rng: random.Random, watcher: TicketWatcher) -> tuple[list[Appended], int]:
    """--burst mails one after another into one mailbox; (what was appended, syncs it caused)."""
    if not args.burst:
        return [], 0
    account_id = rng.choice(mailboxes.ids)
    user = mailboxes.users[account_id]
    before = runs_of(env, account_id)
    run_token = secrets.token_hex(3)
    appended: list[Appended] = []
    client = user.connect()
    try:
        for n in range(args.burst):
            subject = f"{SUBJECT} {run_token} burst {n}"
            appended.append(Appended(subject, account_id, append(user, make_mail(subject, n % 50), client)))
    finally:
        client.logout()
    watcher.wait_for([a.subject for a in appended], timeout=60)
    time.sleep(7.0)  # past IMAP_PUSH_MAX_WAIT_SECONDS: anything else the burst would queue
    wait_until(lambda: open_runs(env) == 0, timeout=30)
    return appended, runs_of(env, account_id) - before


if __name__ == "__main__":
    sys.exit(main())
