"""What support desks receive arrives whole, against a real Dovecot: alerts become tickets while
out-of-office replies and bounces are skipped per mailbox, every attachment is listed, replies
thread by subject for the right senders with their quoted history collapsed, and the email's
date, sender name and Cc are kept and shown."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal.extensions import db
from portal.imap.models import ProcessedMessage
from portal.models import Company, CompanyDomain, Staff, Ticket, utcnow
from tests.conftest import login
from tests.integration.imap_helpers import create_mailbox, outcomes, sync, tickets
from tests.support.mail import make_email

DSN = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.acme.com>\r\n"
    b"To: support@helpdesk.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"Date: Fri, 20 Nov 2026 09:30:00 +0000\r\n"
    b"Message-ID: <dsn-1@mx.acme.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"\r\n\r\n'
    b"--dsn\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
    b"--dsn\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.acme.com\r\n\r\nFinal-Recipient: rfc822; gone@acme.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"--dsn--\r\n"
)

# An iPhone sends a photo or a PDF as an inline part of a text-only message.
IPHONE_PDF = (
    b"From: Pat Customer <pat@acme.com>\r\n"
    b"To: support@helpdesk.test\r\n"
    b"Subject: Scan of the invoice\r\n"
    b"Date: Fri, 20 Nov 2026 09:30:00 +0100\r\n"
    b"Message-ID: <iphone-1@acme.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="Apple-Mail-1"\r\n\r\n'
    b"--Apple-Mail-1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHere is the scan.\r\n"
    b"--Apple-Mail-1\r\nContent-Disposition: inline; filename=Invoice.pdf\r\n"
    b'Content-Type: application/pdf; name="Invoice.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    b"JVBERi0xLjQK\r\n"
    b"--Apple-Mail-1\r\nContent-Disposition: inline; filename=IMG_0001.jpeg\r\n"
    b'Content-Type: image/jpeg; name="IMG_0001.jpeg"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    b"/9j/4AAQ\r\n"
    b"--Apple-Mail-1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\r\nSent from my iPhone\r\n"
    b"--Apple-Mail-1--\r\n"
)

# An HTML mail that shows one inline image and carries another nothing shows.
HTML_WITH_IMAGES = (
    b"From: Pat Customer <pat@acme.com>\r\n"
    b"To: support@helpdesk.test\r\n"
    b"Subject: Screenshots\r\n"
    b"Date: Fri, 20 Nov 2026 09:30:00 +0000\r\n"
    b"Message-ID: <html-1@acme.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/related; boundary="rel"\r\n\r\n'
    b'--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See <img src="cid:shown@x"></p>\r\n'
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <shown@x>\r\nContent-Disposition: inline; filename=shown.png\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <extra@x>\r\nContent-Disposition: inline; filename=extra.png\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    b"--rel--\r\n"
)


@pytest.fixture
def acme(app_ctx):
    company = Company(name="Acme", domains=[CompanyDomain(domain="acme.com")])
    company.staff.append(Staff(email="pat@acme.com", name="Pat"))
    company.staff.append(Staff(email="lee@acme.com", name="Lee"))
    db.session.add(company)
    db.session.commit()
    return company


def _outcome_of(mailbox, subject):
    return db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.account_id == mailbox.id, ProcessedMessage.subject == subject))


# --- 1. automatic mail ---------------------------------------------------------------------


def test_alerts_lists_and_bulk_become_tickets_out_of_office_and_bounces_do_not(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="PROBLEM: Disk full on srv1", sender="Zabbix <zabbix@monitor.acme.com>",
                                   headers={"Auto-Submitted": "auto-generated", "Precedence": "bulk"}))
    imap_account.append(make_email(subject="[it-list] Patch day", headers={"Precedence": "list", "List-Id": "<it.acme.com>"}))
    imap_account.append(make_email(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    imap_account.append(make_email(subject="Vacation", headers={"X-Autorespond": "yes"}))
    imap_account.append(DSN)
    result = sync(mailbox)
    assert result["counts"] == {"imported": 2, "skipped_auto_reply": 2, "skipped_bounce": 1}
    assert sorted(t.subject for t in tickets()) == ["PROBLEM: Disk full on srv1", "[it-list] Patch day"]
    assert _outcome_of(mailbox, "Out of office").reason == "Auto-reply: Auto-Submitted: auto-replied"
    assert _outcome_of(mailbox, "Vacation").reason == "Auto-reply: X-Autorespond: yes"
    bounce = _outcome_of(mailbox, "Undelivered Mail Returned to Sender")
    assert (bounce.outcome, bounce.reason) == ("skipped_bounce", "Bounce: Content-Type: multipart/report; report-type=delivery-status")


def test_a_mailbox_can_import_out_of_office_replies_and_bounces(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, skip_auto_replies=False, skip_bounces=False)
    imap_account.append(make_email(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    imap_account.append(DSN)
    assert sync(mailbox)["counts"] == {"imported": 2}
    assert sorted(t.subject for t in tickets()) == ["Out of office", "Undelivered Mail Returned to Sender"]


def test_turning_a_skip_off_brings_back_the_mail_it_skipped(app_ctx, imap_account):
    """Like a filter change: the skips of the old rule are decided again on the next sync."""
    from portal.imap.accounts import update_account

    mailbox = create_mailbox(imap_account, process_unread_only=False)
    imap_account.append(make_email(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    imap_account.append(DSN)
    assert sync(mailbox)["counts"] == {"skipped_auto_reply": 1, "skipped_bounce": 1}
    update_account(mailbox, {"skip_auto_replies": False})
    # Every rule skip is looked at again; the bounce is still one.
    assert sync(mailbox)["counts"] == {"imported": 1, "skipped_bounce": 1}
    assert [t.subject for t in tickets()] == ["Out of office"]
    assert _outcome_of(mailbox, "Undelivered Mail Returned to Sender").outcome == "skipped_bounce"


def test_the_mailbox_list_counts_bounces_as_skipped(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    imap_account.append(DSN)
    imap_account.append(make_email(subject="Real"))
    sync(mailbox)
    login(client, "admin@portal.test")
    page = client.get("/admin/modules/imap/").get_data(as_text=True)
    assert re.search(r"1 imported ·\s+1 skipped ·\s+0 failed", page)


# --- 2. every attachment is visible ---------------------------------------------------------


def test_an_iphone_inline_pdf_and_photo_are_listed_with_the_ticket_s_files(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    imap_account.append(IPHONE_PDF)
    assert sync(mailbox)["counts"] == {"imported": 1}
    [ticket] = tickets()
    files = {a.filename: a for a in ticket.messages[0].attachments}
    assert set(files) == {"Invoice.pdf", "IMG_0001.jpeg"} and not any(a.is_inline for a in files.values())
    login(client, "admin@portal.test")
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    for name in ("Invoice.pdf", "IMG_0001.jpeg"):
        assert f'href="/tickets/attachments/{files[name].id}">{name}</a>' in page
    assert "2 attachments" in page
    assert client.get(f"/tickets/attachments/{files['Invoice.pdf'].id}").data == b"%PDF-1.4\n"


def test_an_image_the_html_shows_stays_inline_and_one_it_does_not_show_is_listed(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    imap_account.append(HTML_WITH_IMAGES)
    sync(mailbox)
    [ticket] = tickets()
    files = {a.filename: a for a in ticket.messages[0].attachments}
    assert (files["shown.png"].is_inline, files["extra.png"].is_inline) == (True, False)
    login(client, "admin@portal.test")
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert f'src="/tickets/attachments/{files["shown.png"].id}/inline"' in page
    assert f">extra.png</a>" in page and ">shown.png</a>" not in page
    assert "1 attachment<" in page


# --- 4. threading ---------------------------------------------------------------------------


def _first_ticket(imap_account, mailbox, **email):
    imap_account.append(make_email(**email))
    assert sync(mailbox)["counts"] == {"imported": 1}
    return tickets()[-1]


def test_a_foreign_sender_s_ticket_number_opens_a_new_ticket_the_requester_s_threads(client, admin, app_ctx, imap_account, acme):
    mailbox = create_mailbox(imap_account)
    ticket = _first_ticket(imap_account, mailbox, subject="Printer broken", sender="Pat Customer <pat@acme.com>")
    imap_account.append(make_email(subject=f"[#{ticket.id}] pay this invoice", sender="mallory@evil.example"))
    imap_account.append(make_email(subject=f"Re: [#{ticket.id}] Printer broken", sender="Pat Customer <pat@acme.com>"))
    imap_account.append(make_email(subject=f"Ticket {ticket.id}: toner too", sender="Lee <lee@acme.com>"))  # a colleague
    imap_account.append(make_email(subject=f"About #{ticket.id}", sender="mallory@evil.example"))
    assert sync(mailbox)["counts"] == {"imported": 2, "threaded": 2}
    db.session.refresh(ticket)
    assert [m.author_email for m in ticket.messages] == ["pat@acme.com", "pat@acme.com", "lee@acme.com"]
    foreign = [t for t in tickets() if t.requester_email == "mallory@evil.example"]
    assert len(foreign) == 2
    for other in foreign:
        assert f"mentions ticket #{ticket.id}" in other.messages[0].import_notes
    row = _outcome_of(mailbox, f"Re: [#{ticket.id}] Printer broken")
    assert row.reason == f"Reply added to ticket #{ticket.id} (subject names ticket #{ticket.id})"
    login(client, "admin@portal.test")
    page = client.get(f"/tickets/{foreign[0].id}").get_data(as_text=True)
    assert "Noted on import" in page and f"mentions ticket #{ticket.id}" in page


def test_a_message_id_reply_threads_for_any_sender(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    ticket = _first_ticket(imap_account, mailbox, subject="VPN down", message_id="<vpn-1@acme.com>")
    imap_account.append(make_email(subject="Re: VPN down", sender="helper@partner.example", headers={"In-Reply-To": "<vpn-1@acme.com>"}))
    assert sync(mailbox)["counts"] == {"threaded": 1}
    db.session.refresh(ticket)
    assert len(ticket.messages) == 2


def test_the_same_subject_threads_onto_the_sender_s_recent_open_ticket_only(app_ctx, imap_account, acme):
    mailbox = create_mailbox(imap_account)
    ticket = _first_ticket(imap_account, mailbox, subject="Printer broken", sender="Pat Customer <pat@acme.com>")
    imap_account.append(make_email(subject="RE: AW: printer  BROKEN", sender="pat@acme.com"))  # no In-Reply-To
    imap_account.append(make_email(subject="Re: Printer broken", sender="Lee <lee@acme.com>"))  # not the sender's ticket
    assert sync(mailbox)["counts"] == {"threaded": 1, "imported": 1}
    db.session.refresh(ticket)
    assert len(ticket.messages) == 2
    assert _outcome_of(mailbox, "RE: AW: printer  BROKEN").reason == (
        f"Reply added to ticket #{ticket.id} (same subject as the sender's open ticket)")

    # closed, or untouched for more than 30 days: a new ticket
    ticket.status = "closed"
    db.session.commit()
    imap_account.append(make_email(subject="Re: Printer broken", sender="pat@acme.com"))
    assert sync(mailbox)["counts"] == {"imported": 1}
    ticket.status = "open"
    db.session.commit()
    old = utcnow() - timedelta(days=31)
    db.session.execute(update(Ticket).where(Ticket.requester_email == "pat@acme.com").values(created_at=old, updated_at=old))
    db.session.commit()
    imap_account.append(make_email(subject="Fwd: Printer broken", sender="pat@acme.com"))
    assert sync(mailbox)["counts"] == {"imported": 1}

    # another mailbox's ticket with that subject is not this mailbox's
    other = create_mailbox(imap_account, name="Other", folder="Other")
    imap_account.append(make_email(subject="Re: Printer broken", sender="pat@acme.com"), folder="Other")
    assert sync(other)["counts"] == {"imported": 1}


def test_a_threaded_reply_keeps_its_new_text_and_collapses_the_quoted_history(client, admin, app_ctx, imap_account, acme):
    mailbox = create_mailbox(imap_account)
    ticket = _first_ticket(imap_account, mailbox, subject="Printer broken", message_id="<p-1@acme.com>")
    body = ("Restarting worked, thanks!\r\n    (indented line stays)\r\n\r\n"
            "On Fri, 20 Nov 2026 at 10:00, Support <support@helpdesk.test> wrote:\r\n"
            "> Please restart the printer.\r\n> Regards\r\n")
    imap_account.append(make_email(subject="Re: Printer broken", body=body, headers={"In-Reply-To": "<p-1@acme.com>"}))
    assert sync(mailbox)["counts"] == {"threaded": 1}
    db.session.refresh(ticket)
    first, reply = ticket.messages
    assert first.quoted_text is None and first.body_text.strip() == "Hello, my printer is broken."
    assert reply.body_text == "Restarting worked, thanks!\n    (indented line stays)"
    assert reply.quoted_text.startswith("On Fri, 20 Nov 2026 at 10:00, Support <support@helpdesk.test> wrote:\n> Please restart")
    login(client, "admin@portal.test")
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert re.search(r"<details class=\"quoted\">\s*<summary>Show quoted text</summary>\s*<pre class=\"message-text\">On Fri, 20 Nov", page)
    assert "<details class=\"quoted\" open" not in page


# --- 5. what the email said -----------------------------------------------------------------


def test_the_email_s_date_sender_name_and_cc_are_kept_and_shown(client, admin, api, app_ctx, imap_account, acme):
    mailbox = create_mailbox(imap_account, name="Helpdesk EU")
    raw = make_email(subject="Screen flickers", sender='"Customer, Pat" <pat@acme.com>',
                     headers={"Cc": "Lee <lee@acme.com>, boss@acme.com, =?utf-8?q?J=C3=B6rg?= <joerg@acme.com>"})
    imap_account.append(raw.replace(b"Date: Fri, 20 Nov 2026 09:30:00 +0000", b"Date: Fri, 20 Nov 2026 10:30:00 +0100"))
    sync(mailbox)
    [ticket] = tickets()
    [message] = ticket.messages
    assert ticket.source_mailbox_name == "Helpdesk EU"
    assert message.author_name == "Customer, Pat"
    assert message.sent_at.isoformat() == "2026-11-20T09:30:00"  # UTC
    assert message.cc == [{"name": "Lee", "email": "lee@acme.com"}, {"name": "", "email": "boss@acme.com"},
                          {"name": "Jörg", "email": "joerg@acme.com"}]
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.account_id == mailbox.id))
    assert row.sent_at.isoformat() == "2026-11-20T09:30:00"

    login(client, "admin@portal.test")
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "Helpdesk EU" in page and "Acme" in page
    assert "2026-11-20 09:30" in page  # the email's date, not the import time
    assert "<strong>Customer, Pat</strong>" in page
    assert "Jörg" in page and "boss@acme.com" in page and "Cc" in page

    items = api.get(f"/api/imap/accounts/{mailbox.id}/messages").json["items"]
    assert items[0]["sent_at"].startswith("2026-11-20T09:30:00")
    data = api.get(f"/api/tickets/{ticket.id}").json
    assert data["source_mailbox_name"] == "Helpdesk EU"
    assert data["messages"][0]["cc"][0] == {"name": "Lee", "email": "lee@acme.com"}
    assert data["messages"][0]["sent_at"].startswith("2026-11-20T09:30:00")

    audit = client.get(f"/admin/modules/imap/{mailbox.id}").get_data(as_text=True)
    assert re.search(r'data-label="Received"[^>]*>2026-11-20 09:30 UTC<', audit)


def test_the_audit_falls_back_to_the_processing_time_for_mail_without_a_date(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    raw = make_email(subject="No date").replace(b"Date: Fri, 20 Nov 2026 09:30:00 +0000\r\n", b"")
    assert b"Date:" not in raw
    imap_account.append(raw)
    sync(mailbox)
    row = db.session.scalar(select(ProcessedMessage).where(ProcessedMessage.account_id == mailbox.id))
    assert row.sent_at is None
    login(client, "admin@portal.test")
    audit = client.get(f"/admin/modules/imap/{mailbox.id}").get_data(as_text=True)
    assert re.search(r'data-label="Received"[^>]*>' + row.created_at.strftime("%Y-%m-%d %H:%M") + " UTC<", audit)
    assert outcomes(mailbox) == {row.uid: "imported"}
