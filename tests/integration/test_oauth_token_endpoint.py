"""oauth_tokens.py against hostile token endpoints: small HTTP servers on loopback, the real
Authlib client underneath. A redirect is not followed, a huge or endless answer is not read to
its end, a slow answer is cut off, anything that is not a token is refused, a provider's refusal
never echoes a secret, and a private address is refused before any connection."""
import base64
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs

import pytest

from portal.imap.client_errors import ImapConnectError
from portal.imap.oauth_providers import endpoints
from portal.imap.oauth_tokens import (
    MAX_RESPONSE_BYTES, OAuthRefused, OAuthUnavailable, TokenSet, client_credentials, exchange_code, refresh,
)

SECRET = "s3cr3t-Client-Secret-0123456789abcdefXYZ"
REFRESH_TOKEN = "rt-Refresh-Token-9876543210zyxwvuABCDEF"


class Endpoint:
    """A token endpoint on 127.0.0.1 whose answer is `behaviour(handler)`; records each request."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests: list[dict] = []
        self.sent = 0
        self.stop = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                endpoint.requests.append({"path": self.path, "form": parse_qs(body), "headers": dict(self.headers)})
                try:
                    endpoint.behaviour(self)
                except OSError:  # the client hung up on us: that is the point of several tests
                    pass
                self.close_connection = True

            do_GET = do_POST

            def json(self, status, payload, headers=()):
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    started = []

    def serve(behaviour):
        endpoint = Endpoint(behaviour)
        started.append(endpoint)
        return endpoint

    yield serve
    for endpoint in started:
        endpoint.close()


def _ends(token_url, **fields):
    values = dict(oauth_provider="custom", oauth_flow=None, oauth_tenant=None, oauth_authorize_url=None,
                  oauth_token_url=token_url, oauth_scope="imap", oauth_client_id="client-1")
    values.update(fields)
    return endpoints(SimpleNamespace(**values))


def _refresh(endpoint, timeout=5.0):
    return refresh(_ends(endpoint.url), SECRET, REFRESH_TOKEN, timeout=timeout)


def _token(handler, **extra):
    handler.json(200, {"access_token": "at-" + "x" * 20, "token_type": "Bearer", "expires_in": 3600, **extra})


def _client_authentication(request) -> tuple:
    """(client id, secret) as the request sent them: in the form or as HTTP Basic."""
    form, header = request["form"], request["headers"].get("Authorization", "")
    if header.startswith("Basic "):
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return client_id, secret
    return form.get("client_id", [None])[0], form.get("client_secret", [None])[0]


def _jwt(claims) -> str:
    def part(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


# ----------------------------------------------------------------------------- the good answer

def test_refresh_reads_a_token_and_sends_the_grant(app_ctx, serve):
    endpoint = serve(lambda h: _token(h, refresh_token="rt-new", scope="imap"))
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    tokens = _refresh(endpoint)
    assert isinstance(tokens, TokenSet)
    assert tokens.access_token == "at-" + "x" * 20 and tokens.refresh_token == "rt-new"
    assert before + timedelta(seconds=3590) <= tokens.expires_at <= before + timedelta(seconds=3610)
    assert tokens.account is None
    form = endpoint.requests[0]["form"]
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == [REFRESH_TOKEN]
    assert _client_authentication(endpoint.requests[0]) == ("client-1", SECRET)
    assert SECRET not in repr(tokens) and "at-xxx" not in repr(tokens)


def test_refresh_without_rotation_keeps_the_old_refresh_token(app_ctx, serve):
    endpoint = serve(lambda h: _token(h))
    assert _refresh(endpoint).refresh_token == REFRESH_TOKEN


@pytest.mark.parametrize("claims, account", [
    ({"email": "alice@example.com", "preferred_username": "other@example.com"}, "alice@example.com"),
    ({"preferred_username": "bob@example.com", "upn": "b@example.com"}, "bob@example.com"),
    ({"upn": "carol@example.com"}, "carol@example.com"),
    ({"email": "", "upn": "dave@example.com"}, "dave@example.com"),
    ({"email": ["x@example.com"]}, None),
    ({"sub": "123"}, None),
    ({"email": "eve@example.com\x00\r\nInjected: yes"}, "eve@example.com   Injected: yes"),
])
def test_account_from_an_unsigned_id_token(app_ctx, serve, claims, account):
    endpoint = serve(lambda h: _token(h, id_token=_jwt(claims)))
    assert _refresh(endpoint).account == account


@pytest.mark.parametrize("id_token", [
    "not-a-jwt", "a.b", "a.b.c.d", "a.!!!.c", "a." + base64.urlsafe_b64encode(b"[1,2]").decode() + ".c",
    "a." + base64.urlsafe_b64encode(b"not json").decode() + ".c", 42, None,
    "a." + base64.urlsafe_b64encode(json.dumps({"email": "big@example.com", "pad": "x" * 20000}).encode()).decode()
    + ".c",
])
def test_unusable_id_token_names_no_account(app_ctx, serve, id_token):
    endpoint = serve(lambda h: _token(h, id_token=id_token))
    assert _refresh(endpoint).account is None


def test_exchange_code_sends_the_verifier_and_reads_the_id_token(app_ctx, serve):
    endpoint = serve(lambda h: _token(h, refresh_token="rt-1", id_token=_jwt({"email": "frank@example.com"})))
    tokens = exchange_code(_ends(endpoint.url), None, code="the-code", code_verifier="v" * 50,
                           redirect_uri="http://portal.test/cb", timeout=5)
    assert tokens.account == "frank@example.com" and tokens.refresh_token == "rt-1"
    form = endpoint.requests[0]["form"]
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["the-code"]
    assert form["code_verifier"] == ["v" * 50] and form["redirect_uri"] == ["http://portal.test/cb"]
    assert "client_secret" not in form and "Authorization" not in endpoint.requests[0]["headers"]  # public client


# ----------------------------------------------------------------------------- redirects

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed(app_ctx, serve, status):
    elsewhere = serve(lambda h: _token(h))

    def redirect(handler):
        handler.send_response(status)
        handler.send_header("Location", elsewhere.url)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    endpoint = serve(redirect)
    with pytest.raises(OAuthUnavailable, match="redirect") as caught:
        _refresh(endpoint)
    assert f"HTTP {status}" in str(caught.value) and f"127.0.0.1:{endpoint.port}" in str(caught.value)
    assert elsewhere.requests == []  # the secret went nowhere else
    assert len(endpoint.requests) == 1
    assert SECRET not in str(caught.value) and REFRESH_TOKEN not in str(caught.value)


# ----------------------------------------------------------------------------- big and slow answers

def test_a_body_over_the_cap_is_refused(app_ctx, serve):
    def big(handler):
        raw = b'{"access_token": "' + b"a" * (MAX_RESPONSE_BYTES + 10) + b'", "token_type": "Bearer"}'
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    with pytest.raises(OAuthUnavailable, match="more than 256 KB"):
        _refresh(serve(big))


def test_an_endless_body_is_not_read_to_its_end(app_ctx, serve):
    """A server that never stops sending: the client stops after the cap, long before its timeout."""
    endpoint = None

    def endless(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()  # no length: the body runs until the connection closes
        handler.wfile.write(b'{"access_token": "')
        chunk = b"a" * 65536
        while not endpoint.stop.is_set():
            handler.wfile.write(chunk)
            endpoint.sent += len(chunk)

    endpoint = serve(endless)
    started = time.monotonic()
    with pytest.raises(OAuthUnavailable, match="more than 256 KB"):
        _refresh(endpoint, timeout=20)
    assert time.monotonic() - started < 5
    time.sleep(0.3)
    sent = endpoint.sent
    time.sleep(0.5)
    assert endpoint.sent == sent  # the connection is gone: the server cannot write any more


def _trickle(endpoint, *, chunked: bool, interval: float = 0.1, limit: float = 6.0):
    """Headers at once, then the body one byte every `interval` (each read returns well within
    any socket timeout), for at most `limit` seconds."""

    def behaviour(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.flush()
        until = time.monotonic() + limit
        while time.monotonic() < until and not endpoint[0].stop.is_set():
            handler.wfile.write(b"1\r\n \r\n" if chunked else b" ")
            handler.wfile.flush()
            time.sleep(interval)

    return behaviour


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_trickling_body_is_cut_off_by_the_timeout(app_ctx, serve, chunked):
    holder = []
    endpoint = serve(_trickle(holder, chunked=chunked))
    holder.append(endpoint)
    started = time.monotonic()
    with pytest.raises(OAuthUnavailable) as caught:
        _refresh(endpoint, timeout=1.5)
    elapsed = time.monotonic() - started
    assert elapsed < 4, f"a 1.5 s timeout took {elapsed:.1f} s (the server stopped trickling itself): {caught.value}"
    assert "too slowly" in str(caught.value) or "did not answer in time" in str(caught.value)


def test_a_silent_server_is_cut_off_by_the_timeout(app_ctx, serve):
    endpoint = None

    def silent(handler):
        endpoint.stop.wait(6)

    endpoint = serve(silent)
    started = time.monotonic()
    with pytest.raises(OAuthUnavailable) as caught:
        _refresh(endpoint, timeout=1)
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"a 1 s timeout took {elapsed:.1f} s (until the server hung up by itself): {caught.value}"
    assert "did not answer in time" in str(caught.value)


def test_a_closed_port_is_unavailable(app_ctx):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OAuthUnavailable, match="Could not reach the token endpoint"):
        refresh(_ends(f"http://127.0.0.1:{port}/token"), SECRET, REFRESH_TOKEN, timeout=2)


# ----------------------------------------------------------------------------- answers that are not a token

def _raw(status, body: bytes, content_type="application/json"):
    def behaviour(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return behaviour


@pytest.mark.parametrize("status, body", [
    (200, b"<html>Welcome to the captive portal</html>"),
    (200, b""),
    (200, b"[1, 2, 3]"),
    (200, b'"a string"'),
    (200, b'{"token_type": "Bearer", "expires_in": 3600}'),
    (200, b'{"access_token": "", "token_type": "Bearer"}'),
    (200, b'{"access_token": 12345, "token_type": "Bearer"}'),
    (200, b'{"access_token": "abc\\r\\nInjected", "token_type": "Bearer"}'),
    (200, b'{"access_token": "t\\u00e9st", "token_type": "Bearer"}'),
    (500, b'{"error": "server_error"}'),
    (502, b"<html>Bad gateway</html>"),
    (503, b""),
    (429, b"<html>Too many requests</html>"),
], ids=["html", "empty", "list", "string", "no-access-token", "empty-access-token", "number-access-token",
        "crlf-access-token", "non-ascii-access-token", "500", "502", "503", "429-html"])
def test_not_a_token_is_unavailable(app_ctx, serve, status, body):
    with pytest.raises(OAuthUnavailable) as caught:
        _refresh(serve(_raw(status, body)))
    message = str(caught.value)
    assert "token endpoint" in message
    assert SECRET not in message and REFRESH_TOKEN not in message


# ----------------------------------------------------------------------------- refusals

def test_refusal_names_the_error_and_hides_the_secrets(app_ctx, serve):
    body = json.dumps({"error": "invalid_grant", "error_description":
                       f"Client secret {SECRET} and refresh token {REFRESH_TOKEN} are not valid"}).encode()
    with pytest.raises(OAuthRefused) as caught:
        _refresh(serve(_raw(400, body)))
    assert caught.value.error == "invalid_grant"
    message = str(caught.value)
    assert SECRET not in message and REFRESH_TOKEN not in message
    assert message == "The provider refused the sign-in (invalid_grant: Client secret *** and refresh token *** " \
                      "are not valid)"


def test_client_credentials_refusal_hides_the_secret(app_ctx, serve):
    body = json.dumps({"error": "invalid_client", "error_description": f"bad secret '{SECRET}'"}).encode()
    endpoint = serve(_raw(401, body))
    with pytest.raises(OAuthRefused) as caught:
        client_credentials(_ends(endpoint.url, oauth_flow="client_credentials"), SECRET, timeout=5)
    assert caught.value.error == "invalid_client" and SECRET not in str(caught.value) and "***" in str(caught.value)
    assert endpoint.requests[0]["form"]["grant_type"] == ["client_credentials"]


def test_refusal_description_is_printable_and_bounded(app_ctx, serve):
    body = json.dumps({"error": "invalid_grant\r\nX: y", "error_description": "line\r\nbreak\x00" + "d" * 5000}).encode()
    with pytest.raises(OAuthRefused) as caught:
        _refresh(serve(_raw(400, body)))
    message = str(caught.value)
    assert "\r" not in message and "\n" not in message and "\x00" not in message
    assert len(message) < 450


def test_a_secret_cut_by_the_description_limit_does_not_leak_its_start(app_ctx, serve):
    """The description is cut to 300 characters before secrets are replaced: a secret echoed
    across the cut must not leave its first characters behind."""
    description = "x" * (300 - 20) + SECRET  # the cut falls inside the secret
    body = json.dumps({"error": "invalid_client", "error_description": description}).encode()
    with pytest.raises(OAuthRefused) as caught:
        _refresh(serve(_raw(400, body)))
    assert SECRET[:20] not in str(caught.value)


# ----------------------------------------------------------------------------- private networks

def test_private_network_endpoint_is_refused_before_connecting(app, app_ctx, serve, monkeypatch):
    endpoint = serve(lambda h: _token(h))
    monkeypatch.setitem(app.config, "IMAP_DENY_PRIVATE_NETWORKS", True)
    monkeypatch.setitem(app.config, "IMAP_ALLOWED_HOSTS", [])
    with pytest.raises(ImapConnectError, match="private address") as caught:
        _refresh(endpoint)
    assert SECRET not in str(caught.value)
    with pytest.raises(ImapConnectError, match="private address"):
        client_credentials(_ends(endpoint.url.replace("127.0.0.1", "localhost"), oauth_flow="client_credentials"),
                           SECRET, timeout=5)
    assert endpoint.requests == []
    # allowed explicitly: the same endpoint is used
    monkeypatch.setitem(app.config, "IMAP_ALLOWED_HOSTS", ["127.0.0.1"])
    assert _refresh(endpoint).access_token
    assert len(endpoint.requests) == 1


def test_redirect_to_a_private_address_is_not_followed_even_when_allowed(app, app_ctx, serve, monkeypatch):
    inner = serve(lambda h: _token(h))

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", inner.url.replace("127.0.0.1", "localhost"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    outer = serve(redirect)
    monkeypatch.setitem(app.config, "IMAP_DENY_PRIVATE_NETWORKS", True)
    monkeypatch.setitem(app.config, "IMAP_ALLOWED_HOSTS", ["127.0.0.1"])
    with pytest.raises(OAuthUnavailable, match="redirect"):
        _refresh(outer)
    assert inner.requests == [] and len(outer.requests) == 1
