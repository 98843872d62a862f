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
