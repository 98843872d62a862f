"""Platform CLI commands."""
from sqlalchemy import select


def test_create_superadmin_is_idempotent(app, app_ctx):
    from portal.extensions import db
    from portal.models import User

    runner = app.test_cli_runner()
    first = runner.invoke(args=["create-superadmin", "--email", "Boss@Portal.test", "--password", "first-pass"])
    assert first.exit_code == 0, first.output
    assert "Created super admin boss@portal.test" in first.output
    second = runner.invoke(args=["create-superadmin", "--email", "boss@portal.test", "--password", "second-pass"])
    assert "Updated super admin" in second.output
    users = db.session.scalars(select(User)).all()
    assert len(users) == 1
    db.session.refresh(users[0])
    assert users[0].is_super_admin and users[0].check_password("second-pass")
    assert not users[0].check_password("first-pass")


def test_create_superadmin_promotes_existing_user(app, plain_user):
    from portal.extensions import db

    result = app.test_cli_runner().invoke(
        args=["create-superadmin", "--email", "agent@portal.test", "--password", "new-password"]
    )
    assert result.exit_code == 0
    db.session.refresh(plain_user)
    assert plain_user.is_super_admin


def test_create_superadmin_rejects_bad_input(app, app_ctx):
    result = app.test_cli_runner().invoke(args=["create-superadmin", "--email", "nope", "--password", "long-enough"])
    assert result.exit_code != 0 and "not an email address" in result.output


def test_create_api_token_prints_token_last_and_it_works(app, admin, client):
    result = app.test_cli_runner().invoke(args=["create-api-token", "--email", "admin@portal.test", "--name", "ci"])
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("mp_") and " " not in token
    assert client.get("/api/companies", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_create_api_token_for_unknown_user_fails(app, app_ctx):
    result = app.test_cli_runner().invoke(args=["create-api-token", "--email", "ghost@portal.test"])
    assert result.exit_code != 0 and "No user with email" in result.output


def test_ensure_superadmin_creates_one_only_when_none(app, app_ctx, monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("ADMIN_EMAIL", "first@portal.test")
    runner = app.test_cli_runner()
    created = runner.invoke(args=["ensure-superadmin"])
    assert "first@portal.test" in created.output
    password = created.output.split("password: ")[1].split()[0]
    from portal.extensions import db
    from portal.models import User

    user = db.session.scalar(select(User).where(User.email == "first@portal.test"))
    assert user.is_super_admin and user.check_password(password)
    again = runner.invoke(args=["ensure-superadmin"])
    assert "Super admin exists: first@portal.test" in again.output


def test_migrations_match_the_models(app, app_ctx):
    result = app.test_cli_runner().invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output  # alembic check fails on any model/migration drift


def test_api_token_expiry_list_and_revoke(app, admin, client):
    from datetime import timedelta

    from portal.extensions import db
    from portal.models import ApiToken, utcnow

    runner = app.test_cli_runner()
    created = runner.invoke(args=["create-api-token", "--email", "admin@portal.test", "--name", "ci", "--expires-in", "90d"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "ci"))
    assert timedelta(days=89, hours=23) < row.expires_at - utcnow() <= timedelta(days=90)
    assert runner.invoke(args=["create-api-token", "--email", "admin@portal.test", "--expires-in", "12h"]).exit_code == 0
    for bad in ("tomorrow", "0d", "-1d", "5y"):
        refused = runner.invoke(args=["create-api-token", "--email", "admin@portal.test", "--expires-in", bad])
        assert refused.exit_code != 0 and "not a duration" in refused.output, bad

    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/companies", headers=headers).status_code == 200
    listing = runner.invoke(args=["api-tokens", "list"])
    assert listing.exit_code == 0
    assert "ID" in listing.output and "EXPIRES" in listing.output and "LAST USED" in listing.output
    line = next(line for line in listing.output.splitlines() if line.split()[0] == str(row.id))
    assert "admin@portal.test" in line and "ci" in line and "active" in line
    assert token not in listing.output and token[3:13] not in listing.output and row.token_hash not in listing.output

    revoked = runner.invoke(args=["api-tokens", "revoke", str(row.id)])
    assert revoked.exit_code == 0 and f"Revoked API token {row.id}" in revoked.output
    assert client.get("/api/companies", headers=headers).status_code == 401
    assert "revoked" in runner.invoke(args=["api-tokens", "list"]).output
    missing = runner.invoke(args=["api-tokens", "revoke", "999999"])
    assert missing.exit_code != 0 and "No API token with id 999999" in missing.output


def test_expired_token_shows_as_expired_and_is_refused(app, admin, client):
    from datetime import timedelta

    from portal.auth import issue_api_token
    from portal.models import utcnow

    token = issue_api_token(admin, "old", expires_at=utcnow() - timedelta(minutes=1))
    assert client.get("/api/companies", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "expired" in app.test_cli_runner().invoke(args=["api-tokens", "list"]).output
