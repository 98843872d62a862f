"""What becomes of one email: a ticket, a reply on a ticket, or a recorded skip (pure).

`decide` takes a parsed email, the mailbox's rules and the batch's lookups and returns a
`Decision`. The rules run in this order, and live here and nowhere else:
filter_query -> automatic mail (out-of-office, bounces: per the mailbox's switches) ->
known sender -> dedupe -> threading -> association.
Nothing here touches Flask, the database or the network; `ledger.py` loads the lookups
and `ticket_writer.py` stores the decisions.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from . import filters
from .association import Association, Directory, TicketParties
from .filter_context import build_context
from .parsing import InboundEmail
from .subjects import base_subject, mentioned_ticket

log = logging.getLogger(__name__)

#: Outcomes that mean "this message now lives in a ticket".
DELIVERED = ("imported", "threaded")


class NewTicket:
    """A ticket this batch creates; the writer gives it its id."""

    __slots__ = ("id",)

    def __init__(self):
        self.id: int | None = None


#: The ticket a message lands in: one made in this batch, or the id of a stored one.
TicketRef = NewTicket | int


@dataclass(frozen=True)
class MailboxRules:
    """The parts of a mailbox that decide what becomes of its mail."""

    account_id: int
    account_name: str
    company_id: int | None
    folder: str
    filter_query: dict | None
    sync_known_only: bool
    skip_auto_replies: bool = True
    skip_bounces: bool = True

    @classmethod
    def of(cls, account) -> MailboxRules:
        return cls(
            account.id, account.name, account.company_id, account.folder, account.filter_query, account.sync_known_only,
            account.skip_auto_replies is not False, account.skip_bounces is not False,
        )


@dataclass(frozen=True)
class DeliveredElsewhere:
    """A message another of our mailboxes already delivered."""

    ticket_id: int | None
    mailbox: str


@dataclass
class Lookups:
    """What a batch knows before its messages are decided; each delivered message is
    remembered, so later messages of the same batch see it."""

    directory: Directory
    delivered: dict[str, TicketRef | None] = field(default_factory=dict)  # dedupe key -> its ticket (this mailbox)
    # Message-ID dedupe key -> where another mailbox delivered it (content hashes stay per mailbox)
    delivered_elsewhere: dict[str, DeliveredElsewhere] = field(default_factory=dict)
    threads: dict[str, TicketRef] = field(default_factory=dict)  # stored Message-ID -> its ticket
    tagged: dict[int, TicketParties] = field(default_factory=dict)  # stored tickets named in subjects (#id, ...)
    # (sender, base subject) -> the sender's open ticket of this mailbox with that subject,
    # created or updated in the last 30 days (the newest)
    recent: dict[tuple[str, str], TicketRef] = field(default_factory=dict)

    def remember(self, decision: Decision) -> None:
        email = decision.email
        self.delivered[dedupe_key(email)] = decision.target
        if email.message_id:
            self.threads[email.message_id] = decision.target
        if decision.new_ticket is not None and (key := subject_key(email)) is not None:
            self.recent[key] = decision.target


@dataclass
class Incoming:
    """One fetched message, parsed (or the error that kept it from being parsed)."""

    uid: int
    size: int
    flags: tuple[str, ...]
    email: InboundEmail | None
    error: Exception | None = None


@dataclass
class Decision:
    uid: int
    outcome: str
    reason: str | None = None
    size: int | None = None
    email: InboundEmail | None = None
    target: TicketRef | None = None  # the ticket it creates, joins, or duplicates
    association: Association | None = None  # company and requester of a new ticket
    notes: list[str] = field(default_factory=list)  # said on the ticket message, e.g. what was not followed

    @property
    def new_ticket(self) -> NewTicket | None:
        return self.target if self.outcome == "imported" else None

    @property
    def adds_message(self) -> bool:
        return self.outcome in DELIVERED


def dedupe_key(email: InboundEmail) -> str:
    if email.message_id:
        return "mid:" + email.message_id[:1000]
    return "sha256:" + email.raw_sha256


def failure(uid: int, size: int | None, email: InboundEmail | None, exc: BaseException) -> Decision:
    reason = f"{exc.__class__.__name__}: {exc}"[:2000]
    return Decision(uid, "failed", reason, size=size, email=email)


def decide_batch(messages: list[Incoming], rules: MailboxRules, lookups: Lookups) -> list[Decision]:
    """One decision per message, in order. A message that cannot be decided is `failed`
    with the error; the others go on."""
    decisions = []
    for message in messages:
        try:
            if message.error is not None:
                raise message.error
            decision = decide(message, rules, lookups)
        except Exception as exc:
            log.error("Mailbox %s: UID %s failed: %s", rules.account_id, message.uid, exc, exc_info=exc)
            decision = failure(message.uid, message.size, message.email, exc)
        if decision.adds_message:
            lookups.remember(decision)
        decisions.append(decision)
    return decisions


def decide(message: Incoming, rules: MailboxRules, lookups: Lookups) -> Decision:
    email = message.email

    def outcome(name, reason=None, target=None, association=None, notes=()):
        return Decision(message.uid, name, reason, message.size, email, target, association, list(notes))

    if rules.filter_query:
        try:
            passes = filters.evaluate(rules.filter_query, _filter_context(message, rules))
        except filters.FilterTimeout as exc:
            return outcome("failed", str(exc))
        if not passes:
            return outcome("skipped_filter", "Did not match the mailbox's filter_query")

    if rules.skip_auto_replies and (why := auto_reply(email)):
        return outcome("skipped_auto_reply", f"Auto-reply: {why}")
    if rules.skip_bounces and (why := bounce(email)):
        return outcome("skipped_bounce", f"Bounce: {why}")

    sender = sender_address(email)
    if rules.sync_known_only and not lookups.directory.is_known_sender(sender):
        return outcome("skipped_unknown_sender", f"Sender {sender or '(no sender address)'} is not a portal user or staff contact")

    key = dedupe_key(email)
    if key in lookups.delivered:
        what = f"Message-ID <{email.message_id}>" if email.message_id else "identical content"
        return outcome("duplicate", f"Already imported from this mailbox ({what})", lookups.delivered[key])
    elsewhere = lookups.delivered_elsewhere.get(key) if email.message_id else None
    if elsewhere is not None:
        reason = f"Already imported from mailbox {elsewhere.mailbox} (Message-ID <{email.message_id}>)"
        return outcome("duplicate", reason, elsewhere.ticket_id)

    target, how = thread_target(email, lookups)
    if target is not None:
        return outcome("threaded", how, target=target)

    notes = []
    tag = ticket_tag(email)
    if tag in lookups.tagged:  # named by a sender who may not write into it
        notes.append(f"Subject mentions ticket #{tag}; the sender is neither its requester nor a contact "
                     "of its company, so this message opened a new ticket")
    association = lookups.directory.associate(sender, rules.company_id)
    return outcome("imported", target=NewTicket(), association=association, notes=notes)


def _filter_context(message: Incoming, rules: MailboxRules) -> dict:
    return build_context(
        message.email,
        account_id=rules.account_id,
        account_name=rules.account_name,
        company_id=rules.company_id,
        folder=rules.folder,
        flags=list(message.flags),
        size=message.size,
    )


def thread_target(email: InboundEmail, lookups: Lookups) -> tuple[TicketRef | None, str | None]:
    """The ticket a reply belongs to, and how it was found (None for a header match, which
    needs no explanation):
    1. a referenced Message-ID (newest reference first), from any sender: knowing the
       Message-ID is the proof;
    2. a ticket number in the subject (`[#123]`, `Ticket 123`, `#123`) naming a stored ticket,
       only from a sender who may write into it (anyone can type a number);
    3. the same subject, without Re:/Fw:/AW:/SV:/RV: prefixes, as the sender's open ticket from
       this mailbox created or updated in the last 30 days (the sender is its requester)."""
    for ref in (*email.in_reply_to, *reversed(email.references)):
        target = lookups.threads.get(ref)
        if target is not None:
            return target, None
    sender = sender_address(email)
    tag = ticket_tag(email)
    parties = lookups.tagged.get(tag) if tag is not None else None
    if parties is not None and lookups.directory.may_write_into(sender, parties):
        return tag, f"Subject names ticket #{tag}"
    key = subject_key(email)
    target = lookups.recent.get(key) if key is not None else None
    if target is not None:
        return target, "Same subject as the sender's open ticket"
    return None, None


def sender_address(email: InboundEmail) -> str:
    return email.from_.address.lower() if email.from_ and email.from_.address else ""


def ticket_tag(email: InboundEmail) -> int | None:
    """The ticket number the subject mentions, if any (subjects.mentioned_ticket)."""
    return mentioned_ticket(email.subject)


def subject_key(email: InboundEmail) -> tuple[str, str] | None:
    """(sender, base subject): what the same-subject rule matches on; None without either."""
    sender, subject = sender_address(email), base_subject(email.subject)
    return (sender, subject) if sender and subject else None


# --------------------------------------------------------------------------
# Automatic mail: out-of-office replies and bounces are skipped per mailbox; everything else
# automatic (alerts, Auto-Submitted: auto-generated, Precedence: bulk/list/junk, mail from
# postmaster@ that is no bounce) is imported. The product sends no mail, so no loop to guard.
# --------------------------------------------------------------------------

_HEADER_VALUE_CHARS = 200  # of a header value quoted in a reason


def _said(label: str, value: str) -> str:
    return f"{label}: {' '.join(value.split())[:_HEADER_VALUE_CHARS]}".rstrip(": ")


def auto_reply(email: InboundEmail) -> str | None:
    """Why ``email`` is an out-of-office or vacation reply (RFC 3834 and the common
    X- headers), or None."""
    headers = email.headers
    for value in headers.get("auto-submitted", []):
        if value.split(";", 1)[0].strip().lower() == "auto-replied":
            return _said("Auto-Submitted", value)
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        for value in headers.get(name, []):
            if value.strip().lower() not in ("no", "false", "0"):
                return _said(label, value)
    for value in headers.get("precedence", []):
        if value.strip().lower() == "auto_reply":
            return _said("Precedence", value)
    return None


def bounce(email: InboundEmail) -> str | None:
    """Why ``email`` is a delivery status notification, or None: a multipart/report of
    report-type delivery-status (RFC 3464), or a null Return-Path (the envelope sender of
    every bounce, RFC 5321) on a message that is not an auto-reply (those are the other
    switch's)."""
    if email.is_delivery_report:
        return "Content-Type: multipart/report; report-type=delivery-status"
    for value in email.headers.get("return-path", []):
        if value.replace(" ", "") in ("<>", "") and auto_reply(email) is None:
            return "Return-Path: <>"
    return None
