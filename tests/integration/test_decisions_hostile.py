"""Hostile mail through real syncs against Dovecot: a filter regex that would run forever, a
stranger naming someone else's ticket in the subject, the same email sent to two mailboxes."""
import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.imap.filters import FilterTimeout
from portal.imap.models import ProcessedMessage
from portal.models import Company, CompanyDomain, Staff, Ticket
from tests.integration.imap_helpers import create_mailbox, outcomes, sync, ticket_count, tickets
from tests.support.dovecot import ImapAccount
from tests.support.mail import make_email


def row(account, uid) -> ProcessedMessage:
    return db.session.scalar(
        select(ProcessedMessage).where(ProcessedMessage.account_id == account.id, ProcessedMessage.uid == uid)
    )


def test_a_filter_that_runs_out_of_time_fails_its_message_and_the_rest_imports(app_ctx, imap_account):
    # A `none` exclusion: were a timeout "no match", the hostile message would get through.
    exclusion = {"none": [{"field": "to", "matches": "(a+)+$"}]}
    mailbox = create_mailbox(imap_account, filter_query=exclusion)
    hostile_to = ", ".join(f"{'a' * 3000}{n}@x.example" for n in range(20))
    before = imap_account.append(make_email(subject="Before"))
    hostile = imap_account.append(make_email(subject="Hostile", to=hostile_to))
    after = imap_account.append(make_email(subject="After"))

    result = sync(mailbox)

    assert result["counts"] == {"imported": 2, "failed": 1}
    assert outcomes(mailbox) == {before: "imported", hostile: "failed", after: "imported"}
    assert row(mailbox, hostile).reason == FilterTimeout.MESSAGE
    assert row(mailbox, hostile).reason == "Filter took too long on this message (regex time budget exceeded)"
    assert [t.subject for t in tickets()] == ["Before", "After"]


@pytest.fixture
def acme_ticket(app_ctx, imap_account):
    """A closed ticket of Acme, opened by its contact pat@acme.com through the mailbox."""
    company = Company(name="Acme")
    company.domains.append(CompanyDomain(domain="acme.com"))
    company.staff.append(Staff(email="pat@acme.com", name="Pat"))
    db.session.add(company)
    db.session.commit()
    mailbox = create_mailbox(imap_account)
    imap_account.append(make_email(subject="Printer broken", sender="Pat <pat@acme.com>"))
    assert sync(mailbox)["counts"] == {"imported": 1}
    ticket = tickets()[0]
    assert ticket.company_id == company.id and ticket.requester_staff_id is not None
    ticket.status = "closed"
    db.session.commit()
    return mailbox, ticket


def test_a_stranger_naming_a_ticket_in_the_subject_opens_a_new_ticket(app_ctx, imap_account, acme_ticket):
    mailbox, ticket = acme_ticket
    before = ticket.updated_at
    imap_account.append(make_email(
        subject=f"Re: [#{ticket.id}] invoice overdue",
        body="Please pay at https://pay.evil.example/acme today.",
        sender="Billing <billing@evil.example>",
    ))

    assert sync(mailbox)["counts"] == {"imported": 1}

    stored = db.session.get(Ticket, ticket.id)
    assert len(stored.messages) == 1 and stored.status == "closed" and stored.updated_at == before
    new = tickets()[-1]
    assert new.id != ticket.id and new.requester_email == "billing@evil.example" and new.company_id is None
    [message] = new.messages
    assert "pay.evil.example" in message.body_text
    assert f"mentions ticket #{ticket.id}" in message.import_notes


def test_the_requester_naming_the_ticket_still_threads(app_ctx, imap_account, acme_ticket):
    mailbox, ticket = acme_ticket
    imap_account.append(make_email(subject=f"Re: [#{ticket.id}] still broken", sender="pat@ACME.com"))

    assert sync(mailbox)["counts"] == {"threaded": 1}

    stored = db.session.get(Ticket, ticket.id)
    assert len(stored.messages) == 2 and stored.status == "open" and ticket_count() == 1
    assert not stored.messages[1].import_notes


def test_a_reply_by_message_id_threads_whoever_sends_it(app_ctx, imap_account, acme_ticket):
    mailbox, ticket = acme_ticket
    original = ticket.messages[0].message_id
    imap_account.append(make_email(subject="Re: Printer broken", sender="colleague@elsewhere.example",
                                   headers={"In-Reply-To": f"<{original}>"}))

    assert sync(mailbox)["counts"] == {"threaded": 1}
    assert len(db.session.get(Ticket, ticket.id).messages) == 2


@pytest.fixture
def sales_account(dovecot_server):
    name, password = dovecot_server.new_user("sales")
    yield ImapAccount(dovecot_server, name, password)
    dovecot_server.remove_user(name)


def test_the_same_email_in_two_mailboxes_makes_one_ticket(app_ctx, imap_account, sales_account):
    support = create_mailbox(imap_account, name="Support")
    sales = create_mailbox(sales_account, name="Sales")
    shared = make_email(subject="Quote and support, please", message_id="<both@acme.com>")
    imap_account.append(shared)
    copy = sales_account.append(shared)
    no_id = make_email(subject="Same bytes, no Message-ID", message_id=None)
    imap_account.append(no_id)
    sales_account.append(no_id)

    assert sync(support)["counts"] == {"imported": 2}
    assert sync(sales)["counts"] == {"imported": 1, "duplicate": 1}  # content hashes stay per mailbox

    first = next(t for t in tickets() if t.subject == "Quote and support, please")
    duplicate = row(sales, copy)
    assert (duplicate.outcome, duplicate.ticket_id) == ("duplicate", first.id)
    assert duplicate.reason == "Already imported from mailbox Support (Message-ID <both@acme.com>)"
    assert ticket_count() == 3 and len(first.messages) == 1


BOMB = "(?:(?:(?:a{1000}){1000}){1000})"


def test_the_filter_check_and_the_api_refuse_a_regex_bomb_at_once(api, app_ctx):
    import json
    import time

    from portal.imap.filters import parse_filter_text

    bomb_filter = {"field": "subject", "matches": BOMB}
    started = time.monotonic()
    _, problems = parse_filter_text(json.dumps(bomb_filter))  # all that POST /filter-check runs
    assert time.monotonic() - started < 0.05  # was: a process growing to gigabytes
    assert len(problems) == 1 and "pattern is too large" in problems[0]

    refused = api.post("/api/imap/accounts", json={"name": "Bomb", "host": "imap.example.com", "username": "u",
                                                    "password": "p", "filter_query": bomb_filter})
    assert refused.status_code == 422 and "pattern is too large" in json.dumps(refused.get_json())
