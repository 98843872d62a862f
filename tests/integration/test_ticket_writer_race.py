"""The database itself refuses a batch (on SQLite and on PostgreSQL): another sync recorded one
of its messages while it was being written. The batch is rolled back whole, written again one
message per SAVEPOINT, and the message the other sync took gets no second ticket."""
import pytest
from sqlalchemy import func, insert, select

from portal.extensions import db
from portal.imap import ticket_writer
from portal.imap.models import ProcessedMessage
from portal.models import Attachment, Ticket, TicketMessage, utcnow
from tests.integration.imap_helpers import create_mailbox, sync, ticket_count, tickets
from tests.support.mail import make_email


@pytest.fixture
def mailbox(app_ctx, imap_account):
    return create_mailbox(imap_account)


def _recorded_by_another_sync(mailbox, uid: int) -> int:
    """What a racing sync commits for `uid` on its own connection: a ticket and its audit row."""
    now = utcnow()
    with db.engine.begin() as other:
        ticket_id = other.execute(
            insert(Ticket).values(subject="Taken by the other sync", status="open", priority="normal", source="email",
                                  source_mailbox_id=mailbox.id, created_at=now, updated_at=now).returning(Ticket.id)
        ).scalar_one()
        other.execute(insert(ProcessedMessage).values(
            account_id=mailbox.id, uid_validity=mailbox.uid_validity, uid=uid, outcome="imported", ticket_id=ticket_id,
            attempts=1, rules_version=mailbox.rules_version, created_at=now, updated_at=now,
        ))
    return ticket_id


def test_a_message_recorded_by_another_sync_mid_batch_gets_no_second_ticket(app_ctx, imap_account, mailbox, monkeypatch):
    pdf = ("report.pdf", "application/pdf", b"%PDF-1.4 quarterly figures")
    first = imap_account.append(make_email(subject="First", attachments=[pdf]))
    raced = imap_account.append(make_email(subject="Raced", attachments=[pdf]))
    last = imap_account.append(make_email(subject="Last"))
    real_write = ticket_writer.write
    other_ticket = []

    def another_sync_records_one_first(account, decisions, existing):
        if not other_ticket:  # the whole batch, after its recorded rows were read
            other_ticket.append(_recorded_by_another_sync(account, raced))
        return real_write(account, decisions, existing)

    monkeypatch.setattr(ticket_writer, "write", another_sync_records_one_first)
    result = sync(mailbox)

    assert result["status"] == "succeeded" and result["counts"] == {"imported": 2}
    assert [t.subject for t in tickets()] == ["Taken by the other sync", "First", "Last"]
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.uid == raced))
    assert row.outcome == "imported" and row.ticket_id == other_ticket[0] and row.attempts == 1
    # nothing of the refused batch survived its rollback: one message per imported ticket,
    # the attachment once (the raced mail's copy was not written)
    assert db.session.scalar(select(func.count(TicketMessage.id))) == 2
    assert db.session.scalar(select(func.count(Attachment.id))) == 1
    flags = imap_account.flags()
    assert "\\Seen" in flags[first] and "\\Seen" in flags[last]
    assert sync(mailbox)["counts"] == {} and ticket_count() == 3
