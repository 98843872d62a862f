"""Mailbox rows pointing at the test Dovecot, and small helpers to run syncs."""
from sqlalchemy import func, select

from portal import crypto
from portal.extensions import db
from portal.imap.models import ImapAccount, ProcessedMessage
from portal.models import Ticket


def create_mailbox(imap_account, **fields) -> ImapAccount:
    values = dict(
        name=f"Box {imap_account.username}",
        host=imap_account.host,
        port=imap_account.port,
        security="none",
        verify_tls=True,
        username=imap_account.username,
        password_encrypted=crypto.encrypt(imap_account.password),
        folder="INBOX",
    )
    values.update(fields)
    account = ImapAccount(**values)
    db.session.add(account)
    db.session.commit()
    return account


def sync(account) -> dict:
    from portal.imap.tasks import sync_mailbox

    result = sync_mailbox(account.id, trigger="manual", raise_errors=False)
    db.session.expire_all()
    return result


def outcomes(account) -> dict[int, str]:
    rows = db.session.execute(
        select(ProcessedMessage.uid, ProcessedMessage.outcome).where(ProcessedMessage.account_id == account.id)
    )
    return dict(rows.all())


def ticket_count() -> int:
    return db.session.scalar(select(func.count(Ticket.id)))


def tickets() -> list[Ticket]:
    return list(db.session.scalars(select(Ticket).order_by(Ticket.id)))
