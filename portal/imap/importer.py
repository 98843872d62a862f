"""One sync of one mailbox, read top to bottom:
candidates -> fetch -> parse -> decide -> write -> mark \\Seen -> the run's result.
See docs/architecture.md, "One sync, step by step".

Exactly once: a message's ticket, attachments and ProcessedMessage row commit in the
same transaction; \\Seen is set only after that commit is durable. A crash anywhere leaves
either no row (the message is fetched again) or a committed row (the message is never turned
into a second ticket; a missing \\Seen is repaired on the next run).
"""
import logging
from collections import Counter
from dataclasses import dataclass, field

from flask import current_app

from ..extensions import db
from . import import_scope, ledger, partial_fetch, ticket_writer
from .association import Directory
from .client import FetchedMessage, FolderState, ImapSession, MessageInfo
from .credentials import sign_in
from .decide import DELIVERED, Decision, Incoming, MailboxRules, decide_batch
from .models import ImapAccount
from .parsing import parse_message
from .partial_fetch import PartialMessage, Planned
from .throughput import DownloadLane, commits_are_durable, durable_commits

log = logging.getLogger(__name__)

BATCH_MESSAGES = 200
BATCH_BYTES = 8 * 1024 * 1024
SEEN_EVERY = 1000  # \Seen is stored in groups, each after one durability barrier


@dataclass
class SyncResult:
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    uid_validity: int | None = None
    imap_seconds: float = 0.0  # waiting on the server (connect, login, commands, LOGOUT)

    @property
    def status(self) -> str:
        return "completed_with_errors" if self.counts.get("failed") else "succeeded"

    def add(self, decisions: list[Decision]) -> None:
        for d in decisions:
            self.counts[d.outcome] += 1
            if d.outcome == "failed":
                self.errors.append(f"UID {d.uid}: {d.reason}")


class Unguarded:
    """The guard of a sync nobody supervises (tests, tools): every write may go ahead."""

    def watch(self, session) -> None:
        pass

    def started(self, candidates: int) -> None:
        """Called once, when the sync knows how many messages it sets out to decide."""

    def before_write(self) -> None:
        """Raises to stop the sync before it writes a batch (tasks: lost lock, deadline)."""

    def committed(self, counts) -> None:
        """Called after each batch's COMMIT with the run's counts so far."""


def sync_account(account: ImapAccount, guard=None) -> SyncResult:
    """Fetch and import everything new in the mailbox's folder (raises ImapError when the
    server cannot be used at all; per-message problems are recorded and the run goes on).
    `guard` is told the number of candidates, asked before every batch write and told after
    every COMMIT."""
    guard = guard or Unguarded()
    result = SyncResult()
    session = sign_in(account)
    try:
        with session:
            _sync_folder(account, session, result, guard)
    finally:
        result.imap_seconds = session.wire_seconds
    return result


def _sync_folder(account: ImapAccount, session: ImapSession, result: SyncResult, guard) -> None:
    guard.watch(session)
    first_look = account.uid_validity is None
    folder = _select_folder(session, account)
    result.uid_validity = folder.uidvalidity
    scope = import_scope.apply(account, session, folder, first_look=first_look)  # import_existing
    last_seen = 0 if account.process_unread_only or scope.widened else account.last_seen_uid
    found = session.search_uids(
        unseen_only=account.process_unread_only, above_uid=scope.above_uid(last_seen), since=scope.since,
    )
    candidates, unseen_delivered = ledger.candidates(account, found)
    if unseen_delivered and account.mark_as_read and commits_are_durable():
        session.mark_seen(unseen_delivered)  # imported earlier, but that run stopped before \Seen
    if not candidates:
        return
    guard.started(len(candidates))

    infos = _set_aside_too_large(account, session, session.fetch_info(candidates), result, guard)
    _import(account, session, list(_batches(infos)), result, guard)


def _select_folder(session: ImapSession, account: ImapAccount) -> FolderState:
    folder = session.select(account.folder, readonly=not account.mark_as_read)
    if account.uid_validity != folder.uidvalidity:
        if account.uid_validity is not None:
            log.warning(
                "Mailbox %s: UIDVALIDITY changed %s -> %s; new UID epoch (Message-IDs still prevent duplicates)",
                account.id, account.uid_validity, folder.uidvalidity,
            )
        account.uid_validity = folder.uidvalidity
        account.last_seen_uid = 0
        account.import_from_uid = None  # a UID of the old epoch; import_scope finds the cut again
        db.session.commit()
    return folder


def _set_aside_too_large(account, session: ImapSession, infos: list[MessageInfo], result: SyncResult, guard) -> list:
    """Messages above IMAP_MAX_MESSAGE_BYTES: planned for a download of their text and the
    attachments that fit (partial_fetch), or recorded as skipped without a download when
    their text alone is over the limit. Returns what to download, in UID order."""
    max_bytes = current_app.config["IMAP_MAX_MESSAGE_BYTES"]
    too_large = [i for i in infos if i.size > max_bytes]
    if not too_large:
        return infos
    planned, skipped = partial_fetch.plan_large(session, too_large, max_bytes)
    if skipped:
        decisions = [Decision(i.uid, "skipped_too_large", reason, size=i.size) for i, reason in skipped]
        guard.before_write()
        result.add(ticket_writer.commit_batch(account, decisions, [i.uid for i, _ in skipped]))
        guard.committed(result.counts)
    by_uid = {p.uid: p for p in planned}
    return [by_uid.get(i.uid, i) for i in infos if i.size <= max_bytes or i.uid in by_uid]


def _download(session: ImapSession):
    """What the lane runs per batch: the bodies, or one planned message's parts."""
    max_bytes = current_app.config["IMAP_MAX_MESSAGE_BYTES"]

    def fetch(batch: list) -> list[FetchedMessage]:
        if isinstance(batch[0], Planned):
            message = partial_fetch.download(session, batch[0], max_bytes)
            return [message] if message is not None else []
        return list(session.fetch_messages([info.uid for info in batch]))

    return fetch


def _import(account, session: ImapSession, batches: list[list[MessageInfo]], result: SyncResult, guard) -> None:
    rules = MailboxRules.of(account)
    directory = Directory()
    unmarked: list[int] = []  # delivered, committed, not yet \Seen
    try:
        with DownloadLane(session, _download(session)) as lane:
            for number, fetched in enumerate(lane.download(batches), start=1):
                # \Seen is stored every SEEN_EVERY messages and at the end, each time right
                # after a durable commit: never for a row a power cut could still take back.
                mark_now = account.mark_as_read and (number == len(batches) or len(unmarked) + len(fetched) >= SEEN_EVERY)
                delivered = _import_batch(account, rules, directory, fetched, result, guard, durable=mark_now)
                if account.mark_as_read:
                    unmarked += delivered
                if mark_now and unmarked:
                    lane.mark_seen(unmarked)
                    unmarked = []
                lane.raise_failures()
    finally:
        if unmarked:  # the run is failing: still mark what was imported, if the server lets us
            try:
                _mark_seen_once_durable(session, unmarked)
            except Exception as exc:
                log.warning("Mailbox %s: could not mark %d imported message(s) \\Seen: %s", account.id, len(unmarked), exc)


def _import_batch(account, rules, directory, fetched: list[FetchedMessage], result: SyncResult, guard, *, durable: bool) -> list[int]:
    """parse -> decide -> write, one COMMIT (durable if asked); returns the UIDs that now live
    in a ticket, to be marked \\Seen. The batch's parsed mail is freed on return, before the
    next batch is parsed."""
    partial = {m.uid: m.reason for m in fetched if isinstance(m, PartialMessage)}
    incoming = _parse(account, fetched)
    lookups = ledger.lookups(account, [m.email for m in incoming if m.email is not None], directory)
    decisions = decide_batch(incoming, rules, lookups)
    for d in decisions:
        if d.uid in partial and d.adds_message:  # what stayed on the server, in the audit
            d.reason = partial[d.uid]
    guard.before_write()  # still our lock, still within the deadline: one Redis GET per batch
    with durable_commits(durable) as again:
        decisions = ticket_writer.commit_batch(account, decisions, [m.uid for m in fetched], again)
    result.add(decisions)
    guard.committed(result.counts)
    return [d.uid for d in decisions if d.outcome in DELIVERED or d.outcome == "duplicate"]


def _parse(account, fetched: list[FetchedMessage]) -> list[Incoming]:
    incoming = []
    for message in fetched:
        email, error = None, getattr(message, "error", None)
        try:
            if error is None:
                email = parse_message(message.raw)
                email.left_out.extend(getattr(message, "notes", ()))  # parts left on the server
        except Exception as exc:  # the parser is defensive; this is the last line of defence
            log.exception("Mailbox %s: could not parse UID %s", account.id, message.uid)
            email, error = None, exc
        message.raw = b""  # the parsed form is all that is needed from here on
        incoming.append(Incoming(message.uid, message.size, tuple(message.flags), email, error))
    return incoming


def _mark_seen_once_durable(session: ImapSession, uids: list[int]) -> None:
    """\\Seen only for messages whose rows would survive a power loss. When the database
    cannot promise that now, they stay unseen: the next run finds them recorded and marks them."""
    if commits_are_durable():
        session.mark_seen(uids)
    else:
        log.warning("Database busy: %d message(s) will be marked \\Seen on the next run", len(uids))


def _batches(infos: list):
    """Batches of at most BATCH_MESSAGES and BATCH_BYTES; a planned (too large) message
    travels alone."""
    batch, size = [], 0
    for info in infos:
        alone = isinstance(info, Planned)
        if batch and (alone or len(batch) >= BATCH_MESSAGES or size + info.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += info.size
        if alone:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
