"""Stores a batch's decisions: tickets, messages, attachments and audit rows in a few
bulk INSERTs (bulk_insert.py: COPY on PostgreSQL), and COMMITs the batch once.

Nothing here decides anything (that is decide.py). Attachment bytes are stored here, so they
reach the disk only for messages that are being written (see portal/storage.py)."""
import logging
from datetime import datetime, timezone

from flask import current_app
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from .. import storage
from ..extensions import db
from ..models import Attachment, AttachmentBlob, Ticket, TicketMessage, utcnow
from . import bulk_insert, ledger, planner_statistics
from .decide import Decision, NewTicket, dedupe_key, failure
from .models import RULE_SKIPS, ProcessedMessage
from .parsing import InboundEmail
from .replies import split_reply
from .run_errors import human

log = logging.getLogger(__name__)

MAX_DEFECTS = 50  # defects kept on an audit row
MAX_CC = 200  # Cc recipients kept on a ticket message

AUDIT_DEFAULTS = {"message_id": None, "dedupe_key": None, "subject": None, "from_address": None, "defects": None, "sent_at": None}


class UnwrittenTicket(Exception):
    """A reply whose ticket, made earlier in the batch, could not be written."""


#: What fails one message's write (the database refused a row, the disk refused a file):
#: that message is recorded as failed, and the rest of the batch is written.
WRITE_ERRORS = (SQLAlchemyError, UnwrittenTicket, OSError)


def commit_batch(account, decisions: list[Decision], uids: list[int], after_rollback=lambda: None) -> list[Decision]:
    """Write every decision and COMMIT once; returns the decisions as written. If the database
    refuses the batch, it is written again one message per SAVEPOINT, so only the message at
    fault is recorded as failed. `uids` are all the batch's UIDs (the mailbox advances past them)."""
    try:
        written = write(account, decisions, ledger.recorded_rows(account, uids))
        _advance(account, uids)
        db.session.commit()
    except WRITE_ERRORS:
        db.session.rollback()
        log.warning("Mailbox %s: batch write failed; writing it message by message", account.id, exc_info=True)
        written = None
    if written is None:
        after_rollback()
        written = _write_one_by_one(account, decisions, uids)
        _advance(account, uids)
        db.session.commit()
    planner_statistics.ensure()  # the next batch's lookups are planned with them
    return written


def write(account, decisions: list[Decision], existing: dict[int, ProcessedMessage]) -> list[Decision]:
    """INSERT everything the decisions describe, inside the caller's transaction; returns the
    decisions written. An audit row that exists is updated only when it may be decided again
    (see may_redecide); a decision about any other recorded UID is dropped, ticket and all."""
    decisions = [d for d in decisions if _may_write(d, existing, account)]
    # Core statements on the session's connection: the ORM's per-row bookkeeping is what
    # an import of thousands of messages cannot afford.
    connection = db.session.connection()
    now = utcnow()
    creating = [d for d in decisions if d.new_ticket is not None]
    if creating:
        rows = [{**_ticket_values(account, d), "created_at": now, "updated_at": now} for d in creating]
        ids = bulk_insert.insert_with_ids(connection, Ticket.__table__, rows)
        for decision, ticket_id in zip(creating, ids):
            decision.new_ticket.id = ticket_id

    adding = [d for d in decisions if d.adds_message]
    if adding:
        rows = [{**_message_values(d), "ticket_id": ticket_id_of(d.target), "created_at": now} for d in adding]
        ids = bulk_insert.insert_with_ids(connection, TicketMessage.__table__, rows)
        _write_attachments(connection, [(d.email, message_id) for d, message_id in zip(adding, ids)], now)

    _touch_replied_tickets([d.target for d in adding if not isinstance(d.target, NewTicket)])
    _write_audit(account, decisions, existing)
    return decisions


def _may_write(decision: Decision, existing: dict[int, ProcessedMessage], account) -> bool:
    row = existing.get(decision.uid)
    if row is None or may_redecide(row, account):
        return True
    log.warning("Mailbox %s: UID %s is recorded as %s; left as it is", account.id, decision.uid, row.outcome)
    return False


def may_redecide(row: ProcessedMessage, account) -> bool:
    """An audit row is final except a `failed` one (retried) and a rule skip under older rules
    (rules_version bumped). Two syncs that overlap never rewrite what the other recorded."""
    if row.outcome == "failed":
        return True
    return row.outcome in RULE_SKIPS and (row.rules_version or 0) < account.rules_version


def ticket_id_of(ref) -> int | None:
    if isinstance(ref, NewTicket):
        if ref.id is None:
            raise UnwrittenTicket("the ticket this message belongs to was not saved")
        return ref.id
    return ref


def audit_values(email: InboundEmail | None) -> dict:
    if email is None:
        return {}
    return {
        "message_id": email.message_id[:998] if email.message_id else None,
        "dedupe_key": dedupe_key(email),
        "subject": (email.subject or "")[:998],
        "from_address": email.from_.address[:320] if email.from_ else None,
        "defects": email.defects[:MAX_DEFECTS] or None,
        "sent_at": sent_at(email),
    }


def sent_at(email: InboundEmail) -> datetime | None:
    """The email's Date header as naive UTC, like every timestamp the portal stores."""
    return email.date.astimezone(timezone.utc).replace(tzinfo=None) if email.date else None


def _ticket_values(account, decision: Decision) -> dict:
    association = decision.association
    requester_id = association.requester_id
    return {
        "subject": (decision.email.subject or "(no subject)")[:998],
        "status": "open",
        "priority": "normal",
        "company_id": association.company_id,
        "requester_user_id": requester_id if association.requester_type == "user" else None,
        "requester_staff_id": requester_id if association.requester_type == "staff" else None,
        "requester_email": association.requester_email,
        "source": "email",
        "source_mailbox_id": account.id,
        "source_mailbox_name": (account.name or "")[:200] or None,
    }


def _message_values(decision: Decision) -> dict:
    """A ticket message as the email said it: sender, date, Cc; a reply's new text with the
    history it quotes kept apart (shown collapsed)."""
    email = decision.email
    text, quoted = email.text or "", ""
    if decision.outcome == "threaded":
        text, quoted = split_reply(text)
    cc = [{"name": a.name[:320], "email": a.address[:320]} for a in email.cc[:MAX_CC] if a.address or a.name]
    return {
        "author_email": email.from_.address.lower()[:320] if email.from_ and email.from_.address else None,
        "author_name": email.from_.name.strip()[:320] or None if email.from_ else None,
        "sent_at": sent_at(email),
        "cc": cc or None,
        "quoted_text": quoted or None,
        "body_text": text,
        "body_html": email.html or "",
        "message_id": email.message_id[:998] if email.message_id else None,
        "in_reply_to": " ".join(email.in_reply_to) or None,
        "references": " ".join(email.references) or None,
        "import_notes": "\n".join([*email.left_out, *decision.notes]) or None,
    }


def _write_attachments(connection, messages: list[tuple[InboundEmail, int]], now) -> None:
    """Attachment rows; small contents travel into the database with them, large ones are
    stored on disk first (before the COMMIT, so a committed row never lacks its file)."""
    root = current_app.config["ATTACHMENT_DIR"]
    rows, blobs = [], {}
    for email, message_id in messages:
        for part in email.attachments:
            kept = storage.keep(root, part.payload)
            if kept.blob is not None:
                blobs[kept.sha256] = kept.blob
            rows.append(
                {
                    "message_id": message_id,
                    "filename": part.filename[:255],
                    "content_type": (part.content_type or "application/octet-stream")[:255],
                    "size": len(part.payload),
                    "sha256": kept.sha256,
                    "in_database": kept.blob is not None,
                    "content_id": part.content_id[:255] if part.content_id else None,
                    "is_inline": part.is_inline,
                    "created_at": now,
                }
            )
    if rows:
        bulk_insert.insert_rows(connection, Attachment.__table__, rows)
    if blobs:
        # Each distinct content once: a blob another message already stored is left as it is.
        dialect_insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
        statement = dialect_insert(AttachmentBlob.__table__).on_conflict_do_nothing(index_elements=["sha256"])
        connection.execute(statement, [{"sha256": sha, "content": blob} for sha, blob in blobs.items()])


def _touch_replied_tickets(ticket_ids: list[int]) -> None:
    """A reply bumps its ticket and reopens it when it was closed."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return
    now = utcnow()
    db.session.execute(update(Ticket).where(ledger.one_of(Ticket.id, ids)).values(updated_at=now), execution_options={"synchronize_session": False})
    db.session.execute(
        update(Ticket).where(ledger.one_of(Ticket.id, ids), Ticket.status == "closed").values(status="open"),
        execution_options={"synchronize_session": False},
    )


def _write_audit(account, decisions: list[Decision], existing: dict[int, ProcessedMessage]) -> None:
    now = utcnow()
    inserts = []
    for d in decisions:
        ticket_id = ticket_id_of(d.target)
        reason = d.reason
        if d.outcome == "threaded":  # the decision says how it was matched, when not by header
            reason = f"Reply added to ticket #{ticket_id}" + (f" ({d.reason[0].lower()}{d.reason[1:]})" if d.reason else "")
        values = {
            "outcome": d.outcome,
            "reason": reason,
            "ticket_id": ticket_id,
            "rules_version": account.rules_version,
            "size": d.size,
            "updated_at": now,
            **audit_values(d.email),
        }
        row = existing.get(d.uid)  # write() let through only rows that may be decided again
        if row is None:
            inserts.append(
                {"account_id": account.id, "uid_validity": account.uid_validity, "uid": d.uid, "attempts": 1, "created_at": now, **AUDIT_DEFAULTS, **values}
            )
        else:
            for key, value in values.items():
                setattr(row, key, value)
            row.attempts = (row.attempts or 0) + 1
    if inserts:
        bulk_insert.insert_rows(db.session.connection(), ProcessedMessage.__table__, inserts)


def _write_one_by_one(account, decisions: list[Decision], uids: list[int]) -> list[Decision]:
    existing = ledger.recorded_rows(account, uids)
    written = []
    for decision in decisions:
        try:
            with db.session.begin_nested():
                if not write(account, [decision], existing):
                    continue  # recorded already, and final
        except WRITE_ERRORS as exc:
            if decision.new_ticket is not None:
                decision.new_ticket.id = None  # rolled back: replies to it later in the batch fail too
            existing.update(ledger.recorded_rows(account, [decision.uid]))  # the rollback expired it
            decision = failure(decision.uid, decision.size, decision.email, human(exc))
            with db.session.begin_nested():
                write(account, [decision], existing)
        written.append(decision)
    return written


def _advance(account, uids: list[int]) -> None:
    if uids:
        account.last_seen_uid = max([account.last_seen_uid or 0, *uids])
