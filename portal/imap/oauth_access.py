"""A mailbox's OAuth2 tokens: a live access token when a sync or Test connection needs one,
stored encrypted, refreshed (or obtained, for the daemon flows) under the mailbox's token lock,
and the mailbox's `oauth_status` kept true.

- A token that expires within REFRESH_MARGIN is refreshed first. Two workers never refresh
  at once: the refresh happens under the Redis lock `imap:oauth-lock:<id>`, and whoever gets
  it second finds the fresh token already stored and uses it.
- A rotated refresh token replaces the old one in the same transaction as the new access token.
- The provider refusing the grant (`invalid_grant`, revoked consent, deleted client...) makes
  the mailbox `needs_reauthorization`; its syncs then fail with SIGN_IN_EXPIRED and are not
  retried. A network error or 5xx keeps the status (OAuthUnavailable: retried like any
  transient failure).
"""
import logging
from datetime import timedelta

from flask import current_app
from redis.exceptions import LockError, RedisError

from .. import crypto
from ..extensions import db, get_redis
from ..models import utcnow
from .client_errors import ImapAuthError
from .oauth_providers import (
    AUTHORIZATION_CODE, CLIENT_CREDENTIALS, CONNECT_FIRST, CONNECTED, ERROR, NEEDS_REAUTHORIZATION, NOT_CONNECTED,
    SERVICE_ACCOUNT, SIGN_IN_EXPIRED, Endpoints, endpoints, needs_person,
)
from .oauth_tokens import OAuthRefused, OAuthUnavailable, TokenSet, client_credentials, refresh, service_account

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
LOCK_SECONDS = 60
LOCK_WAIT_SECONDS = 30


class SignInNeedsAction(ImapAuthError):
    """Only a person can fix this sign-in (reconnect, or correct a secret or a permission):
    the run fails and is not retried."""


def token_lock_key(account_id: int) -> str:
    return f"imap:oauth-lock:{account_id}"


def access_token_for(account, *, force_refresh: bool = False) -> tuple[str, bool]:
    """(a live access token, whether it was obtained just now) for a stored OAuth2 mailbox.

    Raises SignInNeedsAction (not connected, or the provider refused: the mailbox is marked),
    OAuthUnavailable (try again later) or OAuthRefused."""
    flow = account.oauth_flow or AUTHORIZATION_CODE
    if flow == AUTHORIZATION_CODE and not account.oauth_refresh_token_encrypted and not account.oauth_access_token_encrypted:
        raise SignInNeedsAction(CONNECT_FIRST)
    if not force_refresh and (token := _live_token(account)):
        return token, False
    try:
        lock = get_redis().lock(token_lock_key(account.id), timeout=LOCK_SECONDS, blocking_timeout=LOCK_WAIT_SECONDS)
        if not lock.acquire():
            raise OAuthUnavailable("Another worker is refreshing this mailbox's token; will retry")
    except RedisError:
        raise OAuthUnavailable("Redis is unavailable: the token cannot be refreshed safely") from None
    try:
        seen = account.oauth_access_token_encrypted
        db.session.refresh(account)  # the one before us may have refreshed it
        if (not force_refresh or account.oauth_access_token_encrypted != seen) and (token := _live_token(account)):
            return token, False
        tokens = _obtain(account, endpoints(account), flow)
        store_tokens(account, tokens)
        return tokens.access_token, True
    finally:
        try:
            lock.release()
        except (LockError, RedisError):
            pass


def _live_token(account) -> str | None:
    if not account.oauth_access_token_encrypted:
        return None
    if account.oauth_expires_at is not None and account.oauth_expires_at <= utcnow() + REFRESH_MARGIN:
        return None
    return crypto.decrypt(account.oauth_access_token_encrypted)


def _obtain(account, ends: Endpoints, flow: str) -> TokenSet:
    timeout = min(float(current_app.config["IMAP_TIMEOUT_SECONDS"]), 30.0)
    try:
        if flow == AUTHORIZATION_CODE:
            if not account.oauth_refresh_token_encrypted:
                raise OAuthRefused("The access token expired and no refresh token was issued", "invalid_grant")
            return refresh(ends, _decrypted(account.oauth_client_secret_encrypted),
                           crypto.decrypt(account.oauth_refresh_token_encrypted), timeout=timeout)
        if flow == CLIENT_CREDENTIALS:
            return client_credentials(ends, _decrypted(account.oauth_client_secret_encrypted), timeout=timeout)
        if flow == SERVICE_ACCOUNT:
            return service_account(ends, _decrypted(account.oauth_service_account_encrypted) or "{}",
                                   subject=account.username, timeout=timeout)
        raise SignInNeedsAction(f"Unknown OAuth2 flow {flow!r}")
    except OAuthRefused as exc:
        if needs_person(exc.error) or flow == AUTHORIZATION_CODE:
            mark(account, NEEDS_REAUTHORIZATION, str(exc))
            raise SignInNeedsAction(SIGN_IN_EXPIRED) from None
        mark(account, ERROR, str(exc))
        raise SignInNeedsAction(str(exc)) from None


def _decrypted(value: str | None) -> str | None:
    return crypto.decrypt(value) if value else None


def store_tokens(account, tokens: TokenSet) -> None:
    """Keep new tokens (encrypted) and mark the mailbox connected, in one COMMIT."""
    account.oauth_access_token_encrypted = crypto.encrypt(tokens.access_token)
    if tokens.refresh_token is not None:
        account.oauth_refresh_token_encrypted = crypto.encrypt(tokens.refresh_token)
    account.oauth_expires_at = tokens.expires_at
    if tokens.account:
        account.oauth_account = tokens.account
    account.oauth_status = CONNECTED
    account.oauth_error = None
    db.session.commit()
    log.info("Mailbox %s: OAuth2 tokens stored (expire %s)", account.id, tokens.expires_at)


def mark(account, status: str, error: str | None) -> None:
    """Set the mailbox's OAuth2 status (and what went wrong) and COMMIT."""
    account.oauth_status = status
    account.oauth_error = error
    db.session.commit()
    log.warning("Mailbox %s: OAuth2 status %s: %s", account.id, status, error)


def signed_in(account) -> None:
    """The IMAP server accepted the token: a mailbox marked `error` is connected again."""
    if account.oauth_status != CONNECTED:
        mark(account, CONNECTED, None)


def forget_tokens(account) -> None:
    """Drop the tokens (the server or the OAuth2 client changed): the mailbox must connect again.
    The caller commits."""
    account.oauth_access_token_encrypted = None
    account.oauth_refresh_token_encrypted = None
    account.oauth_expires_at = None
    account.oauth_account = None
    account.oauth_error = None
    account.oauth_status = NOT_CONNECTED
