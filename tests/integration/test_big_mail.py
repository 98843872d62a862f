"""Mail above IMAP_MAX_MESSAGE_BYTES against a real Dovecot: its text and the attachments that
fit become a ticket, the rest stays on the server and the ticket says so (name and size)."""
import base64
import hashlib

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.imap.client import ImapSession
from portal.imap.models import ProcessedMessage
from portal.models import Attachment, TicketMessage
from tests.integration.imap_helpers import create_mailbox, sync, tickets
from tests.support.mail import make_email

MB = 1024 * 1024


@pytest.fixture
def mailbox(app_ctx, imap_account):
    return create_mailbox(imap_account)


@pytest.fixture
def downloaded(monkeypatch):
    """Bytes of every literal the client read through fetch_items and fetch_messages."""
    seen = {"sections": [], "bodies": 0}
    fetch_items, fetch_messages = ImapSession.fetch_items, ImapSession.fetch_messages

    def counting_items(self, uids, items, **kwargs):
        answer = fetch_items(self, uids, items, **kwargs)
        for item in answer.values():
            seen["sections"] += [(key, len(value or b"")) for key, value in item.sections.items()]
        return answer

    def counting_messages(self, uids, *args, **kwargs):
        for message in fetch_messages(self, uids, *args, **kwargs):
            seen["bodies"] += len(message.raw)
            yield message

    monkeypatch.setattr(ImapSession, "fetch_items", counting_items)
    monkeypatch.setattr(ImapSession, "fetch_messages", counting_messages)
    return seen


def text_of(size: int) -> str:
    line = "The backup job on SRV-01 failed again; the log says the share is full. "
    return (line * (size // len(line) + 1))[:size] + "\nEND OF TEXT"


def only_row(mailbox, uid) -> ProcessedMessage:
    return db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.account_id == mailbox.id, ProcessedMessage.uid == uid))


def test_the_issues_40_mb_mail_with_a_30_mb_attachment_becomes_a_ticket(app_ctx, imap_account, mailbox, downloaded):
    body = text_of(30 * 1024)
    raw = make_email(subject="Backup report with disk image", body=body,
                     attachments=[("disk-image.zip", "application/zip", b"\x00PK" * (10 * MB))])
    assert len(raw) > 40 * 1000 * 1000
    uid = imap_account.fill_maildir([raw])[0]

    result = sync(mailbox)

    assert result["counts"] == {"imported": 1}
    ticket = tickets()[0]
    message = ticket.messages[0]
    assert message.body_text.rstrip().endswith("END OF TEXT") and len(message.body_text) > 30 * 1024
    assert "disk-image.zip (about 30.0 MB, application/zip)" in message.import_notes
    assert "Left on the mail server" in message.import_notes
    row = only_row(mailbox, uid)
    assert row.outcome == "imported" and row.size >= len(raw)  # RFC822.SIZE, not what was downloaded
    assert "left on the server: disk-image.zip (about 30.0 MB" in row.reason
    assert downloaded["bodies"] == 0 and sum(size for _, size in downloaded["sections"]) < 64 * 1024
    assert "\\Seen" in imap_account.flags()[uid]  # set after the commit, as for any import
    assert sync(mailbox)["counts"] == {}


def test_attachments_that_fit_come_along_and_the_rest_stays_named(app, app_ctx, imap_account, mailbox, monkeypatch, downloaded):
    monkeypatch.setitem(app.config, "IMAP_MAX_MESSAGE_BYTES", 4 * MB)
    small = bytes(range(256)) * 400  # 100 KB
    big = b"\x89PNG" * (5 * MB // 4)  # 5 MB
    raw = make_email(subject="Photos from the site visit", body=text_of(30 * 1024),
                     html="<p>See the <b>photos</b> attached.</p>",
                     attachments=[("plan.pdf", "application/pdf", small), ("site.png", "image/png", big),
                                  ("notes.txt", "text/plain", b"gate code 1234\r\n")])
    imap_account.append(make_email(subject="Small one"))
    uid = imap_account.append(raw)

    assert sync(mailbox)["counts"] == {"imported": 2}

    message = db.session.scalar(select(TicketMessage).join(TicketMessage.ticket).where(TicketMessage.body_text.contains("END OF TEXT")))
    assert message.body_html and "<b>photos</b>" in message.body_html  # the alternative kept its HTML
    files = {a.filename: a for a in db.session.scalars(select(Attachment).where(Attachment.message_id == message.id))}
    assert sorted(files) == ["notes.txt", "plan.pdf"]
    assert files["plan.pdf"].size == len(small) and files["plan.pdf"].sha256 == hashlib.sha256(small).hexdigest()
    assert message.import_notes.count("Left on the mail server") == 1
    assert "site.png (about 5.0 MB, image/png)" in message.import_notes
    assert "site.png" in only_row(mailbox, uid).reason
    # only the text, the small attachments and the headers came over the wire
    assert sum(size for _, size in downloaded["sections"]) < 300 * 1024
    assert all(size < 4 * MB for _, size in downloaded["sections"])


def test_mail_whose_text_alone_is_over_the_limit_stays_skipped(app, app_ctx, imap_account, mailbox, monkeypatch, downloaded):
    monkeypatch.setitem(app.config, "IMAP_MAX_MESSAGE_BYTES", 50_000)
    long_text = imap_account.append(make_email(subject="Giant log", body=text_of(80_000)))
    long_with_file = imap_account.append(make_email(subject="Giant log + file", body=text_of(80_000),
                                                    attachments=[("a.bin", "application/octet-stream", b"x" * 100)]))
    assert sync(mailbox)["counts"] == {"skipped_too_large": 2}
    for uid in (long_text, long_with_file):
        row = only_row(mailbox, uid)
        assert "over the limit (IMAP_MAX_MESSAGE_BYTES) of 50,000" in row.reason and "its text alone is" in row.reason
        assert "\\Seen" not in imap_account.flags()[uid]
    assert downloaded["bodies"] == 0 and downloaded["sections"] == []
    assert tickets() == []


def test_a_single_part_attachment_message_keeps_its_header_and_says_what_stayed(app, app_ctx, imap_account, mailbox, monkeypatch):
    monkeypatch.setitem(app.config, "IMAP_MAX_MESSAGE_BYTES", 20_000)
    payload = base64.encodebytes(b"%PDF" * 10_000).replace(b"\n", b"\r\n")
    raw = (b"From: Scanner <scanner@acme.com>\r\nTo: support@helpdesk.test\r\nSubject: Scan 0042\r\n"
           b"Message-ID: <scan42@acme.com>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename=\"scan.pdf\"\r\n\r\n" + payload)
    uid = imap_account.append(raw)
    assert sync(mailbox)["counts"] == {"imported": 1}
    ticket = tickets()[0]
    assert ticket.subject == "Scan 0042" and ticket.requester_email == "scanner@acme.com"
    assert "scan.pdf (about 39.1 KB, application/pdf)" in ticket.messages[0].import_notes
    assert ticket.messages[0].attachments == []
    assert only_row(mailbox, uid).outcome == "imported"


def test_a_big_reply_threads_and_a_big_mail_without_message_id_is_imported_once(app, app_ctx, imap_account, mailbox, monkeypatch):
    monkeypatch.setitem(app.config, "IMAP_MAX_MESSAGE_BYTES", 20_000)
    imap_account.append(make_email(subject="Printer", message_id="<first@acme.com>"))
    assert sync(mailbox)["counts"] == {"imported": 1}
    reply = make_email(subject="Re: Printer", headers={"In-Reply-To": "<first@acme.com>"},
                       attachments=[("trace.log", "text/plain", b"x" * 30_000)])
    no_id = make_email(subject="No id", message_id=None, attachments=[("dump.bin", "application/octet-stream", b"y" * 30_000)])
    reply_uid = imap_account.append(reply)
    imap_account.append(no_id)
    imap_account.append(no_id)  # the same bytes again: assembled the same way, the same content hash
    assert sync(mailbox)["counts"] == {"threaded": 1, "imported": 1, "duplicate": 1}
    row = only_row(mailbox, reply_uid)
    ticket = tickets()[0]
    assert row.outcome == "threaded" and "message is 41," in row.reason.lower() and "trace.log" in row.reason
    assert "trace.log" in ticket.messages[1].import_notes


def test_a_server_sending_more_than_its_bodystructure_said_is_cut_off_unread(app, app_ctx, imap_account, mailbox, monkeypatch):
    from portal.imap import partial_fetch

    monkeypatch.setitem(app.config, "IMAP_MAX_MESSAGE_BYTES", 20_000)
    real_plan = partial_fetch.plan

    def understated(root, size, limit):
        for leaf in root.leaves():
            leaf.size = 1  # as if the server claimed every part is one byte
        return real_plan(root, 2, limit)

    monkeypatch.setattr(partial_fetch, "plan", understated)
    uid = imap_account.append(make_email(subject="Lies", attachments=[("a.bin", "application/octet-stream", b"z" * 200_000)]))
    result = sync(mailbox)
    assert result["status"] == "failed" and "connection closed unread" in result["error"]
    assert only_row(mailbox, uid) is None and tickets() == []
