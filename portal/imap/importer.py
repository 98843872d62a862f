"""One sync of one mailbox: every new email becomes one ticket, one threaded reply, or a
recorded skip. See docs/architecture.md, "One sync, step by step".

Exactly once: a message's ticket, attachments and ProcessedMessage row commit in the
same transaction; \\Seen is set only after that commit. A crash anywhere leaves either
no row (the message is fetched again) or a committed row (the message is never turned
into a second ticket; a missing \\Seen is repaired on the next run).
"""
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import or_, select

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


def _record(account, existing, uid, outcome: Outcome, *, email=None, size=None, result: SyncResult):
    row = existing.get(uid)
    if row is None:
        row = ProcessedMessage(account_id=account.id, uid_validity=account.uid_validity, uid=uid, attempts=0)
        db.session.add(row)
        existing[uid] = row
    row.outcome = outcome.outcome
    row.reason = outcome.reason
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
    result.counts[outcome.outcome] += 1
    return row


def _record_too_large(account, infos, max_bytes, result):
    existing = _existing_rows(account, [i.uid for i in infos])
    for info in infos:
        reason = f"Message is {info.size} bytes; the limit (IMAP_MAX_MESSAGE_BYTES) is {max_bytes}"
        _record(account, existing, info.uid, Outcome("skipped_too_large", reason), size=info.size, result=result)
    account.last_seen_uid = max([account.last_seen_uid or 0] + [i.uid for i in infos])
    db.session.commit()


def _import_batch(account, fetched: list[FetchedMessage], directory: Directory, result: SyncResult) -> list[int]:
    """Process one batch in one transaction (a savepoint per message); returns UIDs to mark \\Seen."""
    existing = _existing_rows(account, [m.uid for m in fetched])
    parsed = []
    for message in fetched:
        try:
            parsed.append((message, parse_message(message.raw), None))
        except Exception as exc:  # the parser is defensive; this is the last line of defence
            log.exception("Mailbox %s: could not parse UID %s", account.id, message.uid)
            parsed.append((message, None, exc))
    directory.prefetch(e.from_.address for _, e, _ in parsed if e is not None and e.from_)
    delivered = _delivered_keys(account, [dedupe_key(e) for _, e, _ in parsed if e is not None])
    threads = _thread_targets([e for _, e, _ in parsed if e is not None])

    to_mark = []
    for message, email, parse_error in parsed:
        try:
            with db.session.begin_nested():
                if parse_error is not None:
                    raise parse_error
                outcome = _process(account, message, email, directory, delivered, threads)
                _record(account, existing, message.uid, outcome, email=email, size=message.size, result=result)
        except Exception as exc:
            log.exception("Mailbox %s: UID %s failed", account.id, message.uid)
            reason = f"{exc.__class__.__name__}: {exc}"[:2000]
            result.errors.append(f"UID {message.uid}: {reason}")
            with db.session.begin_nested():
                existing.pop(message.uid, None)
                row_map = _existing_rows(account, [message.uid])
                _record(account, row_map, message.uid, Outcome("failed", reason), email=email, size=message.size, result=result)
            continue
        if outcome.outcome in DELIVERED or outcome.outcome == "duplicate":
            to_mark.append(message.uid)
    if fetched:
        account.last_seen_uid = max([account.last_seen_uid or 0] + [m.uid for m in fetched])
    db.session.commit()
    return to_mark


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


def _thread_targets(emails: list[InboundEmail]) -> dict[str, int]:
    """Stored Message-ID -> ticket id for every id that the batch's replies refer to."""
    refs = sorted({ref for e in emails for ref in (*e.in_reply_to, *e.references)})
    targets = {}
    for start in range(0, len(refs), 500):
        chunk = refs[start:start + 500]
        for message_id, ticket_id in db.session.execute(
            select(TicketMessage.message_id, TicketMessage.ticket_id).where(TicketMessage.message_id.in_(chunk))
        ):
            targets.setdefault(message_id, ticket_id)
    return targets


def _process(account, message: FetchedMessage, email: InboundEmail, directory, delivered, threads) -> Outcome:
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
    if key in delivered:
        what = f"Message-ID <{email.message_id}>" if email.message_id else "identical content"
        return Outcome("duplicate", f"Already imported from this mailbox ({what})", delivered[key])

    ticket = _thread_ticket(email, threads)
    if ticket is not None:
        _add_message(ticket, email)
        ticket.updated_at = utcnow()
        if ticket.status == "closed":
            ticket.status = "open"
        delivered[key] = ticket.id
        if email.message_id:
            threads[email.message_id] = ticket.id
        return Outcome("threaded", f"Reply added to ticket #{ticket.id}", ticket.id)

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
    db.session.add(ticket)
    _add_message(ticket, email)
    db.session.flush()
    delivered[key] = ticket.id
    if email.message_id:
        threads[email.message_id] = ticket.id  # a reply later in this batch threads onto it
    return Outcome("imported", None, ticket.id)


def _thread_ticket(email: InboundEmail, threads: dict[str, int]) -> Ticket | None:
    for ref in (*email.in_reply_to, *reversed(email.references)):
        ticket_id = threads.get(ref)
        if ticket_id is not None:
            ticket = db.session.get(Ticket, ticket_id)
            if ticket is not None:
                return ticket
    match = TICKET_REF.search(email.subject or "")
    if match:
        return db.session.get(Ticket, int(match.group(1)))
    return None


def _add_message(ticket: Ticket, email: InboundEmail) -> TicketMessage:
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
    ticket.messages.append(message)
    return message
