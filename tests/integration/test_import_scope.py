"""'Existing mail' (import_existing / import_since) against a real Dovecot: the first sync does
not flood the desk with what was already in the folder, and says how much it left out."""
import imaplib
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.imap.models import ProcessedMessage
from tests.conftest import login
from tests.integration.imap_helpers import create_mailbox, sync, tickets
from tests.support.mail import make_email

TODAY = datetime.now(timezone.utc).date()
SINCE = TODAY - timedelta(days=30)


def append_dated(imap_account, raw: bytes, day: date, folder="INBOX", flags=()) -> int:
    """APPEND with an INTERNALDATE (noon UTC of ``day``), as mail that arrived back then."""
    when = datetime(day.year, day.month, day.day, 12, 0, tzinfo=timezone.utc)
    client = imap_account.connect()
    try:
        typ, _ = client.append(folder, " ".join(flags) or None, imaplib.Time2Internaldate(when), raw)
        assert typ == "OK"
        client.select(folder, readonly=True)
        typ, data = client.uid("SEARCH", "ALL")
        return max(int(uid) for uid in data[0].split())
    finally:
        client.logout()


def subjects() -> list[str]:
    return sorted(t.subject for t in tickets())


def detail_page(client, mailbox) -> str:
    login(client, "admin@portal.test")
    return client.get(f"/admin/modules/imap/{mailbox.id}").get_data(as_text=True)


@pytest.mark.parametrize("unread_only", [True, False], ids=["unread-only", "all-mail"])
def test_since_leaves_older_mail_out_and_an_earlier_date_takes_effect_next_sync(app_ctx, api, client, imap_account, unread_only):
    for n, day in enumerate([TODAY - timedelta(days=400), TODAY - timedelta(days=45), SINCE - timedelta(days=1)]):
        append_dated(imap_account, make_email(subject=f"Old {n}"), day)
    append_dated(imap_account, make_email(subject="On the day"), SINCE)
    append_dated(imap_account, make_email(subject="Recent"), TODAY - timedelta(days=2))
    mailbox = create_mailbox(imap_account, import_existing="since", import_since=SINCE, process_unread_only=unread_only)

    assert sync(mailbox)["counts"] == {"imported": 2}
    assert subjects() == ["On the day", "Recent"]
    assert mailbox.import_left_out == 3
    assert api.get(f"/api/imap/accounts/{mailbox.id}").get_json()["import_left_out"] == 3
    assert "3 older messages left out by 'Existing mail'" in detail_page(client, mailbox)

    append_dated(imap_account, make_email(subject="New today"), TODAY)
    assert sync(mailbox)["counts"] == {"imported": 1}
    assert mailbox.import_left_out == 3  # still there, still left out

    response = api.put(f"/api/imap/accounts/{mailbox.id}", json={"import_since": (TODAY - timedelta(days=60)).isoformat()})
    assert response.status_code == 200, response.get_json()
    db.session.expire_all()
    assert sync(mailbox)["counts"] == {"imported": 2}
    assert "Old 1" in subjects() and "Old 2" in subjects() and "Old 0" not in subjects()
    assert mailbox.import_left_out == 1
    assert "1 older message left out" in detail_page(client, mailbox)


def test_none_leaves_everything_already_there_out_and_imports_what_arrives(app_ctx, api, client, imap_account):
    for n in range(3):
        append_dated(imap_account, make_email(subject=f"Old {n}"), TODAY - timedelta(days=3 + n))
    append_dated(imap_account, make_email(subject="Old and read"), TODAY - timedelta(days=1), flags=["\\Seen"])
    mailbox = create_mailbox(imap_account, import_existing="none")
    between = imap_account.append(make_email(subject="Arrived before the first sync"))

    assert sync(mailbox)["counts"] == {"imported": 1}
    assert subjects() == ["Arrived before the first sync"]
    assert mailbox.import_from_uid == between
    assert mailbox.import_left_out == 3  # the unread ones; read mail is not a candidate anyway
    assert api.get(f"/api/imap/accounts/{mailbox.id}").get_json()["import_left_out"] == 3
    page = detail_page(client, mailbox)
    assert "3 older messages left out by 'Existing mail'" in page and "none: only mail that arrives" in page

    imap_account.append(make_email(subject="Later"))
    assert sync(mailbox)["counts"] == {"imported": 1}
    assert subjects() == ["Arrived before the first sync", "Later"]
    assert mailbox.import_from_uid == between and mailbox.import_left_out == 3


def test_none_on_an_empty_folder_starts_at_uidnext(app_ctx, imap_account):
    old = append_dated(imap_account, make_email(subject="Old"), TODAY - timedelta(days=10))
    imap_account.expunge([old])  # the folder is empty, but UIDNEXT moved on
    mailbox = create_mailbox(imap_account, import_existing="none")
    assert sync(mailbox)["counts"] == {}
    assert mailbox.import_from_uid == old + 1 and mailbox.import_left_out == 0
    imap_account.append(make_email(subject="First"))
    assert sync(mailbox)["counts"] == {"imported": 1}


@pytest.mark.parametrize("unread_only", [True, False], ids=["unread-only", "all-mail"])
def test_switching_from_none_to_all_imports_what_was_left_out_at_the_next_sync(app_ctx, api, imap_account, unread_only):
    for n in range(2):
        append_dated(imap_account, make_email(subject=f"Old {n}"), TODAY - timedelta(days=5))
    mailbox = create_mailbox(imap_account, import_existing="none", process_unread_only=unread_only)
    assert sync(mailbox)["counts"] == {}
    assert mailbox.import_left_out == 2 and mailbox.import_from_uid is not None
    imap_account.append(make_email(subject="New"))
    assert sync(mailbox)["counts"] == {"imported": 1}

    assert api.put(f"/api/imap/accounts/{mailbox.id}", json={"import_existing": "all"}).status_code == 200
    db.session.expire_all()
    assert sync(mailbox)["counts"] == {"imported": 2}
    assert subjects() == ["New", "Old 0", "Old 1"]
    assert mailbox.import_from_uid is None and mailbox.import_left_out == 0


def test_a_new_uidvalidity_finds_the_cut_again_from_the_last_sync(app_ctx, imap_account):
    imap_account.create_folder("Support")
    append_dated(imap_account, make_email(subject="Old"), TODAY - timedelta(days=5), folder="Support")
    mailbox = create_mailbox(imap_account, folder="Support", import_existing="none")
    assert sync(mailbox)["counts"] == {}
    old_epoch, old_cut = mailbox.uid_validity, mailbox.import_from_uid

    imap_account.delete_folder("Support")  # recreated: a new UIDVALIDITY, UIDs from 1 again
    imap_account.create_folder("Support")
    append_dated(imap_account, make_email(subject="Old, restored"), TODAY - timedelta(days=5), folder="Support")
    append_dated(imap_account, make_email(subject="Older, restored"), TODAY - timedelta(days=9), folder="Support")
    new = imap_account.append(make_email(subject="Arrived after the last sync"), folder="Support")

    assert sync(mailbox)["counts"] == {"imported": 1}
    assert mailbox.uid_validity != old_epoch and mailbox.import_from_uid == new != old_cut
    assert subjects() == ["Arrived after the last sync"] and mailbox.import_left_out == 2


def test_left_out_does_not_count_mail_the_mailbox_already_recorded(app_ctx, api, imap_account):
    mailbox = create_mailbox(imap_account, mark_as_read=False)  # imported mail stays unread
    append_dated(imap_account, make_email(subject="Old"), TODAY - timedelta(days=90))
    assert sync(mailbox)["counts"] == {"imported": 1}
    assert api.put(f"/api/imap/accounts/{mailbox.id}", json={"import_existing": "since", "import_since": SINCE.isoformat()}).status_code == 200
    db.session.expire_all()
    append_dated(imap_account, make_email(subject="Old, not yet seen"), TODAY - timedelta(days=80))
    assert sync(mailbox)["counts"] == {}
    assert mailbox.import_left_out == 1  # the new old one; the one already imported is not "left out"
    assert db.session.scalar(select(ProcessedMessage.outcome).where(ProcessedMessage.account_id == mailbox.id)) == "imported"
