"""Which of the mail already in the folder a mailbox imports: `import_existing`.

- "all": every message is a candidate (as before the setting existed).
- "since": only messages whose INTERNALDATE is on or after `import_since` (`UID SEARCH SINCE`).
- "none": only mail that arrives from the mailbox's creation on. The cut is a UID, recorded in
  `import_from_uid` when the folder is first looked at: the lowest UID whose INTERNALDATE is at
  or after the moment the mailbox was created (to the second), or the folder's UIDNEXT when
  there is none. UIDs are given in arrival order, so everything from that UID on arrived after
  the mailbox was created, and mail that arrived between creation and the first sync is not
  lost. A new UIDVALIDITY (or choosing "none" on a mailbox that already synced) computes the
  cut again, from the last sync's time instead of the creation time.

Each sync records in `import_left_out` how many messages the scope keeps out (those the
mailbox's own criteria — unread only or all — would take, not already recorded). When that
number drops, the scope may have widened: a mailbox that looks only above `last_seen_uid`
looks at the whole folder once, so changing the setting takes effect at the next sync.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from .client import FolderState, ImapSession
from .client_wire import chunks
from .models import ImapAccount, ProcessedMessage

DATES_PER_FETCH = 1000


@dataclass(frozen=True)
class Scope:
    since: date | None = None  # INTERNALDATE on or after
    from_uid: int | None = None  # UIDs from this one on
    left_out: int = 0
    widened: bool = False  # fewer left out than at the last sync

    def above_uid(self, last_seen_uid: int) -> int:
        """The UID the candidate search starts above."""
        floor = self.from_uid - 1 if self.from_uid else 0
        return max(last_seen_uid, floor)


def apply(account: ImapAccount, session: ImapSession, folder: FolderState, *, first_look: bool) -> Scope:
    """The scope of this sync; records import_from_uid (for "none") and import_left_out.
    ``first_look``: the folder was never selected before (the cut counts from the creation)."""
    since = account.import_since if account.import_existing == "since" else None
    from_uid = None
    if account.import_existing == "none":
        if account.import_from_uid is None:
            start = account.created_at if first_look else (account.last_synced_at or account.created_at)
            account.import_from_uid = first_uid_after(session, folder, start)
        from_uid = account.import_from_uid
    elif account.import_from_uid is not None:
        account.import_from_uid = None  # no longer "none": chosen again later, it is computed again

    unseen_only = account.process_unread_only
    if since is not None:
        excluded = session.search_uids(unseen_only=unseen_only, before=since)
    elif from_uid is not None:
        excluded = session.search_uids(unseen_only=unseen_only, below_uid=from_uid)
    else:
        excluded = []
    left_out = len(excluded) - _recorded(account, excluded)
    scope = Scope(since, from_uid, left_out, widened=left_out < (account.import_left_out or 0))
    account.import_left_out = left_out
    if db.session.is_modified(account):
        db.session.commit()
    return scope


def first_uid_after(session: ImapSession, folder: FolderState, moment: datetime) -> int:
    """The lowest UID whose INTERNALDATE is at or after ``moment`` (naive UTC, taken to the
    second, as INTERNALDATE is), else the folder's UIDNEXT."""
    moment = moment.replace(microsecond=0)
    # SEARCH SINCE compares dates in the message's time zone (RFC 3501) or the server's
    # (Dovecot): from a day earlier, every message at or after the moment is found
    recent = session.search_uids(unseen_only=False, since=(moment - timedelta(days=1)).date())
    for batch in chunks(recent, DATES_PER_FETCH):
        dates = session.fetch_items(batch, "(UID INTERNALDATE)")
        for uid in batch:
            item = dates.get(uid)
            if item is not None and item.internaldate is not None and item.internaldate >= moment:
                return uid
    if folder.uidnext:
        return folder.uidnext
    every = session.search_uids(unseen_only=False)
    return every[-1] + 1 if every else 1


def _recorded(account: ImapAccount, uids: list[int]) -> int:
    """How many of these (sorted) UIDs this mailbox has recorded in the current epoch."""
    if not uids:
        return 0
    rows = db.session.scalars(
        select(ProcessedMessage.uid).where(
            ProcessedMessage.account_id == account.id,
            ProcessedMessage.uid_validity == account.uid_validity,
            ProcessedMessage.uid >= uids[0],
            ProcessedMessage.uid <= uids[-1],
        )
    )
    wanted = set(uids)
    return sum(1 for uid in rows if uid in wanted)
