"""The XOAUTH2 exchange and its messages (portal.imap.client_xoauth2), without a server:
the challenge JSON as Google, Microsoft and Dovecot send it (or garbage), the wording of a
refusal, the bounded continuation loop, and that no form of the token reaches a message."""
from __future__ import annotations

import base64
import imaplib
import json

import pytest

from portal.imap.client import ConnectionSettings
from portal.imap.client_errors import (
    OAUTH2_LOGIN,
    ImapAuthError,
    ImapTokenRejected,
    redact,
    settings_secrets,
    translate,
    xoauth2_sasl,
)
from portal.imap.client_xoauth2 import (
    MAX_CHALLENGE_BYTES,
    MAX_DETAIL_CHARS,
    XOAuth2Exchange,
    bad_answer_text,
    check_credentials,
    parse_challenge,
    refusal,
)

TOKEN = "ya29.a0AfB_byC-secret-token-value"
USER = "alice@example.com"


def oauth(token: str = TOKEN, host: str = "outlook.office365.com") -> ConnectionSettings:
    return ConnectionSettings(host=host, port=993, security="ssl", verify_tls=True, username=USER,
                              password="", auth_method="oauth2", access_token=token)


def b64json(value) -> bytes:
    return base64.b64encode(json.dumps(value).encode())


def token_forms(token: str = TOKEN) -> list[str]:
    sasl = xoauth2_sasl(USER, token)
    return [token, base64.b64encode(token.encode()).decode(), sasl.decode(), base64.b64encode(sasl).decode()]


# ------------------------------------------------------------ the challenge
def test_google_challenge_is_parsed():
    raw = b64json({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})
    assert parse_challenge(raw) == {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}


def test_dovecot_challenge_and_numbers_are_parsed():
    assert parse_challenge(b"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=") == \
        {"status": "401", "schemes": "bearer", "scope": "mail"}
    assert parse_challenge(b64json({"status": 401})) == {"status": "401"}


@pytest.mark.parametrize("raw", [
    None, b"", b"+", b"not base64 at all!!!", b"AAAA", base64.b64encode(b"\xff\xfe\x00garbage"),
    base64.b64encode(b"{not json"), b64json(["status", "401"]), b64json("401"), b64json(None),
    b64json({"status": True, "scope": None, "schemes": {"x": 1}}), b64json({"other": "x"}),
    base64.b64encode(b"[" * 1500 + b"]" * 1500),  # deeper than json.loads can go
])
def test_garbage_challenges_give_nothing(raw):
    assert parse_challenge(raw) == {}


def test_oversized_challenge_is_not_decoded():
    raw = b64json({"status": "401", "scope": "x" * (MAX_CHALLENGE_BYTES * 2)})
    assert len(raw) > MAX_CHALLENGE_BYTES
    assert parse_challenge(raw) == {}


def test_challenge_values_are_cleaned_and_capped():
    fields = parse_challenge(b64json({"status": "401\r\nInjected: yes", "scope": "s" * 1000}))
    assert fields["status"] == "401 Injected: yes"
    assert len(fields["scope"]) == MAX_DETAIL_CHARS + 3 and fields["scope"].endswith("...")


# ------------------------------------------------------------- the wording
def test_google_style_refusal_names_status_and_scope():
    challenge = parse_challenge(b64json({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}))
    err = refusal(oauth(host="imap.gmail.com"), "NO", "[AUTHENTICATIONFAILED] Invalid credentials (Failure)",
                  challenge, advertised=True)
    assert type(err) is ImapTokenRejected
    assert str(err) == ("Sign-in with OAuth2 refused for user alice@example.com at imap.gmail.com:993: "
                        "the access token was not accepted (status 400, scope https://mail.google.com/); "
                        "the server said: [AUTHENTICATIONFAILED] Invalid credentials (Failure)")


def test_microsoft_style_plain_no():
    err = refusal(oauth(), "NO", "AUTHENTICATE failed.", None, advertised=True)
    assert type(err) is ImapTokenRejected
    assert str(err) == ("Sign-in with OAuth2 refused for user alice@example.com at outlook.office365.com:993: "
                        "the access token was not accepted; the server said: AUTHENTICATE failed.")


def test_status_only_and_silent_server():
    err = refusal(oauth(), "NO", "", {"status": "401"}, advertised=True)
    assert str(err) == ("Sign-in with OAuth2 refused for user alice@example.com at outlook.office365.com:993: "
                        "the access token was not accepted (status 401)")


@pytest.mark.parametrize("answer_type, answer", [
    ("BAD", "Unknown command"), ("NO", "[ALERT] Unsupported authentication mechanism."),
])
def test_mechanism_not_offered(answer_type, answer):
    err = refusal(oauth(), answer_type, answer, None, advertised=False)
    assert type(err) is ImapAuthError
    assert str(err).startswith("Sign-in with OAuth2 refused for user alice@example.com at "
                               "outlook.office365.com:993: the server does not offer OAuth2 sign-in "
                               "(AUTH=XOAUTH2); the server said: ")


def test_advertised_mechanism_bad_is_a_rejected_token():
    # Microsoft: "BAD User is authenticated but not connected." for a token without IMAP permission
    err = refusal(oauth(), "BAD", "User is authenticated but not connected.", None, advertised=True)
    assert type(err) is ImapTokenRejected


@pytest.mark.parametrize("form", range(4))
def test_a_server_echoing_the_token_is_redacted(form):
    echoed = token_forms()[form]
    challenge = {"status": "401", "scope": echoed}
    err = refusal(oauth(), "NO", f"bad token {echoed}", challenge, advertised=True)
    for secret in token_forms():
        assert secret not in str(err)
    assert "***" in str(err)


def test_a_token_echoed_where_the_answer_is_cut_short_is_still_redacted():
    echoed = "x" * (MAX_DETAIL_CHARS - 10) + " " + TOKEN
    err = refusal(oauth(), "NO", echoed, None, advertised=True)
    assert TOKEN[:9] not in str(err)
    exchange = XOAuth2Exchange(oauth())
    exchange.respond(b"")
    exchange.respond(b64json({"status": "401", "scope": echoed}))
    assert TOKEN[:9] not in exchange.challenge["scope"]


def test_long_server_answer_is_capped_and_one_line():
    err = refusal(oauth(), "NO", "x\r\n" * 5000, None, advertised=True)
    assert "\n" not in str(err) and len(str(err)) < 400


def test_bad_answer_text():
    assert bad_answer_text("AUTHENTICATE command error: BAD [b'Unsupported mechanism']") == "Unsupported mechanism"
    assert bad_answer_text("AUTHENTICATE command error: BAD [b'a', b'b']") == "a b"
    assert bad_answer_text("AUTHENTICATE command error: BAD [b'unterminated]") == "[b'unterminated]"
    assert bad_answer_text("something else") == "something else"


# -------------------------------------------------------------- the exchange
def test_exchange_answers_sasl_then_empty_then_cancels_then_cuts_off():
    exchange = XOAuth2Exchange(oauth())
    assert base64.b64decode(exchange.respond(b"")) == f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()
    assert exchange.challenge is None
    assert exchange.respond(b64json({"status": "401", "scope": "mail"})) == b""
    assert exchange.challenge == {"status": "401", "scope": "mail"}
    assert exchange.respond(b"") == b"*"
    with pytest.raises(ImapAuthError, match="did not end the sign-in exchange") as info:
        exchange.respond(None)
    for secret in token_forms():
        assert secret not in str(info.value)


def test_exchange_tolerates_a_bare_continuation():
    exchange = XOAuth2Exchange(oauth())
    exchange.respond(None)
    assert exchange.respond(None) == b""
    assert exchange.challenge == {}


# ------------------------------------------------------ refused before sending
@pytest.mark.parametrize("user, token", [
    (USER, "tok\r\nen"), (USER, "tok\nen"), (USER, "tok\0en"), (USER, "tök"), (USER, "tok\x01en"),
    (USER, ""), ("ali\x01ce", TOKEN), ("ali\rce", TOKEN), ("ali\nce", TOKEN), ("ali\0ce", TOKEN), ("", TOKEN),
])
def test_unsendable_credentials(user, token):
    with pytest.raises(ImapAuthError) as info:
        check_credentials(user, token)
    assert not isinstance(info.value, ImapTokenRejected)
    if token:
        assert token not in str(info.value)


def test_ordinary_credentials_pass():
    check_credentials("jörg@exämple.com", "ya29.A-b_c~d+e/f=")


# ----------------------------------------------------------------- redaction
def test_translation_redacts_the_token_like_the_password():
    s = oauth()
    s.password = "pw-secret"
    for form in token_forms() + ["pw-secret"]:
        err = translate(imaplib.IMAP4.abort(f"socket error: {form}"), OAUTH2_LOGIN, s, connected=True)
        assert form not in str(err)
        assert str(err).startswith("Connection to outlook.office365.com:993 closed during OAuth2 sign-in: ")
        err = translate(OSError(f"odd {form}"), OAUTH2_LOGIN, s, connected=False)
        assert form not in str(err)


def test_settings_secrets_and_redact():
    s = oauth()
    assert set(token_forms()) <= set(settings_secrets(s))
    assert redact("a pw b", "pw") == "a *** b"
    assert redact('quoted "p\\"w"', 'p"w') == 'quoted "***"'
    assert redact("nothing", None, "") == "nothing"
    assert settings_secrets(ConnectionSettings(host="h", port=1, security="none", verify_tls=True,
                                               username="u", password="pw")) == ("pw",)
