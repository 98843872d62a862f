"""What the database already knows about a mailbox's mail, read in a few IN queries per batch:
which UIDs are recorded, which messages were delivered (by this mailbox, or by another one
with the same Message-ID), which tickets replies can thread onto and whom they belong to,
and who the senders are."""
from datetime import timedelta

from sqlalchemy import any_, bindparam, func, or_, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import NullType, String

from ..extensions import db
from ..models import CompanyDomain, Staff, Ticket, TicketMessage, User, utcnow
from .association import Directory, TicketParties
from .decide import DELIVERED, DeliveredElsewhere, Lookups, dedupe_key, subject_key, ticket_tag
from .subjects import base_subject
from .models import MAX_ATTEMPTS, RULE_SKIPS, ImapAccount, ProcessedMessage
from .parsing import InboundEmail

CHUNK = 500  # values per IN (...) list
SAME_SUBJECT_DAYS = 30  # a same-subject reply threads onto a ticket created or updated this recently
SAME_SUBJECT_ROWS = 2000  # tickets read per chunk of senders (the newest)


def candidates(account: ImapAccount, found: list[int]) -> tuple[list[int], list[int]]:
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
    # Two index ranges (ix_imap_processed_again), not one OR that both databases would answer
    # by reading every row of the mailbox's epoch: this query runs on every sync.
    again = set(
        db.session.scalars(
            union_all(
                select(ProcessedMessage.uid).where(
                    in_epoch, ProcessedMessage.outcome == "failed", ProcessedMessage.attempts < MAX_ATTEMPTS),
                select(ProcessedMessage.uid).where(
                    in_epoch, ProcessedMessage.outcome.in_(RULE_SKIPS),
                    ProcessedMessage.rules_version < account.rules_version),
            )
        )
    )
    fresh = {uid for uid in found if uid not in recorded} | again
    unseen_delivered = []
    if account.process_unread_only:
        unseen_delivered = [uid for uid in found if recorded.get(uid) in DELIVERED + ("duplicate",)]
    return sorted(fresh), unseen_delivered


def recorded_rows(account: ImapAccount, uids: list[int]) -> dict[int, ProcessedMessage]:
    """The audit rows these UIDs already have in this epoch (messages being retried)."""
    if not uids:
        return {}
    rows = db.session.scalars(
        select(ProcessedMessage).where(
            ProcessedMessage.account_id == account.id,
            ProcessedMessage.uid_validity == account.uid_validity,
            one_of(ProcessedMessage.uid, uids),
        )
    )
    return {row.uid: row for row in rows}


def lookups(account: ImapAccount, emails: list[InboundEmail], directory: Directory) -> Lookups:
    """Everything deciding this batch needs from the database."""
    load_senders(directory, [e.from_.address for e in emails if e.from_])
    delivered, elsewhere = _delivered(account, [dedupe_key(e) for e in emails])
    threads, tagged = _thread_targets(emails)
    return Lookups(directory, delivered, elsewhere, threads, tagged, _recent_subjects(account, emails))


def load_senders(directory: Directory, addresses) -> None:
    """Tell the run's directory about these senders: staff and users in two queries (and
    the company domains, once per run)."""
    if directory.domains is None:
        directory.domains = dict(db.session.execute(select(CompanyDomain.domain, CompanyDomain.company_id)).all())
    wanted = sorted(directory.missing(addresses))
    staff = {address: [] for address in wanted}
    users = dict.fromkeys(wanted)
    for chunk in _chunks(wanted):
        for staff_id, company_id, email in db.session.execute(
            select(Staff.id, Staff.company_id, func.lower(Staff.email)).where(one_of(func.lower(Staff.email), chunk))
        ):
            staff.setdefault(email, []).append((staff_id, company_id))
        for user_id, email in db.session.execute(
            select(User.id, func.lower(User.email)).where(one_of(func.lower(User.email), chunk))
        ):
            users[email] = user_id
    for address in wanted:
        directory.add(address, staff[address], users[address])


def _delivered(account: ImapAccount, keys: list[str]) -> tuple[dict[str, int | None], dict[str, DeliveredElsewhere]]:
    """The keys already delivered: by this mailbox (dedupe key -> ticket id), and, for
    Message-ID keys only, by another mailbox (the first one to deliver it)."""
    mine, elsewhere = {}, {}
    for chunk in _chunks(sorted(set(keys))):
        rows = db.session.execute(
            select(ProcessedMessage.dedupe_key, ProcessedMessage.ticket_id, ProcessedMessage.account_id, ImapAccount.name)
            .join(ImapAccount, ImapAccount.id == ProcessedMessage.account_id)
            .where(one_of(ProcessedMessage.dedupe_key, chunk), ProcessedMessage.outcome.in_(DELIVERED))
            .order_by(ProcessedMessage.id)
        )
        for key, ticket_id, account_id, mailbox in rows:
            if account_id == account.id:
                mine[key] = ticket_id
            elif key.startswith("mid:") and key not in elsewhere:
                elsewhere[key] = DeliveredElsewhere(ticket_id, mailbox)
    return mine, elsewhere


def _thread_targets(emails: list[InboundEmail]) -> tuple[dict[str, int], dict[int, TicketParties]]:
    """The stored tickets this batch's replies can thread onto: by referenced Message-ID,
    and by the [#id] tags in subjects (with whom each tagged ticket belongs to)."""
    refs = sorted({ref for e in emails for ref in (*e.in_reply_to, *e.references)})
    threads = {}
    for chunk in _chunks(refs):
        for message_id, ticket_id in db.session.execute(
            select(TicketMessage.message_id, TicketMessage.ticket_id).where(one_of(TicketMessage.message_id, chunk))
        ):
            threads.setdefault(message_id, ticket_id)
    tags = sorted({tag for e in emails if (tag := ticket_tag(e)) is not None})
    tagged = {}
    for chunk in _chunks(tags):
        for ticket_id, *parties in db.session.execute(
            select(Ticket.id, Ticket.company_id, Ticket.requester_email, Ticket.requester_user_id, Ticket.requester_staff_id)
            .where(one_of(Ticket.id, chunk))
        ):
            tagged[ticket_id] = TicketParties(*parties)
    return threads, tagged


def _recent_subjects(account: ImapAccount, emails: list[InboundEmail]) -> dict[tuple[str, str], int]:
    """(sender, base subject) -> the newest open ticket of this mailbox that the sender is the
    requester of, with that base subject, created or updated in the last SAME_SUBJECT_DAYS."""
    wanted = {key for e in emails if (key := subject_key(e)) is not None}
    senders = sorted({sender for sender, _ in wanted})
    cutoff = utcnow() - timedelta(days=SAME_SUBJECT_DAYS)
    recent = {}
    for chunk in _chunks(senders):
        rows = db.session.execute(
            select(Ticket.id, Ticket.requester_email, Ticket.subject)
            .where(
                Ticket.source_mailbox_id == account.id,
                one_of(Ticket.requester_email, chunk),
                Ticket.status != "closed",
                or_(Ticket.updated_at >= cutoff, Ticket.created_at >= cutoff),
            )
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
            .limit(SAME_SUBJECT_ROWS)
        )
        for ticket_id, requester, subject in rows:
            key = ((requester or "").lower(), base_subject(subject))
            if key in wanted:
                recent.setdefault(key, ticket_id)
    return recent


def one_of(column, values: list):
    """`column IN values`. On PostgreSQL `column = ANY(<one array parameter>)`: the statement
    is the same whatever the number of values, where an IN list of 200 parameters is a new
    statement to build, send and plan each time (2 ms against 0.8 ms for 200 senders)."""
    if db.engine.dialect.name == "postgresql":
        item_type = String() if isinstance(column.type, NullType) else column.type  # lower(...) has no type
        return column == any_(bindparam(None, list(values), type_=ARRAY(item_type)))
    return column.in_(values)


def _chunks(items: list):
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]
