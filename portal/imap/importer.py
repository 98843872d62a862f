"""One sync of one mailbox: every new email becomes one ticket, one threaded reply, or a
recorded skip. See docs/architecture.md, "One sync, step by step".

Exactly once: a message's ticket, attachments and ProcessedMessage row commit in the
same transaction; \\Seen is set only after that commit. A crash anywhere leaves either
no row (the message is fetched again) or a committed row (the message is never turned
into a second ticket; a missing \\Seen is repaired on the next run).
"""
import logging
import re
from contextlib import nullcontext
from collections import Counter
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError

from .. import crypto, storage
from ..extensions import db
from ..models import Attachment, Ticket, TicketMessage, utcnow
from . import filters
from .association import Directory
from .client import ConnectionSettings, FetchedMessage, connect
from .models import MAX_ATTEMPTS, RULE_SKIPS, ImapAccount, ProcessedMessage
from .parsing import InboundEmail, is_auto_generated, parse_message

log = logging.getLogger(__name__)

BATCH_MESSAGES = 200
BATCH_BYTES = 16 * 1024 * 1024
TICKET_REF = re.compile(r"\[#(\d{1,12})\]")
# Outcomes that mean "this message already lives in a ticket".
DELIVERED = ("imported", "threaded")


@dataclass
class SyncResult:
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    uid_validity: int | None = None

    @property
    def status(self) -> str:
        return "completed_with_errors" if self.counts.get("failed") else "succeeded"


@dataclass
class Outcome:
    outcome: str
    reason: str | None = None
    ticket_id: int | None = None
    ticket: Ticket | None = None  # set instead of ticket_id when the ticket is not flushed yet


def connection_settings(account: ImapAccount) -> ConnectionSettings:
    return ConnectionSettings(
        host=account.host,
        port=account.port,
        security=account.security,
        verify_tls=account.verify_tls,
        username=account.username,
        password=crypto.decrypt(account.password_encrypted) if account.password_encrypted else "",
        timeout=current_app.config["IMAP_TIMEOUT_SECONDS"],
        ca_file=current_app.config.get("IMAP_CA_FILE"),
    )


def dedupe_key(email: InboundEmail) -> str:
    if email.message_id:
        return "mid:" + email.message_id[:1000]
    return "sha256:" + email.raw_sha256


def sync_account(account: ImapAccount, heartbeat=lambda: None) -> SyncResult:
    """Fetch and import everything new in the mailbox's folder (raises ImapError when the
    server cannot be used at all; per-message problems are recorded and the run goes on)."""
    result = SyncResult()
    max_bytes = current_app.config["IMAP_MAX_MESSAGE_BYTES"]
    with connect(connection_settings(account)) as session:
        folder = session.select(account.folder, readonly=not account.mark_as_read)
        result.uid_validity = folder.uidvalidity
        if account.uid_validity != folder.uidvalidity:
            if account.uid_validity is not None:
                log.warning(
                    "Mailbox %s: UIDVALIDITY changed %s -> %s; new UID epoch (Message-IDs still prevent duplicates)",
                    account.id, account.uid_validity, folder.uidvalidity,
                )
            account.uid_validity = folder.uidvalidity
            account.last_seen_uid = 0
            db.session.commit()

        found = session.search_uids(
            unseen_only=account.process_unread_only,
            above_uid=0 if account.process_unread_only else account.last_seen_uid,
        )
        candidates, unseen_delivered = _candidates(account, found)
        if unseen_delivered and account.mark_as_read:
            # Imported earlier but the run stopped before \Seen was stored.
            session.mark_seen(unseen_delivered)
        if not candidates:
            return result

        infos = session.fetch_info(candidates)
        too_large = [i for i in infos if i.size > max_bytes]
        if too_large:
            _record_too_large(account, too_large, max_bytes, result)
        wanted = [i for i in infos if i.size <= max_bytes]
        directory = Directory(db.session)
        for batch in _batches(wanted):
            fetched = list(session.fetch_messages([i.uid for i in batch]))
            seen = _import_batch(account, fetched, directory, result)
            if seen and account.mark_as_read:
                session.mark_seen(seen)
            heartbeat()
    return result


def _candidates(account: ImapAccount, found: list[int]) -> tuple[list[int], list[int]]:
    """UIDs worth fetching: found on the server minus those already recorded in this epoch
    (one query), plus recorded ones that became eligible again (failed with attempts left,
    or skipped by rules that have since changed)."""
    epoch = account.uid_validity
    eligible_again = or_(
        (ProcessedMessage.outcome == "failed") & (ProcessedMessage.attempts < MAX_ATTEMPTS),
        ProcessedMessage.outcome.in_(RULE_SKIPS) & (ProcessedMessage.rules_version < account.rules_version),
    )
    rows = db.session.execute(
        select(ProcessedMessage.uid, ProcessedMessage.outcome, eligible_again.label("again")).where(
            ProcessedMessage.account_id == account.id,
            ProcessedMessage.uid_validity == epoch,
            or_(ProcessedMessage.uid >= (min(found) if found else 2**62), eligible_again),
        )
    ).all()
    recorded = {uid: (outcome, again) for uid, outcome, again in rows}
    found_set = set(found)
    candidates = [uid for uid in found if uid not in recorded or recorded[uid][1]]
    retry = [uid for uid, (_, again) in recorded.items() if again and uid not in found_set]
    unseen_delivered = []
    if account.process_unread_only:
        unseen_delivered = [
            uid for uid in found if uid in recorded and recorded[uid][0] in DELIVERED + ("duplicate",)
        ]
    return sorted(set(candidates) | set(retry)), unseen_delivered


def _batches(infos):
    batch, size = [], 0
    for info in infos:
        if batch and (len(batch) >= BATCH_MESSAGES or size + info.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += info.size
    if batch:
        yield batch


def _existing_rows(account: ImapAccount, uids: list[int]) -> dict[int, ProcessedMessage]:
    if not uids:
        return {}
    rows = db.session.scalars(
        select(ProcessedMessage).where(
            ProcessedMessage.account_id == account.id,
            ProcessedMessage.uid_validity == account.uid_validity,
            ProcessedMessage.uid.in_(uids),
        )
    )
    return {row.uid: row for row in rows}


def _record(account, existing, uid, outcome: Outcome, *, email=None, size=None, counts: Counter):
    row = existing.get(uid)
    if row is None:
        row = ProcessedMessage(account_id=account.id, uid_validity=account.uid_validity, uid=uid, attempts=0)
        db.session.add(row)
        existing[uid] = row
    row.outcome = outcome.outcome
    row.reason = outcome.reason
    if outcome.ticket is not None:
        row.ticket = outcome.ticket
    else:
        row.ticket_id = outcome.ticket_id
    row.attempts = (row.attempts or 0) + 1
    row.rules_version = account.rules_version
    if size is not None:
        row.size = size
    if email is not None:
        row.message_id = email.message_id[:998] if email.message_id else None
        row.dedupe_key = dedupe_key(email)
        row.subject = (email.subject or "")[:998]
        row.from_address = email.from_.address[:320] if email.from_ else None
    counts[outcome.outcome] += 1
    return row


def _record_too_large(account, infos, max_bytes, result):
    existing = _existing_rows(account, [i.uid for i in infos])
    for info in infos:
        reason = f"Message is {info.size} bytes; the limit (IMAP_MAX_MESSAGE_BYTES) is {max_bytes}"
        _record(account, existing, info.uid, Outcome("skipped_too_large", reason), size=info.size, counts=result.counts)
    account.last_seen_uid = max([account.last_seen_uid or 0] + [i.uid for i in infos])
    db.session.commit()


@dataclass
class BatchState:
    """Everything a batch looks up, loaded in a few IN queries before its messages are processed."""

    existing: dict[int, ProcessedMessage]
    delivered: dict[str, Ticket | int | None]  # dedupe key -> its ticket (object when made in this batch)
    threads: dict[str, Ticket]  # stored Message-ID -> ticket
    tickets: dict[int, Ticket]  # tickets named by [#id] in subjects
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    to_mark: list[int] = field(default_factory=list)


def _parse_all(account, fetched: list[FetchedMessage]):
    parsed = []
    for message in fetched:
        try:
            parsed.append((message, parse_message(message.raw), None))
        except Exception as exc:  # the parser is defensive; this is the last line of defence
            log.exception("Mailbox %s: could not parse UID %s", account.id, message.uid)
            parsed.append((message, None, exc))
        message.raw = b""  # the parsed form is all that is needed from here on
    return parsed


def _import_batch(account, fetched: list[FetchedMessage], directory: Directory, result: SyncResult) -> list[int]:
    """Process one batch and COMMIT once; returns the UIDs to mark \\Seen.

    Fast path: every message is decided in Python and the batch is flushed in one go. If
    the database refuses that flush, the batch is redone with a SAVEPOINT per message so
    that only the message at fault is recorded as failed."""
    parsed = _parse_all(account, fetched)
    directory.prefetch(e.from_.address for _, e, _ in parsed if e is not None and e.from_)
    try:
        state = _apply(account, parsed, directory, savepoints=False)
        _advance(account, fetched)
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("Mailbox %s: batch write failed; retrying it message by message", account.id, exc_info=True)
        state = _apply(account, parsed, directory, savepoints=True)
        _advance(account, fetched)
        db.session.commit()
    result.counts.update(state.counts)
    result.errors.extend(state.errors)
    return state.to_mark


def _advance(account, fetched) -> None:
    if fetched:
        account.last_seen_uid = max([account.last_seen_uid or 0] + [m.uid for m in fetched])


def _load_state(account, parsed) -> BatchState:
    emails = [e for _, e, _ in parsed if e is not None]
    threads, tickets = _thread_targets(emails)
    return BatchState(
        existing=_existing_rows(account, [m.uid for m, _, _ in parsed]),
        delivered=_delivered_keys(account, [dedupe_key(e) for e in emails]),
        threads=threads,
        tickets=tickets,
    )


def _apply(account, parsed, directory: Directory, *, savepoints: bool) -> BatchState:
    state = _load_state(account, parsed)
    with db.session.no_autoflush:
        for message, email, parse_error in parsed:
            try:
                with db.session.begin_nested() if savepoints else nullcontext():
                    if parse_error is not None:
                        raise parse_error
                    outcome = _process(account, message, email, directory, state)
                    _record(account, state.existing, message.uid, outcome, email=email, size=message.size, counts=state.counts)
            except Exception as exc:
                if not savepoints and isinstance(exc, SQLAlchemyError):
                    raise
                _record_failure(account, message, email, exc, state, savepoints)
                continue
            if outcome.outcome in DELIVERED:
                _remember(state, dedupe_key(email), email, outcome.ticket)
            if outcome.outcome in DELIVERED or outcome.outcome == "duplicate":
                state.to_mark.append(message.uid)
    return state


def _record_failure(account, message, email, exc, state: BatchState, savepoints: bool) -> None:
    log.error("Mailbox %s: UID %s failed: %s", account.id, message.uid, exc, exc_info=exc)
    reason = f"{exc.__class__.__name__}: {exc}"[:2000]
    state.errors.append(f"UID {message.uid}: {reason}")
    with db.session.begin_nested() if savepoints else nullcontext():
        if savepoints:  # the rolled-back savepoint expired whatever row we held
            state.existing.pop(message.uid, None)
            state.existing.update(_existing_rows(account, [message.uid]))
        _record(account, state.existing, message.uid, Outcome("failed", reason), email=email, size=message.size, counts=state.counts)


def _delivered_keys(account, keys: list[str]) -> dict[str, int | None]:
    """dedupe key -> ticket id, for keys already delivered from this mailbox."""
    found = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        for key, ticket_id in db.session.execute(
            select(ProcessedMessage.dedupe_key, ProcessedMessage.ticket_id).where(
                ProcessedMessage.account_id == account.id,
                ProcessedMessage.dedupe_key.in_(chunk),
                ProcessedMessage.outcome.in_(DELIVERED),
            )
        ):
            found[key] = ticket_id
    return found


def _thread_targets(emails: list[InboundEmail]) -> tuple[dict[str, Ticket], dict[int, Ticket]]:
    """The tickets this batch's replies can thread onto: by referenced Message-ID, and by
    the [#id] tags in subjects."""
    refs = sorted({ref for e in emails for ref in (*e.in_reply_to, *e.references)})
    ticket_of_ref = {}
    for start in range(0, len(refs), 500):
        chunk = refs[start:start + 500]
        for message_id, ticket_id in db.session.execute(
            select(TicketMessage.message_id, TicketMessage.ticket_id).where(TicketMessage.message_id.in_(chunk))
        ):
            ticket_of_ref.setdefault(message_id, ticket_id)
    tagged = {int(m.group(1)) for e in emails if (m := TICKET_REF.search(e.subject or ""))}
    wanted = sorted(set(ticket_of_ref.values()) | tagged)
    loaded = {}
    for start in range(0, len(wanted), 500):
        for ticket in db.session.scalars(select(Ticket).where(Ticket.id.in_(wanted[start:start + 500]))):
            loaded[ticket.id] = ticket
    threads = {ref: loaded[tid] for ref, tid in ticket_of_ref.items() if tid in loaded}
    return threads, {tid: loaded[tid] for tid in tagged if tid in loaded}


def _process(account, message: FetchedMessage, email: InboundEmail, directory, state: BatchState) -> Outcome:
    """Decide one message's fate. New objects are added to the session only at the very
    end, so an exception part-way leaves nothing behind."""
    if account.filter_query:
        context = filters.build_context(
            email,
            account_id=account.id,
            account_name=account.name,
            company_id=account.company_id,
            folder=account.folder,
            flags=list(message.flags),
            size=message.size,
        )
        if not filters.evaluate(account.filter_query, context):
            return Outcome("skipped_filter", "Did not match the mailbox's filter_query")

    loop_reason = is_auto_generated(email)
    if loop_reason:
        return Outcome("skipped_auto_reply", f"Automatic message ({loop_reason})")

    sender = email.from_.address.lower() if email.from_ and email.from_.address else ""
    if account.sync_known_only and not directory.is_known_sender(sender):
        shown = sender or "(no sender address)"
        return Outcome("skipped_unknown_sender", f"Sender {shown} is not a portal user or staff contact")

    key = dedupe_key(email)
    if key in state.delivered:
        what = f"Message-ID <{email.message_id}>" if email.message_id else "identical content"
        earlier = state.delivered[key]
        reason = f"Already imported from this mailbox ({what})"
        if isinstance(earlier, Ticket):
            return Outcome("duplicate", reason, ticket=earlier)
        return Outcome("duplicate", reason, earlier)

    ticket = _thread_ticket(email, state)
    if ticket is not None:
        reply = _build_message(email)
        if ticket.id is not None:
            reply.ticket_id = ticket.id
            db.session.add(reply)
        else:
            ticket.messages.append(reply)
        ticket.updated_at = utcnow()
        if ticket.status == "closed":
            ticket.status = "open"
        return Outcome("threaded", f"Reply added to ticket #{ticket.id}" if ticket.id else "Reply added to a ticket created in the same sync", ticket=ticket)

    association = directory.associate(sender, account.company_id)
    ticket = Ticket(
        subject=(email.subject or "(no subject)")[:998],
        status="open",
        priority="normal",
        company_id=association.company_id,
        requester_user_id=association.requester_id if association.requester_type == "user" else None,
        requester_staff_id=association.requester_id if association.requester_type == "staff" else None,
        requester_email=association.requester_email,
        source="email",
        source_mailbox_id=account.id,
    )
    ticket.messages.append(_build_message(email))
    db.session.add(ticket)
    return Outcome("imported", None, ticket=ticket)


def _remember(state: BatchState, key: str, email: InboundEmail, ticket: Ticket) -> None:
    """Later messages of the same batch see this one as delivered, and can thread onto it."""
    state.delivered[key] = ticket
    if email.message_id:
        state.threads[email.message_id] = ticket


def _thread_ticket(email: InboundEmail, state: BatchState) -> Ticket | None:
    for ref in (*email.in_reply_to, *reversed(email.references)):
        ticket = state.threads.get(ref)
        if ticket is not None:
            return ticket
    match = TICKET_REF.search(email.subject or "")
    if match:
        return state.tickets.get(int(match.group(1)))
    return None


def _build_message(email: InboundEmail) -> TicketMessage:
    """A TicketMessage with its attachments (bytes stored on disk, content-addressed)."""
    root = current_app.config["ATTACHMENT_DIR"]
    message = TicketMessage(
        author_email=email.from_.address.lower()[:320] if email.from_ and email.from_.address else None,
        body_text=email.text or "",
        body_html=email.html or "",
        message_id=email.message_id[:998] if email.message_id else None,
        in_reply_to=" ".join(email.in_reply_to) or None,
        references=" ".join(email.references) or None,
    )
    for part in email.attachments:
        digest = storage.store(root, part.payload)
        message.attachments.append(
            Attachment(
                filename=part.filename[:255],
                content_type=(part.content_type or "application/octet-stream")[:255],
                size=len(part.payload),
                sha256=digest,
                content_id=(part.content_id or None) and part.content_id[:255],
                is_inline=part.is_inline,
            )
        )
    return message
