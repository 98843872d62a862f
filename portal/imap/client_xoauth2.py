"""OAuth2 sign-in (SASL XOAUTH2) for the IMAP client: the exchange and its failure messages.

The client sends ``AUTHENTICATE XOAUTH2`` and answers the server's continuations through
:class:`XOAuth2Exchange`: the first one with the SASL string
``user=<u>\\x01auth=Bearer <token>\\x01\\x01`` (base64), a second one (the error challenge:
base64 JSON such as Google's ``{"status":"400","schemes":"Bearer","scope":"..."}``) with an
empty line, after which the server says NO.  A server that keeps asking is cancelled (``*``)
and then cut off.  How long a continuation line may be is bounded by ``client_limits``.

:func:`authenticate_xoauth2` runs the command on client's imaplib connection (inside its
error translation); the rest is pure.  No message built here contains the token.
"""
from __future__ import annotations

import ast
import base64
import binascii
import imaplib
import json
import re
from typing import TYPE_CHECKING

from .client_errors import (
    ImapAuthError,
    ImapTokenRejected,
    redact,
    response_text,
    settings_secrets,
    xoauth2_sasl,
)

if TYPE_CHECKING:
    from .client import ConnectionSettings

MECHANISM = "XOAUTH2"
#: longest error challenge (base64, as received) that is decoded; a longer one is ignored
MAX_CHALLENGE_BYTES = 4096
#: longest value taken from the challenge JSON or the server's answer into a message
MAX_DETAIL_CHARS = 200
#: continuations answered: the SASL string, then the error challenge (empty answer), then one
#: cancel (``*``); a server that still asks after that is cut off
CANCEL_AT_CALL = 3

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_TOKEN_CHARS = re.compile(r"[\x20-\x7e]+")


def authenticate_xoauth2(client: imaplib.IMAP4, settings: "ConnectionSettings") -> None:
    """``AUTHENTICATE XOAUTH2`` on a connected client; raises ImapAuthError / ImapTokenRejected.

    Tried also when the capabilities do not list AUTH=XOAUTH2 (some servers show their
    mechanisms only after STARTTLS, or not at all); imaplib errors other than a BAD answer
    are left to the caller to translate."""
    check_credentials(settings.username, settings.access_token)
    advertised = f"AUTH={MECHANISM}" in client.capabilities
    exchange = XOAuth2Exchange(settings)
    client.literal = exchange.respond  # imaplib answers each continuation with what it returns
    try:
        typ, data = client._simple_command("AUTHENTICATE", MECHANISM)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:  # a BAD answer
        typ, data = "BAD", [bad_answer_text(str(exc))]
    if typ == "OK":
        client.state = "AUTH"  # as imaplib's own authenticate() does
        return
    raise refusal(settings, typ, response_text(data), exchange.challenge, advertised=advertised)


def check_credentials(username: str, access_token: str) -> None:
    """Refuse, before anything is sent, what cannot go into the SASL string intact."""
    if not username:
        raise ImapAuthError("Sign-in with OAuth2 needs a user name")
    if any(c in username for c in "\x01\r\n\0"):
        raise ImapAuthError(f"Sign-in with OAuth2 refused for user {username!r}: the user name contains "
                            "a control character (line break, NUL or \\x01)")
    if not access_token:
        raise ImapAuthError(f"Sign-in with OAuth2 for user {username}: no access token")
    if not _TOKEN_CHARS.fullmatch(access_token):
        raise ImapAuthError(f"Sign-in with OAuth2 refused for user {username}: the access token contains "
                            "characters a token cannot have (line breaks, NUL, control or non-ASCII "
                            "characters); it was not sent")


class XOAuth2Exchange:
    """Answers the continuations of one ``AUTHENTICATE XOAUTH2``.

    imaplib calls :meth:`respond` (a bound method: ``client.literal``) with the raw
    continuation text and sends back what it returns, followed by CRLF."""

    def __init__(self, settings: "ConnectionSettings") -> None:
        self._settings = settings
        self._sasl = base64.b64encode(xoauth2_sasl(settings.username, settings.access_token))
        self.calls = 0
        #: what the error challenge said (see :func:`parse_challenge`), None if none came
        self.challenge: dict[str, str] | None = None

    def respond(self, data: bytes | None) -> bytes:
        self.calls += 1
        if self.calls == 1:
            return self._sasl
        if self.calls == 2:
            self.challenge = parse_challenge(data, settings_secrets(self._settings))
            return b""  # the empty response: the server then answers NO
        if self.calls == CANCEL_AT_CALL:
            return b"*"
        # raised inside imaplib's command loop: the connection is dropped mid-exchange
        raise ImapAuthError(redact(f"{_head(self._settings)}: the server did not end the sign-in "
                                   "exchange after it was cancelled", *settings_secrets(self._settings)))


def _head(settings: "ConnectionSettings") -> str:
    return f"Sign-in with OAuth2 refused for user {settings.username} at {settings.host}:{settings.port}"


def parse_challenge(data: bytes | str | None, secrets: tuple[str, ...] = ()) -> dict[str, str]:
    """The error challenge's fields (status, scope, schemes), ``secrets`` redacted, cleaned
    for a message.

    Anything that is not small base64 JSON with string or number values gives ``{}``
    (or only the fields that were usable)."""
    if not data:
        return {}
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    data = data.strip()
    if len(data) > MAX_CHALLENGE_BYTES:
        return {}
    try:
        decoded = json.loads(base64.b64decode(data, validate=False).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(decoded, dict):
        return {}
    fields: dict[str, str] = {}
    for key in ("status", "scope", "schemes"):
        value = decoded.get(key)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            continue
        text = clean_detail(redact(str(value), *secrets))
        if text:
            fields[key] = text
    return fields


def bad_answer_text(error: str) -> str:
    """The server's words from imaplib's error for a BAD answer
    (``AUTHENTICATE command error: BAD [b'Unsupported mechanism']``)."""
    match = re.match(r"[A-Z]+ command error: BAD (\[.*\])\Z", error, re.S)
    if match is None:
        return error
    try:
        items = ast.literal_eval(match.group(1)[:MAX_CHALLENGE_BYTES])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return match.group(1)
    return " ".join(i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i)
                    for i in items if isinstance(i, (bytes, str)))


def clean_detail(text: str) -> str:
    """One line, no control characters, at most MAX_DETAIL_CHARS (redact before: a secret
    cut short here would no longer be found)."""
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > MAX_DETAIL_CHARS:
        text = text[:MAX_DETAIL_CHARS].rstrip() + "..."
    return text


def refusal(settings: "ConnectionSettings", answer_type: str, answer: str,
            challenge: dict[str, str] | None, *, advertised: bool) -> ImapAuthError:
    """The error for a refused XOAUTH2 sign-in.

    ``answer_type``/``answer``: the server's tagged answer (NO or BAD and its text);
    ``advertised``: whether the capabilities listed AUTH=XOAUTH2.  Without it, a BAD (or a
    NO about the mechanism) means the server does not do XOAUTH2 at all: an ImapAuthError;
    any other refusal is an :class:`ImapTokenRejected`."""
    head = _head(settings)
    secrets = settings_secrets(settings)
    said = clean_detail(redact(answer, *secrets))
    if not advertised and not challenge and (
            answer_type == "BAD" or "mechanism" in said.lower() or "unsupported" in said.lower()):
        message = f"{head}: the server does not offer OAuth2 sign-in (AUTH={MECHANISM})"
        if said:
            message += f"; the server said: {said}"
        return ImapAuthError(redact(message, *secrets))
    message = f"{head}: the access token was not accepted"
    details = [f"{key} {challenge[key]}" for key in ("status", "scope") if challenge and key in challenge]
    if details:
        message += f" ({', '.join(details)})"
    if said:
        message += f"; the server said: {said}"
    return ImapTokenRejected(redact(message, *secrets))
