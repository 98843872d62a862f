"""One sync of one mailbox: every new email becomes one ticket, one threaded reply, or a
recorded skip. See docs/architecture.md, "One sync, step by step".

Exactly once: a message's ticket, attachments and ProcessedMessage row commit in the
same transaction; \\Seen is set only after that commit. A crash anywhere leaves either
no row (the message is fetched again) or a committed row (the message is never turned
into a second ticket; a missing \\Seen is repaired on the next run).
"""
import ctypes
import logging
import re
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError

from .. import crypto, storage
from ..extensions import commits_are_durable, db, set_durable_commits
from ..models import Ticket, TicketMessage
from . import filters, ticket_writer
from .association import Directory
from .client import ConnectionSettings, FetchedMessage, connect
from .models import MAX_ATTEMPTS, RULE_SKIPS, ImapAccount, ProcessedMessage
from .parsing import InboundEmail, is_auto_generated, parse_message
from .ticket_writer import Decision, NewMessage, NewTicket, UnwrittenTicket

log = logging.getLogger(__name__)

BATCH_MESSAGES = 200
BATCH_BYTES = 8 * 1024 * 1024
IN_FLIGHT_BYTES = 16 * 1024 * 1024  # at most this much raw mail held while the next batch downloads
SEEN_EVERY = 1000  # \Seen is stored in groups, each after one durability barrier
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
        if unseen_delivered and account.mark_as_read and commits_are_durable():
            # Imported earlier but the run stopped before \Seen was stored.
            session.mark_seen(unseen_delivered)
        if not candidates:
            return result

        infos = session.fetch_info(candidates)
        too_large = [i for i in infos if i.size > max_bytes]
        if too_large:
            _record_too_large(account, too_large, max_bytes, result)
        batches = list(_batches([i for i in infos if i.size <= max_bytes]))
        directory = Directory(db.session)
        unmarked: list[int] = []  # imported, committed, not yet \Seen
        try:
            with ImapLane(session) as lane:
                ahead = lane.fetch(batches[0]) if batches else None
                for index, batch in enumerate(batches):
                    fetched = ahead.result()
                    following = batches[index + 1] if index + 1 < len(batches) else None
                    # Download the next batch while this one is parsed and written, memory permitting.
                    overlap = following is not None and _bytes(batch) + _bytes(following) <= IN_FLIGHT_BYTES
                    ahead = lane.fetch(following) if overlap else None
                    # \Seen is stored every SEEN_EVERY messages and at the end, each time right
                    # after a durable commit: never for a row a power cut could still take back.
                    mark_now = account.mark_as_read and (
                        following is None or len(unmarked) + len(batch) >= SEEN_EVERY
                    )
                    delivered = _import_batch(account, fetched, directory, result, durable=mark_now)
                    if account.mark_as_read:
                        unmarked += delivered
                    if mark_now and unmarked:
                        lane.mark_seen(unmarked)
                        unmarked = []
                    lane.raise_failures()
                    heartbeat()
                    if following is not None and ahead is None:
                        if _bytes(following) > IN_FLIGHT_BYTES:
                            release_free_memory()  # a huge message comes next: start it from a lean heap
                        ahead = lane.fetch(following)
        finally:
            if unmarked:  # the run is failing: still mark what was imported, if the server lets us
                try:
                    _mark_seen_once_durable(session.mark_seen, unmarked)
                except Exception as exc:
                    log.warning("Mailbox %s: could not mark %d imported message(s) \\Seen: %s", account.id, len(unmarked), exc)
    return result


def _mark_seen_once_durable(mark_seen, uids: list[int]) -> None:
    """\\Seen only for messages whose rows would survive a power loss. When the database
    cannot promise that now, they stay unseen: the next run finds them recorded and marks them."""
    if commits_are_durable():
        mark_seen(uids)
    else:
        log.warning("Database busy: %d message(s) will be marked \\Seen on the next run", len(uids))


class ImapLane:
    """Runs one session's IMAP commands on a single background thread, in the order given, so
    the next batch downloads while this one is parsed and written. Leaving the block waits for
    every command and raises the first failure (a \\Seen that could not be stored included)."""

    def __init__(self, session):
        self.session = session
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap-lane")
        self.marks: list[Future] = []

    def __enter__(self):
        return self

    def fetch(self, batch) -> Future:
        uids = [info.uid for info in batch]
        return self.pool.submit(lambda: list(self.session.fetch_messages(uids)))

    def mark_seen(self, uids: list[int]) -> None:
        self.marks.append(self.pool.submit(self.session.mark_seen, uids))

    def raise_failures(self) -> None:
        for future in self.marks:
            if future.done() and future.exception() is not None:
                raise future.exception()
        self.marks = [f for f in self.marks if not f.done()]

    def __exit__(self, exc_type, exc, tb):
        self.pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        if exc_type is None:
            for future in self.marks:
                future.result()


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it by default), so that the peak of
    a huge message adds to what is in use, not to what earlier batches left behind."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _bytes(batch) -> int:
    return sum(info.size for info in batch)


def _candidates(account: ImapAccount, found: list[int]) -> tuple[list[int], list[int]]:
    """UIDs worth fetching: found on the server minus those already recorded in this epoch,
    plus recorded ones that became eligible again (failed with attempts left, or skipped by
    rules that have since changed). Also returns found UIDs already delivered (to re-mark \\Seen)."""
    in_epoch = (ProcessedMessage.account_id == account.id) & (ProcessedMessage.uid_validity == account.uid_validity)
    recorded = {}
    if found:
        recorded = dict(
            db.session.execute(
                select(ProcessedMessage.uid, ProcessedMessage.outcome).where(in_epoch, ProcessedMessage.uid >= found[0])
            ).all()
        )
    again = set(
        db.session.scalars(
            select(ProcessedMessage.uid).where(
                in_epoch,
                or_(
                    (ProcessedMessage.outcome == "failed") & (ProcessedMessage.attempts < MAX_ATTEMPTS),
                    ProcessedMessage.outcome.in_(RULE_SKIPS) & (ProcessedMessage.rules_version < account.rules_version),
                ),
            )
        )
    )
    candidates = {uid for uid in found if uid not in recorded} | again
    unseen_delivered = []
    if account.process_unread_only:
        unseen_delivered = [uid for uid in found if recorded.get(uid) in DELIVERED + ("duplicate",)]
    return sorted(candidates), unseen_delivered


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


def _audit(email: InboundEmail | None) -> dict:
    if email is None:
        return {}
    return {
        "message_id": email.message_id[:998] if email.message_id else None,
        "dedupe_key": dedupe_key(email),
        "subject": (email.subject or "")[:998],
        "from_address": email.from_.address[:320] if email.from_ else None,
    }


def _record_too_large(account, infos, max_bytes, result):
    reason = "Message is {} bytes; the limit (IMAP_MAX_MESSAGE_BYTES) is {}"
    decisions = [Decision(i.uid, "skipped_too_large", reason.format(i.size, max_bytes), size=i.size) for i in infos]
    ticket_writer.write(account, decisions, _existing_rows(account, [i.uid for i in infos]))
    account.last_seen_uid = max([account.last_seen_uid or 0] + [i.uid for i in infos])
    db.session.commit()
    result.counts.update(d.outcome for d in decisions)


@dataclass
class BatchState:
    """What a batch looks up, loaded in a few IN queries before its messages are decided."""

    delivered: dict[str, "NewTicket | int | None"]  # dedupe key -> its ticket
    threads: dict[str, "NewTicket | int"]  # stored Message-ID -> its ticket
    tagged: set[int]  # existing ticket ids named by [#id] in the batch's subjects


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


def _import_batch(account, fetched: list[FetchedMessage], directory: Directory, result: SyncResult, *, durable=False) -> list[int]:
    """Decide every message of the batch, write them all, COMMIT once (durably if asked);
    returns the UIDs to mark \\Seen. If the database refuses the batch, it is written again
    one message per SAVEPOINT so that only the message at fault is recorded as failed."""
    parsed = _parse_all(account, fetched)
    directory.prefetch(e.from_.address for _, e, _ in parsed if e is not None and e.from_)
    decisions = _decide_all(account, parsed, directory)
    uids = [m.uid for m in fetched]
    existing = _existing_rows(account, uids)
    try:
        if durable:
            set_durable_commits(True)
        try:
            ticket_writer.write(account, decisions, existing)
            _advance(account, uids)
            db.session.commit()
        except (SQLAlchemyError, UnwrittenTicket):
            db.session.rollback()
            log.warning("Mailbox %s: batch write failed; writing it message by message", account.id, exc_info=True)
            if durable:
                set_durable_commits(True)
            decisions = _write_one_by_one(account, decisions, uids)
            _advance(account, uids)
            db.session.commit()
    finally:
        if durable:
            _back_to_fast_commits()
    for d in decisions:
        result.counts[d.outcome] += 1
        if d.outcome == "failed":
            result.errors.append(f"UID {d.uid}: {d.reason}")
    return [d.uid for d in decisions if d.outcome in DELIVERED or d.outcome == "duplicate"]


def _back_to_fast_commits() -> None:
    try:
        set_durable_commits(False)
    except SQLAlchemyError:  # the session failed; its rollback returns the connection anyway
        db.session.rollback()


def _write_one_by_one(account, decisions: list[Decision], uids: list[int]) -> list[Decision]:
    existing = _existing_rows(account, uids)
    written = []
    for decision in decisions:
        try:
            with db.session.begin_nested():
                ticket_writer.write(account, [decision], existing)
        except (SQLAlchemyError, UnwrittenTicket) as exc:
            if decision.ticket is not None:
                decision.ticket.id = None  # rolled back: replies to it later in the batch fail too
            existing.update(_existing_rows(account, [decision.uid]))  # the rollback expired it
            decision = _failure(decision.uid, decision.size, decision.audit, exc)
            with db.session.begin_nested():
                ticket_writer.write(account, [decision], existing)
        written.append(decision)
    return written


def _advance(account, uids: list[int]) -> None:
    if uids:
        account.last_seen_uid = max([account.last_seen_uid or 0, *uids])


def _failure(uid, size, audit, exc) -> Decision:
    reason = f"{exc.__class__.__name__}: {exc}"[:2000]
    return Decision(uid, "failed", reason, size=size, audit=audit)


def _load_state(emails: list[InboundEmail], account) -> BatchState:
    threads, tagged = _thread_targets(emails)
    return BatchState(
        delivered=_delivered_keys(account, [dedupe_key(e) for e in emails]),
        threads=threads,
        tagged=tagged,
    )


def _decide_all(account, parsed, directory: Directory) -> list[Decision]:
    state = _load_state([e for _, e, _ in parsed if e is not None], account)
    decisions = []
    for message, email, parse_error in parsed:
        try:
            if parse_error is not None:
                raise parse_error
            decision = _decide(account, message, email, directory, state)
        except Exception as exc:
            log.error("Mailbox %s: UID %s failed: %s", account.id, message.uid, exc, exc_info=exc)
            decision = _failure(message.uid, message.size, _audit(email), exc)
        if decision.outcome in DELIVERED:
            _remember(state, decision.audit["dedupe_key"], email, decision.ticket_ref)
        decisions.append(decision)
    return decisions


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


def _thread_targets(emails: list[InboundEmail]) -> tuple[dict[str, int], set[int]]:
    """The stored tickets this batch's replies can thread onto: by referenced Message-ID,
    and by the [#id] tags in subjects."""
    refs = sorted({ref for e in emails for ref in (*e.in_reply_to, *e.references)})
    threads = {}
    for start in range(0, len(refs), 500):
        chunk = refs[start:start + 500]
        for message_id, ticket_id in db.session.execute(
            select(TicketMessage.message_id, TicketMessage.ticket_id).where(TicketMessage.message_id.in_(chunk))
        ):
            threads.setdefault(message_id, ticket_id)
    wanted = sorted({int(m.group(1)) for e in emails if (m := TICKET_REF.search(e.subject or ""))})
    tagged = set()
    for start in range(0, len(wanted), 500):
        tagged.update(db.session.scalars(select(Ticket.id).where(Ticket.id.in_(wanted[start:start + 500]))))
    return threads, tagged


def _decide(account, message: FetchedMessage, email: InboundEmail, directory, state: BatchState) -> Decision:
    audit = _audit(email)

    def skip(outcome, reason, ticket_ref=None):
        return Decision(message.uid, outcome, reason, size=message.size, audit=audit, ticket_ref=ticket_ref)

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
            return skip("skipped_filter", "Did not match the mailbox's filter_query")

    loop_reason = is_auto_generated(email)
    if loop_reason:
        return skip("skipped_auto_reply", f"Automatic message ({loop_reason})")

    sender = email.from_.address.lower() if email.from_ and email.from_.address else ""
    if account.sync_known_only and not directory.is_known_sender(sender):
        return skip("skipped_unknown_sender", f"Sender {sender or '(no sender address)'} is not a portal user or staff contact")

    key = audit["dedupe_key"]
    if key in state.delivered:
        what = f"Message-ID <{email.message_id}>" if email.message_id else "identical content"
        return skip("duplicate", f"Already imported from this mailbox ({what})", state.delivered[key])

    target = _thread_target(email, state)
    if target is not None:
        reply = _new_message(email, target)
        return Decision(message.uid, "threaded", None, size=message.size, audit=audit, message=reply, ticket_ref=target)

    association = directory.associate(sender, account.company_id)
    ticket = NewTicket(
        {
            "subject": (email.subject or "(no subject)")[:998],
            "status": "open",
            "priority": "normal",
            "company_id": association.company_id,
            "requester_user_id": association.requester_id if association.requester_type == "user" else None,
            "requester_staff_id": association.requester_id if association.requester_type == "staff" else None,
            "requester_email": association.requester_email,
            "source": "email",
            "source_mailbox_id": account.id,
        }
    )
    return Decision(
        message.uid, "imported", None, size=message.size, audit=audit,
        ticket=ticket, message=_new_message(email, ticket), ticket_ref=ticket,
    )


def _remember(state: BatchState, key: str, email: InboundEmail, ticket) -> None:
    """Later messages of the same batch see this one as delivered, and can thread onto it."""
    state.delivered[key] = ticket
    if email.message_id:
        state.threads[email.message_id] = ticket


def _thread_target(email: InboundEmail, state: BatchState):
    for ref in (*email.in_reply_to, *reversed(email.references)):
        target = state.threads.get(ref)
        if target is not None:
            return target
    match = TICKET_REF.search(email.subject or "")
    if match and int(match.group(1)) in state.tagged:
        return int(match.group(1))
    return None


def _new_message(email: InboundEmail, ticket) -> NewMessage:
    """The message row and its attachments: small ones travel with the rows into the database,
    large ones are stored on disk now (see portal/storage.py)."""
    root = current_app.config["ATTACHMENT_DIR"]
    attachments, blobs = [], {}
    for part in email.attachments:
        kept = storage.keep(root, part.payload)
        if kept.blob is not None:
            blobs[kept.sha256] = kept.blob
        attachments.append(
            {
                "filename": part.filename[:255],
                "content_type": (part.content_type or "application/octet-stream")[:255],
                "size": len(part.payload),
                "sha256": kept.sha256,
                "in_database": kept.blob is not None,
                "content_id": part.content_id[:255] if part.content_id else None,
                "is_inline": part.is_inline,
            }
        )
    values = {
        "author_email": email.from_.address.lower()[:320] if email.from_ and email.from_.address else None,
        "body_text": email.text or "",
        "body_html": email.html or "",
        "message_id": email.message_id[:998] if email.message_id else None,
        "in_reply_to": " ".join(email.in_reply_to) or None,
        "references": " ".join(email.references) or None,
    }
    return NewMessage(values, attachments, ticket, blobs)
