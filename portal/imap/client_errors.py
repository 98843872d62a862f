"""IMAP failures as the rest of the portal sees them.

Whatever socket, ssl, imaplib or imap-tools raise becomes an :class:`ImapError`
(or a subclass) with a short, human message that never contains the password or the
OAuth2 access token (:func:`settings_secrets`).  :func:`translate` is the one place that
decides which error and which words; :func:`translated` applies it around a block of IMAP work.
"""
from __future__ import annotations

import base64
import imaplib
import socket
import ssl
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from imap_tools.errors import ImapToolsError, MailboxLoginError, UnexpectedCommandStatusError

if TYPE_CHECKING:
    from .client import ConnectionSettings


class ImapError(Exception):
    """Any IMAP failure.  The message is short, human and never contains the password
    (nor the access token)."""


class ImapConnectError(ImapError):
    """Server unreachable, timeout, TLS failure, lost connection, or login failure."""


class ImapAuthError(ImapConnectError):
    """The server rejected the credentials (or cannot accept them safely)."""


class ImapTokenRejected(ImapAuthError):
    """The server refused an OAuth2 (XOAUTH2) sign-in: the access token was not accepted
    (wrong, expired, revoked, another user's, or lacking the mail scope)."""


@dataclass(frozen=True)
class Operation:
    """What a session was doing, in the words its error messages use.

    The texts may name ``{where}`` (host:port), ``{folder}`` and ``{user}``;
    they are filled in only when something fails."""

    doing: str  # "... while <doing>"
    #: prefix of "<refused>: <server's answer>" when the server refuses the
    #: command (BAD, or a failed login); None: reported like any IMAP error
    refused: str | None = None
    refused_error: type[ImapError] = ImapError
    #: also a refusal: imap-tools' failed login (only logging in goes through imap-tools)
    login: bool = False
    #: prefix of "<dropped>: <detail>" when the server drops the connection
    dropped: str | None = None
    #: message when imaplib finds the folder read-only (SELECT without EXAMINE)
    readonly: str | None = None


def redact(message: str, *secrets: str | None) -> str:
    """``message`` with every secret (a password, a token...) replaced by ``***``; a secret is
    also found in the quoted form IMAP gives it."""
    for secret in secrets:
        if secret:
            for variant in {secret, secret.replace("\\", "\\\\").replace('"', '\\"')}:
                message = message.replace(variant, "***")
    return message


def settings_secrets(settings: "ConnectionSettings") -> tuple[str, ...]:
    """What no message may show: the password, and the access token also in the forms
    XOAUTH2 sends it (the SASL string and base64)."""
    found = [settings.password or ""]
    token = getattr(settings, "access_token", "") or ""
    if token:
        sasl = _sasl_text(settings.username, token)
        found += [sasl, token]
        for text in (sasl, token):
            with suppress(UnicodeError):
                found.append(base64.b64encode(text.encode("utf-8")).decode("ascii"))
    # longest first: a secret inside another is replaced as part of the longer one
    return tuple(sorted((f for f in found if f), key=len, reverse=True))


def xoauth2_sasl(username: str, access_token: str) -> bytes:
    """The XOAUTH2 initial client response, before base64."""
    return _sasl_text(username, access_token).encode("utf-8")


def _sasl_text(username: str, access_token: str) -> str:
    return f"user={username}\x01auth=Bearer {access_token}\x01\x01"


def response_text(data) -> str:
    """Server response data (list of bytes/tuples) -> one line of text."""
    if isinstance(data, (bytes, bytearray)):
        data = [data]
    parts = []
    for item in data or ():
        if isinstance(item, tuple):
            item = item[0]
        if isinstance(item, (bytes, bytearray)):
            parts.append(bytes(item).decode("utf-8", "replace"))
        elif item is not None:
            parts.append(str(item))
    return " ".join(p.strip() for p in parts if p).strip()


def describe_oserror(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def refusal(op: Operation, settings: "ConnectionSettings", answer: str, *,
            folder: str | None = None) -> ImapError:
    """The error for a command the server refused, with the server's answer."""
    return op.refused_error(redact(f"{_words(op.refused, settings, folder)}: {answer}",
                                   *settings_secrets(settings)))


def _words(text: str, settings: "ConnectionSettings", folder: str | None) -> str:
    return text.format(where=f"{settings.host}:{settings.port}", folder=folder, user=settings.username)


def _refused_answer(exc: BaseException, op: Operation) -> str | None:
    """The server's answer when ``exc`` means "command refused", else None."""
    if op.login and isinstance(exc, MailboxLoginError):
        return response_text(exc.command_result[1]) or "rejected"
    if isinstance(exc, imaplib.IMAP4.error) and not isinstance(exc, imaplib.IMAP4.abort):
        return str(exc)
    return None


def _not_imap(exc: BaseException, *, connected: bool) -> bool:
    """imaplib could not read an IMAP greeting, or read a line that is not IMAP."""
    if not isinstance(exc, imaplib.IMAP4.error) or isinstance(exc, imaplib.IMAP4.readonly):
        return False
    return not connected or str(exc).startswith("unexpected response")


def translate(exc: BaseException, op: Operation, settings: "ConnectionSettings", *,
              connected: bool, folder: str | None = None) -> ImapError:
    """The ImapError to raise for ``exc``; KeyboardInterrupt and friends propagate unchanged."""
    if isinstance(exc, ImapError):
        return exc
    where = f"{settings.host}:{settings.port}"
    secrets = settings_secrets(settings)
    action = _words(op.doing, settings, folder)
    if op.readonly and isinstance(exc, imaplib.IMAP4.readonly):
        return ImapError(_words(op.readonly, settings, folder))
    if _not_imap(exc, connected=connected):
        # Whatever answered may be any service the caller pointed us at: never echo its words.
        return ImapConnectError(f"The server at {where} did not answer as an IMAP server")
    if op.dropped and isinstance(exc, imaplib.IMAP4.abort):
        return ImapConnectError(redact(f"{_words(op.dropped, settings, folder)}: {exc}", *secrets))
    if op.refused:
        answer = _refused_answer(exc, op)
        if answer is not None:
            return refusal(op, settings, answer, folder=folder)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return ImapConnectError(redact(f"Timed out after {settings.timeout:g}s talking to {where}", *secrets))
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return ImapConnectError(redact(f"TLS certificate verification failed for {where}: {reason}", *secrets))
    if isinstance(exc, ssl.SSLError):
        return ImapConnectError(redact(f"TLS error with {where}: {exc.reason or str(exc)}", *secrets))
    if isinstance(exc, OSError):
        if connected:
            return ImapConnectError(redact(f"Connection to {where} lost while {action}: "
                                           f"{describe_oserror(exc)}", *secrets))
        return ImapConnectError(redact(f"Could not connect to {where}: {describe_oserror(exc)}", *secrets))
    if isinstance(exc, imaplib.IMAP4.abort):
        return ImapConnectError(redact(f"Connection to {where} failed while {action}: {exc}", *secrets))
    if isinstance(exc, (imaplib.IMAP4.error, ImapToolsError, UnexpectedCommandStatusError)):
        return ImapError(redact(f"IMAP error from {where} while {action}: {exc}", *secrets))
    if isinstance(exc, UnicodeError):
        return ImapError(f"Cannot encode a value for {where} while {action}")
    if isinstance(exc, Exception):
        return ImapError(redact(f"Unexpected error talking to {where} while {action}: "
                                f"{type(exc).__name__}: {exc}", *secrets))
    raise exc


@contextmanager
def translated(op: Operation, settings: "ConnectionSettings", *, connected: bool,
               folder: str | None = None,
               on_connection_lost: Callable[[], None] | None = None) -> Iterator[None]:
    """Run a block of IMAP work; anything but an ImapError leaves it translated.

    ``on_connection_lost`` runs when the result is an ImapConnectError (the
    connection cannot be trusted any more).  ImapErrors raised inside the
    block pass through untouched."""
    try:
        yield
    except ImapError:
        raise
    except BaseException as exc:
        err = translate(exc, op, settings, connected=connected, folder=folder)
        if on_connection_lost is not None and isinstance(err, ImapConnectError):
            on_connection_lost()
        raise err from None


# The words each command's errors use.
CONNECT = Operation("connecting")
LOGIN = Operation("logging in", refused="Login failed for user {user}", refused_error=ImapAuthError,
                  login=True, dropped="Connection to {where} closed during login")
OAUTH2_LOGIN = Operation("signing in with OAuth2",
                         dropped="Connection to {where} closed during OAuth2 sign-in")
LIST = Operation("listing folders")
SELECT = Operation("opening folder '{folder}'", refused="Could not open folder '{folder}'",
                   readonly="Folder '{folder}' can only be opened read-only")
SEARCH = Operation("searching", refused="Search failed in folder '{folder}'")
FETCH = Operation("fetching messages", refused="Fetching messages from '{folder}' failed")
MARK_SEEN = Operation("marking messages as seen", refused="Marking messages as seen in '{folder}' failed")
