"""Filter preview against a real Dovecot: the sync's decisions on the newest mail, and nothing
changes, neither on the server (flags) nor in the database (audit, runs, tickets)."""
import pytest
from sqlalchemy import func, select

from portal import crypto
from portal.extensions import db
from portal.imap.models import ProcessedMessage, SyncRun
from portal.models import Ticket, TicketMessage
from tests.integration.imap_helpers import create_mailbox, sync, tickets
from tests.support.mail import make_email

NO_LISTS = {"none": [{"field": "headers.list-unsubscribe", "present": True}]}


@pytest.fixture
def mailbox(app_ctx, imap_account):
    return create_mailbox(imap_account)


def url(mailbox):
    return f"/api/imap/accounts/{mailbox.id}/filter-preview"


def snapshot(imap_account, mailbox):
    db.session.expire_all()
    rows = db.session.execute(select(ProcessedMessage.id, ProcessedMessage.uid, ProcessedMessage.outcome,
                                     ProcessedMessage.attempts, ProcessedMessage.updated_at)).all()
    runs = db.session.execute(select(SyncRun.id, SyncRun.status)).all()
    return {
        "flags": imap_account.flags(),
        "audit": sorted(rows),
        "runs": sorted(runs),
        "tickets": db.session.scalar(select(func.count(Ticket.id))),
        "messages": db.session.scalar(select(func.count(TicketMessage.id))),
        "mailbox": (mailbox.last_seen_uid, mailbox.uid_validity, mailbox.last_synced_at, mailbox.rules_version),
    }


def test_preview_decides_like_a_sync_and_changes_nothing(api, app_ctx, imap_account, mailbox):
    first = imap_account.append(make_email(subject="Printer broken", message_id="<first@acme.com>"))
    assert sync(mailbox)["counts"] == {"imported": 1}
    ticket = tickets()[0]
    newsletter = imap_account.append(make_email(subject="Our May newsletter", headers={"List-Unsubscribe": "<mailto:u@x>"}))
    reply = imap_account.append(make_email(subject="Re: Printer broken", headers={"In-Reply-To": "<first@acme.com>"}))
    away = imap_account.append(make_email(subject="Automatic reply: Printer broken", headers={"Auto-Submitted": "auto-replied"}))
    fresh = imap_account.append(make_email(subject="VPN down"), flags=["\\Flagged"])
    before = snapshot(imap_account, mailbox)
    assert "\\Seen" in before["flags"][first] and "\\Seen" not in before["flags"][fresh]

    response = api.post(url(mailbox), json={"filter_query": NO_LISTS})
    assert response.status_code == 200, response.json
    body = response.json
    items = {item["uid"]: item for item in body["items"]}
    assert [item["uid"] for item in body["items"]] == [fresh, away, reply, newsletter, first]  # newest first
    assert items[newsletter]["outcome"] == "skipped_filter" and items[newsletter]["rule"] == "filter_query"
    assert items[newsletter]["reason"] == 'none[0] matched: {"field": "headers.list-unsubscribe", "present": true}'
    assert (items[reply]["outcome"], items[reply]["ticket_id"]) == ("threaded", ticket.id)
    assert (items[away]["outcome"], items[away]["rule"]) == ("skipped_auto_reply", "skip_auto_replies")
    assert (items[fresh]["outcome"], items[fresh]["subject"], items[fresh]["candidate"]) == ("imported", "VPN down", True)
    assert items[fresh]["from"] == "Pat Customer <pat@acme.com>" and items[fresh]["date"].startswith("2026-11-20T09:30:00")
    assert items[first]["outcome"] == "duplicate" and items[first]["recorded"] == {"outcome": "imported", "ticket_id": ticket.id}
    assert items[first]["candidate"] is False
    assert body["counts"] == {"imported": 1, "threaded": 1, "skipped_auto_reply": 1, "skipped_filter": 1, "duplicate": 1}
    assert body["messages_in_folder"] == 5 and body["limit"] == 50

    assert snapshot(imap_account, mailbox) == before
    # ... and the real sync with the saved (empty) filter then does what the preview said for the rest
    assert sync(mailbox)["counts"] == {"imported": 2, "threaded": 1, "skipped_auto_reply": 1}


def test_without_a_body_the_saved_settings_decide(api, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, filter_query={"field": "subject", "contains": "urgent"}, sync_known_only=False)
    imap_account.append(make_email(subject="URGENT: server down"))
    imap_account.append(make_email(subject="Lunch"))
    items = api.post(url(mailbox)).json["items"]
    assert [(i["subject"], i["outcome"]) for i in items] == [("Lunch", "skipped_filter"), ("URGENT: server down", "imported")]
    assert items[0]["reason"] == 'The filter did not match: {"field": "subject", "contains": "urgent"}'
    # unsaved settings win over the saved ones; the row keeps its saved filter
    items = api.post(url(mailbox), json={"filter_query": None, "sync_known_only": True}).json["items"]
    assert {i["outcome"] for i in items} == {"skipped_unknown_sender"} and items[0]["rule"] == "sync_known_only"
    db.session.expire_all()
    assert mailbox.filter_query == {"field": "subject", "contains": "urgent"} and mailbox.sync_known_only is False


def test_limit_takes_the_newest(api, app_ctx, imap_account, mailbox):
    uids = [imap_account.append(make_email(subject=f"Mail {n}")) for n in range(5)]
    body = api.post(url(mailbox), json={"limit": 2}).json
    assert [i["uid"] for i in body["items"]] == [uids[4], uids[3]] and body["messages_in_folder"] == 5


def test_unread_only_says_read_mail_is_left_alone(api, app_ctx, imap_account, mailbox):
    read = imap_account.append(make_email(subject="Old"), flags=["\\Seen"])
    item = api.post(url(mailbox), json={"process_unread_only": True}).json["items"][0]
    assert item["uid"] == read and item["candidate"] is False and "unread only" in item["note"]
    assert api.post(url(mailbox), json={"process_unread_only": False}).json["items"][0]["candidate"] is True


@pytest.mark.parametrize("payload,errors", [
    ({"filter_query": {"field": "subjekt", "equals": "x"}}, {"filter_query": ["Unknown field 'subjekt'"]}),
    ({"filter_query": {"any": [{"field": "subject", "startswith": "x"}]}},
     {"filter_query": ["any[0]: unknown operator 'startswith'"]}),
    ({"limit": 0}, {"limit": ["Must be between 1 and 200"]}),
    ({"limit": 201, "sync_known_only": "yes"}, {"limit": ["Must be between 1 and 200"], "sync_known_only": ["Must be true or false"]}),
    ({"host": "evil.example"}, {"host": ["Unknown field"]}),
])
def test_invalid_settings_are_422_per_field(api, app_ctx, mailbox, payload, errors):
    response = api.post(url(mailbox), json=payload)
    assert response.status_code == 422 and response.json["errors"] == errors


def test_unknown_mailbox_is_404(api, app_ctx):
    assert api.post("/api/imap/accounts/999999/filter-preview").status_code == 404


def test_a_server_that_refuses_is_502_with_the_reason(api, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, password_encrypted=crypto.encrypt("not-the-password"))
    response = api.post(url(mailbox))
    assert response.status_code == 502
    assert response.json["error"].startswith("Could not read the mailbox: ")
    assert "not-the-password" not in response.json["error"]
    assert db.session.scalar(select(func.count(SyncRun.id))) == 0


# --- the form's button (the workspace view) ---------------------------------------------------

IMAP = "/admin/modules/imap"


def form_post(client, mailbox, **form):
    from tests.integration.test_imap_views import csrf_token

    data = {"csrf_token": csrf_token(client), "process_unread_only": "y", "skip_auto_replies": "y", **form}
    return client.post(f"{IMAP}/{mailbox.id}/filter-preview", data=data, headers={"HX-Request": "true"})


def test_the_form_button_previews_the_typed_filter(client, admin, app_ctx, imap_account, mailbox):
    from tests.conftest import login

    imap_account.append(make_email(subject="Our May newsletter", headers={"List-Unsubscribe": "<mailto:u@x>"}))
    imap_account.append(make_email(subject="VPN down"))
    login(client, "admin@portal.test")
    html = form_post(client, mailbox, filter_query='{"none": [{"field": "Headers.List-Unsubscribe", "present": true}]}')
    page = html.get_data(as_text=True)
    assert html.status_code == 200 and 'id="filter-preview"' in page
    assert "1 imported" in page and "1 skipped filter" in page and "Nothing was changed" in page
    assert "none[0] matched" in page and "<html" not in page  # the partial, for htmx

    bad = form_post(client, mailbox, filter_query='{"field": "subjekt", "equals": "x"}').get_data(as_text=True)
    assert "Unknown field &#39;subjekt&#39;" in bad and "<table" not in bad


def test_the_form_button_says_when_the_server_cannot_be_read(client, admin, app_ctx, imap_account):
    from tests.conftest import login

    mailbox = create_mailbox(imap_account, folder="Does-not-exist")
    login(client, "admin@portal.test")
    page = form_post(client, mailbox).get_data(as_text=True)
    assert "Could not read the mailbox: Folder &#39;Does-not-exist&#39; does not exist" in page
