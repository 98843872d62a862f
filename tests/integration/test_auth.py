"""Sessions, tokens, the super-admin guard and CSRF."""
import re

import pytest
from sqlalchemy import select

from tests.conftest import login, make_user


def test_pages_redirect_to_login_with_next(client, app):
    response = client.get("/tickets?page=2")
    assert response.status_code == 302
    assert response.location == "/login?next=/tickets?page%3D2"


def test_login_then_pages_render(client, admin):
    response = login(client, "admin@portal.test")
    assert response.status_code == 302 and response.location == "/tickets"
    page = client.get("/tickets")
    assert page.status_code == 200
    assert "Tickets" in page.get_data(as_text=True)
    assert client.get("/companies").status_code == 200


def test_login_follows_only_local_next(client, admin):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login?next=https://evil.example/x",
        data={"email": "admin@portal.test", "password": "password123", "csrf_token": token},
    )
    assert response.location == "/tickets"


def test_wrong_password_is_rejected(client, admin):
    response = login(client, "admin@portal.test", "not-the-password")
    assert response.status_code == 401
    assert "Invalid email or password" in response.get_data(as_text=True)
    assert client.get("/tickets").status_code == 302


def test_inactive_user_cannot_log_in(client, app_ctx):
    make_user("gone@portal.test", super_admin=True, active=False)
    assert login(client, "gone@portal.test").status_code == 401


def test_non_admin_gets_403_page(client, plain_user):
    login(client, "agent@portal.test")
    response = client.get("/tickets")
    assert response.status_code == 403
    assert "super administrators only" in response.get_data(as_text=True)


def test_form_post_without_csrf_token_is_rejected(client, admin):
    response = client.post("/login", data={"email": "admin@portal.test", "password": "password123"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    login(client, "admin@portal.test")
    assert client.post("/logout").status_code == 400  # signed-in form posts need the token too


def test_session_api_calls_need_csrf_but_bearer_calls_do_not(client, admin, admin_token):
    login(client, "admin@portal.test")
    assert client.get("/api/companies").status_code == 200
    assert client.post("/api/companies", json={"name": "X"}).status_code == 400
    response = client.post(
        "/api/companies", json={"name": "X"}, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status_code == 201


def test_api_token_auth(client, admin_token, user_token):
    assert client.get("/api/companies").status_code == 401
    assert client.get("/api/companies").json == {"error": "Authentication required"}
    bad = client.get("/api/companies", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    ok = client.get("/api/companies", headers={"Authorization": f"Bearer {admin_token}"})
    assert ok.status_code == 200
    forbidden = client.get("/api/companies", headers={"Authorization": f"Bearer {user_token}"})
    assert forbidden.status_code == 403


def test_revoked_token_is_refused(client, app_ctx, admin_token):
    from portal.extensions import db
    from portal.models import ApiToken

    token_row = db.session.scalar(select(ApiToken))
    assert token_row.last_used_at is None
    client.get("/api/companies", headers={"Authorization": f"Bearer {admin_token}"})
    db.session.refresh(token_row)
    assert token_row.last_used_at is not None
    token_row.revoked = True
    db.session.commit()
    assert client.get("/api/companies", headers={"Authorization": f"Bearer {admin_token}"}).status_code == 401


def test_database_holds_no_plaintext_password_or_token(app_ctx, admin, admin_token):
    from portal.extensions import db

    dump = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                dump.append(repr(tuple(row)))
    text = "\n".join(dump)
    assert "password123" not in text
    assert admin_token not in text
    assert admin_token[3:] not in text


# --- login throttling ------------------------------------------------------------------


def _csrf(client):
    from flask import g, has_app_context

    if has_app_context():
        # The fixtures' app context outlives requests, so Flask-WTF's per-request token cache in
        # `g` would leak a token from a session that has since been cleared (login, logout).
        g.pop("csrf_token", None)
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def _attempt(client, token, email, password="wrong-password", address="198.51.100.7"):
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


def test_login_is_limited_per_account_with_retry_after(client, app, admin):
    token = _csrf(client)
    for i in range(app.config["LOGIN_MAX_ATTEMPTS_PER_ACCOUNT"]):
        assert _attempt(client, token, "admin@portal.test", address=f"198.51.100.{i}").status_code == 401
    refused = _attempt(client, token, "ADMIN@portal.test", password="password123", address="203.0.113.9")
    assert refused.status_code == 429  # even the right password, from another address
    assert 0 < int(refused.headers["Retry-After"]) <= app.config["LOGIN_ATTEMPT_WINDOW_SECONDS"]
    assert "Too many sign-in attempts" in refused.get_data(as_text=True)
    assert client.get("/tickets").status_code == 302
    # Other accounts are not locked out by it.
    make_user("other@portal.test", super_admin=True)
    assert _attempt(client, token, "other@portal.test", password="password123").status_code == 302


def test_login_is_limited_per_address(client, app, admin):
    app.config["LOGIN_MAX_ATTEMPTS_PER_ADDRESS"] = 3
    try:
        token = _csrf(client)
        for i in range(3):
            assert _attempt(client, token, f"nobody{i}@portal.test").status_code == 401
        assert _attempt(client, token, "admin@portal.test", password="password123").status_code == 429
        assert _attempt(client, token, "admin@portal.test", password="password123", address="192.0.2.1").status_code == 302
    finally:
        app.config["LOGIN_MAX_ATTEMPTS_PER_ADDRESS"] = 50


def test_successful_login_clears_the_account_count(client, app, admin):
    token = _csrf(client)
    for _ in range(app.config["LOGIN_MAX_ATTEMPTS_PER_ACCOUNT"] - 1):
        _attempt(client, token, "admin@portal.test")
    assert _attempt(client, token, "admin@portal.test", password="password123").status_code == 302
    client.post("/logout", data={"csrf_token": _csrf(client)})
    token = _csrf(client)
    for _ in range(3):
        assert _attempt(client, token, "admin@portal.test").status_code == 401


def test_login_works_when_redis_is_down(client, app, admin, caplog):
    app.config["REDIS_URL"], saved = "redis://127.0.0.1:1/0", app.config["REDIS_URL"]
    app.extensions.pop("portal_redis", None)
    try:
        assert login(client, "admin@portal.test").status_code == 302
        assert "Login throttling is off" in caplog.text
    finally:
        app.config["REDIS_URL"] = saved
        app.extensions.pop("portal_redis", None)


def test_unknown_and_known_emails_cost_the_same(client, app, admin):
    import time

    make_user("gone@portal.test", active=False)
    token = _csrf(client)

    def cost(email):
        started = time.perf_counter()
        assert _attempt(client, token, email, address=email).status_code == 401
        return time.perf_counter() - started

    for email in ("admin@portal.test", "nobody@portal.test", "gone@portal.test"):
        cost(email)  # warm up (the dummy hash is made once)
    known = min(cost("admin@portal.test") for _ in range(3))
    unknown = min(cost("nobody@portal.test") for _ in range(3))
    inactive = min(cost("gone@portal.test") for _ in range(3))
    # A password hash costs tens of milliseconds; without one an answer takes a few.
    assert unknown > known * 0.5 and inactive > known * 0.5, (known, unknown, inactive)


# --- sessions --------------------------------------------------------------------------
# These tests hold no app context around their requests (each request gets its own, as in
# production), so nothing Flask-Login caches per request can carry a user over.


@pytest.fixture
def admin_account(app):
    """A super admin and an API token of theirs: (user id, token)."""
    from portal.auth import issue_api_token

    with app.app_context():
        user = make_user("admin@portal.test", super_admin=True)
        return user.id, issue_api_token(user, "tests")


def test_logout_kills_a_copied_session_cookie(app, admin_account):
    browser = app.test_client()
    login(browser, "admin@portal.test")
    copy = app.test_client()
    copy.set_cookie("session", browser.get_cookie("session").value)
    assert copy.get("/tickets").status_code == 200
    browser.post("/logout", data={"csrf_token": _csrf(browser)})
    assert copy.get("/tickets").status_code == 302
    assert copy.get("/api/companies").status_code == 401


def test_password_change_ends_other_sessions(app, admin_account):
    admin_id, admin_token = admin_account
    browser = app.test_client()
    login(browser, "admin@portal.test")
    assert browser.get("/tickets").status_code == 200
    changed = app.test_client().put(
        f"/api/users/{admin_id}", json={"password": "a-new-password"}, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert changed.status_code == 200
    assert browser.get("/tickets").status_code == 302
    assert login(browser, "admin@portal.test", "a-new-password").status_code == 302
    assert browser.get("/tickets").status_code == 200


def test_session_ends_after_idle_time(client, app, admin_account, monkeypatch):
    import time

    login(client, "admin@portal.test")
    assert client.get("/tickets").status_code == 200
    now = time.time()
    idle = app.config["SESSION_IDLE_MINUTES"] * 60
    monkeypatch.setattr(time, "time", lambda: now + idle - 30)
    assert client.get("/tickets").status_code == 200  # activity keeps it alive ...
    monkeypatch.setattr(time, "time", lambda: now + 2 * idle - 60)
    assert client.get("/tickets").status_code == 200
    monkeypatch.setattr(time, "time", lambda: now + 3 * idle)  # ... idleness ends it
    assert client.get("/tickets").status_code == 302


def test_session_cookie_lifetime_is_the_idle_limit(client, admin_account):
    response = login(client, "admin@portal.test")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # plain http in tests


def test_cookie_is_secure_over_https(client, admin_account):
    page = client.get("/login", base_url="https://portal.test")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = client.post(
        "/login", base_url="https://portal.test", headers={"Referer": "https://portal.test/login"},  # CSRF over https checks it
        data={"email": "admin@portal.test", "password": "password123", "csrf_token": token},
    )
    assert response.status_code == 302
    assert "; Secure" in response.headers["Set-Cookie"]


def test_forwarded_https_counts_only_behind_a_trusted_proxy(admin_account):
    from portal import create_app
    from tests.conftest import TEST_CONFIG

    def cookie_via_proxy(app):
        client = app.test_client()
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5", "Referer": "https://localhost/login"}
        with app.app_context():
            page = client.get("/login", headers=headers).get_data(as_text=True)
            token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
            response = client.post(
                "/login", headers=headers, data={"email": "admin@portal.test", "password": "password123", "csrf_token": token}
            )
        assert response.status_code == 302
        return response.headers["Set-Cookie"]

    assert "; Secure" not in cookie_via_proxy(create_app(dict(TEST_CONFIG)))
    assert "; Secure" in cookie_via_proxy(create_app(dict(TEST_CONFIG, PROXY_FIX_HOPS=1)))


def test_preferred_https_scheme_makes_cookies_secure(admin_account):
    from portal import create_app
    from tests.conftest import TEST_CONFIG

    app = create_app(dict(TEST_CONFIG, PREFERRED_URL_SCHEME="https"))
    page = app.test_client().get("/login")  # the form's CSRF token starts a session
    assert "; Secure" in page.headers["Set-Cookie"]


# --- API tokens ------------------------------------------------------------------------


def test_expired_token_is_refused(client, app_ctx, admin):
    from datetime import timedelta

    from portal.auth import issue_api_token
    from portal.models import utcnow

    expired = issue_api_token(admin, "old", expires_at=utcnow() - timedelta(seconds=1))
    live = issue_api_token(admin, "new", expires_at=utcnow() + timedelta(hours=1))
    assert client.get("/api/companies", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert client.get("/api/companies", headers={"Authorization": f"Bearer {live}"}).status_code == 200


def test_token_use_is_recorded_at_most_once_a_minute(client, app_ctx, admin_token):
    from datetime import timedelta

    from portal.extensions import db
    from portal.models import ApiToken

    headers = {"Authorization": f"Bearer {admin_token}"}
    client.get("/api/companies", headers=headers)
    row = db.session.scalar(select(ApiToken))
    first = row.last_used_at
    assert first is not None
    client.get("/api/companies", headers=headers)
    db.session.refresh(row)
    assert row.last_used_at == first
    row.last_used_at = first - timedelta(minutes=2)
    db.session.commit()
    client.get("/api/companies", headers=headers)
    db.session.refresh(row)
    assert row.last_used_at >= first


def test_get_with_a_token_answers_while_the_database_is_locked(client, app_ctx, admin_token, caplog):
    import time

    from portal.extensions import db

    if db.engine.dialect.name == "sqlite":
        import sqlite3

        holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE users SET name = name")
    else:
        import psycopg

        holder = psycopg.connect(db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
        holder.execute("SELECT * FROM api_tokens FOR UPDATE")  # what a token-use write waits for
    db.session.remove()
    try:
        started = time.monotonic()
        response = client.get("/api/companies", headers={"Authorization": f"Bearer {admin_token}"})
        elapsed = time.monotonic() - started
    finally:
        holder.rollback() if hasattr(holder, "rollback") else None
        holder.close()
    assert response.status_code == 200
    assert elapsed < 3, elapsed
    assert "last_used_at not recorded" in caplog.text
