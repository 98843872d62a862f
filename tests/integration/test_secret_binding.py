"""A stored password follows only its own server, and goes out in plaintext only by consent.

The attacker's server is a RecordingServer on loopback: whatever the portal sends it is kept, so
the tests can say the stored password never arrived there.
"""
import pytest

from portal.extensions import db
from portal.imap.connection_check import check_connection
from portal.imap.credentials import PLAINTEXT_NOT_ALLOWED, SECRET_FOR_NEW_SERVER
from portal.imap.models import ImapAccount
from tests.integration.imap_helpers import RecordingServer, create_mailbox, sync
from tests.support.mail import make_email

NEW_SERVER = {"password": [SECRET_FOR_NEW_SERVER]}


@pytest.fixture
def attacker():
    with RecordingServer() as server:
        yield server


def dovecot_mailbox(api, imap_account, **fields):
    payload = {
        "name": "Support", "host": imap_account.host, "port": imap_account.port, "security": "none",
        "allow_plaintext": True, "username": imap_account.username, "password": imap_account.password,
    }
    payload.update(fields)
    response = api.post("/api/imap/accounts", json=payload)
    assert response.status_code == 201, response.json
    return response.json


def server_changes(attacker, imap_account):
    """One change per field the stored secret is bound to."""
    return [
        {"host": "localhost"},
        {"port": attacker.port},
        {"username": "someone-else"},
        {"security": "starttls"},
        {"host": attacker.host, "port": attacker.port},
    ]


def form_for(mailbox, imap_account, **changes):
    form = {
        "host": imap_account.host, "port": str(imap_account.port), "security": "none", "allow_plaintext": "y",
        "username": imap_account.username, "password": "", "account_id": str(mailbox["id"]),
    }
    form.update(changes)
    return form


# --- saving ---------------------------------------------------------------------------------


def test_an_edit_that_changes_the_server_needs_the_password_again(api, app, imap_account, attacker):
    mailbox = dovecot_mailbox(api, imap_account)
    url = f"/api/imap/accounts/{mailbox['id']}"
    for change in server_changes(attacker, imap_account):
        refused = api.put(url, json=change)
        assert refused.status_code == 422 and refused.json["errors"] == NEW_SERVER, change
    assert api.get(url).json["host"] == imap_account.host
    # Same server: the stored password stays. New server with its password: accepted.
    assert api.put(url, json={"folder": "Archive", "host": imap_account.host}).status_code == 200
    moved = api.put(url, json={"host": attacker.host, "port": attacker.port, "password": "typed-for-the-new-one"})
    assert moved.status_code == 200 and moved.json["port"] == attacker.port


def test_a_clone_that_changes_the_server_needs_the_password_again(api, app, imap_account, attacker):
    mailbox = dovecot_mailbox(api, imap_account)
    url = f"/api/imap/accounts/{mailbox['id']}/clone"
    for change in server_changes(attacker, imap_account):
        refused = api.post(url, json=change)
        assert refused.status_code == 422 and refused.json["errors"] == NEW_SERVER, change
    assert api.get("/api/imap/accounts").json["total"] == 1
    assert api.post(url, json={"folder": "Sales"}).status_code == 201
    assert api.post(url, json={"host": attacker.host, "port": attacker.port, "password": "new"}).status_code == 201


def test_refused_edits_and_clones_never_carry_the_password_to_another_server(api, app, imap_account, attacker):
    imap_account.append(make_email(subject="Still ours"))
    mailbox = dovecot_mailbox(api, imap_account)
    elsewhere = {"host": attacker.host, "port": attacker.port}
    assert api.put(f"/api/imap/accounts/{mailbox['id']}", json=elsewhere).status_code == 422
    assert api.post(f"/api/imap/accounts/{mailbox['id']}/clone", json=elsewhere).status_code == 422
    with app.app_context():
        result = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert result["status"] == "succeeded", result
    assert attacker.connections == 0
    assert imap_account.password.encode() not in attacker.received


# --- Test connection ------------------------------------------------------------------------


def test_test_connection_never_sends_the_stored_password_to_another_server(api, app, imap_account, attacker):
    mailbox = dovecot_mailbox(api, imap_account)
    with app.test_request_context():
        for change in server_changes(attacker, imap_account):
            form = form_for(mailbox, imap_account, **{name: str(value) for name, value in change.items()})
            assert check_connection(form).error == SECRET_FOR_NEW_SERVER, change
        assert attacker.connections == 0 and imap_account.password.encode() not in attacker.received
        # The recorder would have seen it: a password typed for that server does reach it.
        typed = form_for(mailbox, imap_account, host=attacker.host, port=str(attacker.port), password="typed-pw-42")
        assert check_connection(typed).error is not None
        assert b"typed-pw-42" in attacker.received
        assert imap_account.password.encode() not in attacker.received
        # The mailbox's own server still accepts a blank password (the stored one).
        assert check_connection(form_for(mailbox, imap_account)).folders


# --- plaintext ------------------------------------------------------------------------------


def test_security_none_with_a_password_needs_allow_plaintext(api, imap_account):
    refused = api.post("/api/imap/accounts", json={
        "name": "Plain", "host": imap_account.host, "port": imap_account.port, "security": "none",
        "username": imap_account.username, "password": imap_account.password,
    })
    assert refused.status_code == 422 and refused.json["errors"] == {"security": [PLAINTEXT_NOT_ALLOWED]}
    tls = api.post("/api/imap/accounts", json={"name": "Tls", "host": "imap.example.com", "username": "u", "password": "p"})
    assert tls.status_code == 201 and tls.json["allow_plaintext"] is False
    url = f"/api/imap/accounts/{tls.json['id']}"
    downgrade = api.put(url, json={"security": "none", "port": 143, "password": "p"})
    assert downgrade.status_code == 422 and downgrade.json["errors"] == {"security": [PLAINTEXT_NOT_ALLOWED]}
    assert api.put(url, json={"security": "none", "port": 143, "password": "p", "allow_plaintext": True}).status_code == 200
    revoke = api.put(url, json={"allow_plaintext": False})
    assert revoke.status_code == 422 and revoke.json["errors"] == {"security": [PLAINTEXT_NOT_ALLOWED]}
    assert api.put(url, json={"active": False}).status_code == 200  # unrelated edits are not blocked


def test_importer_reads_a_mailbox_that_allows_plaintext(app_ctx, imap_account):
    imap_account.append(make_email(subject="Over plaintext"))
    result = sync(create_mailbox(imap_account))  # the helper's mailboxes allow plaintext
    assert result["status"] == "succeeded" and result["counts"].get("imported") == 1, result


def test_a_plaintext_mailbox_from_before_the_opt_in_fails_without_sending_the_password(app_ctx, imap_account, attacker):
    legacy = create_mailbox(imap_account, host=attacker.host, port=attacker.port, allow_plaintext=False)
    result = sync(legacy)
    assert result["status"] == "failed" and PLAINTEXT_NOT_ALLOWED in result["error"], result
    assert attacker.connections == 0
    assert PLAINTEXT_NOT_ALLOWED in (db.session.get(ImapAccount, legacy.id).last_error or "")


def test_test_connection_over_plaintext_needs_the_checkbox(app, imap_account, attacker):
    form = {"host": attacker.host, "port": str(attacker.port), "security": "none", "username": "u", "password": "pw"}
    with app.test_request_context():
        assert check_connection(form).error == PLAINTEXT_NOT_ALLOWED
    assert attacker.connections == 0
