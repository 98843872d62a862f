"""Talking to an OAuth2 token endpoint (Authlib's requests client underneath).

IO only: no database. Each grant a mailbox can use is one function returning a `TokenSet`.
Every request goes to an endpoint the portal may reach (destinations.py), follows no
redirect (a secret goes only where it was given for), and reads at most
MAX_RESPONSE_BYTES within the timeout. Failures are ImapErrors, so a sync reports them like
any sign-in failure:

- `OAuthRefused`: the provider answered with an OAuth2 error (`invalid_grant`, ...);
- `OAuthUnavailable`: network error, 5xx, or an answer that is not a token (retried later).

Messages never contain a secret, a token or an assertion.

The grants themselves live in oauth_http.py, loaded on the first call: Authlib, requests and
joserfc add about 16 MB to a process, and a worker whose mailboxes sign in with passwords never
needs them (a worker runs its jobs in its own process, so it loads them once, when first asked).
"""
from dataclasses import dataclass, field
from datetime import datetime

from .client_errors import ImapAuthError, ImapConnectError
from .oauth_providers import Endpoints

MAX_RESPONSE_BYTES = 256 * 1024


class OAuthRefused(ImapAuthError):
    """The provider refused the grant; `error` is its OAuth2 error code."""

    def __init__(self, message: str, error: str):
        super().__init__(message)
        self.error = error


class OAuthUnavailable(ImapConnectError):
    """The token endpoint could not be used right now (network, 5xx, not a token)."""


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None  # naive UTC, like every timestamp in the database
    account: str | None = None  # whom the tokens belong to, when the answer says so


def _http():
    from . import oauth_http  # on first use: see the module's docstring

    return oauth_http


def authorization_url(endpoints: Endpoints, *, redirect_uri: str, state: str, code_verifier: str) -> str:
    return _http().authorization_url(endpoints, redirect_uri=redirect_uri, state=state, code_verifier=code_verifier)


def exchange_code(endpoints: Endpoints, client_secret: str | None, *, code: str, code_verifier: str,
                  redirect_uri: str, timeout: float) -> TokenSet:
    return _http().exchange_code(endpoints, client_secret, code=code, code_verifier=code_verifier,
                                 redirect_uri=redirect_uri, timeout=timeout)


def refresh(endpoints: Endpoints, client_secret: str | None, refresh_token: str, *, timeout: float) -> TokenSet:
    return _http().refresh(endpoints, client_secret, refresh_token, timeout=timeout)


def client_credentials(endpoints: Endpoints, client_secret: str, *, timeout: float) -> TokenSet:
    return _http().client_credentials(endpoints, client_secret, timeout=timeout)


def service_account(endpoints: Endpoints, key_json: str, *, subject: str, timeout: float) -> TokenSet:
    """JWT bearer grant (RFC 7523) signed with the service account's key, for `subject`."""
    return _http().service_account(endpoints, key_json, subject=subject, timeout=timeout)
