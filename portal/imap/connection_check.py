"""Test connection: log in with the values typed into the mailbox form and list the folders.

The settings come from credentials.connection_settings, like every other IMAP caller, built
from an unsaved mailbox that holds the form's values.
"""
from collections.abc import Mapping
from dataclasses import dataclass

from ..extensions import db
from ..validation import parse_id
from .client import ImapError, test_connection
from .credentials import connection_settings
from .models import ImapAccount
from .fields import FIELD, SECURITY_MODES

CHECKED = ("y", "on", "true", "1")


@dataclass(frozen=True)
class ConnectionCheck:
    error: str | None
    folders: list[str] | None


def check_connection(form: Mapping[str, str]) -> ConnectionCheck:
    """A blank password with the form's account_id means the password stored for that mailbox."""
    typed_password = form.get("password") or ""
    encrypted_password = None if typed_password else _stored_encrypted_password(form.get("account_id", ""))
    problems = form_problems(form, has_password=bool(typed_password or encrypted_password))
    if problems:
        return ConnectionCheck(" ".join(problems), None)
    mailbox = ImapAccount(
        host=form["host"].strip(),
        port=int(form["port"].strip()),
        security=form["security"],
        verify_tls=form.get("verify_tls") in CHECKED,
        username=form["username"].strip(),
        password_encrypted=encrypted_password,
    )
    settings = connection_settings(mailbox, password=typed_password or None, quick=True)
    try:
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


def _stored_encrypted_password(account_id: str) -> str | None:
    """Left encrypted: connection_settings is the one place that decrypts it."""
    number = parse_id(account_id)
    stored = db.session.get(ImapAccount, number) if number is not None else None
    return stored.password_encrypted if stored is not None else None
