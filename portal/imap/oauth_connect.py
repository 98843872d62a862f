"""Connecting a mailbox with the authorization code flow: the URL an admin follows, and what
the provider's redirect back (the callback) does.

The `state` is `<mailbox id>.<random>`: single use (its row is deleted when the callback
arrives), valid STATE_LIFETIME, bound to the mailbox, the user who started it and the
mailbox's OAuth2 settings at that moment. PKCE S256: the code verifier stays here, encrypted.
The mailbox id in the state only says which page the admin lands on; nothing is trusted on it.
"""
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, request
from sqlalchemy import delete, select

from .. import crypto
from ..extensions import db
from ..models import utcnow
from ..validation import parse_id
from . import oauth_access
from .client_errors import ImapError
from .models import ImapAccount, OAuthState
from .oauth_providers import AUTHORIZATION_CODE, OAUTH2, endpoints
from .oauth_tokens import authorization_url, exchange_code

STATE_LIFETIME = timedelta(minutes=10)
CALLBACK_PATH = "/admin/modules/imap/oauth/callback"


class NotAuthorizationCode(Exception):
    """The mailbox does not sign in with the authorization code flow."""


def redirect_uri() -> str:
    """`<PUBLIC_BASE_URL>/admin/modules/imap/oauth/callback`; without PUBLIC_BASE_URL, the
    request's own scheme and host."""
    base = (current_app.config.get("PUBLIC_BASE_URL") or request.host_url).rstrip("/")
    return base + CALLBACK_PATH


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()


def _fingerprint(account: ImapAccount) -> str:
    bound = [account.host, account.port, account.username, account.security, endpoints(account).fingerprint(),
             account.oauth_authorize_url]
    return hashlib.sha256(repr(bound).encode()).hexdigest()


def start(account: ImapAccount, user_id: int) -> str:
    """A new sign-in for `account` started by `user_id`: the provider's authorization URL."""
    if account.auth_method != OAUTH2 or (account.oauth_flow or AUTHORIZATION_CODE) != AUTHORIZATION_CODE:
        raise NotAuthorizationCode("Only a mailbox with OAuth2 sign-in and the authorization code flow connects "
                                   "through the provider's page; the other flows get their tokens by themselves")
    now = utcnow()
    db.session.execute(delete(OAuthState).where(OAuthState.expires_at < now - timedelta(days=1)))
    state = f"{account.id}.{secrets.token_urlsafe(32)}"
    verifier = secrets.token_urlsafe(64)
    uri = redirect_uri()
    db.session.add(OAuthState(
        state_hash=_hash(state), account_id=account.id, user_id=user_id,
        code_verifier_encrypted=crypto.encrypt(verifier), redirect_uri=uri,
        settings_fingerprint=_fingerprint(account), expires_at=now + STATE_LIFETIME,
    ))
    db.session.commit()
    return authorization_url(endpoints(account), redirect_uri=uri, state=state, code_verifier=verifier)


@dataclass(frozen=True)
class Outcome:
    account_id: int | None  # the mailbox page to land on (None: the mailbox list)
    message: str
    ok: bool


def finish(args, user_id: int) -> Outcome:
    """The provider's redirect back: `args` is its query string. Changes nothing unless the
    state is good and the code turns into tokens."""
    state = args.get("state") or ""
    account_id = parse_id(state.split(".", 1)[0]) if "." in state else None
    account = db.session.get(ImapAccount, account_id) if account_id is not None else None
    if account is not None and account.deleted_at is not None:
        account = None  # deleted: its pending sign-ins went with it
    landing = account.id if account is not None else None
    if not state:
        return Outcome(None, "The sign-in answer carried no state: start again with Connect.", False)
    row = db.session.scalar(select(OAuthState).where(OAuthState.state_hash == _hash(state)))
    # Single use: whoever deletes the row owns the state (two callbacks racing: one wins).
    if row is None or db.session.execute(delete(OAuthState).where(OAuthState.id == row.id)).rowcount != 1:
        db.session.rollback()
        return Outcome(landing, "This sign-in link is unknown or was already used: press Connect again.", False)
    db.session.commit()
    if row.user_id != user_id:
        return Outcome(landing, "This sign-in was started by another user: press Connect again.", False)
    if row.expires_at < utcnow():
        return Outcome(landing, "This sign-in took longer than 10 minutes and expired: press Connect again.", False)
    if account is None or account.id != row.account_id:
        return Outcome(None, "The mailbox of this sign-in no longer exists.", False)
    label = endpoints(account).provider.label
    if args.get("error"):
        error = _printable(args.get("error"), 60)
        description = _printable(args.get("error_description") or "", 300)
        detail = f"{error}: {description}" if description else error
        return Outcome(account.id, f"{label.capitalize()} did not grant access ({detail}). Nothing was changed.", False)
    if row.settings_fingerprint != _fingerprint(account):
        return Outcome(account.id, "The mailbox's sign-in settings changed after Connect was pressed: "
                                   "press Connect again.", False)
    code = args.get("code") or ""
    if not code or len(code) > 4096:
        return Outcome(account.id, "The provider's answer carried no authorization code: press Connect again.", False)
    secret = crypto.decrypt(account.oauth_client_secret_encrypted) if account.oauth_client_secret_encrypted else None
    try:
        tokens = exchange_code(endpoints(account), secret, code=code,
                               code_verifier=crypto.decrypt(row.code_verifier_encrypted),
                               redirect_uri=row.redirect_uri,
                               timeout=min(float(current_app.config["IMAP_TIMEOUT_SECONDS"]), 30.0))
    except ImapError as exc:
        return Outcome(account.id, f"Not connected: {exc}. Nothing was changed.", False)
    if tokens.refresh_token is None:
        return Outcome(account.id, f"Not connected: {label} issued no refresh token, so the mailbox could not stay "
                                   "signed in (ask for offline access, e.g. the offline_access scope).", False)
    oauth_access.store_tokens(account, tokens)
    who = f" as {tokens.account}" if tokens.account else ""
    return Outcome(account.id, f"Connected to {label}{who}. Syncs sign in with OAuth2 from now on.", True)


def _printable(text: str, limit: int) -> str:
    return "".join(ch for ch in str(text) if ch.isprintable())[:limit]
