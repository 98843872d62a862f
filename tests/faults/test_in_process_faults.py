"""Faults a single process can stage: a lock that expires under a slow sync, the database held
locked, an IMAP server that stalls or trickles. Each ends with the reconciliation."""
import sqlite3
import threading
import time

import pytest
from sqlalchemy import select, text

from portal.extensions import db, get_redis
from portal.imap import ticket_writer
from portal.imap.lease import LOST_LOCK, lock_key
from portal.imap.models import ProcessedMessage
from tests.faults.conftest import mails
from tests.faults.reconciliation import assert_reconciled
from tests.integration.imap_helpers import create_mailbox, sync

pytestmark = pytest.mark.faults


def test_lock_expiring_under_a_slow_sync_stops_it_without_writing(app, app_ctx, imap_account, fast_lease, monkeypatch):
    """Sync A loses its lock after its first batch; sync B takes over and imports the rest.
    A then stops before writing (fencing) and no audit row of B's is rewritten."""
    from portal.imap import importer

    uids = imap_account.fill_maildir(mails(450, "Slow"))
    mailbox = create_mailbox(imap_account)
    real_decide = importer.decide_batch
    calls = []
    b_result = {}

    def sync_b():
        with app.app_context():
            b_result.update(sync(db.session.get(type(mailbox), mailbox.id)))

    def slow_decide(incoming, rules, lookups):
        calls.append(len(incoming))
        decisions = real_decide(incoming, rules, lookups)
        if len(calls) == 2:  # A is slow here: its lock expires and B runs the whole mailbox
            get_redis().delete(lock_key(mailbox.id))
            monkeypatch.setattr(importer, "decide_batch", real_decide)
            thread = threading.Thread(target=sync_b)
            thread.start()
            thread.join(60)
        return decisions

    monkeypatch.setattr(importer, "decide_batch", slow_decide)
    a = sync(mailbox)
    assert b_result["status"] == "succeeded", b_result
    assert a["status"] == "failed" and a["error"] == LOST_LOCK
    assert a["counts"] == {"imported": 200}  # what A committed before it lost the lock
    rows = db.session.scalars(select(ProcessedMessage).where(ProcessedMessage.account_id == mailbox.id)).all()
    assert {row.outcome for row in rows} == {"imported"} and all(row.attempts == 1 for row in rows)
    assert_reconciled(mailbox, uids)


def test_a_delivered_audit_row_is_never_rewritten(app_ctx, imap_account):
    from portal.imap.decide import Decision

    uid = imap_account.append(mails(1, "Delivered")[0])
    mailbox = create_mailbox(imap_account)
    assert sync(mailbox)["counts"] == {"imported": 1}
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.uid == uid))
    written = ticket_writer.commit_batch(mailbox, [Decision(uid, "duplicate", "Same Message-ID", size=1)], [uid])
    assert written == []
    db.session.refresh(row)
    assert row.outcome == "imported" and row.attempts == 1 and row.ticket_id is not None


def _hold_database(app, seconds: float, held: threading.Event) -> None:
    """Another connection holds the database's write lock for `seconds`."""
    with app.app_context():
        url = db.engine.url
    if url.get_backend_name() == "sqlite":
        path = url.database
        connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        connection.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        connection.close()
    else:
        with app.app_context(), db.engine.connect() as connection:
            connection.execute(text("BEGIN"))
            connection.execute(text("LOCK TABLE imap_processed_messages, imap_sync_runs IN ACCESS EXCLUSIVE MODE"))
            held.set()
            time.sleep(seconds)
            connection.execute(text("ROLLBACK"))


@pytest.fixture
def short_busy_timeout(app_ctx):
    """SQLite waits 1 s (not 30) for a lock, so a lock held for seconds is a busy database."""
    from sqlalchemy import event

    def pragma(dbapi_connection, _record):
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute("PRAGMA busy_timeout=1000")

    event.listen(db.engine, "connect", pragma)
    db.session.remove()
    db.engine.dispose()
    yield
    event.remove(db.engine, "connect", pragma)
    db.session.remove()
    db.engine.dispose()


def test_database_held_locked_mid_sync(app, app_ctx, imap_account, fast_lease, short_busy_timeout, monkeypatch):
    """SQLite: the batch cannot be written, the run's end is recorded anyway (retried until the
    lock goes) as a human error with the counts committed before. PostgreSQL: the sync waits
    for the lock and completes. Either way the next sync leaves nothing lost or doubled."""
    uids = imap_account.fill_maildir(mails(450, "Locked"))
    mailbox = create_mailbox(imap_account)
    real_commit = ticket_writer.commit_batch
    batches = []

    def commit_while_locked(*args, **kwargs):
        batches.append(1)
        if len(batches) == 2:
            held = threading.Event()
            threading.Thread(target=_hold_database, args=(app, 3.0, held), daemon=True).start()
            held.wait(10)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(ticket_writer, "commit_batch", commit_while_locked)
    first = sync(mailbox)
    if db.engine.dialect.name == "sqlite":
        assert first["status"] == "failed"
        assert first["error"] == "Database busy: could not save the results"
        assert first["counts"] == {"imported": 200}
    else:
        assert first["status"] == "succeeded"
    monkeypatch.undo()
    assert sync(mailbox)["status"] == "succeeded"
    runs = assert_reconciled(mailbox, uids)
    assert not any("SELECT" in (r.error or "") or "INSERT" in (r.error or "") for r in runs)


@pytest.mark.parametrize("mode", ["stall", "trickle"])
def test_stalled_or_trickling_server_ends_at_the_deadline(app, app_ctx, imap_account, fast_lease, mode):
    from tests.support.tcp_proxy import TcpProxy

    uids = imap_account.fill_maildir(mails(300, f"Slow server {mode}"))
    proxy = TcpProxy((imap_account.host, imap_account.port))
    mailbox = create_mailbox(imap_account, port=proxy.port)
    app.config["IMAP_SYNC_DEADLINE_SECONDS"] = 3
    try:
        proxy.degrade(mode, after_bytes=60_000)  # login, search and the first bodies pass
        started = time.monotonic()
        first = sync(mailbox)
        elapsed = time.monotonic() - started
        assert first["status"] == "failed" and first["error"].startswith("Sync deadline passed"), first
        assert elapsed < 3 + 5
        proxy.restore()
        app.config["IMAP_SYNC_DEADLINE_SECONDS"] = 60
        assert sync(mailbox)["status"] == "succeeded"
    finally:
        proxy.close()
    runs = assert_reconciled(mailbox, uids)
    assert [r.status for r in runs] == ["failed", "succeeded"]
