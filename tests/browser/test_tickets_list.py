"""The tickets list and the processed-messages table in Chromium, with the bench corpus imported
through a real Dovecot: search and filters update in place, long text never widens a table."""
import re

import pytest
from playwright.sync_api import expect

from bench.corpus import CorpusBuilder, support_corpus
from portal.extensions import db
from portal.models import Company, CompanyDomain, Ticket
from tests.browser.conftest import sign_in
from tests.integration.imap_helpers import create_mailbox, sync
from tests.support.mail import make_email

SEED = 11
TOKEN = "x" + "".join(f"{n:03d}QZ" for n in range(60))[:299]  # one 300-char word, no break opportunity
URL = "https://monitoring.example.net/zabbix/tr_events.php?triggerid=" + "7" * 40 + "&eventid=" + "ab12" * 30
LONG_SENDER = "Backup Robot <" + "nightly-backup-report-" * 6 + "robot@very-long-subdomain.backups.example>"


@pytest.fixture
def bench_desk(app_ctx, imap_server_account_pair):
    """A support mailbox with 300 bench corpus mails plus a few with long unbroken subjects, and an
    alerts mailbox with monitoring mail; ten corpus domains belong to companies."""
    support_box, alerts_box = imap_server_account_pair
    for domain in CorpusBuilder(SEED).domains[:10]:
        name = domain.split(".")[0].replace("-", " ").title()
        db.session.add(Company(name=name, domains=[CompanyDomain(domain=domain)]))
    db.session.commit()
    raws = [m.raw for m in support_corpus(300, seed=SEED, big_attachment=False)]
    raws += [
        make_email(subject=TOKEN, sender="Pat Customer <pat@acme.com>"),
        make_email(subject=URL, sender=LONG_SENDER),
        make_email(subject=f"Fwd: {TOKEN[:120]} {URL}", sender="Sam <sam@acme.com>"),
    ]
    support_box.fill_maildir(raws)
    alerts_box.fill_maildir([
        make_email(subject=f"[Zabbix] PROBLEM: Disk space is low on srv-{n:02d}.customer-{n % 4}.example (/var: 3% free)",
                   sender="Zabbix <zabbix@monitor.example>")
        for n in range(20)
    ])
    support = create_mailbox(support_box, name="Support inbox")
    alerts = create_mailbox(alerts_box, name="Alerts")
    sync(support)
    sync(alerts)
    assert db.session.query(Ticket).count() > 200
    return support, alerts


@pytest.fixture
def imap_server_account_pair(dovecot_server):
    from tests.support.dovecot import ImapAccount

    pair = [ImapAccount(dovecot_server, *dovecot_server.new_user("desk")) for _ in range(2)]
    yield pair
    for account in pair:
        dovecot_server.remove_user(account.username)


def widths(page, table_selector):
    return page.evaluate(
        """(sel) => {
            const table = document.querySelector(sel);
            const wrap = table.closest('.table-wrap') || table.parentElement;
            const rows = [...table.querySelectorAll('tbody tr')].map(r => r.getBoundingClientRect().height);
            return {
                viewport: window.innerWidth,
                page: document.documentElement.scrollWidth,
                tableRight: table.getBoundingClientRect().right,
                wrapScroll: wrap.scrollWidth,
                wrapWidth: wrap.clientWidth,
                tallestRow: Math.max(...rows),
                rows: rows.length,
            };
        }""",
        table_selector,
    )


def assert_fits(page, table_selector, *, max_row_height):
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        m = widths(page, table_selector)
        assert m["rows"] > 0
        assert m["page"] <= m["viewport"], m  # nothing scrolls the page sideways
        assert m["tableRight"] <= m["viewport"], m
        assert m["wrapScroll"] <= m["wrapWidth"], m  # nor the table inside its frame
        assert m["tallestRow"] <= max_row_height[width], m  # rows stay compact
    page.set_viewport_size({"width": 1280, "height": 900})


def test_search_and_filters_update_the_list_in_place(page, live_server, admin, bench_desk, shot):
    support, alerts = bench_desk
    sign_in(page, live_server)
    page.goto(live_server + "/tickets")
    expect(page.locator(".result-count")).to_contain_text("tickets")
    shot("tickets-list")
    page.evaluate("window.__sameDocument = true")  # gone if the browser loads a new page

    page.locator("input[name=q]").press_sequentially("printer", delay=30)
    expect(page).to_have_url(live_server + "/tickets?q=printer")  # only what is chosen
    expect(page.locator(".result-count")).to_contain_text("match")
    subjects = page.locator("#ticket-rows .col-subject a").all_inner_texts()
    assert subjects and all("printer" in s.lower() for s in subjects)

    page.locator("input[name=q]").fill("")
    expect(page).not_to_have_url(re.compile(r"q=printer"))
    page.select_option("select[name=mailbox]", str(alerts.id))
    expect(page).to_have_url(re.compile(rf"[?&]mailbox={alerts.id}"))
    expect(page.locator("#ticket-rows tr")).to_have_count(20)
    assert all(s.startswith("[Zabbix]") for s in page.locator("#ticket-rows .col-subject a").all_inner_texts())

    page.select_option("select[name=mailbox]", "")
    expect(page).not_to_have_url(re.compile(r"mailbox="))
    company = db.session.scalars(
        db.select(Company).join(Ticket, Ticket.company_id == Company.id).order_by(Company.name)
    ).first()
    page.select_option("select[name=company]", str(company.id))
    expect(page).to_have_url(re.compile(rf"[?&]company={company.id}"))
    count = db.session.query(Ticket).filter(Ticket.company_id == company.id).count()
    expect(page.locator(".result-count")).to_contain_text(f"{count} ticket")
    assert set(page.locator("#ticket-rows .col-company").all_inner_texts()) == {company.name}
    page.select_option("select[name=sort]", "subject")
    expect(page).to_have_url(re.compile(r"[?&]sort=subject"))
    shown = page.locator("#ticket-rows .col-subject a").all_inner_texts()
    assert shown == sorted(shown, key=str.lower)
    shot("tickets-filtered")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened

    page.reload()  # the URL holds the state: the same list comes back
    expect(page.locator("select[name=company]")).to_have_value(str(company.id))
    expect(page.locator("select[name=sort]")).to_have_value("subject")
    assert page.locator("#ticket-rows .col-subject a").all_inner_texts() == shown


def test_long_unbroken_text_does_not_widen_the_tables(page, live_server, admin, bench_desk, shot):
    support, _alerts = bench_desk
    sign_in(page, live_server)
    page.goto(live_server + "/tickets")
    long_row = page.locator("#ticket-rows tr", has=page.locator(f"a[title='{TOKEN}']"))
    expect(long_row).to_have_count(1)  # newest first: the long subjects are on the first page
    assert_fits(page, "table.tickets", max_row_height={1280: 50, 390: 110})

    page.locator("input[name=q]").fill(TOKEN[:40])
    expect(page.locator("#ticket-rows tr")).to_have_count(2)
    assert_fits(page, "table.tickets", max_row_height={1280: 50, 390: 110})
    shot("tickets-long-subject")

    page.goto(f"{live_server}/admin/modules/imap/{support.id}")
    expect(page.locator(f".processed-messages [title='{TOKEN}']")).to_have_count(1)
    assert_fits(page, ".processed-messages table", max_row_height={1280: 120, 390: 260})
    shot("processed-messages")
