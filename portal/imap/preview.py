"""Filter preview: what a sync would do with the newest messages of a mailbox's folder under
settings not saved yet (the form's filter and switches), and which rule decided.

It runs the sync's own steps and decision code (sign_in, fetch, parse_message, ledger.lookups,
decide.decide_batch) but writes nothing: the folder is opened read-only (EXAMINE) and read
with BODY.PEEK, so no flag changes; no audit rows, tickets or runs are made; the stored
mailbox object is never changed (the unsaved settings are laid over it).
"""
from __future__ import annotations

import dataclasses
from collections import Counter

from flask import current_app

from ..models import isoformat
from ..validation import Checker, ValidationError
from . import filters, ledger, schemas
from .association import Directory
from .credentials import sign_in
from .decide import Decision, Incoming, Lookups, MailboxRules, NewTicket, decide_batch
from .filter_context import build_context
from .models import RULE_SKIPS
from .parsing import parse_message

#: The mailbox settings that change what a sync decides, as the form and the API name them.
SETTINGS = ("filter_query", "sync_known_only", "skip_auto_replies", "skip_bounces", "process_unread_only")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
BATCH_BYTES = 8 * 1024 * 1024  # parsed and decided together, as the importer's batches

#: The mailbox setting (or step of a sync) behind each outcome.
RULE_OF = {
    "skipped_filter": "filter_query",
    "skipped_auto_reply": "skip_auto_replies",
    "skipped_bounce": "skip_bounces",
    "skipped_unknown_sender": "sync_known_only",
    "duplicate": "dedupe",
    "threaded": "threading",
}
NOT_PREVIEWED = "not_previewed"


def read_request(payload) -> tuple[dict, int]:
    """(settings to lay over the stored mailbox, how many messages) from an API body; raises
    ValidationError with the same per-field messages as saving the mailbox would."""
    payload = {} if payload is None else payload
    allowed = {name for name in SETTINGS if name in schemas.WRITABLE} | {"limit"}
    check = Checker(payload, allowed)
    limit = DEFAULT_LIMIT
    if "limit" in check.payload:
        limit = check.integer("limit", minimum=1, maximum=MAX_LIMIT)
    errors = dict(check.errors)
    settings = {}
    try:
        settings = schemas.validate_account({k: v for k, v in check.payload.items() if k in allowed - {"limit"}},
                                            partial=True)
    except ValidationError as exc:
        for field, messages in exc.errors.items():
            errors.setdefault(field, []).extend(m for m in messages if m not in errors.get(field, []))
    if errors:
        raise ValidationError(errors, "Invalid preview settings")
    return settings, limit


class _WithSettings:
    """The stored mailbox as seen with unsaved settings laid over it (the row itself is not touched)."""

    def __init__(self, account, settings: dict):
        self._account = account
        self._settings = settings

    def __getattr__(self, name):
        if name in self._settings:
            return self._settings[name]
        return getattr(self._account, name)


def preview(account, settings: dict, limit: int = DEFAULT_LIMIT) -> dict:
    """The newest `limit` messages of the mailbox's folder, newest first, each with what a sync
    under `settings` would do. Raises ImapError (and SignInNeedsAction) like a sync."""
    view = _WithSettings(account, settings)
    rules = MailboxRules.of(view)
    max_bytes = current_app.config["IMAP_MAX_MESSAGE_BYTES"]
    rows = []
    with sign_in(account) as session:
        folder = session.select(account.folder, readonly=True)  # EXAMINE: nothing on the server changes
        found = session.search_uids(unseen_only=False)
        infos = session.fetch_info(found[-limit:])
        same_epoch = folder.uidvalidity == account.uid_validity
        recorded = ledger.recorded_rows(account, [i.uid for i in infos]) if same_epoch else {}
        too_large = [i for i in infos if i.size > max_bytes]
        rows += [_not_previewed(i, max_bytes) for i in too_large]
        readable = [i for i in infos if i.size <= max_bytes]
        sizes = {i.uid: i.size for i in readable}
        running = Lookups(Directory())
        new_tickets: dict[int, int] = {}  # id(NewTicket) -> the UID that opens it
        batch, batch_bytes = [], 0
        for fetched in session.fetch_messages([i.uid for i in readable], sizes=sizes):
            batch.append(_parsed(fetched))
            batch_bytes += fetched.size
            if batch_bytes >= BATCH_BYTES:
                rows += _decide(account, rules, batch, running, new_tickets)
                batch, batch_bytes = [], 0
        if batch:
            rows += _decide(account, rules, batch, running, new_tickets)
    changed = _rules_changed(account, settings)
    for row in rows:
        _note_next_sync(row, recorded.get(row["uid"]), view, changed)
    rows.sort(key=lambda row: row["uid"], reverse=True)
    return {
        "folder": account.folder,
        "messages_in_folder": len(found),
        "previewed": len(rows),
        "limit": limit,
        "counts": dict(Counter(row["outcome"] for row in rows)),
        "items": rows,
    }


def _parsed(fetched) -> Incoming:
    try:
        email, error = parse_message(fetched.raw), None
    except Exception as exc:  # the parser is defensive; as in the importer, the last line of defence
        email, error = None, exc
    fetched.raw = b""
    if email is not None:
        for attachment in email.attachments:  # deciding needs that they exist, not their bytes
            attachment.payload = b""
    return Incoming(fetched.uid, fetched.size, tuple(fetched.flags), email, error)


def _decide(account, rules: MailboxRules, batch: list[Incoming], running: Lookups, new_tickets: dict) -> list[dict]:
    """decide_batch on one batch, with the database's lookups for it plus what the batches
    before it would have delivered (a real sync would have written those by now)."""
    stored = ledger.lookups(account, [m.email for m in batch if m.email is not None], running.directory)
    for f in dataclasses.fields(Lookups):
        mine, theirs = getattr(running, f.name), getattr(stored, f.name)
        if isinstance(mine, dict):
            setattr(running, f.name, {**theirs, **mine})
    decisions = decide_batch(batch, rules, running)
    rows = []
    for message, decision in zip(batch, decisions):
        if isinstance(decision.target, NewTicket) and decision.outcome == "imported":
            new_tickets[id(decision.target)] = decision.uid
        rows.append(_row(message, decision, rules, new_tickets))
    return rows


def _row(message: Incoming, decision: Decision, rules: MailboxRules, new_tickets: dict) -> dict:
    email = message.email
    target = decision.target
    ticket_id = target if isinstance(target, int) else None
    reason = decision.reason
    if decision.outcome == "skipped_filter":
        context = build_context(email, account_id=rules.account_id, account_name=rules.account_name,
                                company_id=rules.company_id, folder=rules.folder, flags=list(message.flags),
                                size=message.size)
        reason = filters.why_rejected(rules.filter_query, context)
    elif isinstance(target, NewTicket) and decision.outcome != "imported":
        opener = new_tickets.get(id(target))
        reason = reason or (f"Joins the new ticket of UID {opener}" if opener else "Joins a new ticket")
    elif decision.outcome == "threaded" and ticket_id:
        reason = reason or f"Reply to ticket #{ticket_id}"
    elif decision.outcome == "imported":
        reason = "; ".join([reason or "Becomes a new ticket", *decision.notes])
    return {
        "uid": message.uid,
        "date": isoformat(email.date) if email and email.date else None,
        "from": (email.from_raw or (email.from_.address if email.from_ else "")) if email else "",
        "subject": email.subject if email else "",
        "size": message.size,
        "flags": list(message.flags),
        "outcome": decision.outcome,
        "rule": RULE_OF.get(decision.outcome),
        "reason": reason,
        "ticket_id": ticket_id,
    }


def _not_previewed(info, max_bytes: int) -> dict:
    return {
        "uid": info.uid, "date": None, "from": "", "subject": "", "size": info.size, "flags": list(info.flags),
        "outcome": NOT_PREVIEWED, "rule": "IMAP_MAX_MESSAGE_BYTES", "ticket_id": None,
        "reason": f"{info.size:,} bytes, over IMAP_MAX_MESSAGE_BYTES ({max_bytes:,}): the preview does not download it",
    }


def _rules_changed(account, settings: dict) -> bool:
    """Saving these settings would make earlier rule skips eligible again (rules_version)."""
    return any(getattr(account, name, None) != value for name, value in settings.items() if name != "process_unread_only")


def _note_next_sync(row: dict, recorded, view, rules_changed: bool) -> None:
    """Whether the next sync would look at this message at all (`candidate`), and why not."""
    note, candidate = None, True
    if recorded is not None:
        note = f"Recorded as {recorded.outcome}" + (f" (ticket #{recorded.ticket_id})" if recorded.ticket_id else "")
        candidate = recorded.outcome == "failed" or (recorded.outcome in RULE_SKIPS and rules_changed)
    if view.process_unread_only and any(flag.lower() == "\\seen" for flag in row["flags"]):
        note, candidate = "Already read: with 'unread only' a sync leaves it alone", False
    row["candidate"] = candidate
    row["recorded"] = {"outcome": recorded.outcome, "ticket_id": recorded.ticket_id} if recorded is not None else None
    row["note"] = note
