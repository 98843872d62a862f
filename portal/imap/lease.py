"""The lease one sync holds on its mailbox: the fleet-wide Redis lock `imap:lock:<id>` with a
short TTL, a heartbeat that renews it (and stamps the run) while the sync works, the sync's
overall deadline, and the fencing check before every write.

A killed worker stops renewing, so its lock expires within IMAP_LOCK_SECONDS and its run's
heartbeat goes stale (the reaper ends the run). A sync that lost its lock or passed its deadline
stops: the check before each batch write raises SyncStopped, and the heartbeat cuts the IMAP
connection so that a stalled or trickling server cannot hold the sync past its deadline."""
import logging
import threading
import time

from redis.exceptions import LockError, RedisError
from sqlalchemy import text, update
from sqlalchemy.exc import SQLAlchemyError

from ..models import utcnow
from .models import SyncRun

log = logging.getLogger(__name__)

LOST_LOCK = "Lost the mailbox lock; another sync took over"


class SyncStopped(Exception):
    """The sync must not go on writing (lost its lock, or passed its deadline)."""


def lock_key(account_id: int) -> str:
    return f"imap:lock:{account_id}"


class MailboxLease:
    def __init__(self, redis, engine, account_id: int, run_id: int, *, ttl: float, beat: float,
                 deadline_seconds: float, worker_name: str | None = None):
        # thread_local=False: the heartbeat thread renews the token the job thread took.
        self.lock = redis.lock(lock_key(account_id), timeout=ttl, thread_local=False)
        self.engine = engine
        self.run_id = run_id
        self.ttl = ttl
        self.beat = beat
        self.deadline_seconds = deadline_seconds
        self.deadline = time.monotonic() + deadline_seconds
        self.worker_name = worker_name
        self.stop_reason: str | None = None
        self._session = None
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []

    def acquire(self) -> bool:
        return self.lock.acquire(blocking=False)

    def __enter__(self) -> "MailboxLease":
        self.deadline = time.monotonic() + self.deadline_seconds
        for target, name in ((self._renew_lock, "imap-lease"), (self._stamp_run, "imap-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(timeout=self.beat + 5)
        try:
            self.lock.release()
        except (LockError, RedisError):  # expired, taken over, or Redis gone: the TTL cleans up
            pass

    def watch(self, session) -> None:
        """The IMAP session to cut when the sync must stop while it waits on the server."""
        self._session = session

    def check(self) -> None:
        """Before a write: raises SyncStopped unless this sync still holds the lock (the token in
        Redis is still ours) and is within its deadline. One Redis round trip."""
        if self.stop_reason is None and time.monotonic() > self.deadline:
            self._stop(self.deadline_text())
        if self.stop_reason is None:
            try:
                if not self.lock.owned():
                    self._stop(LOST_LOCK)
            except RedisError as exc:
                self._stop(f"Lost the mailbox lock: Redis is unavailable ({exc.__class__.__name__})")
        if self.stop_reason is not None:
            raise SyncStopped(self.stop_reason)

    def deadline_text(self) -> str:
        return (f"Sync deadline passed: stopped after {self.deadline_seconds:g} s "
                "(IMAP_SYNC_DEADLINE_SECONDS); the rest follows on the next run")

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            log.warning("Sync run %s stops: %s", self.run_id, reason)
            if self._session is not None:
                self._session.abort()

    def _renew_lock(self) -> None:
        while not self._done.wait(self.beat):
            if time.monotonic() > self.deadline:
                self._stop(self.deadline_text())
                return
            try:
                self.lock.extend(self.ttl, replace_ttl=True)  # checks the token: never extends another's lock
            except LockError:
                self._stop(LOST_LOCK)
                return
            except RedisError as exc:  # the lock may expire; the check before the next write decides
                log.warning("Sync run %s: could not renew the mailbox lock: %s", self.run_id, exc)

    def _stamp_run(self) -> None:
        """Separate from the lock renewal, so a busy database never delays it."""
        statement = update(SyncRun.__table__).where(SyncRun.__table__.c.id == self.run_id)
        while not self._done.wait(self.beat):
            try:
                with self.engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        connection.execute(text("SET LOCAL lock_timeout = '5s'"))
                    connection.execute(statement.values(heartbeat_at=utcnow(), worker_name=self.worker_name))
            except SQLAlchemyError as exc:
                log.warning("Sync run %s: heartbeat not stamped (%s)", self.run_id, exc.__class__.__name__)
