"""Ingest benchmark: how fast the real sync job turns support mail into tickets, how close
that is to what IMAP + parsing alone allow, how much memory the worker needs, and how
long a sync that finds no new mail takes. A report, not a test: it never fails on a
missed target (exit 0), only when it could not measure or the import was wrong (exit 1).

    .venv/bin/python bench/ingest.py [--count 2000]        (or: make bench)

One run:
1. Starts a private Dovecot (tests/support/dovecot.py) and generates --count realistic
   support mails (bench/corpus.py): plain and text+HTML, attachments, legacy charsets,
   replies to earlier mails, auto-replies, and one message just under the 25 MiB limit.
2. CEILING, no database: stdlib imaplib `UID FETCH (UID FLAGS RFC822.SIZE BODY.PEEK[])`
   in chunks of 500 over a copy of the mailbox, then the project's parser
   (portal.imap.parsing.parse_message) on every message. msgs/s for fetch only and for
   fetch + parse (best of --ceiling-runs).
3. PROJECT, the real job path: a fresh database migrated by flask_migrate.upgrade(), a
   mailbox made by create_account(), one job queued by enqueue_sync() and run by
   `worker.py --burst` in a subprocess. msgs/s = N / (SyncRun.finished_at - started_at).
   Peak RSS of the worker (it runs the job in its own process; the kernel's ru_maxrss from wait4,
   cross-checked by sampling VmHWM in /proc). Outcome counts, and tickets == imported.
4. NO-NEW-MAIL SYNC (bench/empty_sync.py): --empty-count small mails, all imported by a
   first sync, then sync_account() inline; median of --empty-runs runs per mode.
Everything lives in temp dirs that are removed at the end, also on Ctrl-C; the Redis DB
(--redis-url, default db 14) is flushed at start and end.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import corpus  # noqa: E402  (bench/ is on sys.path as the script's directory)
import empty_sync  # noqa: E402
from tests.support.dovecot import INSTALL_HINT, DovecotServer, find_dovecot, free_port, uid_set  # noqa: E402
from tests.support.dovecot import ImapAccount as MailUser  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
CEILING_CHUNK = 500
MB = 1024 * 1024

TARGET_RATIO_PCT = 50
TARGET_RATE_SQLITE = 870
TARGET_RSS_MB = 150
TARGET_EMPTY_MS = 50


# ---------------------------------------------------------------------- setup
class BenchEnvironment:
    """Temp dir, private Dovecot, a flushed Redis DB, a migrated database and the Flask app.
    Use as a context manager: leaving it stops and removes everything it started."""

    def __init__(self, redis_url: str, database_url: str | None, dovecot_config: str = "") -> None:
        self.stack = contextlib.ExitStack()
        self.requested_redis_url = redis_url
        self.requested_database_url = database_url
        self.dovecot_config = dovecot_config  # added to the private Dovecot's configuration

    def __enter__(self) -> "BenchEnvironment":
        try:
            self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="portal-bench-")))
            self.dovecot = self._start_dovecot()
            self.redis_url = self._prepare_redis(self.requested_redis_url)
            self.database_url = self.requested_database_url or f"sqlite:///{self.tmp / 'bench.db'}"
            self.env = {
                "PORTAL_ENV": "development",
                "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "ATTACHMENT_DIR": os.environ.get("BENCH_ATTACHMENT_DIR") or str(self.tmp / "attachments"),
            }
            os.environ.update(self.env)  # the worker subprocess inherits the same settings
            self.app = self._create_app()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def _start_dovecot(self) -> DovecotServer:
        if not find_dovecot():
            raise SystemExit(f"Dovecot is not installed; run: {INSTALL_HINT} (or `make test-deps`)")
        server = DovecotServer(tls=False, extra_config=self.dovecot_config)
        self.stack.callback(server.cleanup)
        return server.start()

    def _prepare_redis(self, url: str) -> str:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            Redis.from_url(url, socket_connect_timeout=2).ping()
        except RedisError:
            print(f"No Redis answers at {url}; starting a private one for this run")
            url = self._start_private_redis()
        client = Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        self.stack.callback(client.flushdb)
        return url

    def _start_private_redis(self) -> str:
        from redis import Redis
        from redis.exceptions import RedisError

        binary = shutil.which("redis-server") or str(ROOT / ".venv" / "bin" / "redis-server")
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.stack.callback(stop_process, proc)
        url = f"redis://127.0.0.1:{port}/14"
        for _ in range(100):
            with contextlib.suppress(RedisError):
                Redis.from_url(url).ping()
                return url
            time.sleep(0.1)
        raise SystemExit(f"could not start {binary}")

    def _create_app(self):
        import flask_migrate

        from portal import create_app

        app = create_app()
        with app.app_context():
            flask_migrate.upgrade()
        self.stack.callback(self._close_database, app)
        return app

    @staticmethod
    def _close_database(app) -> None:
        from portal.extensions import db

        with app.app_context():
            db.session.remove()
            db.engine.dispose()

    def mailbox(self, name: str, raws: list[bytes], **options) -> tuple[int, MailUser, list[int]]:
        """A Dovecot user holding ``raws`` (in this UID order) and a portal mailbox for it:
        (mailbox id, the Dovecot user, UIDs)."""
        from portal.extensions import db
        from portal.imap.accounts import create_account

        user = MailUser(self.dovecot, *self.dovecot.new_user(name))
        uids = user.fill_maildir(raws)
        if uids != sorted(uids):
            print("WARNING: Dovecot did not assign UIDs in corpus order; fewer replies may thread")
        with self.app.app_context():
            account = create_account({
                "name": name, "host": self.dovecot.host, "port": self.dovecot.port,
                "security": "none", "allow_plaintext": True, "verify_tls": False, "username": user.username,
                "password": user.password, "folder": "INBOX", **options,
            })
            account_id = account.id
            db.session.remove()
        return account_id, user, uids


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to it and its descendants after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            kill_tree(proc)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and all its descendants. Process groups are not enough: RQ puts
    a child into a group of its own. Everything is stopped first, so nothing
    forks anew while the tree is being killed."""
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in [proc.pid, *_descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    proc.wait()


# -------------------------------------------------------------------- ceiling
@dataclass
class Ceiling:
    count: int
    fetch_seconds: float  # best pass, fetching only
    total_seconds: float  # best pass, fetching and parsing

    @property
    def fetch_rate(self) -> float:
        return self.count / self.fetch_seconds

    @property
    def rate(self) -> float:
        return self.count / self.total_seconds


def measure_ceiling(env: BenchEnvironment, raws: list[bytes], runs: int) -> Ceiling:
    """Best of ``runs`` passes of raw imaplib FETCH in chunks of 500 + parse_message, over a
    mailbox of its own holding ``raws``."""
    user = MailUser(env.dovecot, *env.dovecot.new_user("ceiling"))
    uids = user.fill_maildir(raws)
    passes = [_ceiling_pass(user, uids) for _ in range(runs)]
    return Ceiling(len(uids), min(f for f, _ in passes), min(f + p for f, p in passes))


def _ceiling_pass(user: MailUser, uids: list[int]) -> tuple[float, float]:
    """(seconds fetching, seconds parsing) for all ``uids``."""
    from portal.imap.parsing import parse_message

    fetch_s = parse_s = 0.0
    count = 0
    client = user.connect()
    try:
        client.select("INBOX", readonly=True)
        for start in range(0, len(uids), CEILING_CHUNK):
            t0 = time.perf_counter()
            typ, data = client.uid("FETCH", uid_set(uids[start:start + CEILING_CHUNK]),
                                   "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
            t1 = time.perf_counter()
            if typ != "OK":
                raise RuntimeError(f"UID FETCH failed: {typ} {data!r}")
            for item in data:
                if isinstance(item, tuple):
                    parse_message(item[1])
                    count += 1
            del data
            fetch_s += t1 - t0
            parse_s += time.perf_counter() - t1
    finally:
        client.logout()
    if count != len(uids):
        raise RuntimeError(f"the ceiling pass fetched {count} of {len(uids)} messages")
    return fetch_s, parse_s


# ------------------------------------------------------------- the real job
# The worker runs under this small launcher, which reports the kernel's rusage of the worker
# (ru_maxrss: the max RSS of the worker and of every child it reaped).
# Spawned straight from the benchmark, the worker's ru_maxrss would also count the RSS of
# the process it was forked from (this one, holding the corpus): Linux keeps the pre-exec
# high-water mark. The launcher is small, so its share is far below the worker's own.
LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump({"maxrss": usage.ru_maxrss * 1024, "cpu": usage.ru_utime + usage.ru_stime}, fh)
sys.exit(os.waitstatus_to_exitcode(status))
"""


class Periodic:
    """A daemon thread that calls ``sample()`` every ``interval`` seconds while the context is open."""

    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        raise NotImplementedError


class RssMonitor(Periodic):
    """Samples VmHWM (a process's peak RSS so far) of every descendant of ``root`` from /proc:
    the worker and any child. A sample can miss growth in a process's last
    ``interval`` before it exits; the launcher's rusage cannot."""

    def __init__(self, root: int, interval: float = 0.02) -> None:
        super().__init__(interval, "rss-monitor")
        self.root = root
        self.peaks: dict[int, int] = {}  # pid -> VmHWM in bytes, in order of appearance

    def sample(self) -> None:
        for pid in _descendants(self.root):
            hwm = _vm_hwm(pid)
            if hwm:
                self.peaks[pid] = max(hwm, self.peaks.get(pid, 0))


def _descendants(root: int) -> list[int]:
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    children = [int(c) for c in fh.read().split()]
                found += children
                frontier += children
    return found


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class JobResult:
    status: str
    error: str | None
    counts: dict
    job_seconds: float  # SyncRun.finished_at - started_at
    tickets: int
    attachments: int
    wall_seconds: float = 0.0  # worker start to exit
    worker_exit: int = 0
    cpu_seconds: float = 0.0  # user + system CPU of the worker and any child (start-up included)
    peak_rss: int = 0  # bytes: the larger of the launcher's ru_maxrss and the sampled VmHWMs
    sampled_rss: list[int] = field(default_factory=list)  # VmHWM per process: worker first, then children
    log_path: Path | None = None


def run_sync_job(env: BenchEnvironment, account_id: int, py_spy_output: str | None = None) -> JobResult:
    """Queue one sync with enqueue_sync() and run it with `worker.py --burst` (under
    `py-spy record` when ``py_spy_output`` is given)."""
    from portal.extensions import db
    from portal.imap.models import ImapAccount
    from portal.imap.tasks import enqueue_sync

    with env.app.app_context():
        run_id = enqueue_sync(db.session.get(ImapAccount, account_id)).id
        db.session.remove()
    log_path, usage_path = env.tmp / "worker.log", env.tmp / "worker-usage.json"
    command = [sys.executable, str(ROOT / "worker.py"), "--burst"]
    if py_spy_output:
        command = py_spy_command(py_spy_output) + command
    command = [sys.executable, "-c", LAUNCHER, str(usage_path), *command]
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with RssMonitor(proc.pid) as monitor:
            proc.wait()
    finally:
        if proc.poll() is None:  # interrupted
            kill_tree(proc)
    wall = time.perf_counter() - started
    usage = json.loads(usage_path.read_text()) if usage_path.exists() else {"maxrss": 0, "cpu": 0.0}
    job = JobResult(**_job_outcome(env, account_id, run_id))
    job.wall_seconds, job.worker_exit, job.log_path = wall, proc.returncode, log_path
    job.cpu_seconds = usage["cpu"]
    job.sampled_rss = list(monitor.peaks.values())
    job.peak_rss = max([usage["maxrss"], *job.sampled_rss])
    return job


def py_spy_command(output: str) -> list[str]:
    """`py-spy record` of the worker (and any child); format from the file name
    (.svg flame graph, .json speedscope, anything else raw folded stacks)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(binary, os.X_OK):
        raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    kind = {".svg": "flamegraph", ".json": "speedscope"}.get(Path(output).suffix, "raw")
    return [binary, "record", "--subprocesses", "--rate", "250", "--format", kind,
            "--output", str(Path(output).resolve()), "--"]


def _job_outcome(env: BenchEnvironment, account_id: int, run_id: int) -> dict:
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.imap.models import SyncRun
    from portal.models import Attachment, Ticket, TicketMessage

    with env.app.app_context():
        run = db.session.get(SyncRun, run_id)
        tickets = db.session.scalar(select(func.count(Ticket.id)).where(Ticket.source_mailbox_id == account_id))
        attachments = db.session.scalar(
            select(func.count(Attachment.id)).join(TicketMessage).join(Ticket)
            .where(Ticket.source_mailbox_id == account_id))
        seconds = (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else 0.0
        outcome = dict(status=run.status, error=run.error, counts=dict(run.counts or {}), job_seconds=seconds,
                       tickets=tickets, attachments=attachments)
        db.session.remove()
    return outcome


# -------------------------------------------------------------------- report
def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _outcomes(counts: dict) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def print_job(job: JobResult, mails: list[corpus.Mail]) -> list[str]:
    """Prints the job's outcome; returns the problems (wrong or failed import)."""
    expected: dict[str, int] = {}
    for mail in mails:
        expected[mail.expected] = expected.get(mail.expected, 0) + 1
    counts = job.counts
    skipped = sum(v for k, v in counts.items() if k.startswith("skipped"))
    print(f"  SyncRun: status {job.status}, job {job.job_seconds:.2f} s; worker process {job.wall_seconds:.2f} s "
          f"from start to exit, {job.cpu_seconds:.2f} s CPU (user+sys, the worker and any child); exit code {job.worker_exit}")
    print(f"  imported {counts.get('imported', 0)}, threaded {counts.get('threaded', 0)}, skipped {skipped} "
          f"(outcomes: {_outcomes(counts)}; the corpus expects {_outcomes(expected)})")
    delivered_files = sum(m.attachments for m in mails if m.expected in ("imported", "threaded"))
    print(f"  tickets in the database: {job.tickets} (imported: {counts.get('imported', 0)}); "
          f"attachments stored: {job.attachments} (the delivered mails carry {delivered_files})")
    print(f"  worker peak RSS {job.peak_rss / MB:.0f} MB (max over the worker and any child); "
          f"sampled VmHWM per process, worker first: {', '.join(f'{v / MB:.0f} MB' for v in job.sampled_rss)}")
    problems = []
    if job.status != "succeeded":
        problems.append(f"sync run status is {job.status!r}: {job.error}")
    if job.worker_exit != 0:
        problems.append(f"worker exited with {job.worker_exit} (log: {job.log_path})")
    if job.tickets != counts.get("imported", 0):
        problems.append(f"tickets ({job.tickets}) != imported ({counts.get('imported', 0)})")
    if job.attachments != delivered_files:
        problems.append(f"attachments stored ({job.attachments}) != attachments in delivered mails ({delivered_files})")
    for outcome, n in expected.items():
        if counts.get(outcome, 0) != n:
            problems.append(f"{outcome}: {counts.get(outcome, 0)}, expected {n}")
    return problems


def postgresql_settings(env: BenchEnvironment) -> str:
    """The server's version and the session settings a write-heavy job depends on, as the
    worker's sessions see them (portal/extensions.py sets the TOAST compression)."""
    from sqlalchemy import text

    from portal.extensions import db

    with env.app.app_context():
        version, commit, toast = db.session.execute(text(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'),"
            " current_setting('default_toast_compression', true)")).one()
        db.session.remove()
    return f"PostgreSQL {version} (synchronous_commit {commit}, TOAST {toast or 'pglz'})"


def print_summary(args, env: BenchEnvironment, ceiling: Ceiling, job: JobResult,
                  empty: empty_sync.EmptySyncResult | None) -> None:
    rate = args.count / job.job_seconds if job.job_seconds else 0.0
    ratio = 100 * rate / ceiling.rate
    db_kind = "SQLite" if env.is_sqlite else postgresql_settings(env)
    rows = [
        ("project: worker job (N / SyncRun duration)", f"{rate:,.0f} msgs/s",
         f">= {TARGET_RATE_SQLITE} msgs/s on SQLite",
         verdict(rate >= TARGET_RATE_SQLITE) if env.is_sqlite else "(SQLite target)"),
        ("ceiling: imaplib fetch only", f"{ceiling.fetch_rate:,.0f} msgs/s", "", ""),
        ("ceiling: imaplib fetch + parse_message", f"{ceiling.rate:,.0f} msgs/s", "", ""),
        ("project / ceiling (fetch + parse)", f"{ratio:.0f} %", f">= {TARGET_RATIO_PCT} %",
         verdict(ratio >= TARGET_RATIO_PCT)),
        ("worker peak RSS (25 MB mail in the mix)" if args.big_attachment else "worker peak RSS",
         f"{job.peak_rss / MB:.0f} MB", f"<= {TARGET_RSS_MB} MB", verdict(job.peak_rss / MB <= TARGET_RSS_MB)),
    ]
    if empty is not None:
        for mode in empty.modes:
            rows.append((f"no new mail ({empty.count:,}): {mode.label}", f"{mode.median_ms:.1f} ms",
                         f"<= {TARGET_EMPTY_MS} ms" if mode.has_target else "(info)",
                         verdict(mode.median_ms <= TARGET_EMPTY_MS) if mode.has_target else ""))
    width = max(len(r[0]) for r in rows)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n=== Summary: {args.count:,} messages, {db_kind}, {os.cpu_count()} cores, "
          f"load average now {load} ===")
    print(f"{'measure':<{width}}  {'value':>14}  {'target':<26} result")
    for name, value, target, result in rows:
        print(f"{name:<{width}}  {value:>14}  {target:<26} {result}")


# ---------------------------------------------------------------------- main
def add_environment_arguments(parser: argparse.ArgumentParser) -> None:
    """--database-url and --redis-url, what BenchEnvironment takes."""
    parser.add_argument("--database-url", help="a throw-away, empty database (default: a temp SQLite file)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help=f"Redis DB to use and FLUSH at start and end (default $BENCH_REDIS_URL or {DEFAULT_REDIS_URL}; "
                             "a private redis-server is started when none answers)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="messages in the ingest corpus (default 2000)")
    parser.add_argument("--big-attachment", action=argparse.BooleanOptionalAction, default=True,
                        help="include one message just under the 25 MiB limit (default on)")
    parser.add_argument("--seed", type=int, default=1, help="corpus random seed (default 1)")
    parser.add_argument("--ceiling-runs", type=int, default=3, help="ceiling passes; the best counts (default 3)")
    parser.add_argument("--empty-count", type=int, default=10_000,
                        help="messages in the no-new-mail mailbox (default 10000; 0 skips that part)")
    parser.add_argument("--empty-runs", type=int, default=5, help="timed no-new-mail syncs per mode (default 5)")
    add_environment_arguments(parser)
    parser.add_argument("--py-spy", metavar="FILE",
                        help="profile the worker with `py-spy record` into FILE (.svg, .json or raw folded "
                             "stacks); slows the job down, so its numbers are not comparable")
    return parser.parse_args(argv)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    warnings.filterwarnings("ignore", category=FutureWarning, module="rq_scheduler")
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on SIGTERM as on Ctrl-C
    t = time.perf_counter()
    mails = corpus.support_corpus(args.count, seed=args.seed, big_attachment=args.big_attachment)
    print(f"Corpus: {corpus.describe(mails)} (generated in {time.perf_counter() - t:.1f} s)")
    raws = [m.raw for m in mails]
    with BenchEnvironment(args.redis_url, args.database_url) as env:
        print(f"Dovecot on {env.dovecot.host}:{env.dovecot.port}, Redis {env.redis_url}, "
              f"database {env.database_url}")
        print(f"\nCeiling (imaplib, chunks of {CEILING_CHUNK}, best of {args.ceiling_runs}):")
        ceiling = measure_ceiling(env, raws, args.ceiling_runs)
        print(f"  fetch only {ceiling.fetch_seconds:.2f} s = {ceiling.fetch_rate:,.0f} msgs/s; "
              f"fetch + parse {ceiling.total_seconds:.2f} s = {ceiling.rate:,.0f} msgs/s")

        account_id, _, _ = env.mailbox("ingest", raws, process_unread_only=True, mark_as_read=True)
        del raws
        print("\nProject (enqueue_sync + worker.py --burst):")
        job = run_sync_job(env, account_id, args.py_spy)
        problems = print_job(job, mails)
        del mails

        empty = None
        if args.empty_count > 0:
            print(f"\nNo-new-mail sync ({args.empty_count:,} messages, sync_account() inline, "
                  f"median of {args.empty_runs}):")
            empty = empty_sync.measure(env.app, env.mailbox, args.empty_count, args.empty_runs)
            problems += empty.problems

        print_summary(args, env, ceiling, job, empty)
        if problems:
            print("\nCHECKS FAILED:\n  " + "\n  ".join(problems))
            if job.log_path and job.log_path.exists():
                print("\nLast lines of the worker log:")
                print("\n".join(job.log_path.read_text(errors="replace").splitlines()[-30:]))
            return 1
    return 0


def run_cli(main) -> None:
    """Exit with ``main()``'s code; 130 on Ctrl-C or SIGTERM, after the clean-up has run."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nInterrupted; everything started by the benchmark was stopped and removed.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_cli(main)
