"""portal.imap.client signing in with OAuth2 (AUTHENTICATE XOAUTH2) against a real Dovecot
whose oauth2 passdb asks the local Authlib server (tests/support/oauth_server.py) about every
token: Dovecot itself accepts or refuses them.

The only non-Dovecot peers are plain sockets: one that must never be reached (a bad token is
refused before connecting) and a hostile one that never ends the SASL exchange or sends
a continuation line too long to read.
"""
from __future__ import annotations

import base64
import socket
import threading
import time

import pytest
import requests

from portal.imap.client import (
    ConnectionSettings,
    ImapAuthError,
    ImapConnectError,
    ImapResponseTooLarge,
    ImapTokenRejected,
    connect,
    test_connection,
)
from portal.imap.client_limits import MAX_LINE_BYTES
from tests.support.dovecot import ImapAccount, make_message, xoauth2_string


def oauth_settings(account: ImapAccount, token: str, *, username: str | None = None,
                   timeout: float = 10.0) -> ConnectionSettings:
    return ConnectionSettings(
        host=account.host, port=account.port, security="none", verify_tls=True,
        username=username or account.username, password="", timeout=timeout,
        auth_method="oauth2", access_token=token)


def client_credentials_token(oauth_server, user: str) -> str:
    client = oauth_server.register_client(username=user)
    resp = requests.post(oauth_server.token_url, data={"grant_type": "client_credentials"},
                         auth=(client.client_id, client.client_secret), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def assert_token_free(exc: BaseException, user: str, token: str) -> None:
    """Neither the token nor the forms XOAUTH2 sends it in, anywhere in the error chain."""
    forms = [token, base64.b64encode(token.encode()).decode(),
             xoauth2_string(user, token).decode(), base64.b64encode(xoauth2_string(user, token)).decode()]
    e: BaseException | None = exc
    while e is not None:
        for form in forms:
            assert form not in str(e) and form not in repr(e)
        e = e.__cause__ or e.__context__


def assert_rejected(account: ImapAccount, token: str) -> ImapTokenRejected:
    with pytest.raises(ImapTokenRejected) as info:
        connect(oauth_settings(account, token))
    msg = str(info.value)
    assert msg.startswith(f"Sign-in with OAuth2 refused for user {account.username} "
                          f"at {account.host}:{account.port}: the access token was not accepted")
    assert "AUTHENTICATIONFAILED" in msg
    assert_token_free(info.value, account.username, token)
    return info.value


# ------------------------------------------------------------------ sign-in
def test_valid_token_signs_in_lists_selects_and_reads(oauth_server, oauth_imap_account):
    account = oauth_imap_account
    uid = account.append(make_message(1))
    token = client_credentials_token(oauth_server, account.username)
    with connect(oauth_settings(account, token)) as session:
        assert "INBOX" in session.list_folders()
        state = session.select("INBOX", readonly=True)
        assert state.exists == 1
        assert session.search_uids(unseen_only=False) == [uid]
        [info] = session.fetch_info([uid])
        assert info.uid == uid and info.size > 0
    assert "INBOX" in test_connection(oauth_settings(account, token))


def test_revoked_token_is_rejected_without_the_token(oauth_server, oauth_imap_account):
    token = client_credentials_token(oauth_server, oauth_imap_account.username)
    with connect(oauth_settings(oauth_imap_account, token)):
        pass
    oauth_server.revoke_access_token(token)
    err = assert_rejected(oauth_imap_account, token)
    # Dovecot's error challenge (base64 JSON) reaches the message
    assert "(status 401, scope mail)" in str(err)


def test_expired_token_is_rejected(oauth_server, oauth_imap_account):
    oauth_server.access_token_lifetime = 1
    token = client_credentials_token(oauth_server, oauth_imap_account.username)
    time.sleep(2)
    assert_rejected(oauth_imap_account, token)


def test_unknown_and_other_users_tokens_are_rejected(oauth_server, oauth_dovecot, oauth_imap_account):
    assert_rejected(oauth_imap_account, "not-a-token-0123456789")
    other, _ = oauth_dovecot.new_user("other")
    try:
        assert_rejected(oauth_imap_account, client_credentials_token(oauth_server, other))
    finally:
        oauth_dovecot.remove_user(other)


def test_password_is_not_sent_as_a_token_and_password_sign_in_still_works(oauth_imap_account):
    account = oauth_imap_account
    assert_rejected(account, account.password)
    password_settings = ConnectionSettings(host=account.host, port=account.port, security="none",
                                           verify_tls=True, username=account.username,
                                           password=account.password, timeout=10)
    assert password_settings.auth_method == "password"
    with connect(password_settings) as session:
        assert "INBOX" in session.list_folders()


def test_server_without_xoauth2_says_so(dovecot_server, imap_account):
    # the plain test Dovecot offers only PLAIN and LOGIN: the attempt is made and refused
    token = "some-token-" + "x" * 20
    with pytest.raises(ImapAuthError) as info:
        connect(ConnectionSettings(host=imap_account.host, port=imap_account.port, security="none",
                                   verify_tls=True, username=imap_account.username, password="",
                                   timeout=10, auth_method="oauth2", access_token=token))
    assert not isinstance(info.value, ImapTokenRejected)
    assert str(info.value).startswith(
        f"Sign-in with OAuth2 refused for user {imap_account.username} at "
        f"{imap_account.host}:{imap_account.port}: the server does not offer OAuth2 sign-in (AUTH=XOAUTH2)")
    assert_token_free(info.value, imap_account.username, token)


# ------------------------------------------------------- refused before sending
@pytest.fixture
def untouched_port():
    """A listening port that no test may connect to: yields (port, connected?)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)

    def connected() -> bool:
        try:
            listener.accept()[0].close()
        except BlockingIOError:
            return False
        return True

    yield listener.getsockname()[1], connected
    listener.close()


@pytest.mark.parametrize("token, username", [
    ("good-part\r\nX1 LOGOUT", "alice@example.com"),
    ("tok\0en", "alice@example.com"),
    ("tökén", "alice@example.com"),
    ("", "alice@example.com"),
    ("valid-token-123", "alice\x01auth=Bearer evil"),
    ("valid-token-123", "alice\r\nX1 LOGOUT"),
])
def test_unsendable_token_or_user_is_refused_before_connecting(untouched_port, token, username):
    port, connected = untouched_port
    s = ConnectionSettings(host="127.0.0.1", port=port, security="none", verify_tls=True,
                           username=username, password="", timeout=5, auth_method="oauth2",
                           access_token=token)
    with pytest.raises(ImapAuthError) as info:
        connect(s)
    assert not isinstance(info.value, ImapTokenRejected)
    assert str(info.value).startswith("Sign-in with OAuth2")
    if token:
        assert token not in str(info.value)
    assert not connected()


def test_settings_repr_hides_the_token():
    s = ConnectionSettings(host="h", port=1, security="none", verify_tls=True, username="u",
                           password="", auth_method="oauth2", access_token="ya29.secret-token-value")
    assert "secret-token-value" not in repr(s)
    assert "auth_method='oauth2'" in repr(s)


def test_unknown_auth_method_is_refused():
    s = ConnectionSettings(host="127.0.0.1", port=143, security="none", verify_tls=True, username="u",
                           password="p", auth_method="kerberos")
    with pytest.raises(ImapConnectError, match="Unknown sign-in method 'kerberos'"):
        connect(s)


# ----------------------------------------------------------- a hostile peer
@pytest.fixture
def challenger():
    """Starts an IMAP peer that greets with AUTH=XOAUTH2 and then answers every line with the
    continuation ``+ <challenge>``, forever; yields start(challenge) -> (port, lines it got)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    threads: list[threading.Thread] = []

    def start(challenge: bytes) -> tuple[int, list[bytes]]:
        lines: list[bytes] = []

        def run():
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hostile\r\n")
                stream = conn.makefile("rb")
                try:
                    while line := stream.readline(64 * 1024):
                        tag, _, command = line.rstrip(b"\r\n").partition(b" ")
                        if command.upper() == b"CAPABILITY":
                            conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\n" + tag + b" OK done\r\n")
                            continue
                        lines.append(line.rstrip(b"\r\n"))
                        conn.sendall(b"+ " + challenge + b"\r\n")
                except OSError:
                    pass

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
        return listener.getsockname()[1], lines

    yield start
    listener.close()
    for thread in threads:
        thread.join(5)


def hostile_settings(port: int, token: str) -> ConnectionSettings:
    return ConnectionSettings(host="127.0.0.1", port=port, security="none", verify_tls=True,
                              username="alice", password="", timeout=5, auth_method="oauth2",
                              access_token=token)


def test_endless_continuations_are_cancelled_and_cut_off(challenger):
    port, lines = challenger(base64.b64encode(b'{"status":"401"}'))
    token = "valid-token-abc123"
    started = time.monotonic()
    with pytest.raises(ImapAuthError) as info:
        connect(hostile_settings(port, token))
    assert time.monotonic() - started < 3
    assert str(info.value) == (f"Sign-in with OAuth2 refused for user alice at 127.0.0.1:{port}: "
                               "the server did not end the sign-in exchange after it was cancelled")
    assert_token_free(info.value, "alice", token)
    deadline = time.monotonic() + 3
    while len(lines) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    # the command, the SASL string, the empty answer to the error challenge, the cancel
    assert lines[0].endswith(b" AUTHENTICATE XOAUTH2")
    assert lines[1:] == [base64.b64encode(xoauth2_string("alice", token)), b"", b"*"]


def test_giant_challenge_is_not_read(challenger):
    port, _ = challenger(b"A" * (MAX_LINE_BYTES + 10))
    token = "valid-token-abc123"
    with pytest.raises(ImapResponseTooLarge) as info:
        connect(hostile_settings(port, token))
    assert "response line longer than" in str(info.value)
    assert_token_free(info.value, "alice", token)
