"""What becomes of one email: a ticket, a reply on a ticket, or a recorded skip (pure).

`decide` takes a parsed email, the mailbox's rules and the batch's lookups and returns a
`Decision`. The rules run in this order, and live here and nowhere else:
filter_query -> loop guard -> known sender -> dedupe -> threading -> association.
Nothing here touches Flask, the database or the network; `ledger.py` loads the lookups
and `ticket_writer.py` stores the decisions.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from . import filters
from .association import Association, Directory, TicketParties
from .filter_context import build_context
from .parsing import InboundEmail

log = logging.getLogger(__name__)

TICKET_REF = re.compile(r"\[#(\d{1,12})\]")
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

    @classmethod
    def of(cls, account) -> MailboxRules:
        return cls(account.id, account.name, account.company_id, account.folder, account.filter_query, account.sync_known_only)


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
    tagged: dict[int, TicketParties] = field(default_factory=dict)  # stored tickets named by [#id] in subjects

    def remember(self, decision: Decision) -> None:
        email = decision.email
        self.delivered[dedupe_key(email)] = decision.target
        if email.message_id:
            self.threads[email.message_id] = decision.target


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

    automatic = is_auto_generated(email)
    if automatic:
        return outcome("skipped_auto_reply", f"Automatic message ({automatic})")

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

    target = thread_target(email, lookups)
    if target is not None:
        return outcome("threaded", target=target)

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


def thread_target(email: InboundEmail, lookups: Lookups) -> TicketRef | None:
    """The ticket a reply belongs to: by a referenced Message-ID (newest reference first),
    from any sender (knowing the Message-ID is the proof), else by a `[#id]` tag in the
    subject naming a stored ticket, only from a sender who may write into that ticket
    (anyone can type a ticket number)."""
    for ref in (*email.in_reply_to, *reversed(email.references)):
        target = lookups.threads.get(ref)
        if target is not None:
            return target
    tag = ticket_tag(email)
    parties = lookups.tagged.get(tag) if tag is not None else None
    if parties is not None and lookups.directory.may_write_into(sender_address(email), parties):
        return tag
    return None


def sender_address(email: InboundEmail) -> str:
    return email.from_.address.lower() if email.from_ and email.from_.address else ""


def ticket_tag(email: InboundEmail) -> int | None:
    match = TICKET_REF.search(email.subject or "")
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------
# Loop guard
# --------------------------------------------------------------------------

_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


def is_auto_generated(email: InboundEmail) -> str | None:
    """Why ``email`` looks machine-sent (so never auto-reply to it), or None."""
    headers = email.headers
    for value in headers.get("auto-submitted", []):
        token = value.split(";", 1)[0].strip().lower()
        if token and token != "no":
            return f"Auto-Submitted: {value.strip()}"
    for value in headers.get("precedence", []):
        if value.strip().lower() in _BULK_PRECEDENCE:
            return f"Precedence: {value.strip()}"
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if name in headers:
            return f"{label}: {headers[name][0].strip()}".rstrip(": ")
    for value in headers.get("return-path", []):
        if value.replace(" ", "") in ("<>", ""):
            return "Return-Path: <>"
    for label, addresses in (("From", email.from_addresses), ("Sender", email.sender)):
        for address in addresses:
            local = address.address.rpartition("@")[0] or address.address
            if local.strip().strip('"').lower() in _DAEMON_LOCAL_PARTS:
                return f"{label}: {address.address}"
    return None
