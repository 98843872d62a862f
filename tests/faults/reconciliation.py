"""The check every fault scenario ends with: what the server holds, what the audit says, what
tickets exist and what the run history tells must agree."""
from collections import Counter

from sqlalchemy import select

from portal.extensions import db
from portal.imap.models import ProcessedMessage, SyncRun
from portal.models import Ticket

DELIVERED = ("imported", "threaded")


def assert_reconciled(account, appended_uids: list[int]) -> list[SyncRun]:
    """Every appended message has exactly one outcome, every imported one exactly one ticket,
    no ticket is duplicated, and no run is left `running`; returns the run history."""
    db.session.expire_all()
    rows = db.session.scalars(select(ProcessedMessage).where(ProcessedMessage.account_id == account.id)).all()
    per_uid = Counter(row.uid for row in rows)
    assert sorted(per_uid) == sorted(appended_uids), "some message has no outcome (or an unknown one)"
    assert set(per_uid.values()) == {1}, "a message has more than one outcome"
    imported = [row for row in rows if row.outcome == "imported"]
    assert all(row.ticket_id is not None for row in imported)
    assert len({row.ticket_id for row in imported}) == len(imported), "two messages share one ticket"
    tickets = db.session.scalars(select(Ticket).where(Ticket.source_mailbox_id == account.id)).all()
    assert sorted(t.id for t in tickets) == sorted(row.ticket_id for row in imported), "a ticket without its message"
    subjects = Counter(t.subject for t in tickets)
    assert not [s for s, n in subjects.items() if n > 1], "a ticket is duplicated"
    runs = db.session.scalars(select(SyncRun).where(SyncRun.account_id == account.id).order_by(SyncRun.id)).all()
    assert not [r.id for r in runs if r.status in ("running", "queued")], "the history has a run nobody ends"
    return runs
