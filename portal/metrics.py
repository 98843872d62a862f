"""GET /metrics (Prometheus text format): what the fleet did, read from the database and Redis.

No process counts anything in memory: workers on many machines sync, and any web process
answers the scrape, so every number is derived at scrape time from what all of them wrote
(ProcessedMessage rows, SyncRun rows, the mailboxes, rq's queue in Redis). Correct across
processes and machines by construction, and a restarted process loses nothing.

Cheap by design: messages and mailboxes are aggregate queries (GROUP BY on an index); finished
sync runs never change, so each process folds them into its totals once and afterwards reads only
the runs it has not seen finished (RunLedger). Labels are bounded: mailbox id and name (live
mailboxes only), outcome, status."""
import threading
import time
from collections import Counter
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select

from .extensions import db, get_redis

FINISHED = ("succeeded", "completed_with_errors", "failed", "skipped")
OPEN = ("queued", "running", "deferred")
# Only runs that really synced go into the duration histogram (a skip takes milliseconds).
TIMED = ("succeeded", "completed_with_errors", "failed")
SUCCESS = ("succeeded", "completed_with_errors")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
MAX_OPEN_IDS = 2000  # beyond this many open runs, re-read from the oldest one instead of by id


class RunLedger:
    """Totals of finished sync runs: count by status, and a histogram of their durations.

    A finished run never changes, so it is folded in once. Each refresh reads the last WINDOW ids
    again (an id handed out earlier may commit after a later one: it is picked up while it is
    still in the window) and, by id, the older runs that were open (queued, running, deferred)
    at the last look. The first refresh of a process reads every run (four columns)."""

    WINDOW = 5000

    def __init__(self):
        self.lock = threading.Lock()
        self.seen_up_to = 0
        self.open_ids: set[int] = set()
        self.folded_recent: set[int] = set()  # finished runs folded in, within the window
        self.by_status: Counter = Counter()
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket (not cumulative); last: +Inf
        self.duration_sum = 0.0
        self.open_by_status: Counter = Counter()

    def refresh(self, session) -> None:
        from .imap.models import SyncRun

        with self.lock:
            floor = self.seen_up_to - self.WINDOW
            older_open = sorted(run_id for run_id in self.open_ids if run_id <= floor)
            columns = select(SyncRun.id, SyncRun.status, SyncRun.started_at, SyncRun.finished_at)
            if not older_open:
                query = columns.where(SyncRun.id > floor)
            elif len(older_open) <= MAX_OPEN_IDS:
                query = columns.where(or_(SyncRun.id > floor, SyncRun.id.in_(older_open)))
            else:
                query = columns.where(SyncRun.id >= older_open[0])
            open_ids: set[int] = set()
            open_by_status: Counter = Counter()
            for run_id, status, started_at, finished_at in session.execute(query):
                self.seen_up_to = max(self.seen_up_to, run_id)
                if status not in FINISHED:
                    open_ids.add(run_id)
                    open_by_status[status] += 1
                elif run_id in self.folded_recent or (run_id <= floor and run_id not in self.open_ids):
                    continue  # folded in before
                else:
                    self._fold(status, started_at, finished_at)
                    self.folded_recent.add(run_id)
            floor = self.seen_up_to - self.WINDOW
            self.folded_recent = {run_id for run_id in self.folded_recent if run_id > floor}
            self.open_ids = open_ids
            self.open_by_status = open_by_status

    def _fold(self, status: str, started_at, finished_at) -> None:
        self.by_status[status] += 1
        if status in TIMED and started_at is not None and finished_at is not None:
            seconds = max(0.0, (finished_at - started_at).total_seconds())
            self.duration_sum += seconds
            index = next((i for i, bound in enumerate(DURATION_BUCKETS) if seconds <= bound), len(DURATION_BUCKETS))
            self.buckets[index] += 1

    def histogram(self) -> tuple[list[tuple[str, float]], float]:
        cumulative, running = [], 0
        for bound, count in zip([*map(_le, DURATION_BUCKETS), "+Inf"], self.buckets):
            running += count
            cumulative.append((bound, running))
        return cumulative, self.duration_sum


def _le(bound: float) -> str:
    return str(float(bound))


class PortalCollector(Collector):
    """Builds every metric afresh at each scrape (inside the request's app context)."""

    def __init__(self, ledger: RunLedger):
        self.ledger = ledger

    def collect(self):
        yield from self.mailbox_metrics()
        yield from self.run_metrics()
        yield from self.redis_metrics()
        yield from self.push_metrics()

    def push_metrics(self):
        """The IDLE connections every live listener holds, from their heartbeats (any machine)."""
        from .imap.push import connections

        try:
            held = connections(get_redis())
        except (RedisError, OSError):
            return
        push = GaugeMetricFamily("portal_imap_push_connections", "IMAP IDLE connections held by the listeners")
        push.add_metric([], held)
        yield push

    def mailbox_metrics(self):
        from .imap.models import ImapAccount, ProcessedMessage

        live = {row.id: row for row in db.session.execute(
            select(ImapAccount.id, ImapAccount.name, ImapAccount.active, ImapAccount.last_synced_at,
                   ImapAccount.last_sync_status).where(ImapAccount.deleted_at.is_(None))
        )}
        labels = {account_id: [str(account_id), row.name] for account_id, row in live.items()}

        messages = GaugeMetricFamily(
            "portal_imap_messages",
            "Messages recorded per mailbox by outcome (a message retried, or looked at again after a "
            "rule change, moves to its new outcome)",
            labels=["mailbox_id", "mailbox", "outcome"],
        )
        rows = db.session.execute(
            select(ProcessedMessage.account_id, ProcessedMessage.outcome, func.count())
            .group_by(ProcessedMessage.account_id, ProcessedMessage.outcome)
        )
        for account_id, outcome, count in rows:
            if account_id in labels:
                messages.add_metric([*labels[account_id], outcome], count)
        yield messages

        mailboxes = GaugeMetricFamily("portal_imap_mailboxes", "Mailboxes (not deleted) by state", labels=["state"])
        mailboxes.add_metric(["active"], sum(1 for row in live.values() if row.active))
        mailboxes.add_metric(["paused"], sum(1 for row in live.values() if not row.active))
        mailboxes.add_metric(["failing"], sum(1 for row in live.values() if row.active and row.last_sync_status == "failed"))
        yield mailboxes

        age = GaugeMetricFamily(
            "portal_imap_last_success_age_seconds",
            "Seconds since the mailbox's last successful sync (mailboxes that had one)",
            labels=["mailbox_id", "mailbox"],
        )
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for account_id, finished_at in sorted(last_successes(live).items()):
            age.add_metric(labels[account_id], max(0.0, (now - finished_at).total_seconds()))
        yield age

    def run_metrics(self):
        self.ledger.refresh(db.session)
        finished = CounterMetricFamily("portal_imap_sync_runs", "Finished sync runs by status", labels=["status"])
        for status in FINISHED:
            finished.add_metric([status], self.ledger.by_status[status])
        yield finished
        open_runs = GaugeMetricFamily("portal_imap_sync_runs_open", "Sync runs not finished yet, by status", labels=["status"])
        for status in OPEN:
            open_runs.add_metric([status], self.ledger.open_by_status[status])
        yield open_runs
        buckets, total = self.ledger.histogram()
        duration = HistogramMetricFamily(
            "portal_imap_sync_duration_seconds", "Duration of finished syncs (succeeded, with errors, or failed)",
        )
        duration.add_metric([], buckets, total)
        yield duration

    def redis_metrics(self):
        from . import health

        up = GaugeMetricFamily("portal_redis_up", "1 when Redis answered this scrape")
        try:
            redis = get_redis()
            now = time.time()
            queue = health.queue_state(redis, now)
            workers = health.workers_state(redis, now)
            scheduler = health.scheduler_state(redis, now)
        except (RedisError, OSError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("portal_imap_queue_depth", "Jobs waiting in the imap queue")
        depth.add_metric([], queue["depth"])
        yield depth
        oldest = GaugeMetricFamily("portal_imap_queue_oldest_job_age_seconds", "Age of the oldest job waiting in the imap queue (0: none)")
        oldest.add_metric([], queue["oldest_job_age_seconds"] or 0)
        yield oldest
        alive = GaugeMetricFamily("portal_imap_workers", "Live rq workers on the imap queue, by state", labels=["state"])
        alive.add_metric(["busy"], workers["busy"])
        alive.add_metric(["idle"], workers["alive"] - workers["busy"])
        yield alive
        if scheduler["heartbeat_age_seconds"] is not None:
            beat = GaugeMetricFamily("portal_scheduler_heartbeat_age_seconds", "Seconds since the scheduler's last loop")
            beat.add_metric([], scheduler["heartbeat_age_seconds"])
            yield beat


def last_successes(live: dict) -> dict[int, datetime]:
    """When each live mailbox last synced successfully. last_synced_at is the end of the last run
    whatever its result: right when that run succeeded; the others ask their runs (few, indexed)."""
    from .imap.models import SyncRun

    result = {account_id: row.last_synced_at for account_id, row in live.items()
              if row.last_synced_at is not None and row.last_sync_status in SUCCESS}
    others = [account_id for account_id, row in live.items() if account_id not in result and row.last_synced_at is not None]
    for start in range(0, len(others), 500):
        chunk = others[start:start + 500]
        rows = db.session.execute(
            select(SyncRun.account_id, func.max(SyncRun.finished_at))
            .where(SyncRun.account_id.in_(chunk), SyncRun.status.in_(SUCCESS))
            .group_by(SyncRun.account_id)
        )
        result.update({account_id: finished for account_id, finished in rows if finished is not None})
    return result


def registry_for(app) -> CollectorRegistry:
    """One registry per app (so each process keeps one RunLedger)."""
    registry = app.extensions.get("portal_metrics")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PortalCollector(RunLedger()))
        app.extensions["portal_metrics"] = registry
    return registry
