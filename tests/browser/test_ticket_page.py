"""The ticket page in Chromium, with mail imported through a real Dovecot: who wrote, when, to
whom, every file, a reply's quoted history collapsed until asked for, and long unbroken strings
that wrap instead of widening the page."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Company, CompanyDomain, Staff
from tests.browser.conftest import sign_in
from tests.integration.imap_helpers import create_mailbox, sync, tickets
from tests.support.mail import make_email

TOKEN = "x" + "".join(f"{n:03d}QZ" for n in range(60))[:299]  # one 300-char word
URL = "https://monitoring.example.net/zabbix/tr_events.php?triggerid=" + "7" * 40 + "&eventid=" + "ab12" * 30
REPLY = (
    f"Restarting worked for the first floor, thanks! Log: {URL}\r\n\r\n"
    "On Fri, 20 Nov 2026 at 10:00, Support Desk <support@helpdesk.test> wrote:\r\n"
    "> Please restart the printer and send us the log.\r\n"
    f"> {TOKEN}\r\n"
)


@pytest.fixture
def printer_ticket(app_ctx, imap_account):
    company = Company(name="Acme Manufacturing", domains=[CompanyDomain(domain="acme.com")])
    company.staff.append(Staff(email="pat@acme.com", name="Pat"))
    db.session.add(company)
    db.session.commit()
    mailbox = create_mailbox(imap_account, name="Support inbox")
    imap_account.append(make_email(
        subject=f"Printer broken {TOKEN}", sender="Pat Customer <pat@acme.com>", message_id="<p-1@acme.com>",
        body=f"The printer on the first floor shows error E-42.\r\n{URL}",
        headers={"Cc": "Lee Colleague <lee@acme.com>, " + ", ".join(f"person{n}@acme.com" for n in range(6))},
        attachments=[("error-photo-" + "long" * 30 + ".jpg", "image/jpeg", b"\xff\xd8\xff\xe0fake"),
                     ("printer.log", "text/plain", b"E-42 paper jam\n")]))
    imap_account.append(make_email(subject="Re: Printer broken", sender="Pat Customer <pat@acme.com>", body=REPLY,
                                   headers={"In-Reply-To": "<p-1@acme.com>"}))
    assert sync(mailbox)["counts"] == {"imported": 1, "threaded": 1}
    [ticket] = tickets()
    return ticket


def test_the_ticket_page_shows_who_when_files_and_collapsed_quotes_without_widening(page, live_server, admin, printer_ticket, shot):
    sign_in(page, live_server)
    page.goto(f"{live_server}/tickets/{printer_ticket.id}")
    facts = page.locator(".ticket-facts")
    for text in ("Pat Customer", "pat@acme.com", "Acme Manufacturing", "Support inbox", "2026-11-20 09:30 UTC"):
        expect(facts).to_contain_text(text)
    first, reply = page.locator("article.message").all()
    expect(first.locator(".message-from")).to_contain_text("Pat Customer")
    expect(first.locator(".message-date")).to_have_text("2026-11-20 09:30 UTC")
    expect(first.locator(".message-cc")).to_contain_text("Lee Colleague")
    expect(first.locator(".message-files li")).to_have_count(2)
    expect(first.locator(".message-files")).to_contain_text("printer.log")

    quoted = reply.locator("details.quoted")
    expect(reply.locator(".message-text").first).to_contain_text("Restarting worked")
    expect(quoted.locator("pre")).to_be_hidden()  # collapsed, no JavaScript needed
    shot("ticket-page")
    quoted.locator("summary", has_text="Show quoted text").click()
    expect(quoted.locator("pre")).to_be_visible()
    expect(quoted.locator("pre")).to_contain_text("Please restart the printer")

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a {width}px screen"
    page.set_viewport_size({"width": 1280, "height": 900})
    shot("ticket-page-quoted-open")
