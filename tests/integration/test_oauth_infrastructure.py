"""The OAuth2 test infrastructure with real parts and no product code: tokens
from the local Authlib server (tests/support/oauth_server.py) sign in to the
OAuth2 Dovecot (tests/support/dovecot.py, ``oauth_dovecot``) with plain
imaplib, and Dovecot itself refuses the tokens it should."""
import base64
import hashlib
import imaplib
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.oauth2.rfc7523 import JWTBearerGrant
from joserfc.jwk import RSAKey

from tests.support.dovecot import make_message

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never fetched: the redirect is read, not followed


def _select_inbox(dovecot, user, token) -> int:
    client = dovecot.authenticate(user, token)
    try:
        typ, data = client.select("INBOX")
        assert typ == "OK", data
        return int(data[0])
    finally:
        client.logout()


def _refused(dovecot, user, token) -> None:
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        dovecot.authenticate(user, token)


def _token(server, **form) -> requests.Response:
    return requests.post(server.token_url, data=form, timeout=10)


def _authorization_code_tokens(server, client, user) -> dict:
    """Follow /authorize (auto-approved) to the redirect, then exchange the code with PKCE."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    resp = requests.get(server.authorize_url, params={
        "response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT_URI,
        "scope": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access", "state": state,
        "code_challenge": challenge, "code_challenge_method": "S256", "login_hint": user,
    }, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    code = query["code"][0]

    wrong = _token(server, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI,
                   client_id=client.client_id, client_secret=client.client_secret,
                   code_verifier=secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"

    resp = _token(server, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI,
                  client_id=client.client_id, client_secret=client.client_secret, code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    assert tokens["token_type"].lower() == "bearer" and tokens["refresh_token"]
    reused = _token(server, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI,
                    client_id=client.client_id, client_secret=client.client_secret, code_verifier=verifier)
    assert reused.status_code == 400
    return tokens


def _refresh(server, client, refresh_token) -> requests.Response:
    return _token(server, grant_type="refresh_token", refresh_token=refresh_token,
                  client_id=client.client_id, client_secret=client.client_secret)


def test_authorization_code_with_pkce_signs_in(oauth_server, oauth_imap_account):
    user = oauth_imap_account.username
    oauth_imap_account.append(make_message(1))
    client = oauth_server.register_client(redirect_uris=[REDIRECT_URI])
    tokens = _authorization_code_tokens(oauth_server, client, user)
    assert _select_inbox(oauth_imap_account.server, user, tokens["access_token"]) == 1


def test_authorization_code_needs_pkce_and_can_be_denied(oauth_server):
    client = oauth_server.register_client(redirect_uris=[REDIRECT_URI])
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT_URI,
              "state": "s1", "login_hint": "someone"}
    resp = requests.get(oauth_server.authorize_url, params=params, allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["error"] == ["invalid_request"]
    oauth_server.deny_authorization = True
    params.update(code_challenge="x" * 43, code_challenge_method="S256")
    resp = requests.get(oauth_server.authorize_url, params=params, allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["s1"] and "code" not in query


def test_public_client_uses_pkce_without_secret(oauth_server, oauth_imap_account):
    user = oauth_imap_account.username
    client = oauth_server.register_client(public=True, redirect_uris=[REDIRECT_URI])
    tokens = _authorization_code_tokens(oauth_server, client, user)
    assert _select_inbox(oauth_imap_account.server, user, tokens["access_token"]) == 0


def test_client_credentials_signs_in(oauth_server, oauth_imap_account):
    user = oauth_imap_account.username
    client = oauth_server.register_client(username=user)
    resp = requests.post(oauth_server.token_url, data={"grant_type": "client_credentials",
                                                       "scope": "https://outlook.office365.com/.default"},
                         auth=(client.client_id, client.client_secret), timeout=10)
    assert resp.status_code == 200, resp.text
    assert "refresh_token" not in resp.json()
    assert _select_inbox(oauth_imap_account.server, user, resp.json()["access_token"]) == 0
    bad = requests.post(oauth_server.token_url, data={"grant_type": "client_credentials"},
                        auth=(client.client_id, "wrong"), timeout=10)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_jwt_bearer_service_account_signs_in(oauth_server, oauth_imap_account):
    user = oauth_imap_account.username
    account = oauth_server.new_service_account()
    now = int(time.time())
    assertion = JWTBearerGrant.sign(
        RSAKey.import_key(account["private_key"]), issuer=account["client_email"], audience=account["token_uri"],
        subject=user, issued_at=now, expires_at=now + 600,
        claims={"scope": "https://mail.google.com/"}, header={"alg": "RS256", "kid": account["private_key_id"]})
    resp = _token(oauth_server, grant_type=JWTBearerGrant.GRANT_TYPE, assertion=assertion)
    assert resp.status_code == 200, resp.text
    assert _select_inbox(oauth_imap_account.server, user, resp.json()["access_token"]) == 0

    other_key = RSAKey.import_key(oauth_server.new_service_account()["private_key"])  # right iss, wrong key
    forged = JWTBearerGrant.sign(other_key, issuer=account["client_email"], audience=account["token_uri"],
                                 subject=user, issued_at=now, expires_at=now + 600,
                                 header={"alg": "RS256"})
    resp = _token(oauth_server, grant_type=JWTBearerGrant.GRANT_TYPE, assertion=forged)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_dovecot_refuses_wrong_expired_and_other_users_tokens(oauth_server, oauth_dovecot):
    alice, _ = oauth_dovecot.new_user("alice")
    bob, _ = oauth_dovecot.new_user("bob")
    try:
        client = oauth_server.register_client(username=alice)
        _refused(oauth_dovecot, alice, "not-a-token-" + secrets.token_hex(8))

        oauth_server.access_token_lifetime = 2
        resp = requests.post(oauth_server.token_url, data={"grant_type": "client_credentials"},
                             auth=(client.client_id, client.client_secret), timeout=10)
        token = resp.json()["access_token"]
        assert resp.json()["expires_in"] == 2
        assert _select_inbox(oauth_dovecot, alice, token) == 0
        _refused(oauth_dovecot, bob, token)  # Dovecot: "Username mismatch"
        time.sleep(2.2)
        assert oauth_server.introspect(token) == {"active": False}
        _refused(oauth_dovecot, alice, token)
    finally:
        oauth_dovecot.remove_user(alice)
        oauth_dovecot.remove_user(bob)


def test_refresh_token_rotation_and_revocation(oauth_server, oauth_imap_account):
    user = oauth_imap_account.username
    dovecot = oauth_imap_account.server
    client = oauth_server.register_client(redirect_uris=[REDIRECT_URI])
    first = _authorization_code_tokens(oauth_server, client, user)

    resp = _refresh(oauth_server, client, first["refresh_token"])
    assert resp.status_code == 200, resp.text
    second = resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _select_inbox(dovecot, user, second["access_token"]) == 0

    used = _refresh(oauth_server, client, first["refresh_token"])
    assert used.status_code == 400 and used.json()["error"] == "invalid_grant"

    oauth_server.revoke_refresh_token(second["refresh_token"])
    revoked = _refresh(oauth_server, client, second["refresh_token"])
    assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"

    oauth_server.revoke_access_token(second["access_token"])
    _refused(dovecot, user, second["access_token"])


def test_password_is_not_an_oauth_token(oauth_imap_account):
    _refused(oauth_imap_account.server, oauth_imap_account.username, oauth_imap_account.password)
