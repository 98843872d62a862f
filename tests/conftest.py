"""Shared fixtures: the app on SQLite or PostgreSQL (DATABASE_URL), a real Redis, users, tokens."""
import os
import shutil
import tempfile

import pytest

os.environ["PORTAL_ENV"] = "testing"
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_TMP = tempfile.mkdtemp(prefix="portal-tests-")
DATABASE_URL = os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(_TMP, "test.db")
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ["REDIS_URL"] = TEST_REDIS_URL
os.environ.setdefault("SECRET_KEY", "test-secret-key-0123456789abcdef")

pytest_plugins = ["tests.support.dovecot", "tests.support.oauth_server"]

TEST_CONFIG = {
    "SECRET_KEY": os.environ["SECRET_KEY"],
    "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
    "REDIS_URL": TEST_REDIS_URL,
    "ATTACHMENT_DIR": os.path.join(_TMP, "attachments"),
    "RESTART_DEFER_SECONDS": 1,
}


@pytest.fixture(scope="session")
def app():
    from flask_migrate import upgrade

    from portal import create_app
    from portal.extensions import db

    app = create_app(dict(TEST_CONFIG))
    with app.app_context():
        upgrade()  # the real migrations build the schema, on SQLite and PostgreSQL alike
        db.session.remove()
    yield app
    with app.app_context():
        db.drop_all()
        from sqlalchemy import text

        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.engine.dispose()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Empty every table and the test Redis DB after each test that used the app."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    from portal.extensions import db, get_redis

    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
        get_redis().flushdb()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


def make_user(email, password="password123", super_admin=False, name="", active=True):
    from portal.extensions import db
    from portal.models import User

    user = User(email=email.lower(), name=name or email.split("@")[0], is_super_admin=super_admin, is_active=active)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


@pytest.fixture
def admin(app_ctx):
    return make_user("admin@portal.test", super_admin=True)


@pytest.fixture
def plain_user(app_ctx):
    return make_user("agent@portal.test", super_admin=False)


@pytest.fixture
def admin_token(admin):
    from portal.auth import issue_api_token

    return issue_api_token(admin, "tests")


@pytest.fixture
def user_token(plain_user):
    from portal.auth import issue_api_token

    return issue_api_token(plain_user, "tests")


class Api:
    """Test client calls with a Bearer token."""

    def __init__(self, client, token):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path, **kw):
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path, json=None, **kw):
        return self.client.post(path, json=json, headers=self.headers, **kw)

    def put(self, path, json=None, **kw):
        return self.client.put(path, json=json, headers=self.headers, **kw)

    def delete(self, path, **kw):
        return self.client.delete(path, headers=self.headers, **kw)


@pytest.fixture
def api(client, admin_token):
    return Api(client, admin_token)


@pytest.fixture
def user_api(client, user_token):
    return Api(client, user_token)


def login(client, email, password="password123"):
    """Sign in through the real login form (CSRF token included)."""
    import re

    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})
