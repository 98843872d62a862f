"""The importer against a real Dovecot: every email becomes exactly one ticket or a recorded skip."""
import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.imap.models import ProcessedMessage
from tests.integration.imap_helpers import create_mailbox, outcomes, sync, ticket_count, tickets
from tests.support.mail import make_email


@pytest.fixture
def mailbox(app_ctx, imap_account):
    return create_mailbox(imap_account)


def test_imports_each_mail_once_and_marks_it_read(app_ctx, imap_account, mailbox):
    uids = [imap_account.append(make_email(subject=f"Issue {n}")) for n in range(3)]
    result = sync(mailbox)
    assert result["status"] == "succeeded"
    assert result["counts"] == {"imported": 3}
    assert [t.subject for t in tickets()] == ["Issue 0", "Issue 1", "Issue 2"]
    assert all("\\Seen" in imap_account.flags()[uid] for uid in uids)
    assert set(outcomes(mailbox).values()) == {"imported"}
    assert mailbox.last_sync_status == "succeeded" and mailbox.last_synced_at is not None
    again = sync(mailbox)
    assert again["counts"] == {} and ticket_count() == 3
    ticket = tickets()[0]
    assert ticket.source == "email" and ticket.source_mailbox_id == mailbox.id
    assert ticket.messages[0].body_text.strip() == "Hello, my printer is broken."


def test_unread_only_skips_read_mail_and_mark_as_read_off_leaves_flags(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, mark_as_read=False)
    read_uid = imap_account.append(make_email(subject="Old"), flags=["\\Seen"])
    new_uid = imap_account.append(make_email(subject="New"))
    assert sync(mailbox)["counts"] == {"imported": 1}
    assert [t.subject for t in tickets()] == ["New"]
    flags = imap_account.flags()
    assert "\\Seen" not in flags[new_uid] and "\\Seen" in flags[read_uid]
    assert sync(mailbox)["counts"] == {}  # still unread on the server, already recorded
    assert ticket_count() == 1


def test_all_mail_mode_takes_read_mail_and_then_only_newer_uids(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, process_unread_only=False)
    imap_account.append(make_email(subject="Read"), flags=["\\Seen"])
    imap_account.append(make_email(subject="Unread"))
    assert sync(mailbox)["counts"] == {"imported": 2}
    assert mailbox.last_seen_uid == 2
    imap_account.append(make_email(subject="Later"))
    assert sync(mailbox)["counts"] == {"imported": 1}
    assert [t.subject for t in tickets()] == ["Read", "Unread", "Later"]


def test_filter_skips_and_changing_it_makes_skips_eligible_again(app, api, app_ctx, imap_account, mailbox):
    api.put(f"/api/imap/accounts/{mailbox.id}", json={"filter_query": {"field": "subject", "contains": "urgent"}})
    db.session.expire_all()
    imap_account.append(make_email(subject="URGENT: server down"))
    skipped_uid = imap_account.append(make_email(subject="Newsletter"))
    assert sync(mailbox)["counts"] == {"imported": 1, "skipped_filter": 1}
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.uid == skipped_uid))
    assert row.reason == "Did not match the mailbox's filter_query"
    assert "\\Seen" not in imap_account.flags()[skipped_uid]
    assert sync(mailbox)["counts"] == {}
    api.put(f"/api/imap/accounts/{mailbox.id}", json={"filter_query": None})
    db.session.expire_all()
    assert sync(mailbox)["counts"] == {"imported": 1}
    assert sorted(t.subject for t in tickets()) == ["Newsletter", "URGENT: server down"]


@pytest.mark.parametrize(
    "headers,sender,outcome",
    [
        ({"Auto-Submitted": "auto-replied"}, "Pat <pat@acme.com>", "skipped_auto_reply"),
        ({"X-Autoreply": "yes"}, "Pat <pat@acme.com>", "skipped_auto_reply"),
        ({"Return-Path": "<>"}, "Pat <pat@acme.com>", "skipped_bounce"),
        # automatic mail a desk lives on: imported
        ({"Precedence": "bulk"}, "Pat <pat@acme.com>", "imported"),
        ({}, "Mail Delivery System <MAILER-DAEMON@acme.com>", "imported"),
        ({}, "postmaster@acme.com", "imported"),
    ],
)
def test_out_of_office_and_bounces_are_skipped_other_automatic_mail_is_imported(app_ctx, imap_account, mailbox, headers, sender, outcome):
    imap_account.append(make_email(subject="Automatic", headers=headers, sender=sender))
    imap_account.append(make_email(subject="Real", headers={"Auto-Submitted": "no"}))
    counts = sync(mailbox)["counts"]
    assert counts == ({"imported": 2} if outcome == "imported" else {"imported": 1, outcome: 1})
    assert sorted(t.subject for t in tickets()) == (["Automatic", "Real"] if outcome == "imported" else ["Real"])


def test_known_sender_only(app_ctx, imap_account):
    from tests.conftest import make_user
    from portal.models import Company, Staff

    make_user("Known.User@Portal.test")
    company = Company(name="Acme")
    company.staff.append(Staff(email="contact@acme.com", name="C"))
    db.session.add(company)
    db.session.commit()
    mailbox = create_mailbox(imap_account, sync_known_only=True)
    imap_account.append(make_email(subject="From user", sender="known.user@PORTAL.test"))
    imap_account.append(make_email(subject="From staff", sender="Contact <CONTACT@acme.com>"))
    stranger = imap_account.append(make_email(subject="Spam", sender="stranger@spam.example"))
    assert sync(mailbox)["counts"] == {"imported": 2, "skipped_unknown_sender": 1}
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.uid == stranger))
    assert row.reason == "Sender stranger@spam.example is not a portal user or staff contact"


def test_duplicates_by_message_id_and_by_content(app_ctx, imap_account, mailbox):
    imap_account.append(make_email(subject="One", message_id="<same@acme.com>"))
    imap_account.append(make_email(subject="One again", message_id="<same@acme.com>"))
    raw = make_email(subject="No id", message_id=None)
    imap_account.append(raw)
    imap_account.append(raw)
    result = sync(mailbox)
    assert result["counts"] == {"imported": 2, "duplicate": 2}
    assert ticket_count() == 2
    dup = db.session.scalars(select(ProcessedMessage).where(ProcessedMessage.outcome == "duplicate")).all()
    assert all(d.ticket_id is not None for d in dup)


def test_too_large_mail_is_imported_without_what_does_not_fit(app, app_ctx, imap_account, mailbox, monkeypatch):
    monkeypatch.setitem(app.config, "IMAP_MAX_MESSAGE_BYTES", 5000)
    big = imap_account.append(make_email(subject="Huge", attachments=[("big.bin", "application/octet-stream", b"x" * 8000)]))
    imap_account.append(make_email(subject="Small"))
    assert sync(mailbox)["counts"] == {"imported": 2}
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.uid == big))
    assert "over the limit (IMAP_MAX_MESSAGE_BYTES) of 5,000" in row.reason and "big.bin" in row.reason and row.size > 5000
    huge = next(t for t in tickets() if t.subject == "Huge")
    assert huge.messages[0].body_text.strip() == "Hello, my printer is broken." and huge.messages[0].attachments == []
    assert "\\Seen" in imap_account.flags()[big]


def test_uidvalidity_change_creates_no_duplicates(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, folder="Support", process_unread_only=False, mark_as_read=False)
    mails = [make_email(subject=f"S{n}") for n in range(3)]
    for raw in mails:
        imap_account.append(raw, folder="Support")
    assert sync(mailbox)["counts"] == {"imported": 3}
    old_epoch = mailbox.uid_validity
    imap_account.delete_folder("Support")
    for raw in mails:
        imap_account.append(raw, folder="Support")
    imap_account.append(make_email(subject="S-new"), folder="Support")
    result = sync(mailbox)
    assert mailbox.uid_validity != old_epoch
    assert result["counts"] == {"duplicate": 3, "imported": 1}
    assert ticket_count() == 4


def test_message_expunged_between_search_and_fetch(app_ctx, imap_account, mailbox, monkeypatch):
    from portal.imap.client import ImapSession

    uids = [imap_account.append(make_email(subject=f"M{n}")) for n in range(4)]
    original = ImapSession.fetch_info

    def expunge_first(self, wanted, *args, **kwargs):
        imap_account.expunge([uids[1]])  # another client deletes it after our SEARCH
        return original(self, wanted, *args, **kwargs)

    monkeypatch.setattr(ImapSession, "fetch_info", expunge_first)
    result = sync(mailbox)
    assert result["status"] == "succeeded"
    assert result["counts"] == {"imported": 3}
    assert sorted(t.subject for t in tickets()) == ["M0", "M2", "M3"]


def test_one_malformed_message_among_fifty_good_ones(app_ctx, imap_account, mailbox):
    good = [make_email(subject=f"Good {n}") for n in range(50)]
    malformed = (
        b"From: =?utf-8?B?broken\r\nSubject: =?bogus?Q?x?=\r\nContent-Type: multipart/mixed\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n\xff\xfe\x00garbage without boundary ==="
    )
    imap_account.append_many(good[:25] + [malformed] + good[25:])
    result = sync(mailbox)
    assert result["counts"].get("imported", 0) + result["counts"].get("failed", 0) == 51
    assert result["counts"]["imported"] >= 50
    subjects = {t.subject for t in tickets()}
    assert {f"Good {n}" for n in range(50)} <= subjects


def test_failed_message_is_retried_three_times_then_dead_lettered(api, app_ctx, imap_account, mailbox, monkeypatch):
    from portal import storage

    real_keep = storage.keep

    def failing_keep(root, content):
        if content == b"POISON":
            raise OSError("disk full")
        return real_keep(root, content)

    monkeypatch.setattr(storage, "keep", failing_keep)
    bad = imap_account.append(make_email(subject="Poison", attachments=[("p.txt", "text/plain", b"POISON")]))
    imap_account.append(make_email(subject="Fine"))
    first = sync(mailbox)
    assert first["status"] == "completed_with_errors"
    assert first["counts"] == {"imported": 1, "failed": 1}
    assert "disk full" in first["error"]
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.uid == bad))
    assert row.outcome == "failed" and row.attempts == 1 and "OSError: disk full" in row.reason
    assert "\\Seen" not in imap_account.flags()[bad]
    assert sync(mailbox)["counts"] == {"failed": 1}
    assert sync(mailbox)["counts"] == {"failed": 1}
    db.session.refresh(row)
    assert row.attempts == 3
    assert sync(mailbox)["counts"] == {}  # dead letter: no more automatic attempts
    assert ticket_count() == 1

    monkeypatch.setattr(storage, "keep", real_keep)
    retry = api.post(f"/api/imap/accounts/{mailbox.id}/messages/{row.id}/retry")
    assert retry.status_code == 202
    assert api.post(f"/api/imap/accounts/{mailbox.id}/messages/{row.id}/retry").status_code == 202
    assert sync(mailbox)["counts"] == {"imported": 1}
    db.session.refresh(row)
    assert row.outcome == "imported" and row.ticket_id is not None
    assert ticket_count() == 2
    ok_row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.outcome == "imported", ProcessedMessage.uid != bad))
    conflict = api.post(f"/api/imap/accounts/{mailbox.id}/messages/{ok_row.id}/retry")
    assert conflict.status_code == 409


def test_audit_api_lists_runs_and_messages(api, app_ctx, imap_account, mailbox):
    imap_account.append(make_email(subject="A"))
    imap_account.append(make_email(subject="B", headers={"X-Autoreply": "yes"}))
    sync(mailbox)
    runs = api.get(f"/api/imap/accounts/{mailbox.id}/sync-runs").json["items"]
    assert runs[0]["status"] == "succeeded" and runs[0]["counts"] == {"imported": 1, "skipped_auto_reply": 1}
    assert runs[0]["started_at"] and runs[0]["finished_at"] and runs[0]["duration_ms"] is not None
    messages = api.get(f"/api/imap/accounts/{mailbox.id}/messages").json
    assert messages["total"] == 2
    skipped = api.get(f"/api/imap/accounts/{mailbox.id}/messages?outcome=skipped_auto_reply").json["items"]
    assert len(skipped) == 1 and skipped[0]["subject"] == "B" and skipped[0]["reason"] == "Auto-reply: X-Autoreply: yes"
    assert api.get(f"/api/imap/accounts/{mailbox.id}/messages?outcome=bogus").status_code == 422
    account_json = api.get(f"/api/imap/accounts/{mailbox.id}").json
    assert account_json["last_sync_status"] == "succeeded" and account_json["last_synced_at"]


def test_dead_server_fails_the_run_with_a_clear_error(app_ctx, imap_account):
    from tests.support.dovecot import free_port

    mailbox = create_mailbox(imap_account, port=free_port())
    result = sync(mailbox)
    assert result["status"] == "failed"
    assert "Could not connect" in result["error"] or "refused" in result["error"].lower()
    assert mailbox.last_sync_status == "failed" and mailbox.last_error == result["error"]


def test_wrong_password_error_never_contains_the_password(app_ctx, imap_account):
    from portal import crypto

    mailbox = create_mailbox(imap_account, password_encrypted=crypto.encrypt("Wr0ng-Passw0rd-123"))
    result = sync(mailbox)
    assert result["status"] == "failed" and "Login failed" in result["error"]
    assert "Wr0ng-Passw0rd-123" not in result["error"]


def test_lock_makes_a_second_concurrent_sync_skip(app_ctx, imap_account, mailbox):
    from portal.extensions import get_redis
    from portal.imap.lease import lock_key

    imap_account.append(make_email())
    get_redis().set(lock_key(mailbox.id), "someone-else", ex=60)
    result = sync(mailbox)
    assert result["status"] == "skipped" and "Already running" in result["error"]
    assert ticket_count() == 0
    get_redis().delete(lock_key(mailbox.id))
    assert sync(mailbox)["counts"] == {"imported": 1}


def test_crash_after_commit_before_seen_is_repaired_without_duplicate(app_ctx, imap_account, mailbox, monkeypatch):
    from portal.imap.client import ImapSession

    uid = imap_account.append(make_email(subject="Crash"))
    monkeypatch.setattr(ImapSession, "mark_seen", lambda self, uids: (_ for _ in ()).throw(ConnectionResetError("gone")))
    assert sync(mailbox)["status"] == "failed"
    assert ticket_count() == 1 and "\\Seen" not in imap_account.flags()[uid]
    monkeypatch.undo()
    assert sync(mailbox)["counts"] == {}
    assert ticket_count() == 1
    assert "\\Seen" in imap_account.flags()[uid]


def test_a_batch_the_database_refuses_is_written_one_message_at_a_time(app_ctx, imap_account, mailbox, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    from portal.imap import ticket_writer

    real_write = ticket_writer.write

    def refuses_the_poison_row(account, decisions, existing):
        if any(d.email is not None and d.email.subject == "Poison row" and d.outcome != "failed" for d in decisions):
            raise IntegrityError("INSERT INTO tickets", {}, Exception("value too long for the column"))
        return real_write(account, decisions, existing)

    monkeypatch.setattr(ticket_writer, "write", refuses_the_poison_row)
    imap_account.append(make_email(subject="Before"))
    poison = imap_account.append(make_email(subject="Poison row"))
    imap_account.append(make_email(subject="After"))
    result = sync(mailbox)
    assert result["counts"] == {"imported": 2, "failed": 1}
    assert sorted(t.subject for t in tickets()) == ["After", "Before"]
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.uid == poison))
    assert row.outcome == "failed" and "value too long" in row.reason and row.subject == "Poison row"
    flags = imap_account.flags()
    assert "\\Seen" not in flags[poison] and sum("\\Seen" in f for f in flags.values()) == 2


def test_seen_is_repaired_only_once_the_database_is_durable(app_ctx, imap_account, mailbox, monkeypatch):
    from portal.imap import importer
    from portal.imap.client import ImapSession

    uids = [imap_account.append(make_email(subject=f"D{n}")) for n in range(3)]
    monkeypatch.setattr(ImapSession, "mark_seen", lambda self, uids: (_ for _ in ()).throw(ConnectionResetError("gone")))
    assert sync(mailbox)["status"] == "failed"  # imported and committed, \Seen never stored
    monkeypatch.undo()
    monkeypatch.setattr(importer, "commits_are_durable", lambda: False)  # e.g. SQLite checkpoint busy
    assert sync(mailbox)["counts"] == {}
    assert not any("\\Seen" in imap_account.flags()[uid] for uid in uids)
    monkeypatch.undo()
    assert sync(mailbox)["counts"] == {}
    assert all("\\Seen" in imap_account.flags()[uid] for uid in uids)
    assert ticket_count() == 3


def test_the_commit_before_seen_is_durable(app_ctx, imap_account, mailbox):
    from sqlalchemy import event

    statements = []
    engine = db.engine
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        imap_account.append(make_email(subject="Durable"))
        assert sync(mailbox)["counts"] == {"imported": 1}
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    pragmas = [s for s in statements if s.startswith("PRAGMA synchronous")]
    if engine.dialect.name == "sqlite":
        assert pragmas == ["PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL"]
        inserts = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO tickets")]
        assert statements.index("PRAGMA synchronous=FULL") < inserts[0]
    else:
        assert pragmas == []  # PostgreSQL commits are durable as they are


def test_commits_are_durable_on_this_database(app_ctx):
    from portal.imap.throughput import commits_are_durable

    assert commits_are_durable() is True


def test_seen_is_stored_in_groups_across_batches(app_ctx, imap_account, mailbox, monkeypatch):
    from portal.imap import importer
    from portal.imap.client import ImapSession

    monkeypatch.setattr(importer, "BATCH_MESSAGES", 2)
    monkeypatch.setattr(importer, "SEEN_EVERY", 3)
    marked = []
    real_mark = ImapSession.mark_seen
    monkeypatch.setattr(ImapSession, "mark_seen", lambda self, uids: (marked.append(list(uids)), real_mark(self, uids))[1])
    uids = imap_account.append_many([make_email(subject=f"G{n}") for n in range(7)])
    assert sync(mailbox)["counts"] == {"imported": 7}
    assert marked == [uids[:4], uids[4:]]
    assert all("\\Seen" in flags for flags in imap_account.flags().values())


def test_all_mail_mode_marks_what_it_imported_when_a_later_batch_fails(app_ctx, imap_account, monkeypatch):
    from portal.imap import importer
    from portal.imap.client import ImapError, ImapSession

    mailbox = create_mailbox(imap_account, process_unread_only=False)
    monkeypatch.setattr(importer, "BATCH_MESSAGES", 2)
    uids = imap_account.append_many([make_email(subject=f"A{n}") for n in range(4)])
    real_fetch = ImapSession.fetch_messages

    def second_batch_fails(self, wanted, *args, **kwargs):
        if wanted[0] == uids[2]:
            raise ImapError("Connection lost while fetching")
        return real_fetch(self, wanted, *args, **kwargs)

    monkeypatch.setattr(ImapSession, "fetch_messages", second_batch_fails)
    result = sync(mailbox)
    assert result["status"] == "failed" and "Connection lost" in result["error"]
    flags = imap_account.flags()
    assert ["\\Seen" in flags[uid] for uid in uids] == [True, True, False, False]
    monkeypatch.undo()
    assert sync(mailbox)["counts"] == {"imported": 2}
    assert ticket_count() == 4
