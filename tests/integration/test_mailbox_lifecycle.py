"""Mailbox API and workspace details (issue 11, point 9): a GET response PUT back as is, security
from the port, clones inactive until saved, soft delete that keeps the history, the delete
confirm page without JavaScript, and millisecond timestamps."""
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.imap.models import ImapAccount, SyncRun
from tests.conftest import login
from tests.integration.imap_helpers import create_mailbox, sync, tickets
from tests.integration.test_imap_accounts_api import PASSWORD, cron_job, new_mailbox
from tests.support.html_forms import form_by_action
from tests.support.mail import make_email

IMAP = "/admin/modules/imap"
MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def dovecot_payload(imap_account, **fields):
    payload = {
        "name": "Dovecot desk", "host": imap_account.host, "port": imap_account.port, "security": "none",
        "allow_plaintext": True, "username": imap_account.username, "password": imap_account.password,
    }
    payload.update(fields)
    return payload


# --- PUT accepts a GET response as is -----------------------------------------------------------


def test_a_get_response_put_back_as_is_changes_nothing(api, app):
    company = api.post("/api/companies", json={"name": "Acme"}).json
    mailbox = new_mailbox(api, company_id=company["id"], filter_query={"field": "subject", "contains": "alert"},
                          import_existing="since", import_since="2026-01-31", priority=7)
    before = api.get(f"/api/imap/accounts/{mailbox['id']}").json
    response = api.put(f"/api/imap/accounts/{mailbox['id']}", json=before)
    assert response.status_code == 200, response.json
    after = response.json
    changed = {name for name in before if before[name] != after[name]}
    assert changed <= {"updated_at"}, changed
    assert after["has_password"] is True and after["scheduled_task_id"] == f"imap_sync:{mailbox['id']}"
    # A read-only field with another value is ignored, not applied; an unknown field is still a 422.
    ignored = api.put(f"/api/imap/accounts/{mailbox['id']}", json={**before, "id": 999, "has_password": False,
                                                                     "last_sync_status": "failed"}).json
    assert ignored["id"] == mailbox["id"] and ignored["has_password"] is True and ignored["last_sync_status"] is None
    unknown = api.put(f"/api/imap/accounts/{mailbox['id']}", json={**before, "colour": "blue"})
    assert unknown.status_code == 422 and unknown.json["errors"] == {"colour": ["Unknown field"]}


def test_an_oauth2_mailbox_round_trips_without_losing_its_secret_or_tokens(api, app):
    created = api.post("/api/imap/accounts", json={
        "name": "M365", "username": "support@contoso.com", "auth_method": "oauth2", "oauth_provider": "microsoft",
        "oauth_client_id": "client-1", "oauth_client_secret": "s3cret"}).json
    with app.app_context():
        from portal import crypto

        account = db.session.get(ImapAccount, created["id"])
        account.oauth_refresh_token_encrypted = crypto.encrypt("refresh-token")
        account.oauth_status = "connected"
        db.session.commit()
    body = api.get(f"/api/imap/accounts/{created['id']}").json
    response = api.put(f"/api/imap/accounts/{created['id']}", json=body)
    assert response.status_code == 200, response.json
    assert response.json["has_oauth_client_secret"] is True and response.json["oauth_status"] == "connected"


def test_create_and_clone_ignore_read_only_fields_too(api):
    source = new_mailbox(api)
    body = api.get(f"/api/imap/accounts/{source['id']}").json
    created = api.post("/api/imap/accounts", json={**body, "name": "Second desk", "password": PASSWORD})
    assert created.status_code == 201, created.json
    assert created.json["id"] != source["id"] and created.json["last_synced_at"] is None
    clone = api.post(f"/api/imap/accounts/{source['id']}/clone", json={**body, "name": "Third desk"})
    assert clone.status_code == 201, clone.json
    assert clone.json["name"] == "Third desk" and clone.json["id"] not in (source["id"], created.json["id"])


# --- security follows the port -------------------------------------------------------------------


@pytest.mark.parametrize("fields,security", [
    ({}, "ssl"),
    ({"port": 993}, "ssl"),
    ({"port": 143}, "starttls"),
    ({"port": 1143}, "ssl"),
    ({"port": 143, "security": "ssl"}, "ssl"),
    ({"port": 143, "security": "none", "allow_plaintext": True}, "none"),
])
def test_create_takes_the_security_its_port_implies(api, fields, security):
    assert new_mailbox(api, **fields)["security"] == security


def test_an_update_that_moves_the_port_takes_the_new_ports_security(api):
    mailbox = new_mailbox(api)
    url = f"/api/imap/accounts/{mailbox['id']}"
    assert api.put(url, json={"port": 143, "password": "pw"}).json["security"] == "starttls"
    assert api.put(url, json={"port": 1143, "password": "pw"}).json["security"] == "starttls"  # no rule: kept
    assert api.put(url, json={"port": 993, "password": "pw"}).json["security"] == "ssl"
    assert api.put(url, json={"port": 143, "security": "ssl", "password": "pw"}).json["security"] == "ssl"
    assert api.put(url, json={"folder": "Other"}).json["security"] == "ssl"  # the port did not move
    copy = api.post(f"{url}/clone", json={"port": 993, "password": "pw"}).json
    assert copy["security"] == "ssl"


def test_oauth2_providers_still_fill_in_their_server(api):
    created = api.post("/api/imap/accounts", json={
        "name": "Google", "username": "support@example.com", "auth_method": "oauth2", "oauth_provider": "google",
        "oauth_client_id": "client-1", "oauth_client_secret": "s3cret"}).json
    assert (created["host"], created["port"], created["security"]) == ("imap.gmail.com", 993, "ssl")


# --- a clone is inactive until saved -------------------------------------------------------------


def test_an_api_clone_is_inactive_until_its_first_save(api, app):
    source = new_mailbox(api)
    copy = api.post(f"/api/imap/accounts/{source['id']}/clone").json
    assert copy["active"] is False and copy["scheduled_task_id"] is None and copy["next_run_at"] is None
    assert copy["schedule_error"] == "Clone: not scheduled until saved"
    assert cron_job(app, copy["id"]) is None
    saved = api.put(f"/api/imap/accounts/{copy['id']}", json={"folder": "Sales"}).json
    assert saved["active"] is True and saved["schedule_error"] is None and saved["next_run_at"] is not None
    assert cron_job(app, copy["id"]) is not None
    # A first save that says active false keeps it paused (and it is no longer an unsaved clone).
    second = api.post(f"/api/imap/accounts/{source['id']}/clone").json
    kept = api.put(f"/api/imap/accounts/{second['id']}", json={"active": False}).json
    assert kept["active"] is False and kept["schedule_error"] is None
    assert api.put(f"/api/imap/accounts/{second['id']}", json={"folder": "X"}).json["active"] is False


def test_a_page_clone_says_so_and_the_edit_form_schedules_it(client, admin, app_ctx, imap_account):
    source = create_mailbox(imap_account, name="Support desk")
    login(client, "admin@portal.test")
    index = client.get(IMAP).get_data(as_text=True)
    clone_form = form_by_action(index, f"{IMAP}/{source.id}/clone", "post")
    response = client.post(clone_form["action"], data=clone_form["fields"])
    copy = db.session.scalar(select(ImapAccount).where(ImapAccount.name == "Support desk (copy)"))
    assert response.status_code == 302 and response.location == f"{IMAP}/{copy.id}/edit"
    assert copy.active is False and cron_job(app_ctx, copy.id) is None
    assert "Clone: not scheduled until saved" in client.get(IMAP).get_data(as_text=True)
    assert "Clone: not scheduled until saved" in client.get(f"{IMAP}/{copy.id}").get_data(as_text=True)
    edit = client.get(f"{IMAP}/{copy.id}/edit").get_data(as_text=True)
    assert "not scheduled yet: saving it with Active ticked schedules it" in edit
    form = form_by_action(edit, "", "post")
    assert form["fields"].get("active") == "y"  # ticked by default on an unsaved clone
    saved = client.post(f"{IMAP}/{copy.id}/edit", data=form["fields"])
    assert saved.status_code == 302, saved.get_data(as_text=True)
    db.session.expire_all()
    assert copy.active is True and copy.schedule_error is None and cron_job(app_ctx, copy.id) is not None
    assert "Clone: not scheduled until saved" not in client.get(f"{IMAP}/{copy.id}").get_data(as_text=True)


# --- deleting keeps the history -------------------------------------------------------------------


def test_a_deleted_mailbox_keeps_its_runs_audit_and_ticket_names(api, app_ctx, imap_account):
    imap_account.append(make_email(subject="Printer on fire"))
    created = api.post("/api/imap/accounts", json=dovecot_payload(imap_account)).json
    account_id = created["id"]
    assert sync(db.session.get(ImapAccount, account_id))["status"] == "succeeded"
    [ticket] = tickets()
    queued = api.post(f"/api/imap/accounts/{account_id}/sync").json  # still queued when the delete comes

    assert api.delete(f"/api/imap/accounts/{account_id}").status_code == 204
    assert account_id not in [m["id"] for m in api.get("/api/imap/accounts").json["items"]]
    deleted = api.get("/api/imap/accounts?deleted=true").json
    assert [m["id"] for m in deleted["items"]] == [account_id] and deleted["total"] == 1
    gone = api.get(f"/api/imap/accounts/{account_id}").json
    assert MILLIS.match(gone["deleted_at"]) and gone["active"] is False and gone["has_password"] is False
    runs = api.get(f"/api/imap/accounts/{account_id}/sync-runs").json["items"]
    assert [r["status"] for r in runs] == ["queued", "succeeded"]
    messages = api.get(f"/api/imap/accounts/{account_id}/messages").json["items"]
    assert [(m["subject"], m["outcome"], m["ticket_id"]) for m in messages] == [("Printer on fire", "imported", ticket.id)]
    db.session.expire_all()
    assert ticket.source_mailbox_id == account_id and ticket.source_mailbox_name == "Dovecot desk"
    stored = db.session.get(ImapAccount, account_id)
    assert stored.password_encrypted is None and stored.deleted_at is not None

    # Every change and every sync of it is a 404; its name is free again.
    for method, path in [("put", ""), ("delete", ""), ("post", "/sync"), ("post", "/clone"),
                         ("post", "/oauth/authorize")]:
        response = getattr(api, method)(f"/api/imap/accounts/{account_id}{path}", json={})
        assert response.status_code == 404 and "was deleted" in response.json["error"], (method, path)
    assert api.post("/api/imap/accounts", json=dovecot_payload(imap_account)).status_code == 201
    assert api.get("/api/imap/accounts?deleted=maybe").status_code == 422

    # The job queued before the delete ends as skipped; bulk syncs and the scheduler leave it out.
    from portal.imap import scheduling
    from portal.imap.tasks import active_accounts_in_order, sync_mailbox

    skipped = sync_mailbox(account_id, trigger="manual", run_id=queued["sync_run_id"])
    assert skipped["id"] == queued["sync_run_id"]
    assert (skipped["status"], skipped["error"]) == ("skipped", "Mailbox was deleted")
    assert account_id not in [a.id for a in active_accounts_in_order()]
    scheduling.schedule(stored)  # a cron job left behind (Redis was down during the delete)
    assert f"removed imap_sync:{account_id}" in scheduling.reconcile_all()


def test_deleted_mailboxes_are_listed_and_readable_in_the_workspace(client, admin, app_ctx, imap_account):
    from portal.imap import accounts
    from portal.imap.models import ProcessedMessage

    imap_account.append(make_email(subject="Old alert"))
    mailbox = create_mailbox(imap_account, name="Retired desk")
    sync(mailbox)
    db.session.get(ProcessedMessage, db.session.scalar(select(ProcessedMessage.id))).outcome = "failed"
    db.session.commit()
    accounts.delete_account(mailbox)
    login(client, "admin@portal.test")
    index = client.get(IMAP).get_data(as_text=True)
    live_rows = index.split('id="deleted-mailboxes"')[0]
    assert "Retired desk" not in live_rows
    assert "Deleted mailboxes" in index and f'href="{IMAP}/{mailbox.id}/history"' in index
    history = client.get(f"{IMAP}/{mailbox.id}/history").get_data(as_text=True)
    assert "Old alert" in history and "succeeded" in history and "Retired desk" in history
    assert "Retry" not in history and "/edit" not in history  # read-only
    for path in ("", "/edit", "/row", "/runs", "/messages", "/delete"):
        assert client.get(f"{IMAP}/{mailbox.id}{path}").status_code == 404, path
    live = create_mailbox(imap_account, name="Live desk")
    assert client.get(f"{IMAP}/{live.id}/history").location == f"{IMAP}/{live.id}"


# --- delete asks first, without JavaScript too ---------------------------------------------------


def test_delete_confirms_on_a_page_without_javascript(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, name="Doomed desk")
    login(client, "admin@portal.test")
    index = client.get(IMAP).get_data(as_text=True)
    row_button = form_by_action(index, f"{IMAP}/{mailbox.id}/delete")
    assert row_button["method"] == "get" and "csrf_token" not in row_button["fields"]  # no token in a URL
    confirm = client.get(row_button["action"])
    assert confirm.status_code == 200
    page = confirm.get_data(as_text=True)
    assert "Delete “Doomed desk”?" in page and "sync history and processed-message audit are kept" in page
    db.session.expire_all()
    assert db.session.get(ImapAccount, mailbox.id).deleted_at is None  # showing the page deletes nothing
    form = form_by_action(page, f"{IMAP}/{mailbox.id}/delete", "post")
    assert form["fields"]["csrf_token"]
    refused = client.post(form["action"], data={})
    assert refused.status_code == 400
    done = client.post(form["action"], data=form["fields"])
    assert done.status_code == 302 and done.location == IMAP
    after = client.get(IMAP).get_data(as_text=True)
    assert "Mailbox &#39;Doomed desk&#39; deleted" in after and "Deleted mailboxes" in after
    db.session.expire_all()
    assert db.session.get(ImapAccount, mailbox.id).deleted_at is not None


def test_htmx_delete_removes_the_row_and_adds_it_to_the_deleted_list(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account, name="Quick desk")
    login(client, "admin@portal.test")
    index = client.get(IMAP).get_data(as_text=True)
    assert "hx-confirm=\"Delete mailbox 'Quick desk'?" in index
    token = re.search(r'"X-CSRFToken": "([^"]+)"', index).group(1)
    answer = client.post(f"{IMAP}/{mailbox.id}/delete", headers={"HX-Request": "true", "X-CSRFToken": token})
    body = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert 'id="deleted-mailboxes" class="deleted-mailboxes" hx-swap-oob="true"' in body and "Quick desk" in body
    assert "deleted; its sync history and audit are kept" in body


# --- timestamps carry milliseconds -----------------------------------------------------------------


def test_api_timestamps_carry_milliseconds(api, app_ctx, imap_account):
    created = api.post("/api/imap/accounts", json=dovecot_payload(imap_account)).json
    for name in ("created_at", "updated_at", "next_run_at"):
        assert MILLIS.match(created[name]), (name, created[name])
    sync(db.session.get(ImapAccount, created["id"]))
    run = api.get(f"/api/imap/accounts/{created['id']}/sync-runs").json["items"][0]
    for name in ("created_at", "started_at", "finished_at"):
        assert MILLIS.match(run[name]), (name, run[name])
    stored = db.session.scalar(select(SyncRun))
    assert run["started_at"] == stored.started_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stored.started_at.microsecond // 1000:03d}Z"
    company = api.post("/api/companies", json={"name": "Acme"}).json  # the platform's JSON too
    assert MILLIS.match(company["created_at"]), company
