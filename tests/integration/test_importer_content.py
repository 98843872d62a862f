"""What a ticket holds after import: charsets, association, threading, attachments."""
import pytest

from portal.extensions import db
from portal.models import AttachmentBlob, Company, CompanyDomain, Staff
from tests.conftest import make_user
from tests.integration.imap_helpers import create_mailbox, sync, ticket_count, tickets
from tests.support.mail import make_email


def eight_bit(charset: str, subject: str, body: str) -> bytes:
    head = (
        "From: Client <client@example.org>\r\nTo: support@helpdesk.test\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{charset}-{abs(hash(body))}@example.org>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return head.encode("ascii") + body.encode(charset) + b"\r\n"


CHARSETS = [
    ("iso-8859-1", "Grüße aus Köln, Straße"),
    ("windows-1252", "Price: 10 € – “quoted” text…"),
    ("shift_jis", "日本語のテキストです"),
    ("iso-2022-jp", "こんにちは、サポートです"),
    ("koi8-r", "Привет мир, не работает принтер"),
]


@pytest.mark.parametrize("charset,text", CHARSETS)
def test_legacy_charsets_arrive_exactly(app_ctx, imap_account, charset, text):
    mailbox = create_mailbox(imap_account)
    imap_account.append(eight_bit(charset, f"{charset} body", text))
    assert sync(mailbox)["counts"] == {"imported": 1}
    assert tickets()[0].messages[0].body_text.strip() == text


def test_rfc2047_subject_and_windows_paths_kept_exactly(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    raw = make_email(
        subject="=?utf-8?B?UHLDvGZ1bmcgZmVobGdlc2NobGFnZW4=?= =?iso-8859-1?Q?_f=FCr_Kunde?=",
        body="Path: C:\\Users\\new\\app\\tmp and \\\\server\\share\\n",
    )
    imap_account.append(raw)
    sync(mailbox)
    ticket = tickets()[0]
    assert ticket.subject == "Prüfung fehlgeschlagen für Kunde"
    assert "C:\\Users\\new\\app\\tmp and \\\\server\\share\\n" in ticket.messages[0].body_text


def test_html_is_sanitised_and_inline_images_and_attachments_are_kept(app, app_ctx, imap_account):
    import base64

    mailbox = create_mailbox(imap_account)
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    raw = (
        "From: pat@acme.com\r\nTo: s@h.test\r\nSubject: Screenshot\r\nMessage-ID: <html1@acme.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/related; boundary="rel"\r\n\r\n--rel\r\n'
        'Content-Type: text/html; charset=utf-8\r\n\r\n'
        '<p onclick="steal()">See <img src="cid:shot@acme"><script>alert(1)</script><a href="javascript:alert(2)">x</a></p>\r\n'
        "--rel\r\nContent-Type: image/png\r\nContent-ID: <shot@acme>\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: inline; filename="../../etc/shot.png"\r\n\r\n'
        + base64.encodebytes(png).decode().replace("\n", "\r\n")
        + "--rel--\r\n"
    ).encode()
    imap_account.append(raw)
    sync(mailbox)
    message = tickets()[0].messages[0]
    assert "<script" not in message.body_html and "onclick" not in message.body_html
    assert "javascript:" not in message.body_html
    assert 'src="cid:shot@acme"' in message.body_html
    assert message.body_text.strip().startswith("See")
    [image] = message.attachments
    assert image.filename == "shot.png" and image.content_id == "shot@acme" and image.is_inline
    assert image.size == len(png) and image.in_database
    assert db.session.get(AttachmentBlob, image.sha256).content == png


def test_small_attachments_live_in_the_database_large_ones_on_disk(app, app_ctx, api, imap_account):
    import os

    from portal import storage

    mailbox = create_mailbox(imap_account)
    small = b"%PDF-1.4 small report"
    large = os.urandom(storage.INLINE_MAX_BYTES + 1000)
    imap_account.append(make_email(subject="Files", attachments=[("r.pdf", "application/pdf", small), ("dump.bin", "application/octet-stream", large)]))
    imap_account.append(make_email(subject="Same file again", attachments=[("copy.pdf", "application/pdf", small)]))
    assert sync(mailbox)["counts"] == {"imported": 2}
    first = tickets()[0].messages[0].attachments
    by_name = {a.filename: a for a in first}
    assert by_name["r.pdf"].in_database and not by_name["dump.bin"].in_database
    assert os.path.getsize(storage.path_for(app.config["ATTACHMENT_DIR"], by_name["dump.bin"].sha256)) == len(large)
    assert db.session.query(AttachmentBlob).count() == 1  # the same content is kept once
    assert api.get(f"/api/attachments/{by_name['r.pdf'].id}").data == small
    assert api.get(f"/api/attachments/{by_name['dump.bin'].id}").data == large


def test_association_by_domain_staff_mailbox_company_and_user(app_ctx, imap_account):
    acme = Company(name="Acme", domains=[CompanyDomain(domain="acme.com")])
    acme.staff.append(Staff(email="pat@acme.com", name="Pat"))
    house = Company(name="House account")
    house.staff.append(Staff(email="friend@gmail.com", name="Friend"))
    db.session.add_all([acme, house])
    db.session.commit()
    user = make_user("someone@portal.test")
    mailbox = create_mailbox(imap_account, company_id=house.id)
    imap_account.append(make_email(subject="staff of matched company", sender="Pat <PAT@Acme.com>"))
    imap_account.append(make_email(subject="unknown at matched domain", sender="new@acme.com"))
    imap_account.append(make_email(subject="staff of mailbox company", sender="friend@gmail.com"))
    imap_account.append(make_email(subject="portal user", sender="someone@portal.test"))
    imap_account.append(make_email(subject="stranger", sender="x@elsewhere.org"))
    sync(mailbox)
    by_subject = {t.subject: t for t in tickets()}
    t = by_subject["staff of matched company"]
    assert t.company_id == acme.id and t.requester == {"type": "staff", "id": acme.staff[0].id, "email": "pat@acme.com"}
    t = by_subject["unknown at matched domain"]
    assert t.company_id == acme.id and t.requester == {"type": "email", "id": None, "email": "new@acme.com"}
    t = by_subject["staff of mailbox company"]
    assert t.company_id == house.id and t.requester["type"] == "staff" and t.requester["email"] == "friend@gmail.com"
    t = by_subject["portal user"]
    assert t.company_id == house.id and t.requester == {"type": "user", "id": user.id, "email": "someone@portal.test"}
    t = by_subject["stranger"]
    assert t.company_id == house.id and t.requester == {"type": "email", "id": None, "email": "x@elsewhere.org"}


def test_replies_thread_onto_their_ticket(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="VPN broken", message_id="<orig@acme.com>"))
    sync(mailbox)
    [ticket] = tickets()
    imap_account.append(
        make_email(subject="Re: VPN broken", message_id="<reply1@acme.com>", headers={"In-Reply-To": "<orig@acme.com>"})
    )
    imap_account.append(
        make_email(subject="Re: Re: VPN", message_id="<reply2@acme.com>", headers={"References": "<orig@acme.com> <reply1@acme.com>"})
    )
    imap_account.append(make_email(subject=f"Update on [#{ticket.id}] please", message_id="<tagged@acme.com>"))
    imap_account.append(make_email(subject="Unrelated", headers={"In-Reply-To": "<unknown@x>"}))
    result = sync(mailbox)
    assert result["counts"] == {"threaded": 3, "imported": 1}
    assert ticket_count() == 2
    db.session.refresh(ticket)
    assert [m.message_id for m in ticket.messages] == ["orig@acme.com", "reply1@acme.com", "reply2@acme.com", "tagged@acme.com"]


def test_reply_in_the_same_batch_as_its_original_threads(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="Printer", message_id="<p1@acme.com>"))
    imap_account.append(make_email(subject="Re: Printer", message_id="<p2@acme.com>", headers={"In-Reply-To": "<p1@acme.com>"}))
    assert sync(mailbox)["counts"] == {"imported": 1, "threaded": 1}
