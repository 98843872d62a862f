"""A small local OAuth2 authorization server for tests, built on Authlib.

It plays the identity provider of a mailbox (Microsoft / Google / a custom
one): the portal gets tokens from it and the OAuth2 test Dovecot
(``tests.support.dovecot``, fixture ``oauth_dovecot``) asks its
``/introspect`` endpoint whether a token is live and whose it is.  Everything
is in memory and served by werkzeug on 127.0.0.1:<free port> in a thread.

Endpoints (``server.url`` + path):

* ``GET /authorize``: authorization code flow, approved at once (no login
  page).  PKCE S256 is required.  The signed-in user is ``login_hint`` when
  given, else ``server.default_user``.  A request without S256 PKCE is
  refused (redirect with ``error=invalid_request``).  ``server.deny_authorization = True``
  makes authorizations redirect back with ``error=access_denied``.
* ``POST /token``: ``authorization_code`` (+ PKCE verifier),
  ``refresh_token`` (rotated: each use returns a new refresh token and the
  used one stops working), ``client_credentials`` (the token belongs to the
  client's ``username``, like an app granted access to one mailbox) and
  ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (a service account signs
  an RS256 assertion with ``iss`` = its ``client_email``, ``sub`` = the
  mailbox user, ``aud`` = the token URL; domain-wide delegation: any user).
* ``POST /introspect`` (RFC 7662, no client authentication, token in the
  form body or as ``Authorization: Bearer``): ``{"active": true,
  "username": ..., ...}`` for a live access token, ``{"active": false}``
  otherwise.

Test controls: ``access_token_lifetime`` (seconds, default 3600),
``register_client(...)``, ``remove_client(client_id)``,
``new_service_account(...)`` (a Google-style service-account JSON dict with
a fresh RSA key), ``revoke_refresh_token(token)``,
``revoke_access_token(token)``, ``introspect(token)``, ``reset()``.
Failure knobs (reset by ``reset()``): ``token_failure_status`` (e.g. 503:
every ``/token`` call is answered with that status, after being recorded in
``token_requests``), ``token_failure_body`` (the JSON object sent with it;
default ``{"error": "temporarily_unavailable"}``) and ``token_delay``
(seconds ``/token`` waits before answering).  The
``oauth_server`` fixture (function scope) hands out the session's server,
reset before each test.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.support.dovecot import free_port

ALL_GRANTS = ("authorization_code", "refresh_token", "client_credentials", JWTBearerGrant.GRANT_TYPE)


# ------------------------------------------------------------------ models
@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str | None = None  # None: public client (PKCE only)
    redirect_uris: list[str] = field(default_factory=list)
    grant_types: tuple[str, ...] = ALL_GRANTS
    username: str | None = None  # whose mailbox a client_credentials token opens
    public_key: RSAKey | None = None  # service accounts (JWT bearer)
    client_email: str | None = None

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return self.client_secret is not None and secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    username: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


@dataclass
class RefreshToken(TokenMixin):
    token: str
    client_id: str
    username: str
    scope: str
    revoked: bool = False

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return 0

    def is_expired(self):
        return False

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return self.username

    def get_client(self):
        raise NotImplementedError


@dataclass
class AccessToken:
    token: str
    client_id: str
    username: str | None
    scope: str
    expires_at: float
    revoked: bool = False

    def is_active(self) -> bool:
        return not self.revoked and time.time() < self.expires_at


# ------------------------------------------------------------------ grants
class _AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code, request):
        oauth: OAuthServer = self.server.oauth
        oauth.codes[code] = AuthorizationCode(
            code=code, client_id=request.client.client_id, username=request.user,
            redirect_uri=request.payload.redirect_uri, scope=request.payload.scope or "",
            code_challenge=request.payload.data.get("code_challenge"),
            code_challenge_method=request.payload.data.get("code_challenge_method"),
            expires_at=time.time() + 600)

    def query_authorization_code(self, code, client):
        item = self.server.oauth.codes.get(code)
        if item and item.client_id == client.client_id and time.time() < item.expires_at:
            return item
        return None

    def delete_authorization_code(self, authorization_code):
        self.server.oauth.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.username


class _S256CodeChallenge(CodeChallenge):
    """PKCE for every client (Authlib insists only for public ones), S256 only."""

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with code_challenge_method=S256 is required")
        super().validate_code_challenge(grant, redirect_uri)


class _RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token):
        item = self.server.oauth.refresh_tokens.get(refresh_token)
        return item if item and not item.revoked else None

    def authenticate_user(self, refresh_token):
        return refresh_token.username

    def revoke_old_credential(self, refresh_token):
        refresh_token.revoked = True


class _ClientCredentialsGrant(grants.ClientCredentialsGrant):
    pass


class _JWTBearerGrant(JWTBearerGrant):
    def resolve_issuer_client(self, issuer):
        return self.server.oauth.service_accounts.get(issuer)

    def resolve_client_public_key(self, client):
        return client.public_key

    def authenticate_user(self, subject):
        return subject

    def has_granted_permission(self, client, user):
        return True  # domain-wide delegation

    def get_audiences(self):
        return [self.server.oauth.token_url, self.server.oauth.url]


# ------------------------------------------------------------------ server
class OAuthServer:
    """The authorization server, its in-memory stores and its HTTP thread."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.authorize_url = self.url + "/authorize"
        self.token_url = self.url + "/token"
        self.introspection_url = self.url + "/introspect"
        self.clients: dict[str, Client] = {}
        self.service_accounts: dict[str, Client] = {}  # by client_email (the assertion's iss)
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.token_requests: list[str] = []  # grant_type of every /token call, in order
        self.reset()
        self.app = self._make_app()
        self._http = None
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        """Per-test knobs back to their defaults (issued tokens stay)."""
        self.access_token_lifetime = 3600
        self.default_user: str | None = None
        self.deny_authorization = False
        self.token_failure_status: int | None = None
        self.token_failure_body: dict | None = None
        self.token_delay = 0.0
        self.token_requests.clear()

    # ------------------------------------------------------------- test API
    def register_client(self, *, client_id: str | None = None, client_secret: str | None = None,
                        public: bool = False, redirect_uris: list[str] | tuple[str, ...] = (),
                        username: str | None = None,
                        grant_types: tuple[str, ...] = ALL_GRANTS) -> Client:
        """A client; confidential with a random secret unless ``public`` or a
        secret is given.  ``username``: the mailbox its client_credentials
        tokens open."""
        if client_secret is None and not public:
            client_secret = "secret-" + secrets.token_urlsafe(16)
        client = Client(client_id=client_id or "client-" + secrets.token_hex(6), client_secret=client_secret,
                        redirect_uris=list(redirect_uris), grant_types=tuple(grant_types), username=username)
        self.clients[client.client_id] = client
        return client

    def remove_client(self, client_id: str) -> None:
        """Delete a client: its secret and refresh tokens stop working."""
        self.clients.pop(client_id, None)

    def new_service_account(self) -> dict:
        """A service account the server trusts, as a Google-style JSON key
        (``client_email``, ``private_key`` PEM, ``private_key_id``,
        ``token_uri`` = this server's token URL)."""
        key = RSAKey.generate_key(2048)
        key_id = secrets.token_hex(8)
        client_id = str(10**20 + secrets.randbelow(10**20))
        email = f"sa-{secrets.token_hex(4)}@test-project.iam.gserviceaccount.com"
        self.service_accounts[email] = Client(
            client_id=client_id, grant_types=(JWTBearerGrant.GRANT_TYPE,), client_email=email,
            public_key=RSAKey.import_key(key.as_pem(private=False)))
        return {
            "type": "service_account", "project_id": "test-project", "private_key_id": key_id,
            "private_key": key.as_pem(private=True).decode(), "client_email": email,
            "client_id": client_id, "auth_uri": self.authorize_url, "token_uri": self.token_url,
        }

    def revoke_refresh_token(self, token: str) -> None:
        self.refresh_tokens[token].revoked = True

    def revoke_access_token(self, token: str) -> None:
        self.access_tokens[token].revoked = True

    def introspect(self, token: str | None) -> dict:
        item = self.access_tokens.get(token or "")
        if item is None or not item.is_active():
            return {"active": False}
        return {"active": True, "username": item.username, "client_id": item.client_id,
                "scope": item.scope, "token_type": "Bearer", "exp": int(item.expires_at)}

    # ------------------------------------------------------------ internals
    def _save_token(self, token: dict, request) -> None:
        client = request.client
        username = request.user or getattr(client, "username", None)
        scope = token.get("scope", "")
        self.access_tokens[token["access_token"]] = AccessToken(
            token=token["access_token"], client_id=client.client_id, username=username, scope=scope,
            expires_at=time.time() + token["expires_in"])
        if token.get("refresh_token"):
            self.refresh_tokens[token["refresh_token"]] = RefreshToken(
                token=token["refresh_token"], client_id=client.client_id, username=username, scope=scope)

    def _make_app(self) -> Flask:
        app = Flask("oauth-test-server")
        server = AuthorizationServer(app, query_client=self.clients.get, save_token=self._save_token)
        server.oauth = self
        server.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda *a, **kw: generate_token(42),
            refresh_token_generator=lambda *a, **kw: generate_token(48),
            expires_generator=lambda client, grant_type: self.access_token_lifetime))
        server.register_grant(_AuthorizationCodeGrant, [_S256CodeChallenge(required=True)])
        server.register_grant(_RefreshTokenGrant)
        server.register_grant(_ClientCredentialsGrant)
        server.register_grant(_JWTBearerGrant)

        @app.get("/authorize")
        def authorize():
            try:
                grant = server.get_consent_grant(end_user=None)
            except OAuth2Error as error:
                return server.handle_error_response(None, error)
            # no user: Authlib redirects back with error=access_denied
            user = None if self.deny_authorization else (request.args.get("login_hint") or self.default_user)
            return server.create_authorization_response(grant_user=user, grant=grant)

        @app.post("/token")
        def token():
            self.token_requests.append(request.form.get("grant_type", ""))
            if self.token_delay:
                time.sleep(self.token_delay)
            if self.token_failure_status is not None:
                body = self.token_failure_body if self.token_failure_body is not None else {
                    "error": "temporarily_unavailable"}
                return jsonify(body), self.token_failure_status, {"Cache-Control": "no-store"}
            return server.create_token_response()

        @app.post("/introspect")
        def introspect():
            token = request.form.get("token")
            auth = request.headers.get("Authorization", "")
            if not token and auth.lower().startswith("bearer "):
                token = auth[7:].strip()
            return jsonify(self.introspect(token))

        return app

    def start(self) -> "OAuthServer":
        self._http = make_server(self.host, self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._http.serve_forever, name="oauth-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


# ------------------------------------------------------------------ fixtures
try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def oauth_server_session():
        server = OAuthServer().start()
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def oauth_server(oauth_server_session):
        """The session's OAuth2 server with its per-test knobs reset."""
        oauth_server_session.reset()
        yield oauth_server_session
        oauth_server_session.reset()
