"""Writes a batch of import decisions: tickets, messages, attachments and audit rows in a few
multi-row INSERTs (RETURNING gives the new ids), inside the caller's transaction.

Decisions are made in Python first (importer.py); nothing here decides anything."""
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import Attachment, AttachmentBlob, Ticket, TicketMessage, utcnow
from .models import ProcessedMessage


@dataclass
class NewTicket:
    values: dict
    id: int | None = None


@dataclass
class NewMessage:
    values: dict
    attachments: list[dict]
    ticket: "NewTicket | int"  # a ticket made in this batch, or the id of a stored one
    blobs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes kept in the database


@dataclass
class Decision:
    uid: int
    outcome: str
    reason: str | None = None
    size: int | None = None
    audit: dict = field(default_factory=dict)  # message_id, dedupe_key, subject, from_address
    ticket: NewTicket | None = None  # created by this message (imported)
    message: NewMessage | None = None  # added by this message (imported, threaded)
    ticket_ref: "NewTicket | int | None" = None  # the ticket the audit row points at


AUDIT_DEFAULTS = {"message_id": None, "dedupe_key": None, "subject": None, "from_address": None}


class UnwrittenTicket(Exception):
    """A reply whose ticket, made earlier in the batch, could not be written."""


def ticket_id_of(ref) -> int | None:
    if isinstance(ref, NewTicket):
        if ref.id is None:
            raise UnwrittenTicket("the ticket this message belongs to was not saved")
        return ref.id
    return ref


def write(account, decisions: list[Decision], existing: dict[int, ProcessedMessage]) -> None:
    """INSERT everything the decisions describe; audit rows that exist (retries) are updated."""
    # Core statements on the session's connection: the ORM's per-row bookkeeping is what
    # an import of thousands of messages cannot afford.
    connection = db.session.connection()
    now = utcnow()
    new_tickets = [d.ticket for d in decisions if d.ticket is not None]
    if new_tickets:
        rows = [{**t.values, "created_at": now, "updated_at": now} for t in new_tickets]
        ids = connection.execute(_insert_returning_id(Ticket), rows).scalars().all()
        for ticket, ticket_id in zip(new_tickets, ids):
            ticket.id = ticket_id

    messages = [d.message for d in decisions if d.message is not None]
    if messages:
        rows = [{**m.values, "ticket_id": ticket_id_of(m.ticket), "created_at": now} for m in messages]
        ids = connection.execute(_insert_returning_id(TicketMessage), rows).scalars().all()
        attachments = [
            {**a, "message_id": message_id, "created_at": now} for m, message_id in zip(messages, ids) for a in m.attachments
        ]
        if attachments:
            connection.execute(Attachment.__table__.insert(), attachments)
        _insert_blobs(connection, {sha: blob for m in messages for sha, blob in m.blobs.items()})

    _touch_replied_tickets([m.ticket for m in messages if not isinstance(m.ticket, NewTicket)])
    _write_audit(account, decisions, existing)


def _insert_blobs(connection, blobs: dict[str, bytes]) -> None:
    """Each distinct content once: a blob another message already stored is left as it is."""
    if not blobs:
        return
    dialect_insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(AttachmentBlob.__table__).on_conflict_do_nothing(index_elements=["sha256"])
    connection.execute(statement, [{"sha256": sha, "content": blob} for sha, blob in blobs.items()])


def _insert_returning_id(model):
    """A multi-row INSERT whose RETURNING ids come back in the order of the rows given."""
    table = model.__table__
    return table.insert().returning(table.c.id, sort_by_parameter_order=True)


def _touch_replied_tickets(ticket_ids: list[int]) -> None:
    """A reply bumps its ticket and reopens it when it was closed."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return
    now = utcnow()
    db.session.execute(update(Ticket).where(Ticket.id.in_(ids)).values(updated_at=now), execution_options={"synchronize_session": False})
    db.session.execute(
        update(Ticket).where(Ticket.id.in_(ids), Ticket.status == "closed").values(status="open"),
        execution_options={"synchronize_session": False},
    )


def _write_audit(account, decisions: list[Decision], existing: dict[int, ProcessedMessage]) -> None:
    now = utcnow()
    inserts = []
    for d in decisions:
        ticket_id = ticket_id_of(d.ticket_ref)
        reason = d.reason
        if d.outcome == "threaded" and reason is None:
            reason = f"Reply added to ticket #{ticket_id}"
        values = {
            "outcome": d.outcome,
            "reason": reason,
            "ticket_id": ticket_id,
            "rules_version": account.rules_version,
            "size": d.size,
            "updated_at": now,
            **d.audit,
        }
        row = existing.get(d.uid)
        if row is None:
            inserts.append(
                {
                    "account_id": account.id, "uid_validity": account.uid_validity, "uid": d.uid,
                    "attempts": 1, "created_at": now, **AUDIT_DEFAULTS, **values,
                }
            )
        else:
            for key, value in values.items():
                setattr(row, key, value)
            row.attempts = (row.attempts or 0) + 1
    if inserts:
        db.session.connection().execute(ProcessedMessage.__table__.insert(), inserts)
