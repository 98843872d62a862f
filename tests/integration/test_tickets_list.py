"""The tickets list page: search, filters, sort and paging, as a full page and as the htmx partial."""
import html
import re
from datetime import datetime, timedelta

import pytest

from tests.conftest import login

BASE = datetime(2026, 11, 1, 8, 0)


@pytest.fixture
def desk(client, admin, app_ctx):
    """Two companies, a contact and a portal user, and tickets from two mailboxes (one since deleted)."""
    from portal.extensions import db
    from portal.models import Company, Staff, Ticket, User

    acme = Company(name="Acme Corp")
    globex = Company(name="Globex")
    kim = Staff(email="kim@globex.example", name="Kim")
    globex.staff.append(kim)
    lee = User(email="lee@portal-user.example", name="Lee")
    db.session.add_all([acme, globex, lee])
    db.session.flush()

    def ticket(n, subject, *, status="open", company=None, email=None, mailbox=(1, "Support inbox"), **extra):
        mailbox_id, mailbox_name = mailbox if mailbox else (None, None)
        t = Ticket(
            subject=subject, status=status, company=company, requester_email=email,
            source="email" if mailbox else "web", source_mailbox_id=mailbox_id, source_mailbox_name=mailbox_name,
            created_at=BASE + timedelta(hours=n), **extra,
        )
        db.session.add(t)
        return t

    made = {
        "printer": ticket(1, "Printer on fire", company=acme, email="pat@acme.example"),
        "vpn": ticket(2, "VPN certificate expired", status="pending", company=acme, email="sam@acme.example"),
        "backup": ticket(3, "[Zabbix] Backup job FAILED on srv-01", status="closed", company=globex,
                         email="zabbix@monitor.example", mailbox=(2, "Alerts (deleted)")),
        "staff": ticket(4, "Invoice question", company=globex, requester_staff=kim, email=None),
        "user": ticket(5, "Password reset", requester_user=lee, email=None, mailbox=None),
        "percent": ticket(6, "Disk 100% full", email="ops@other.example"),
        "underscore": ticket(7, "Error in file_name.txt", email="ops@other.example"),
        "plain": ticket(8, "Disk 100 full and filexname", email="ops@other.example"),
    }
    db.session.commit()
    login(client, "admin@portal.test")
    return {name: t.id for name, t in made.items()}


def ids(client, query=""):
    page = client.get("/tickets" + query)
    assert page.status_code == 200
    return [int(i) for i in re.findall(r'<tr id="ticket-(\d+)"', page.get_data(as_text=True))]


def test_default_order_is_newest_first(client, desk):
    assert ids(client) == sorted(desk.values(), reverse=True)


@pytest.mark.parametrize(
    "q, expected",
    [
        ("printer", ["printer"]),  # subject
        ("PRINTER ON", ["printer"]),  # case-insensitive
        ("zabbix]", ["backup"]),  # subject with a bracket
        ("sam@acme", ["vpn"]),  # requester email stored on the ticket
        ("kim@globex", ["staff"]),  # requester is a company contact
        ("lee@portal-user", ["user"]),  # requester is a portal user
        ("globex", ["backup", "staff"]),  # company name (and kim@globex's address)
        ("acme corp", ["printer", "vpn"]),  # company name only
        ("100%", ["percent"]),  # % is a literal percent sign, not a wildcard
        ("%", ["percent"]),
        ("file_name", ["underscore"]),  # _ is a literal underscore, not any one character
        ("_", ["underscore"]),
        ("\\", []),  # the LIKE escape character itself is literal too
        ("nothing like this", []),
    ],
)
def test_search(client, desk, q, expected):
    from urllib.parse import quote

    assert sorted(ids(client, "?q=" + quote(q))) == sorted(desk[name] for name in expected)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?status=pending", ["vpn"]),
        ("?status=closed", ["backup"]),
        ("?mailbox=2", ["backup"]),
        ("?company={globex}", ["backup", "staff"]),
        ("?company={acme}&status=open", ["printer"]),
        ("?q=disk&mailbox=1", ["percent", "plain"]),
        ("?q=disk&mailbox=2", []),
    ],
)
def test_filters(client, desk, query, expected, app_ctx):
    from portal.extensions import db
    from portal.models import Company
    from sqlalchemy import select

    companies = dict(db.session.execute(select(Company.name, Company.id)).all())
    query = query.format(acme=companies["Acme Corp"], globex=companies["Globex"])
    assert sorted(ids(client, query)) == sorted(desk[name] for name in expected)


def test_filter_menus_offer_companies_and_every_mailbox_that_made_a_ticket(client, desk):
    page = client.get("/tickets").get_data(as_text=True)
    assert re.search(r'<option value="2"\s*>Alerts \(deleted\)</option>', page)  # gone, still choosable
    assert re.search(r'<option value="1"\s*>Support inbox</option>', page)
    assert ">Acme Corp</option>" in page and ">Globex</option>" in page
    chosen = client.get("/tickets?status=pending&mailbox=1").get_data(as_text=True)
    assert '<option value="pending" selected>' in chosen and '<option value="1" selected>' in chosen


@pytest.mark.parametrize(
    "sort, expected",
    [
        ("created", ["printer", "vpn", "backup", "staff", "user", "percent", "underscore", "plain"]),
        ("-created", ["plain", "underscore", "percent", "user", "staff", "backup", "vpn", "printer"]),
        # by status, newest first within one status
        ("status", ["backup", "plain", "underscore", "percent", "user", "staff", "printer", "vpn"]),
        # by company name; tickets without a company last (newest first), in both directions
        ("company", ["vpn", "printer", "staff", "backup", "plain", "underscore", "percent", "user"]),
        ("-company", ["staff", "backup", "vpn", "printer", "plain", "underscore", "percent", "user"]),
    ],
)
def test_sort_orders(client, desk, sort, expected):
    assert ids(client, f"?sort={sort}") == [desk[name] for name in expected]


@pytest.mark.parametrize("sort", ["subject", "-subject"])
def test_sort_by_subject_ignores_case(client, desk, sort):
    # only subjects made of letters: how punctuation sorts is the database collation's business
    lettered = ["staff", "user", "printer", "vpn"]  # Invoice, Password, Printer, VPN (upper case)
    wanted = {desk[name] for name in lettered}
    listed = [i for i in ids(client, f"?sort={sort}") if i in wanted]
    assert listed == [desk[name] for name in (lettered if sort == "subject" else reversed(lettered))]


def test_column_headings_sort_and_reverse(client, desk):
    page = client.get("/tickets?q=disk&sort=subject").get_data(as_text=True)
    # the current column reverses, the others sort ascending; both keep the search
    assert 'href="/tickets?q=disk&amp;sort=-subject"' in page
    assert 'href="/tickets?q=disk&amp;sort=company"' in page
    assert 'aria-sort="ascending"' in page


def test_unusable_arguments_read_as_not_given(client, desk):
    everything = ids(client)
    for query in ("?status=bogus", "?sort=drop+table", "?mailbox=abc", "?company=-1", "?page=0", "?page=x",
                  "?mailbox=99999999999", "?q=" + "x" * 5000):
        assert client.get("/tickets" + query).status_code == 200
    assert ids(client, "?status=bogus&sort=nope&mailbox=abc") == everything
    assert ids(client, "?q=%00") == everything  # a NUL alone is no search


def test_paging_keeps_search_filters_and_sort(client, admin, app_ctx):
    from portal.extensions import db
    from portal.models import Ticket

    for n in range(30):
        db.session.add(Ticket(subject=f"Alert {n:02d}", status="open", source="email", source_mailbox_id=3,
                              source_mailbox_name="Alerts", created_at=BASE + timedelta(minutes=n)))
        db.session.add(Ticket(subject=f"Alert {n:02d} closed", status="closed", source="email", source_mailbox_id=3,
                              created_at=BASE + timedelta(minutes=n)))
        db.session.add(Ticket(subject=f"Other {n:02d}", status="open", source="web", created_at=BASE + timedelta(minutes=n)))
    db.session.commit()
    login(client, "admin@portal.test")
    first = client.get("/tickets?q=alert&status=open&mailbox=3&sort=subject").get_data(as_text=True)
    assert "Page 1 of 2" in first and "30 tickets match" in first
    older = html.unescape(re.search(r'<a href="([^"]+)"[^>]*>Older', first).group(1))
    assert older == "/tickets?q=alert&status=open&mailbox=3&sort=subject&page=2"
    second = client.get(older).get_data(as_text=True)
    subjects = re.findall(r'title="(Alert \d\d[^"]*|Other[^"]*)">', second)
    assert subjects == [f"Alert {n:02d}" for n in range(25, 30)]
    newer = html.unescape(re.search(r'<a href="([^"]+)"[^>]*>← Newer', second).group(1))
    assert newer == "/tickets?q=alert&status=open&mailbox=3&sort=subject"


def test_htmx_gets_the_results_only_and_a_full_page_otherwise(client, desk):
    headers = {"HX-Request": "true", "HX-Target": "ticket-results"}
    partial = client.get("/tickets?q=printer", headers=headers)
    body = partial.get_data(as_text=True)
    assert "Printer on fire" in body and "VPN" not in body
    assert "<form" not in body and "<html" not in body.lower()
    assert "1 ticket matches" in body and "Clear filters" in body
    assert "HX-Request" in partial.headers.get("Vary", "")
    assert partial.headers["HX-Push-Url"] == "/tickets?q=printer"  # the address bar shows only what is chosen
    chosen = client.get("/tickets?q=&status=open&mailbox=&company=&sort=subject", headers=headers)
    assert chosen.headers["HX-Push-Url"] == "/tickets?status=open&sort=subject"
    full = client.get("/tickets?q=printer").get_data(as_text=True)  # a reload of the pushed URL
    assert "<html" in full.lower() and 'value="printer"' in full and "Printer on fire" in full and "VPN" not in full
    empty = client.get("/tickets?q=zzz", headers=headers).get_data(as_text=True)
    assert "No ticket matches these filters" in empty


def test_long_subjects_are_clipped_with_the_full_text_in_a_tooltip(client, admin, app_ctx):
    from portal.extensions import db
    from portal.models import Ticket

    token = "https://monitoring.example/alerts?id=" + "a1b2c3" * 50
    db.session.add(Ticket(subject=token, status="open", source="email", requester_email="x" * 60 + "@example.com"))
    db.session.commit()
    login(client, "admin@portal.test")
    page = client.get("/tickets").get_data(as_text=True)
    assert re.search(r'<a class="clip" href="/tickets/\d+" title="' + re.escape(token) + '">', page)
    assert f'<span class="clip" title="{"x" * 60}@example.com">' in page
