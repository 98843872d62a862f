"""What keeps a sync fast and lean without changing what it does: the lane that downloads
the next batch while this one is written, the SQLite durability switch, and handing freed
memory back to the operating system."""
import ctypes
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db

log = logging.getLogger(__name__)

IN_FLIGHT_BYTES = 16 * 1024 * 1024  # at most this much raw mail held while the next batch downloads


class DownloadLane:
    """Runs one session's IMAP commands on a single background thread, in the order given, so
    the next batch downloads while this one is parsed and written. Leaving the block waits for
    every command and raises the first failure (a \\Seen that could not be stored included)."""

    def __init__(self, session, fetch=None):
        self.session = session
        # batch -> its fetched messages (the importer's routes big mail to partial_fetch)
        self.fetch = fetch or (lambda batch: list(session.fetch_messages([info.uid for info in batch])))
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap-lane")
        self.marks: list[Future] = []

    def __enter__(self):
        return self

    def download(self, batches: list[list]):
        """Yields the fetched messages of each batch (of MessageInfo) in turn. The next batch
        downloads while the caller works on this one, as long as both fit in IN_FLIGHT_BYTES;
        a bigger one waits, and starts from a lean heap."""
        ahead = self._fetch(batches[0]) if batches else None
        for index, batch in enumerate(batches):
            fetched = ahead.result()
            following = batches[index + 1] if index + 1 < len(batches) else None
            overlap = following is not None and _bytes(batch) + _bytes(following) <= IN_FLIGHT_BYTES
            ahead = self._fetch(following) if overlap else None
            yield fetched
            if following is not None and ahead is None:
                if _bytes(following) > IN_FLIGHT_BYTES:
                    release_free_memory()
                ahead = self._fetch(following)

    def _fetch(self, batch) -> Future:
        return self.pool.submit(self.fetch, batch)

    def mark_seen(self, uids: list[int]) -> None:
        self.marks.append(self.pool.submit(self.session.mark_seen, uids))

    def raise_failures(self) -> None:
        for future in self.marks:
            if future.done() and future.exception() is not None:
                raise future.exception()
        self.marks = [f for f in self.marks if not f.done()]

    def __exit__(self, exc_type, exc, tb):
        self.pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        # The worker lives on after the job (no work horse exits with the heap): give the
        # memory of the downloaded batches back to the OS now, not at the next big batch.
        release_free_memory()
        if exc_type is None:
            for future in self.marks:
                future.result()


def _bytes(batch) -> int:
    return sum(info.size for info in batch)


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it by default), so that the peak of
    a huge message adds to what is in use, not to what earlier batches left behind."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def set_durable_commits(durable: bool) -> None:
    """SQLite: the session's next COMMITs are fsynced (synchronous=FULL) or left for the next
    checkpoint (NORMAL, the default). Call it outside a write transaction. PostgreSQL commits
    are always durable."""
    if db.engine.dialect.name == "sqlite":
        db.session.connection().exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")


@contextmanager
def durable_commits(durable: bool):
    """COMMITs inside the block are durable when asked (SQLite: fsynced), fast otherwise.
    Yields the function that asks again, for after a rollback handed back the connection."""
    again = (lambda: set_durable_commits(True)) if durable else (lambda: None)
    try:
        again()
        yield again
    finally:
        if durable:
            try:
                set_durable_commits(False)
            except SQLAlchemyError:  # the session failed; its rollback returns the connection anyway
                db.session.rollback()


def commit_bookkeeping() -> None:
    """COMMIT a write that no mail depends on (a sync run's start, progress and end) without
    waiting for the disk: on PostgreSQL with synchronous_commit off for this transaction (SQLite
    commits so already, synchronous=NORMAL). Visible at once; a crash of the database server may
    lose it whole, never in part, and the next durable commit (a batch of mail) flushes it. A
    lost start or end leaves a run the reaper ends; mail and its audit rows are never written so."""
    if db.engine.dialect.name == "postgresql":  # LOCAL: this transaction only, whatever comes next
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    db.session.commit()


def commits_are_durable() -> bool:
    """Make every committed transaction survive a power loss; True when they do.

    PostgreSQL commits are durable already. SQLite runs in WAL mode with synchronous=NORMAL,
    where a commit is durable once a checkpoint has synced the log: a FULL checkpoint does
    that (it returns busy when other connections keep it from finishing)."""
    if db.engine.dialect.name != "sqlite":
        return True
    busy, _, _ = db.session.execute(text("PRAGMA wal_checkpoint(FULL)")).one()
    db.session.commit()
    return busy == 0
