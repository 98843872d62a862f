"""The workspace's server side, through the test client: guards, CSRF, and the helpers the form calls."""
import re

import pytest

from tests.conftest import login, make_user
from tests.integration.imap_helpers import create_mailbox

IMAP = "/admin/modules/imap"


def csrf_token(client, path=IMAP):
    return re.search(r'"X-CSRFToken": "([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


@pytest.mark.parametrize(
    "method,path",
    [("get", IMAP), ("get", IMAP + "/new"), ("get", IMAP + "/1"), ("get", IMAP + "/1/edit"), ("get", IMAP + "/filter-guide"),
     ("post", IMAP + "/1/sync"), ("post", IMAP + "/1/delete"), ("post", IMAP + "/test-connection")],
)
def test_every_workspace_route_needs_a_super_admin(client, app_ctx, method, path):
    anonymous = getattr(client, method)(path)
    if method == "get":
        assert anonymous.status_code == 302 and anonymous.location.startswith("/login?next=")
    else:  # a post without a session has no CSRF token either: refused before anything runs
        assert anonymous.status_code == 400
    make_user("agent@portal.test")
    login(client, "agent@portal.test")
    headers = {"X-CSRFToken": csrf_token(client)} if method == "post" else {}
    assert getattr(client, method)(path, headers=headers).status_code == 403


def test_htmx_posts_without_the_csrf_header_are_refused(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    login(client, "admin@portal.test")
    refused = client.post(f"{IMAP}/{mailbox.id}/pause", headers={"HX-Request": "true"})
    assert refused.status_code == 400
    token = csrf_token(client)
    accepted = client.post(f"{IMAP}/{mailbox.id}/pause", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert accepted.status_code == 200 and "Resume" in accepted.get_data(as_text=True)


def test_test_connection_uses_the_stored_password_when_left_blank(client, admin, app_ctx, imap_account):
    imap_account.create_folder("Billing")
    mailbox = create_mailbox(imap_account)
    login(client, "admin@portal.test")
    form = {
        "host": imap_account.host, "port": str(imap_account.port), "security": "none", "allow_plaintext": "y",
        "username": imap_account.username, "password": "", "account_id": str(mailbox.id), "csrf_token": csrf_token(client),
    }
    page = client.post(f"{IMAP}/test-connection", data=form).get_data(as_text=True)
    assert "Connected." in page and 'data-folder="Billing"' in page
    assert imap_account.password not in page
    form["account_id"] = ""
    missing = client.post(f"{IMAP}/test-connection", data=form).get_data(as_text=True)
    assert "Enter the password to test the connection." in missing


def test_test_connection_lists_every_form_problem_at_once(client, admin, app_ctx):
    login(client, "admin@portal.test")
    form = {"host": " ", "port": "70000", "security": "plain", "username": "", "password": "", "csrf_token": csrf_token(client)}
    page = client.post(f"{IMAP}/test-connection", data=form).get_data(as_text=True)
    assert (
        "Connection failed: Port must be between 1 and 65535. Host and username are needed to test the connection. "
        "Enter the password to test the connection. Choose a security mode."
    ) in page


def test_test_connection_reads_a_superscript_port_as_a_wrong_port(client, admin, app_ctx):
    login(client, "admin@portal.test")
    form = {"host": "imap.example.com", "port": "\u00b3", "security": "ssl", "username": "u", "password": "p",
            "csrf_token": csrf_token(client)}
    response = client.post(f"{IMAP}/test-connection", data=form)
    assert response.status_code == 200
    assert "Connection failed: Port must be between 1 and 65535." in response.get_data(as_text=True)


def test_edit_page_never_renders_the_password(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    login(client, "admin@portal.test")
    page = client.get(f"{IMAP}/{mailbox.id}/edit").get_data(as_text=True)
    assert imap_account.password not in page
    assert "A password is stored; leave blank to keep it. A new host, port, username or security needs it typed again." in page


def test_pages_work_without_javascript(client, admin, app_ctx, imap_account):
    billing = create_mailbox(imap_account, name="Billing desk")
    create_mailbox(imap_account, name="Support desk")
    login(client, "admin@portal.test")
    page = client.get(f"{IMAP}?q=billing").get_data(as_text=True)
    assert "Billing desk" in page and "Support desk" not in page
    token = csrf_token(client)
    response = client.post(f"{IMAP}/{billing.id}/pause", data={"csrf_token": token})
    assert response.status_code == 302 and response.location == IMAP
    assert "paused: no scheduled syncs until resumed" in client.get(IMAP).get_data(as_text=True)


def edit_form(client, mailbox, **changes):
    """The edit form as the browser posts it, password left blank."""
    form = {
        "name": mailbox.name, "host": mailbox.host, "port": str(mailbox.port), "security": mailbox.security,
        "username": mailbox.username, "password": "", "folder": mailbox.folder, "priority": str(mailbox.priority),
        "company_id": "", "schedule_cron": mailbox.schedule_cron, "filter_query": "", "verify_tls": "y",
        "process_unread_only": "y", "mark_as_read": "y", "active": "y", "account_id": str(mailbox.id),
        "csrf_token": csrf_token(client),
    }
    if mailbox.allow_plaintext:
        form["allow_plaintext"] = "y"
    form.update(changes)
    return form


def test_the_edit_form_needs_the_password_again_for_a_new_server(client, admin, app_ctx, imap_account):
    from portal.imap.credentials import SECRET_FOR_NEW_SERVER

    mailbox = create_mailbox(imap_account)
    login(client, "admin@portal.test")
    refused = client.post(f"{IMAP}/{mailbox.id}/edit", data=edit_form(client, mailbox, host="localhost"))
    assert refused.status_code == 422 and SECRET_FOR_NEW_SERVER in refused.get_data(as_text=True)
    saved = client.post(f"{IMAP}/{mailbox.id}/edit", data=edit_form(client, mailbox, folder="Archive"))
    assert saved.status_code == 302


def test_a_page_clone_keeps_the_password_only_for_its_own_server(client, admin, app_ctx, imap_account):
    from portal.extensions import db
    from portal.imap.credentials import SECRET_FOR_NEW_SERVER
    from portal.imap.models import ImapAccount

    mailbox = create_mailbox(imap_account)
    login(client, "admin@portal.test")
    cloned = client.post(f"{IMAP}/{mailbox.id}/clone", data={"csrf_token": csrf_token(client)})
    assert cloned.status_code == 302
    copy = db.session.get(ImapAccount, int(cloned.location.rstrip("/").split("/")[-2]))
    refused = client.post(f"{IMAP}/{copy.id}/edit", data=edit_form(client, copy, host="localhost", port="2143"))
    assert refused.status_code == 422 and SECRET_FOR_NEW_SERVER in refused.get_data(as_text=True)


def test_plaintext_sign_in_shows_a_warning(client, admin, app_ctx, imap_account):
    plaintext = create_mailbox(imap_account)
    login(client, "admin@portal.test")
    detail = client.get(f"{IMAP}/{plaintext.id}").get_data(as_text=True)
    assert "its password crosses the network unencrypted" in detail
    form = client.get(f"{IMAP}/{plaintext.id}/edit").get_data(as_text=True)
    assert 'class="plaintext-warning shown"' in form
    tls = create_mailbox(imap_account, name="Over TLS", security="ssl", port=imap_account.ssl_port, allow_plaintext=False)
    assert "plaintext-warning" not in client.get(f"{IMAP}/{tls.id}").get_data(as_text=True)
    assert 'class="plaintext-warning"' in client.get(f"{IMAP}/{tls.id}/edit").get_data(as_text=True)
