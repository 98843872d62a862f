"""The OAuth2 grants over HTTP (Authlib's requests client): what oauth_tokens.py promises,
loaded on its first use. Every request goes to an endpoint the portal may reach
(destinations.py), follows no redirect, and reads at most MAX_RESPONSE_BYTES within the timeout."""
import base64
import json
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import requests
from authlib.integrations.requests_client import AssertionSession, OAuth2Session
from authlib.integrations.requests_client import OAuthError as AuthlibOAuthError
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from .client_errors import ImapConnectError
from .destinations import check_destination
from .oauth_providers import Endpoints
from .oauth_tokens import MAX_RESPONSE_BYTES, OAuthRefused, OAuthUnavailable, TokenSet

MAX_DESCRIPTION = 300  # characters of a provider's error description kept in a message


class _Bounded:
    """A requests session that checks the destination, follows no redirect, and reads a
    bounded answer within its deadline."""

    deadline_seconds = 30.0

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        check_destination(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        if kwargs.get("timeout") is None:  # requests always passes the key, None unless asked
            kwargs["timeout"] = self.deadline_seconds
        request.headers["Accept-Encoding"] = "identity"  # read1 below hands over raw bytes
        response = super().send(request, **kwargs)
        try:
            if response.is_redirect:
                raise OAuthUnavailable(
                    f"The token endpoint {_where(request.url)} answered with a redirect (HTTP {response.status_code}); "
                    "set the token URL it redirects to")
            response._content = _read_capped(response, time.monotonic() + self.deadline_seconds, request.url)
        finally:
            response.close()
        return response


def _read_capped(response, deadline: float, url: str) -> bytes:
    """What has arrived, as it arrives (read1: a server trickling bytes cannot hold a read open
    past the deadline, each wait is bounded by the socket timeout)."""
    body = bytearray()
    while chunk := response.raw.read1(16 * 1024):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise OAuthUnavailable(f"The token endpoint {_where(url)} sent more than {MAX_RESPONSE_BYTES // 1024} KB")
        if time.monotonic() > deadline:
            raise OAuthUnavailable(f"The token endpoint {_where(url)} answered too slowly")
    return bytes(body)


class _Session(_Bounded, OAuth2Session):
    pass


class _AssertionSession(_Bounded, AssertionSession):
    pass


def _session(endpoints: Endpoints, client_secret: str | None, timeout: float, **options) -> OAuth2Session:
    session = _Session(
        client_id=endpoints.client_id,
        client_secret=client_secret or None,
        # HTTP Basic: the one client authentication every OAuth2 server must accept (RFC 6749 2.3.1).
        token_endpoint_auth_method="client_secret_basic" if client_secret else "none",
        scope=endpoints.scope or None,
        **options,
    )
    session.deadline_seconds = timeout
    return session


def authorization_url(endpoints: Endpoints, *, redirect_uri: str, state: str, code_verifier: str) -> str:
    session = _Session(client_id=endpoints.client_id, scope=endpoints.scope or None, redirect_uri=redirect_uri,
                       code_challenge_method="S256")
    url, _ = session.create_authorization_url(
        endpoints.authorize_url, state=state, code_verifier=code_verifier, **dict(endpoints.provider.authorize_params)
    )
    return url


def exchange_code(endpoints: Endpoints, client_secret: str | None, *, code: str, code_verifier: str,
                  redirect_uri: str, timeout: float) -> TokenSet:
    session = _session(endpoints, client_secret, timeout, redirect_uri=redirect_uri, code_challenge_method="S256")
    with _asking(endpoints, client_secret):
        token = session.fetch_token(endpoints.token_url, grant_type="authorization_code", code=code,
                                    code_verifier=code_verifier)
    return _token_set(token, endpoints)


def refresh(endpoints: Endpoints, client_secret: str | None, refresh_token: str, *, timeout: float) -> TokenSet:
    session = _session(endpoints, client_secret, timeout)
    with _asking(endpoints, client_secret, refresh_token):
        token = session.refresh_token(endpoints.token_url, refresh_token=refresh_token)
    tokens = _token_set(token, endpoints)
    if tokens.refresh_token is None:  # not rotated: the old one stays valid
        tokens = TokenSet(tokens.access_token, refresh_token, tokens.expires_at, tokens.account)
    return tokens


def client_credentials(endpoints: Endpoints, client_secret: str, *, timeout: float) -> TokenSet:
    session = _session(endpoints, client_secret, timeout)
    with _asking(endpoints, client_secret):
        token = session.fetch_token(endpoints.token_url, grant_type="client_credentials")
    return _token_set(token, endpoints)


def service_account(endpoints: Endpoints, key_json: str, *, subject: str, timeout: float) -> TokenSet:
    """JWT bearer grant (RFC 7523) signed with the service account's key, for `subject`."""
    key = json.loads(key_json)
    try:
        signing_key = RSAKey.import_key(key["private_key"])
    except (ValueError, TypeError, JoseError):
        raise OAuthRefused("The service account's private key is not a usable RSA key (check the JSON key)",
                           "invalid_key") from None
    header = {"alg": "RS256"}
    if isinstance(key.get("private_key_id"), str):
        header["kid"] = key["private_key_id"]
    session = _AssertionSession(
        endpoints.token_url, issuer=key["client_email"], subject=subject, audience=endpoints.token_url,
        scope=endpoints.scope or None, key=signing_key, header=header,
    )
    session.deadline_seconds = timeout
    with _asking(endpoints, key["private_key"]):
        token = session.refresh_token()
    return _token_set(token, endpoints, default_account=subject)


class _asking:
    """Turns what a token request raised into OAuthRefused / OAuthUnavailable, with the
    secrets it was sent with kept out of the message."""

    def __init__(self, endpoints: Endpoints, *secrets: str | None):
        self.endpoints = endpoints
        self.secrets = [s for s in secrets if s]

    def __enter__(self):
        return self

    def _scrubbed(self, text) -> str:
        text = str(text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (OAuthRefused, OAuthUnavailable, ImapConnectError)):
            return False
        where = _where(self.endpoints.token_url)
        if isinstance(exc, AuthlibOAuthError):
            # The secrets go before the text is cut: a secret across the cut must not leave its start.
            code = _clean(self._scrubbed(exc.error or "error"), 60)
            description = _clean(self._scrubbed(exc.description or ""), MAX_DESCRIPTION)
            detail = f"{code}: {description}" if description else code
            raise OAuthRefused(f"{self.endpoints.provider.label.capitalize()} refused the sign-in ({detail})",
                               code) from None
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            raise OAuthUnavailable(f"The token endpoint {where} failed (HTTP {status}); will retry") from None
        if isinstance(exc, requests.Timeout):
            raise OAuthUnavailable(f"The token endpoint {where} did not answer in time") from None
        if isinstance(exc, requests.RequestException):
            raise OAuthUnavailable(f"Could not reach the token endpoint {where} ({type(exc).__name__})") from None
        if isinstance(exc, ValueError):
            raise OAuthUnavailable(f"The token endpoint {where} did not answer with a token (not JSON)") from None
        return False


def _token_set(token: dict, endpoints: Endpoints, default_account: str | None = None) -> TokenSet:
    access = token.get("access_token")
    if not isinstance(access, str) or not access or not access.isascii() or any(c in access for c in "\r\n\x00\x01"):
        raise OAuthUnavailable(f"The token endpoint {_where(endpoints.token_url)} answered without a usable access token")
    refresh_token = token.get("refresh_token")
    expires_at = None
    if isinstance(token.get("expires_at"), (int, float)):
        expires_at = datetime.fromtimestamp(token["expires_at"], timezone.utc).replace(tzinfo=None)
    return TokenSet(
        access_token=access,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=expires_at,
        account=_id_token_account(token.get("id_token")) or default_account,
    )


def _id_token_account(id_token) -> str | None:
    """The signed-in account named by an ID token, for display only (not a trust decision:
    the token came straight from the token endpoint over TLS, and nothing is granted on it)."""
    if not isinstance(id_token, str) or len(id_token) > 16 * 1024 or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if not isinstance(claims, dict):
        return None
    for name in ("email", "preferred_username", "upn"):
        if isinstance(claims.get(name), str) and claims[name]:
            return _clean(claims[name], 320)
    return None


def _where(url: str | None) -> str:
    parts = urlsplit(url or "")
    return parts.netloc or "(none)"


def _clean(text: str, limit: int) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in str(text))[:limit]
