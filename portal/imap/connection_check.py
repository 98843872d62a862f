"""Test connection: log in with the values typed into the mailbox form and list the folders.

The settings come from credentials.connection_settings, like every other IMAP caller, built
from an unsaved mailbox that holds the form's values (and the stored password only when the
form still names the stored mailbox's server).
"""
from collections.abc import Mapping
from dataclasses import dataclass

from flask import current_app

from .. import crypto
from ..extensions import db
from ..validation import parse_id
from . import oauth_providers as oauth
from .client import ImapError, test_connection
from .credentials import (
    SECRET_FOR_NEW_SERVER, connection_settings, secret_destination, sign_in, stored_secret_usable,
)
from .fields import FIELD, SECURITY_MODES
from .models import ImapAccount
from .oauth_tokens import client_credentials, service_account

CHECKED = ("y", "on", "true", "1")


@dataclass(frozen=True)
class ConnectionCheck:
    error: str | None
    folders: list[str] | None


def check_connection(form: Mapping[str, str]) -> ConnectionCheck:
    """A blank password with the form's account_id means the password stored for that mailbox,
    used only when the form still names that mailbox's server (stored_secret_usable)."""
    if form.get("auth_method") == oauth.OAUTH2:
        return _check_oauth(form)
    typed_password = form.get("password") or ""
    stored = None if typed_password else _stored_mailbox(form.get("account_id", ""))
    has_password = bool(typed_password or (stored is not None and stored.password_encrypted))
    problems = form_problems(form, has_password=has_password)
    if problems:
        return ConnectionCheck(" ".join(problems), None)
    mailbox = _unsaved_mailbox(form)
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


OAUTH_FORM_FIELDS = ("oauth_provider", "oauth_flow", "oauth_client_id", "oauth_tenant", "oauth_scope",
                    "oauth_authorize_url", "oauth_token_url")


def _check_oauth(form: Mapping[str, str]) -> ConnectionCheck:
    """OAuth2: the stored mailbox's tokens when the form still names its server and client;
    else, for the daemon flows, a token obtained just for this test (not stored)."""
    values = dict(oauth.with_provider_defaults({
        "auth_method": oauth.OAUTH2, "oauth_provider": form.get("oauth_provider") or None,
        **({"host": form["host"].strip()} if (form.get("host") or "").strip() else {}),
    }))
    form = {**form, "host": values.get("host", "")}
    problems = form_problems(form, has_password=True)
    if problems:
        return ConnectionCheck(" ".join(problems), None)
    mailbox = _unsaved_mailbox(form)
    mailbox.auth_method = oauth.OAUTH2
    for name in OAUTH_FORM_FIELDS:
        setattr(mailbox, name, (form.get(name) or "").strip() or None)
    stored = _stored_mailbox(form.get("account_id", ""))
    same_client = stored is not None and stored.auth_method == oauth.OAUTH2 and \
        oauth.endpoints(stored).fingerprint() == oauth.endpoints(mailbox).fingerprint()
    same_server = stored is not None and stored_secret_usable(stored, **secret_destination(mailbox))
    typed_secret = form.get("oauth_client_secret") or ""
    typed_key = form.get("oauth_service_account_json") or ""
    try:
        if same_client and same_server and not typed_secret and not typed_key:
            with sign_in(stored, quick=True) as session:
                return ConnectionCheck(None, session.list_folders())
        ends = oauth.endpoints(mailbox)
        if ends.flow == oauth.AUTHORIZATION_CODE:
            if stored is None or stored.oauth_status == oauth.NOT_CONNECTED:
                return ConnectionCheck(oauth.CONNECT_FIRST + ": save it, then press Connect on its page.", None)
            return ConnectionCheck("The sign-in settings changed: save the mailbox and connect it again.", None)
        timeout = min(float(current_app.config["IMAP_TIMEOUT_SECONDS"]), 15.0)
        if ends.flow == oauth.CLIENT_CREDENTIALS:
            secret = typed_secret or (_stored_secret(stored, "oauth_client_secret_encrypted") if same_client else None)
            if not secret:
                return ConnectionCheck("Enter the client secret to test the connection.", None)
            tokens = client_credentials(ends, secret, timeout=timeout)
        else:
            key = typed_key or (_stored_secret(stored, "oauth_service_account_encrypted") if same_client else None)
            if not key or oauth.service_account_problem(key):
                return ConnectionCheck("Paste the service account's JSON key to test the connection.", None)
            tokens = service_account(ends, key, subject=mailbox.username, timeout=timeout)
        settings = connection_settings(mailbox, access_token=tokens.access_token, quick=True)
        return ConnectionCheck(None, test_connection(settings))
    except ImapError as exc:
        return ConnectionCheck(str(exc), None)


def _stored_secret(stored: ImapAccount | None, column: str) -> str | None:
    value = getattr(stored, column, None) if stored is not None else None
    return crypto.decrypt(value) if value else None


def _unsaved_mailbox(form: Mapping[str, str]) -> ImapAccount:
    return ImapAccount(
        host=form["host"].strip(),
        port=int(form["port"].strip()),
        security=form["security"],
        verify_tls=form.get("verify_tls") in CHECKED,
        allow_plaintext=form.get("allow_plaintext") in CHECKED,
        username=form["username"].strip(),
        auth_method="password",
    )


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
    account = db.session.get(ImapAccount, number) if number is not None else None
    return account if account is not None and account.deleted_at is None else None
