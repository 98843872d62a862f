"""Test connection: log in with the values typed into the mailbox form and list the folders.

The settings come from credentials.connection_settings, like every other IMAP caller, built
from an unsaved mailbox that holds the form's values (and the stored password only when the
form still names the stored mailbox's server).
"""
from collections.abc import Mapping
from dataclasses import dataclass

from ..extensions import db
from ..validation import parse_id
from .client import ImapError, test_connection
from .credentials import SECRET_FOR_NEW_SERVER, connection_settings, secret_destination, stored_secret_usable
from .models import ImapAccount
from .fields import FIELD, SECURITY_MODES

CHECKED = ("y", "on", "true", "1")


@dataclass(frozen=True)
class ConnectionCheck:
    error: str | None
    folders: list[str] | None


def check_connection(form: Mapping[str, str]) -> ConnectionCheck:
    """A blank password with the form's account_id means the password stored for that mailbox,
    used only when the form still names that mailbox's server (stored_secret_usable)."""
    typed_password = form.get("password") or ""
    stored = None if typed_password else _stored_mailbox(form.get("account_id", ""))
    has_password = bool(typed_password or (stored is not None and stored.password_encrypted))
    problems = form_problems(form, has_password=has_password)
    if problems:
        return ConnectionCheck(" ".join(problems), None)
    mailbox = ImapAccount(
        host=form["host"].strip(),
        port=int(form["port"].strip()),
        security=form["security"],
        verify_tls=form.get("verify_tls") in CHECKED,
        allow_plaintext=form.get("allow_plaintext") in CHECKED,
        username=form["username"].strip(),
    )
    if not typed_password:
        if not stored_secret_usable(stored, **secret_destination(mailbox)):
            return ConnectionCheck(SECRET_FOR_NEW_SERVER, None)
        # Left encrypted: connection_settings is the one place that decrypts it.
        mailbox.password_encrypted = stored.password_encrypted
    try:
        settings = connection_settings(mailbox, password=typed_password or None, quick=True)
        return ConnectionCheck(None, test_connection(settings))
    except ImapError as exc:
        return ConnectionCheck(str(exc), None)


def form_problems(form: Mapping[str, str], *, has_password: bool) -> list[str]:
    problems = []
    port, low, high = form.get("port", "").strip(), FIELD["port"].minimum, FIELD["port"].maximum
    if not (port.isascii() and port.isdigit()) or not low <= int(port) <= high:
        problems.append(f"Port must be between {low} and {high}.")
    if not form.get("host", "").strip() or not form.get("username", "").strip():
        problems.append("Host and username are needed to test the connection.")
    if not has_password:
        problems.append("Enter the password to test the connection.")
    if form.get("security") not in SECURITY_MODES:
        problems.append("Choose a security mode.")
    return problems


def _stored_mailbox(account_id: str) -> ImapAccount | None:
    number = parse_id(account_id)
    return db.session.get(ImapAccount, number) if number is not None else None
