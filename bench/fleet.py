"""Fleet benchmark: many mailboxes, each on a one-minute cron, two workers and one scheduler.
Can every mailbox be synced in every minute, how late does the scheduler enqueue, is every
new mail imported exactly once, and what does it cost in Redis and worker CPU? A report,
not a test: it exits 0 on missed targets, 1 only when the import was wrong.

    .venv/bin/python bench/fleet.py [--mailboxes 1000] [--minutes 5] [--mail-per-minute 100]

One run:
1. A private Dovecot (tests/support/dovecot.py, maildirs in /dev/shm) with one user per
   mailbox, a flushed Redis DB, a fresh migrated database (bench/ingest.py's BenchEnvironment),
   and --mailboxes portal mailboxes made by create_account(), active, on `* * * * *`.
2. Two `python worker.py` and one `python scheduler.py` as subprocesses (PORTAL_ENV,
   SECRET_KEY, DATABASE_URL, REDIS_URL, ATTACHMENT_DIR in their environment).
3. From the first minute boundary at least 20 s after they started, --minutes measured
   minutes: at second 30 of each, one new mail is APPENDed to each of --mail-per-minute
   random mailboxes. The queue depth (LLEN rq:queue:imap) is sampled every second; the cron
   jobs' `enqueued_at` (rq:job:imap_sync-<id>) every 10 s; process, Redis CPU and load at
   every minute boundary.
4. Drain: the scheduler and workers keep going until every appended mail is a ticket (or
   --drain-seconds pass), then stop (a queued backlog is left unrun).
5. Report per cron tick (from the SyncRun rows with trigger 'scheduled'): mailboxes synced,
   runs skipped as "Already running", failed, unfinished, mailboxes with no run; scheduler
   lag (due minute -> enqueued_at, and -> SyncRun.started_at) p50/p95/max; tickets per
   mailbox against mails appended and duplicate Message-IDs; CPU, RSS, queue depth.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import (  # noqa: E402
    LAUNCHER, MB, BenchEnvironment, Periodic, _descendants, _interrupt, add_environment_arguments, kill_tree,
    run_cli,
)
from tests.support.dovecot import make_message  # noqa: E402

CRON = "* * * * *"
WORKERS = 2
TARGET_LAG_P95 = 10.0  # seconds
QUEUE_KEY = "rq:queue:imap"
CRON_JOB_KEY = "rq:job:imap_sync-{}"  # portal.imap.scheduling.job_id_for, read as a Redis key
ALREADY_RUNNING = "Already running"
SYNCED = ("succeeded", "completed_with_errors")
USER_PASSWORD = "fleet-bench-password"
# How the private Dovecot serves logins. Its default forks a login process and an imap process
# for every connection (~13 ms of server work per connection here, 2.5 ms preforked), and on two
# cores that server work competes with the workers; Dovecot's documented high-performance mode
# keeps preforked processes that serve many connections, as a server for a thousand busy
# mailboxes is run. The flag picks one, so both can be reported.
DOVECOT_SERVICES = {
    "preforked": """
service imap-login {
  service_count = 0
  process_min_avail = 2
}
service imap {
  service_count = 1000
  process_min_avail = 4
}
service auth {
  client_limit = 2000
}
""",
    "per-connection": "",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
_MESSAGE_ID_RE = re.compile(rb"^Message-ID: <([^>\r\n]+)>", re.M | re.I)  # stored bare, as parsing.normalize_message_id does


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return f"p50 {at(0.5):.2f} s, p95 {at(0.95):.2f} s, max {ordered[-1]:.2f} s (n={len(ordered)})"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] if ordered else 0.0


# ---------------------------------------------------------------------- setup
def create_fleet(env: BenchEnvironment, count: int) -> dict[int, str]:
    """``count`` Dovecot users (one password, no login needed: Dovecot makes each maildir on
    first use) and a mailbox for each on `* * * * *`: {mailbox id: Dovecot user}."""
    from portal.extensions import db
    from portal.imap.accounts import create_account

    for n in range(count):
        env.dovecot.add_user(f"fleet{n:05d}", USER_PASSWORD)
    fleet = {}
    with env.app.app_context():
        for n in range(count):
            user = f"fleet{n:05d}"
            account = create_account({
                "name": f"fleet {n:05d}", "host": env.dovecot.host, "port": env.dovecot.port,
                "security": "none", "allow_plaintext": True, "verify_tls": False, "username": user,
                "password": USER_PASSWORD, "folder": "INBOX", "schedule_cron": CRON, "active": True,
            })
            fleet[account.id] = user
        db.session.remove()
    return fleet


@dataclass
class Process:
    """A worker or the scheduler, started under ingest.py's launcher (which writes the kernel's
    rusage of the process when it exits: peak RSS of it and its children, CPU)."""
    name: str
    launcher: subprocess.Popen
    usage_path: Path
    log_path: Path
    usage: dict = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        """The worker or scheduler itself (the launcher's child)."""
        children = _children(self.launcher.pid)
        return children[0] if children else None

    def stop(self, timeout: float) -> None:
        """SIGTERM (RQ: warm shutdown, the current job ends first), SIGKILL after ``timeout``."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} did not stop within {timeout:.0f} s; killed")
            kill_tree(self.launcher)
        if self.usage_path.exists():
            self.usage = json.loads(self.usage_path.read_text())


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    return []


def start_process(env: BenchEnvironment, name: str, script: str) -> Process:
    log_path, usage_path = env.tmp / f"{name}.log", env.tmp / f"{name}-usage.json"
    command = [sys.executable, "-c", LAUNCHER, str(usage_path), sys.executable, str(ROOT / script)]
    with open(log_path, "wb") as log:
        launcher = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, launcher, usage_path, log_path)


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and its descendants, reaped children included
    (a reaped child's time is in its parent's cutime/cstime)."""
    total = 0
    for pid in [root, *_descendants(root)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def redis_cpu(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


# ------------------------------------------------------------------ sampling
class Sampler(Periodic):
    """LLEN of the queue every second; the cron jobs' enqueued_at every 10 s (a cron job keeps
    its id from tick to tick, so each value seen is one enqueue of that mailbox)."""

    def __init__(self, redis_client, account_ids: list[int]) -> None:
        super().__init__(1.0, "fleet-sampler")
        self.redis, self.account_ids = redis_client, account_ids
        self.depths: list[tuple[float, int]] = []
        self.enqueues: dict[int, set[datetime]] = defaultdict(set)
        self.last_read = 0.0

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.read_enqueues()

    def depth(self) -> int:
        return self.depths[-1][1] if self.depths else 0

    def sample(self) -> None:
        with contextlib.suppress(Exception):  # a missed sample is only a gap in the report
            self.depths.append((time.time(), self.redis.llen(QUEUE_KEY)))
            if time.monotonic() - self.last_read >= 10:
                self.last_read = time.monotonic()
                self.read_enqueues()

    def read_enqueues(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for account_id in self.account_ids:
            pipe.hget(CRON_JOB_KEY.format(account_id), "enqueued_at")
        for account_id, value in zip(self.account_ids, pipe.execute()):
            if value:
                self.enqueues[account_id].add(datetime.fromisoformat(value.decode().rstrip("Z")))


@dataclass
class MinuteSample:
    at: float
    queue_depth: int
    redis_cpu: float
    worker_cpu: float
    scheduler_cpu: float
    load: tuple


# ---------------------------------------------------------------- the load
class MailDropper:
    """APPENDs one new mail to each of ``per_minute`` random mailboxes; remembers what went where."""

    def __init__(self, env: BenchEnvironment, fleet: dict[int, str], per_minute: int, seed: int) -> None:
        self.env, self.fleet, self.per_minute = env, fleet, per_minute
        self.random = random.Random(seed)
        self.sent: dict[int, list[str]] = defaultdict(list)  # mailbox id -> Message-IDs
        self.seconds: list[float] = []
        self.serial = 0

    def drop(self) -> None:
        started = time.perf_counter()
        for account_id in self.random.sample(sorted(self.fleet), min(self.per_minute, len(self.fleet))):
            self.serial += 1
            raw = make_message(self.serial, subject=f"Fleet mail {self.serial}", sender=f"customer{self.serial}@example.com")
            self.env.dovecot.append(self.fleet[account_id], USER_PASSWORD, "INBOX", raw)
            self.sent[account_id].append(_MESSAGE_ID_RE.search(raw).group(1).decode())
        self.seconds.append(time.perf_counter() - started)

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.sent.values())


# -------------------------------------------------------------- the verdicts
@dataclass
class Run:
    id: int
    account_id: int
    status: str
    error: str | None
    retry_of_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def scheduled_runs(env: BenchEnvironment) -> list[Run]:
    from sqlalchemy import select

    from portal.extensions import db
    from portal.imap.models import SyncRun

    with env.app.app_context():
        rows = db.session.execute(select(
            SyncRun.id, SyncRun.account_id, SyncRun.status, SyncRun.error, SyncRun.retry_of_id,
            SyncRun.created_at, SyncRun.started_at, SyncRun.finished_at,
        ).where(SyncRun.trigger == "scheduled").order_by(SyncRun.id)).all()
        db.session.remove()
    return [Run(*row) for row in rows]


def imported(env: BenchEnvironment) -> tuple[dict[int, int], dict[str, int]]:
    """(tickets per mailbox, Message-ID -> messages stored with it)."""
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import Ticket, TicketMessage

    with env.app.app_context():
        tickets = dict(db.session.execute(
            select(Ticket.source_mailbox_id, func.count(Ticket.id)).group_by(Ticket.source_mailbox_id)).all())
        messages = dict(db.session.execute(
            select(TicketMessage.message_id, func.count(TicketMessage.id)).group_by(TicketMessage.message_id)).all())
        db.session.remove()
    return tickets, messages


@dataclass
class Tick:
    due: datetime
    runs: list[Run] = field(default_factory=list)
    enqueue_lags: list[float] = field(default_factory=list)

    def mailboxes(self, predicate) -> set[int]:
        return {run.account_id for run in self.runs if predicate(run)}


def assign_ticks(runs: list[Run], enqueues: dict[int, set[datetime]]) -> dict[datetime, Tick]:
    """Each run belongs to the tick of the last enqueue of its mailbox's cron job before the
    run was created (RQ retries and runs with no enqueue seen: the minute the run was created in)."""
    ticks: dict[datetime, Tick] = {}

    def tick(due: datetime) -> Tick:
        return ticks.setdefault(due, Tick(due))

    for account_id, moments in enqueues.items():
        for moment in moments:
            due = minute_of(moment)
            tick(due).enqueue_lags.append((moment - due).total_seconds())
    for run in runs:
        before = [m for m in enqueues.get(run.account_id, ()) if m <= run.created_at + timedelta(seconds=1)]
        moment = max(before) if before and run.retry_of_id is None else run.created_at
        tick(minute_of(moment)).runs.append(run)
    return ticks


def print_ticks(ticks: dict[datetime, Tick], measured: list[datetime], count: int,
                minute_samples: dict[datetime, MinuteSample]) -> list[str]:
    """The per-tick table; returns the problems that break 'every mailbox in every minute'."""
    print(f"\nPer cron tick ({count} mailboxes; synced = a run that succeeded; 'in time' = finished "
          "before the next tick was due; lags from the due minute):")
    header = (f"{'tick (UTC)':<11} {'synced':>6} {'in time':>7} {'already':>7} {'skipped':>7} {'failed':>6} "
              f"{'unfin.':>6} {'no run':>6} {'extra':>5} {'queue@end':>9} {'enq p95':>8} {'start p95':>9} "
              f"{'last end':>8}")
    print(header)
    problems = []
    for due in sorted(ticks):
        tick = ticks[due]
        runs = tick.runs
        synced = tick.mailboxes(lambda r: r.status in SYNCED)
        in_time = tick.mailboxes(lambda r: r.status in SYNCED and r.finished_at and
                                 r.finished_at < due + timedelta(minutes=1))
        already = [r for r in runs if r.status == "skipped" and (r.error or "").startswith(ALREADY_RUNNING)]
        skipped = [r for r in runs if r.status == "skipped" and r not in already]
        failed = [r for r in runs if r.status == "failed"]
        unfinished = [r for r in runs if r.finished_at is None]
        no_run = count - len({r.account_id for r in runs})
        extra = len(runs) - len({r.account_id for r in runs})
        starts = [(r.started_at - due).total_seconds() for r in runs if r.started_at]
        ends = [(r.finished_at - due).total_seconds() for r in runs if r.finished_at]
        sample = minute_samples.get(due + timedelta(minutes=1))
        label = due.strftime("%H:%M") + ("" if due in measured else " (-)")
        print(f"{label:<11} {len(synced):>6} {len(in_time):>7} {len(already):>7} {len(skipped):>7} "
              f"{len(failed):>6} {len(unfinished):>6} {no_run:>6} {extra:>5} "
              f"{sample.queue_depth if sample else '-':>9} {p95(tick.enqueue_lags):>7.1f}s "
              f"{p95(starts):>8.1f}s {max(ends, default=0):>7.1f}s")
        if due in measured and len(in_time) < count:
            problems.append(f"tick {due:%H:%M}: {len(in_time)} of {count} mailboxes synced in time "
                            f"({len(synced)} synced at all, {len(already)} already running, {no_run} without a run)")
    print("(-) = not measured: before the first measured minute (start-up catch-up) or the drain after it.")
    errors = defaultdict(int)
    for tick in ticks.values():
        for run in tick.runs:
            if run.status not in SYNCED and run.error:
                errors[f"{run.status}: {run.error[:120]}"] += 1
    for text, n in sorted(errors.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {n:>5} x {text}")
    return problems


def check_mail(env: BenchEnvironment, dropper: MailDropper) -> list[str]:
    tickets, messages = imported(env)
    problems = []
    wrong = {a: (tickets.get(a, 0), len(ids)) for a, ids in dropper.sent.items() if tickets.get(a, 0) != len(ids)}
    extra = {a: n for a, n in tickets.items() if a not in dropper.sent and n}
    sent_ids = [mid for ids in dropper.sent.values() for mid in ids]
    missing = [mid for mid in sent_ids if mid not in messages]
    duplicated = {mid: n for mid, n in messages.items() if n > 1}
    print(f"\nMail: {dropper.total} appended to {len(dropper.sent)} mailboxes; {sum(tickets.values())} tickets; "
          f"{len(sent_ids) - len(missing)} of the appended Message-IDs stored; {len(duplicated)} Message-IDs "
          f"stored more than once; {len(wrong)} mailboxes whose tickets != appended")
    if wrong:
        problems.append(f"{len(wrong)} mailboxes have tickets != appended mails, e.g. "
                        + ", ".join(f"#{a}: {t} tickets / {s} mails" for a, (t, s) in list(wrong.items())[:5]))
    if extra:
        problems.append(f"{len(extra)} mailboxes that got no mail have tickets")
    if missing:
        problems.append(f"{len(missing)} appended mails were not imported by the end of the drain")
    if duplicated:
        problems.append(f"{len(duplicated)} Message-IDs imported more than once")
    return problems


def dovecot_limit_warnings(env: BenchEnvironment) -> list[str]:
    """Log lines that say Dovecot itself turned connections away (its limits, not the portal)."""
    with contextlib.suppress(OSError):
        text = env.dovecot.log_path.read_text(errors="replace")
        return [line for line in text.splitlines()
                if re.search(r"process_limit|client_limit|Maximum number of (connections|concurrent)", line)]
    return []


# ---------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--mailboxes", type=int, default=1000, help="mailboxes, one Dovecot user each (default 1000)")
    parser.add_argument("--minutes", type=int, default=5, help="measured minutes (cron ticks) (default 5)")
    parser.add_argument("--mail-per-minute", type=int, default=100,
                        help="random mailboxes that get one new mail in each measured minute (default 100)")
    parser.add_argument("--drain-seconds", type=int, default=150,
                        help="after the last minute, wait at most this long for every mail to be a ticket (default 150)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the mailboxes that get mail (default 1)")
    parser.add_argument("--dovecot-services", choices=sorted(DOVECOT_SERVICES), default="preforked",
                        help="preforked (Dovecot's high-performance mode, default) or per-connection "
                             "(Dovecot's default: new login and imap processes for every connection)")
    add_environment_arguments(parser)
    return parser.parse_args(argv)


def run(args, env: BenchEnvironment) -> int:
    from redis import Redis

    redis_client = Redis.from_url(env.redis_url)
    print(f"Dovecot ({args.dovecot_services} services) on {env.dovecot.host}:{env.dovecot.port}, "
          f"Redis {env.redis_url}, database {env.database_url}")
    t = time.perf_counter()
    fleet = create_fleet(env, args.mailboxes)
    print(f"{len(fleet)} Dovecot users and mailboxes on `{CRON}` made in {time.perf_counter() - t:.1f} s")

    processes = [start_process(env, f"worker{n + 1}", "worker.py") for n in range(WORKERS)]
    processes.append(start_process(env, "scheduler", "scheduler.py"))
    started = time.time()
    first = (int(started + 20) // 60 + 1) * 60  # first measured minute boundary
    measured = [minute_of(from_ts(first + 60 * k)) for k in range(args.minutes)]
    print(f"{WORKERS} workers and a scheduler started at {from_ts(started):%H:%M:%S}; measuring "
          f"{args.minutes} minutes from {measured[0]:%H:%M} UTC, {args.mail_per_minute} new mails at second 30 of each")

    def cpu() -> tuple[float, float]:
        workers = sum(tree_cpu(p.launcher.pid) for p in processes if p.name.startswith("worker"))
        return workers, tree_cpu(processes[-1].launcher.pid)

    dropper = MailDropper(env, fleet, args.mail_per_minute, args.seed)
    samples: dict[datetime, MinuteSample] = {}

    def sample_minute(boundary: float, depth: int) -> None:
        workers, scheduler = cpu()
        samples[minute_of(from_ts(boundary))] = MinuteSample(boundary, depth, redis_cpu(redis_client),
                                                              workers, scheduler, os.getloadavg())

    try:
        with Sampler(redis_client, list(fleet)) as sampler:
            time.sleep(max(0.0, first - time.time()))
            sample_minute(first, sampler.depth())
            for k in range(args.minutes):
                time.sleep(max(0.0, first + 60 * k + 30 - time.time()))
                dropper.drop()
                boundary = first + 60 * (k + 1)
                time.sleep(max(0.0, boundary - 0.5 - time.time()))
                depth = redis_client.llen(QUEUE_KEY)  # the backlog as the next tick is due
                time.sleep(max(0.0, boundary - time.time()))
                sample_minute(boundary, depth)
                print(f"  minute {k + 1}/{args.minutes} done; queue depth at its end {depth}; "
                      f"{dropper.total} mails appended so far")
            drain_deadline = time.time() + args.drain_seconds
            while time.time() < drain_deadline:
                tickets, _ = imported(env)
                if sum(tickets.values()) >= dropper.total:
                    break
                time.sleep(2)
            drained = time.time() - (first + 60 * args.minutes)
            print(f"  drain: {drained:.0f} s after the last minute; queue depth then "
                  f"{redis_client.llen(QUEUE_KEY)}")
    finally:
        processes[-1].stop(15)  # the scheduler first: no new jobs while the workers finish theirs
        for process in processes[:-1]:
            process.stop(60)

    runs = scheduled_runs(env)
    ticks = assign_ticks(runs, sampler.enqueues)
    problems = print_ticks(ticks, measured, len(fleet), samples)
    in_window = [ticks[d] for d in measured if d in ticks]
    enqueue_lags = [lag for tick in in_window for lag in tick.enqueue_lags]
    start_lags = [(r.started_at - tick.due).total_seconds() for tick in in_window for r in tick.runs if r.started_at]
    print("\nScheduler lag over the measured ticks (from the due minute):")
    print(f"  to enqueued (rq job enqueued_at): {percentiles(enqueue_lags)}")
    print(f"  to SyncRun.started_at:            {percentiles(start_lags)}")
    durations = [(r.finished_at - r.started_at).total_seconds() for t in in_window for r in t.runs
                 if r.started_at and r.finished_at]
    print(f"  sync run duration:                {percentiles(durations)}")

    mail_problems = check_mail(env, dropper)
    print(f"  APPEND of {args.mail_per_minute} mails: {percentiles(dropper.seconds)} per minute's batch")

    window = [samples[d] for d in sorted(samples)]
    seconds = window[-1].at - window[0].at if len(window) > 1 else 0
    depths = [d for ts, d in sampler.depths if window and window[0].at <= ts <= window[-1].at]
    print(f"\nResources over the {seconds / 60:.0f} measured minutes ({os.cpu_count()} cores):")
    if seconds:
        for name, attr in (("Redis server (INFO cpu, whole server)", "redis_cpu"),
                           (f"{WORKERS} workers", "worker_cpu"), ("scheduler", "scheduler_cpu")):
            used = getattr(window[-1], attr) - getattr(window[0], attr)
            print(f"  {name}: {used:.1f} CPU s = {100 * used / seconds:.1f} % of one core")
        print("  load average at each minute boundary: "
              + ", ".join(f"{s.load[0]:.1f}" for s in window))
    print(f"  queue depth (sampled every second): max {max(depths, default=0)}; just before each tick: "
          + ", ".join(str(s.queue_depth) for s in window[1:]))
    for process in processes:
        usage = process.usage
        print(f"  {process.name}: peak RSS {usage.get('maxrss', 0) / MB:.0f} MB (it and any child), "
              f"CPU {usage.get('cpu', 0):.1f} s from start to exit, exit code {process.launcher.returncode}")
    limits = dovecot_limit_warnings(env)
    if limits:
        print(f"  Dovecot refused connections ({len(limits)} log lines), e.g. {limits[0]}")

    synced_every_tick = not problems
    lag_p95 = p95(enqueue_lags)
    print(f"\n=== Summary: {len(fleet)} mailboxes on `{CRON}`, {WORKERS} workers, {args.minutes} min, "
          f"{'SQLite' if env.is_sqlite else 'PostgreSQL'} ===")
    print(f"every mailbox synced in every minute: {'ok' if synced_every_tick else 'MISSED'}")
    print(f"scheduler lag p95 (to enqueued) {lag_p95:.1f} s, target <= {TARGET_LAG_P95:.0f} s: "
          f"{'ok' if enqueue_lags and lag_p95 <= TARGET_LAG_P95 else 'MISSED'}; to started {p95(start_lags):.1f} s: "
          f"{'ok' if start_lags and p95(start_lags) <= TARGET_LAG_P95 else 'MISSED'}")
    print(f"all new mail imported exactly once: {'ok' if not mail_problems else 'FAILED'}")
    for problem in problems[:10]:
        print(f"  {problem}")
    if mail_problems:
        print("\nCHECKS FAILED:\n  " + "\n  ".join(mail_problems))
        for process in processes:
            print(f"\nLast lines of the {process.name} log:")
            print("\n".join(process.log_path.read_text(errors="replace").splitlines()[-15:]))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    warnings.filterwarnings("ignore", category=FutureWarning, module="rq_scheduler")
    signal.signal(signal.SIGTERM, _interrupt)
    with BenchEnvironment(args.redis_url, args.database_url, DOVECOT_SERVICES[args.dovecot_services]) as env:
        return run(args, env)


if __name__ == "__main__":
    run_cli(main)
