"""OAuth2 mailboxes end to end, with real parts: created over the API, connected through the
local Authlib server (tests/support/oauth_server.py), synced against Dovecot's own oauth2
passdb (every XOAUTH2 login is checked by the IMAP server through the server's introspection),
refreshed, revoked. No secret in any response, page or log line."""
import json
import logging
import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests

from portal.extensions import db
from portal.imap import oauth_connect
from portal.imap.models import ImapAccount, OAuthState
from portal.models import utcnow
from tests.conftest import login, make_user
from tests.integration.imap_helpers import sync, ticket_count
from tests.support.dovecot import make_message

IMAP = "/admin/modules/imap"
CALLBACK = "http://localhost/admin/modules/imap/oauth/callback"  # the test client's host
EXPIRED = "Sign-in expired or revoked: reconnect the mailbox"
PROVIDER_LOGGERS = ("authlib.oauth2.rfc6749", "werkzeug")


class Browser:
    """The admin: API calls with the admin's token, pages and the provider's redirect back in the
    admin's browser session (the same user, as the state requires)."""

    def __init__(self, api, client):
        self.api, self.client = api, client

    def post(self, path, json=None):
        return self.api.post(path, json=json)

    def put(self, path, json=None):
        return self.api.put(path, json=json)

    def get(self, path):
        return (self.api if path.startswith("/api/") else self.client).get(path)


@pytest.fixture
def signed_in(api, client, admin, app_ctx):
    login(client, "admin@portal.test")
    return Browser(api, client)


def mailbox_payload(account, server, **fields) -> dict:
    payload = {
        "name": f"OAuth {account.username}",
        "host": account.host, "port": account.port, "security": "none", "allow_plaintext": True,
        "username": account.username, "auth_method": "oauth2", "oauth_provider": "custom",
        "oauth_authorize_url": server.authorize_url, "oauth_token_url": server.token_url,
    }
    payload.update(fields)
    return payload


def create(client, payload) -> dict:
    response = client.post("/api/imap/accounts", json=payload)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def connect(client, mailbox_id) -> str:
    """Follow the authorization URL to the provider (it approves at once) and back to the callback;
    returns the page the browser lands on."""
    response = client.post(f"/api/imap/accounts/{mailbox_id}/oauth/authorize")
    assert response.status_code == 200, response.get_json()
    url = response.get_json()["authorization_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [CALLBACK]
    provider = requests.get(url, allow_redirects=False, timeout=10)
    assert provider.status_code == 302, provider.text
    back = urlsplit(provider.headers["Location"])
    landing = client.get(f"{back.path}?{back.query}")
    assert landing.status_code == 302
    return client.get(landing.location).get_data(as_text=True)


def get(client, mailbox_id) -> dict:
    return client.get(f"/api/imap/accounts/{mailbox_id}").get_json()


def authorization_code_mailbox(client, server, account, **fields):
    oauth_client = server.register_client(redirect_uris=[CALLBACK])
    server.default_user = account.username
    mailbox = create(client, mailbox_payload(
        account, server, oauth_client_id=oauth_client.client_id, oauth_client_secret=oauth_client.client_secret,
        **fields))
    return mailbox, oauth_client


# --- each flow, end to end -------------------------------------------------------------------


def test_authorization_code_connects_syncs_refreshes_and_needs_reauthorization_when_revoked(
        signed_in, oauth_server, oauth_imap_account, caplog):
    caplog.set_level(logging.DEBUG)
    client = signed_in
    oauth_server.access_token_lifetime = 5
    mailbox, oauth_client = authorization_code_mailbox(client, oauth_server, oauth_imap_account)
    assert mailbox["oauth_status"] == "not_connected" and mailbox["has_oauth_client_secret"] is True
    assert mailbox["has_password"] is False and "oauth_client_secret" not in mailbox

    page = connect(client, mailbox["id"])
    assert "Connected to the provider" in page
    connected = get(client, mailbox["id"])
    assert connected["oauth_status"] == "connected" and connected["oauth_expires_at"]

    oauth_imap_account.append(make_message(1))
    first = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert first["status"] == "succeeded", first
    assert ticket_count() == 1

    time.sleep(5.5)  # the access token is dead: the next sync refreshes it first
    oauth_imap_account.append(make_message(2))
    used_refresh = set(oauth_server.refresh_tokens)
    second = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert second["status"] == "succeeded", second
    assert ticket_count() == 2
    assert oauth_server.token_requests.count("refresh_token") >= 1
    rotated = set(oauth_server.refresh_tokens) - used_refresh
    assert rotated, "the provider rotated the refresh token"

    # Consent revoked at the provider: the refresh token dies, the access token expires.
    for token in list(oauth_server.refresh_tokens):
        oauth_server.revoke_refresh_token(token)
    time.sleep(5.5)
    oauth_imap_account.append(make_message(3))
    failed = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert failed["status"] == "failed" and failed["error"] == EXPIRED
    assert ticket_count() == 2
    needs = get(client, mailbox["id"])
    assert needs["oauth_status"] == "needs_reauthorization"
    assert needs["last_error"] == EXPIRED and "invalid_grant" in (needs["oauth_error"] or "")
    detail = client.get(f"{IMAP}/{mailbox['id']}").get_data(as_text=True)
    assert "Needs reauthorization" in detail and "Reconnect with the provider" in detail
    row = client.get(IMAP).get_data(as_text=True)
    assert "Needs reauthorization" in row and ">Reconnect</button>" in row

    # Reconnecting brings it back.
    assert "Connected to the provider" in connect(client, mailbox["id"])
    again = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert again["status"] == "succeeded" and ticket_count() == 3

    secrets = [oauth_client.client_secret, *oauth_server.refresh_tokens, *oauth_server.access_tokens]
    # Our log lines (the test provider's own server-side debug lines print its clients: left out).
    ours = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith(PROVIDER_LOGGERS))
    seen = ours + "".join(
        client.get(path).get_data(as_text=True)
        for path in (f"/api/imap/accounts/{mailbox['id']}", "/api/imap/accounts", f"{IMAP}/{mailbox['id']}",
                     f"{IMAP}/{mailbox['id']}/edit", f"/api/imap/accounts/{mailbox['id']}/sync-runs"))
    for secret in secrets:
        assert secret not in seen


def test_client_credentials_gets_its_own_token(signed_in, oauth_server, oauth_imap_account):
    client = signed_in
    app_client = oauth_server.register_client(username=oauth_imap_account.username)
    mailbox = create(client, mailbox_payload(
        oauth_imap_account, oauth_server, oauth_flow="client_credentials", oauth_client_id=app_client.client_id,
        oauth_client_secret=app_client.client_secret, oauth_authorize_url=None))
    authorize = client.post(f"/api/imap/accounts/{mailbox['id']}/oauth/authorize")
    assert authorize.status_code == 409  # no person involved in this flow
    oauth_imap_account.append(make_message(1))
    result = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert result["status"] == "succeeded", result
    assert ticket_count() == 1
    assert oauth_server.token_requests == ["client_credentials"]
    assert get(client, mailbox["id"])["oauth_status"] == "connected"
    # A live token is reused: no second request.
    sync(db.session.get(ImapAccount, mailbox["id"]))
    assert oauth_server.token_requests == ["client_credentials"]


def test_service_account_signs_in_as_the_mailbox_user(signed_in, oauth_server, oauth_imap_account):
    client = signed_in
    key = oauth_server.new_service_account()
    mailbox = create(client, mailbox_payload(
        oauth_imap_account, oauth_server, oauth_provider="google", oauth_flow="service_account",
        oauth_service_account_json=json.dumps(key), oauth_authorize_url=None))
    assert mailbox["has_oauth_service_account"] is True and "oauth_service_account_json" not in mailbox
    assert mailbox["host"] == oauth_imap_account.host  # given, so the provider's default does not apply
    oauth_imap_account.append(make_message(1))
    result = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert result["status"] == "succeeded", result
    assert ticket_count() == 1
    stored = get(client, mailbox["id"])
    assert stored["oauth_status"] == "connected" and stored["oauth_account"] == oauth_imap_account.username
    assert key["private_key"] not in client.get(f"{IMAP}/{mailbox['id']}/edit").get_data(as_text=True)


def test_a_deleted_client_makes_a_daemon_mailbox_need_attention_without_retries(signed_in, oauth_server,
                                                                                oauth_imap_account):
    client = signed_in
    app_client = oauth_server.register_client(username=oauth_imap_account.username)
    mailbox = create(client, mailbox_payload(
        oauth_imap_account, oauth_server, oauth_flow="client_credentials", oauth_client_id=app_client.client_id,
        oauth_client_secret=app_client.client_secret))
    oauth_server.remove_client(app_client.client_id)
    result = sync(db.session.get(ImapAccount, mailbox["id"]))
    assert result["status"] == "failed" and result["error"] == EXPIRED
    assert get(client, mailbox["id"])["oauth_status"] == "needs_reauthorization"
    # A new secret (here: a new client) resets the status; the next sync gets a token.
    new_client = oauth_server.register_client(username=oauth_imap_account.username)
    fixed = client.put(f"/api/imap/accounts/{mailbox['id']}", json={
        "oauth_client_id": new_client.client_id, "oauth_client_secret": new_client.client_secret})
    assert fixed.status_code == 200 and fixed.get_json()["oauth_status"] == "not_connected"
    assert sync(db.session.get(ImapAccount, mailbox["id"]))["status"] == "succeeded"


# --- the state of a sign-in ------------------------------------------------------------------------


def _start(client, mailbox_id) -> tuple[str, str]:
    url = client.post(f"/api/imap/accounts/{mailbox_id}/oauth/authorize").get_json()["authorization_url"]
    provider = requests.get(url, allow_redirects=False, timeout=10)
    back = urlsplit(provider.headers["Location"])
    return f"{back.path}?{back.query}", parse_qs(back.query)["state"][0]


def _flash(client, response) -> str:
    assert response.status_code == 302
    return client.get(response.location).get_data(as_text=True)


def test_state_is_single_use_bound_to_the_user_and_short_lived(signed_in, oauth_server, oauth_imap_account, app):
    client = signed_in
    mailbox, _ = authorization_code_mailbox(client, oauth_server, oauth_imap_account)
    callback, state = _start(client, mailbox["id"])
    assert state.startswith(f"{mailbox['id']}.")
    assert db.session.query(OAuthState).count() == 1
    assert state not in str([row.state_hash for row in db.session.query(OAuthState)])  # stored hashed

    # Another super admin cannot finish it. (Called directly: the test client shares the test's
    # app context, where Flask-Login caches the signed-in user.)
    other = make_user("other@portal.test", super_admin=True)
    with app.test_request_context():
        outcome = oauth_connect.finish(dict(parse_qsl(urlsplit(callback).query)), other.id)
    assert not outcome.ok and "started by another user" in outcome.message
    assert get(client, mailbox["id"])["oauth_status"] == "not_connected"

    # Used (by the wrong user above): gone for everyone.
    assert "unknown or was already used" in _flash(client, client.get(callback))

    # Expired.
    callback, _ = _start(client, mailbox["id"])
    db.session.query(OAuthState).update({OAuthState.expires_at: utcnow() - timedelta(seconds=1)})
    db.session.commit()
    assert "expired" in _flash(client, client.get(callback))

    # A made-up state, and none at all.
    assert "unknown or was already used" in _flash(client, client.get(f"{IMAP}/oauth/callback?state={mailbox['id']}.x&code=y"))
    assert "no state" in _flash(client, client.get(f"{IMAP}/oauth/callback?code=y"))
    assert get(client, mailbox["id"])["oauth_status"] == "not_connected"

    # The right user, in time: connected; the same answer a second time changes nothing.
    callback, _ = _start(client, mailbox["id"])
    assert "Connected to the provider" in _flash(client, client.get(callback))
    assert "unknown or was already used" in _flash(client, client.get(callback))


def test_provider_denial_and_changed_settings_change_nothing(signed_in, oauth_server, oauth_imap_account):
    client = signed_in
    mailbox, _ = authorization_code_mailbox(client, oauth_server, oauth_imap_account)
    oauth_server.deny_authorization = True
    callback, _ = _start(client, mailbox["id"])
    page = _flash(client, client.get(callback))
    assert "did not grant access (access_denied" in page and "Nothing was changed" in page
    assert get(client, mailbox["id"])["oauth_status"] == "not_connected"

    oauth_server.deny_authorization = False
    callback, _ = _start(client, mailbox["id"])
    client.put(f"/api/imap/accounts/{mailbox['id']}", json={"oauth_scope": "other"})
    assert "settings changed" in _flash(client, client.get(callback))
    assert get(client, mailbox["id"])["oauth_status"] == "not_connected"


def test_authorize_is_for_authorization_code_mailboxes_only(api, imap_account):
    password_box = api.post("/api/imap/accounts", json={
        "name": "pw", "host": "imap.example.com", "username": "u", "password": "p"}).get_json()
    response = api.post(f"/api/imap/accounts/{password_box['id']}/oauth/authorize")
    assert response.status_code == 409
    assert api.post("/api/imap/accounts/999999/oauth/authorize").status_code == 404


def test_callback_needs_a_signed_in_super_admin(client, app_ctx):
    anonymous = client.get(f"{IMAP}/oauth/callback?state=1.x&code=y")
    assert anonymous.status_code == 302 and anonymous.location.startswith("/login?next=")
    make_user("agent@portal.test")
    login(client, "agent@portal.test")
    assert client.get(f"{IMAP}/oauth/callback?state=1.x&code=y").status_code == 403


# --- validation, provider defaults, and secrets bound to their destination ----------------------


def test_microsoft_and_google_fill_in_their_server(api):
    microsoft = api.post("/api/imap/accounts", json={
        "name": "M365", "username": "support@contoso.com", "auth_method": "oauth2", "oauth_provider": "microsoft",
        "oauth_client_id": "abc"}).get_json()
    assert (microsoft["host"], microsoft["port"], microsoft["security"]) == ("outlook.office365.com", 993, "ssl")
    assert microsoft["oauth_tenant"] is None and microsoft["oauth_status"] == "not_connected"
    url = api.post(f"/api/imap/accounts/{microsoft['id']}/oauth/authorize").get_json()["authorization_url"]
    assert url.startswith("https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize?")
    assert "IMAP.AccessAsUser.All" in parse_qs(urlsplit(url).query)["scope"][0]
    google = api.post("/api/imap/accounts", json={
        "name": "Gmail", "username": "support@example.com", "auth_method": "oauth2", "oauth_provider": "google",
        "oauth_client_id": "abc.apps.googleusercontent.com"}).get_json()
    assert google["host"] == "imap.gmail.com"
    query = parse_qs(urlsplit(api.post(f"/api/imap/accounts/{google['id']}/oauth/authorize")
                              .get_json()["authorization_url"]).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]


@pytest.mark.parametrize("payload,field,message", [
    ({"oauth_provider": "custom", "oauth_client_id": "c"}, "oauth_token_url", "Required for a custom provider"),
    ({"oauth_provider": "yahoo"}, "oauth_provider", "Must be one of: microsoft, google, custom"),
    ({"oauth_provider": "microsoft", "oauth_flow": "client_credentials", "oauth_client_id": "c",
      "oauth_tenant": "contoso.com"}, "oauth_client_secret", "Required for the client credentials flow"),
    ({"oauth_provider": "microsoft", "oauth_flow": "client_credentials", "oauth_client_id": "c",
      "oauth_client_secret": "s"}, "oauth_tenant", "App-only access needs your tenant ID or primary domain"),
    ({"oauth_provider": "google", "oauth_flow": "service_account"}, "oauth_service_account_json",
     "Required for the service account flow"),
    ({"oauth_provider": "google", "oauth_flow": "client_credentials", "oauth_client_id": "c",
      "oauth_client_secret": "s"}, "oauth_flow", "google supports: authorization_code, service_account"),
    ({"oauth_provider": "microsoft", "oauth_client_id": "c", "oauth_tenant": "../evil"}, "oauth_tenant",
     "Must be a tenant ID (GUID), a domain, or organizations/common"),
    ({"oauth_provider": "custom", "oauth_client_id": "c", "oauth_token_url": "http://login.example.com/token",
      "oauth_authorize_url": "https://login.example.com/a"}, "oauth_token_url",
     "Must use https:// (http only for a server on this machine)"),
    ({"oauth_provider": "google", "oauth_flow": "service_account", "oauth_service_account_json": "{\"a\": 1}"},
     "oauth_service_account_json", "The JSON key has no client_email"),
])
def test_oauth_validation_answers_per_field(api, payload, field, message):
    response = api.post("/api/imap/accounts", json={"name": "x", "username": "u@example.com", "host": "h",
                                                    "auth_method": "oauth2", **payload})
    assert response.status_code == 422
    assert message in response.get_json()["errors"][field]


def test_a_stored_client_secret_follows_only_its_token_endpoint(api, oauth_server, oauth_imap_account):
    app_client = oauth_server.register_client(username=oauth_imap_account.username)
    mailbox = create(api, mailbox_payload(
        oauth_imap_account, oauth_server, oauth_flow="client_credentials", oauth_client_id=app_client.client_id,
        oauth_client_secret=app_client.client_secret))
    moved = api.put(f"/api/imap/accounts/{mailbox['id']}", json={"oauth_token_url": "https://attacker.example/token"})
    assert moved.status_code == 422
    assert moved.get_json()["errors"]["oauth_client_secret"] == [
        "Enter it again to use it with a new token endpoint or client"]
    # Connected, then the IMAP server changes: the tokens are dropped (they open the old server only).
    assert sync(db.session.get(ImapAccount, mailbox["id"]))["status"] == "succeeded"
    assert get(api, mailbox["id"])["oauth_status"] == "connected"
    renamed = api.put(f"/api/imap/accounts/{mailbox['id']}", json={"port": oauth_imap_account.port, "host": "127.0.0.1"})
    assert renamed.status_code == 200
    if oauth_imap_account.host != "127.0.0.1":
        assert renamed.get_json()["oauth_status"] == "not_connected"
    # Switching to a flow that needs no client secret drops it.
    switched = api.put(f"/api/imap/accounts/{mailbox['id']}", json={
        "oauth_provider": "google", "oauth_flow": "service_account",
        "oauth_service_account_json": json.dumps(oauth_server.new_service_account())})
    assert switched.status_code == 200, switched.get_json()
    assert switched.get_json()["has_oauth_client_secret"] is False


def test_switching_a_password_mailbox_to_oauth2_needs_no_password(api, oauth_server, imap_account):
    mailbox = api.post("/api/imap/accounts", json={
        "name": "pw", "host": "imap.example.com", "username": "u@example.com", "password": "p"}).get_json()
    switched = api.put(f"/api/imap/accounts/{mailbox['id']}", json={
        "auth_method": "oauth2", "oauth_provider": "microsoft", "oauth_client_id": "c"})
    assert switched.status_code == 200, switched.get_json()
    body = switched.get_json()
    assert body["host"] == "outlook.office365.com" and body["has_password"] is False  # it was for the old server
    back = api.put(f"/api/imap/accounts/{mailbox['id']}", json={"auth_method": "password"})
    assert back.status_code == 422 and back.get_json()["errors"]["password"]


# --- Test connection ----------------------------------------------------------------------------


def _csrf(client):
    return re.search(r'"X-CSRFToken": "([^"]+)"', client.get(IMAP).get_data(as_text=True)).group(1)


def test_test_connection_for_oauth2(signed_in, oauth_server, oauth_imap_account):
    client = signed_in
    mailbox, _ = authorization_code_mailbox(client, oauth_server, oauth_imap_account)
    form = {
        "host": oauth_imap_account.host, "port": str(oauth_imap_account.port), "security": "none",
        "allow_plaintext": "y", "username": oauth_imap_account.username, "auth_method": "oauth2",
        "oauth_provider": "custom", "oauth_client_id": get(client, mailbox["id"])["oauth_client_id"],
        "oauth_authorize_url": oauth_server.authorize_url, "oauth_token_url": oauth_server.token_url,
        "account_id": str(mailbox["id"]), "csrf_token": _csrf(client),
    }
    page = client.client.post(f"{IMAP}/test-connection", data=form).get_data(as_text=True)
    assert "Connect the mailbox first" in page
    connect(client, mailbox["id"])
    page = client.client.post(f"{IMAP}/test-connection", data=form).get_data(as_text=True)
    assert "Connected." in page and 'data-folder="INBOX"' in page

    # A daemon flow on an unsaved mailbox: a token just for the test, with the typed secret.
    app_client = oauth_server.register_client(username=oauth_imap_account.username)
    unsaved = {**form, "account_id": "", "oauth_flow": "client_credentials", "oauth_client_id": app_client.client_id,
               "oauth_client_secret": app_client.client_secret}
    page = client.client.post(f"{IMAP}/test-connection", data=unsaved).get_data(as_text=True)
    assert "Connected." in page and app_client.client_secret not in page
    wrong = client.client.post(f"{IMAP}/test-connection", data={**unsaved, "oauth_client_secret": "nope"}).get_data(as_text=True)
    assert "refused the sign-in (invalid_client" in wrong and "nope" not in wrong
