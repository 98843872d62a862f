"""The one place that turns a mailbox into IMAP connection settings and credentials.

The importer, Test connection and every other IMAP caller get their settings here, so the
rules about which secret may be used for which server live in one function.
"""
from flask import current_app

from .. import crypto
from .client import ConnectionSettings

#: Test connection answers quickly even when the configured timeout is long.
QUICK_TIMEOUT_SECONDS = 15.0


def connection_settings(account, *, password: str | None = None, quick: bool = False) -> ConnectionSettings:
    """Settings for `account`: a stored ImapAccount, or an unsaved one built from a form.

    `password` is a secret the caller was just given; when it is None the mailbox's stored
    password is used. `quick` caps the timeout for interactive checks.
    """
    if password is None:
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
    )
