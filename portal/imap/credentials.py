"""The one place that turns a mailbox into IMAP connection settings and credentials.

The importer, Test connection and every other IMAP caller get their settings here, so the
rules about which secret may be used for which server live here too:

- a stored secret follows only the server it was given for (`stored_secret_usable`); saving a
  mailbox or testing a connection with another server needs the secret again;
- a secret crosses the network in plaintext only when the mailbox says so (`allow_plaintext`);
- the server must be one the portal may reach (destinations.py).
"""
from dataclasses import replace

from flask import current_app

from .. import crypto
from . import oauth_access
from .client import ConnectionSettings, ImapSession, ImapTokenRejected, connect, literal_limit_for
from .client_errors import ImapAuthError
from .destinations import check_destination
from .oauth_providers import ERROR, OAUTH2

#: Test connection answers quickly even when the configured timeout is long.
QUICK_TIMEOUT_SECONDS = 15.0

#: The server a stored secret was given for. Change any of these and the secret must be given again.
SECRET_BOUND_TO = ("host", "port", "username", "security")
SECRET_FOR_NEW_SERVER = "Enter the password again to use it with a new server"
PLAINTEXT_NOT_ALLOWED = "Plaintext sign-in sends the password unencrypted: set allow_plaintext to allow it"


def stored_secret_usable(stored, *, host: str, port: int, username: str, security: str) -> bool:
    """May the secret stored with `stored` (password today; OAuth2 secrets and tokens alike)
    be sent to this server? Only when host, port, username and security are all unchanged."""
    return (
        _host(host) == _host(stored.host)
        and port == stored.port
        and username == stored.username
        and security == stored.security
    )


def secret_destination(values) -> dict:
    """The SECRET_BOUND_TO values of a mailbox (or anything with those attributes)."""
    return {name: getattr(values, name) for name in SECRET_BOUND_TO}


def plaintext_refused(*, security: str, allow_plaintext: bool, has_secret: bool) -> bool:
    """A secret would be sent unencrypted without the mailbox's explicit consent."""
    return security == "none" and has_secret and not allow_plaintext


def connection_settings(account, *, password: str | None = None, access_token: str | None = None,
                        quick: bool = False) -> ConnectionSettings:
    """Settings for `account`: a stored ImapAccount, or an unsaved one built from a form.

    `password` is a secret the caller was just given; when it is None the mailbox's stored
    password is used (callers holding another mailbox's secret check stored_secret_usable
    first). An OAuth2 mailbox signs in with `access_token` (see sign_in, which gets one).
    `quick` caps the timeout for interactive checks. Raises ImapConnectError before any
    connection when the server is not allowed or the secret would go out in plaintext.
    """
    oauth = account.auth_method == OAUTH2
    has_secret = oauth or bool(password) or bool(account.password_encrypted)
    if plaintext_refused(security=account.security, allow_plaintext=bool(account.allow_plaintext),
                         has_secret=has_secret):
        raise ImapAuthError(PLAINTEXT_NOT_ALLOWED)
    check_destination(account.host, account.port)
    if oauth:
        password = ""
    elif password is None:
        password = crypto.decrypt(account.password_encrypted) if account.password_encrypted else ""
    timeout = current_app.config["IMAP_TIMEOUT_SECONDS"]
    if quick:
        timeout = min(timeout, QUICK_TIMEOUT_SECONDS)
    return ConnectionSettings(
        host=account.host,
        port=account.port,
        security=account.security,
        verify_tls=account.verify_tls,
        username=account.username,
        password=password,
        timeout=timeout,
        ca_file=current_app.config.get("IMAP_CA_FILE"),
        max_literal_bytes=literal_limit_for(current_app.config["IMAP_MAX_MESSAGE_BYTES"]),
        auth_method=account.auth_method or "password",
        access_token=access_token or "",
    )


def sign_in(account, *, quick: bool = False) -> ImapSession:
    """Connect and log in as the stored mailbox `account`.

    An OAuth2 mailbox gets a live access token first (refreshed or obtained under its token
    lock). When the server refuses a token that was not new, the token is renewed once and
    the login tried again (it may have been revoked early); a refused new token marks the
    mailbox `error`: the server does not accept what the provider issued (a permission)."""
    if account.auth_method != OAUTH2:
        return connect(connection_settings(account, quick=quick))
    settings = connection_settings(account, quick=quick)  # the destination and plaintext checks first
    token, new = oauth_access.access_token_for(account)
    try:
        session = connect(replace(settings, access_token=token))
    except ImapTokenRejected as exc:
        if new:
            oauth_access.mark(account, ERROR, str(exc))
            raise oauth_access.SignInNeedsAction(str(exc)) from None
        token, _ = oauth_access.access_token_for(account, force_refresh=True)
        try:
            session = connect(replace(settings, access_token=token))
        except ImapTokenRejected as again:
            oauth_access.mark(account, ERROR, str(again))
            raise oauth_access.SignInNeedsAction(str(again)) from None
    oauth_access.signed_in(account)
    return session


def _host(host: str) -> str:
    return (host or "").strip().rstrip(".").lower()
