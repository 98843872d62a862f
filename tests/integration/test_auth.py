"""Sessions, tokens, the super-admin guard and CSRF."""
import re

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
