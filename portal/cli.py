"""`flask --app wsgi ...` commands."""
import os
import secrets

import click
from flask import Flask
from sqlalchemy import select

from .auth import issue_api_token
from .extensions import db
from .models import User, normalize_email


def register_cli(app: Flask) -> None:
    app.cli.add_command(create_superadmin)
    app.cli.add_command(create_api_token)
    app.cli.add_command(ensure_superadmin)
    from .imap.commands import crypto_group, imap_group, maintenance_group

    app.cli.add_command(imap_group)
    app.cli.add_command(maintenance_group)
    app.cli.add_command(crypto_group)


def _make_superadmin(email: str, password: str) -> tuple[User, bool]:
    email = normalize_email(email)
    user = db.session.scalar(select(User).where(User.email == email))
    created = user is None
    if created:
        user = User(email=email, name=email.split("@")[0])
        db.session.add(user)
    user.is_super_admin = True
    user.is_active = True
    user.set_password(password)
    db.session.commit()
    return user, created


@click.command("create-superadmin")
@click.option("--email", required=True)
@click.option("--password", required=True)
def create_superadmin(email, password):
    """Create a super admin, or make an existing user one with this password."""
    if "@" not in email:
        raise click.BadParameter("not an email address", param_hint="--email")
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    user, created = _make_superadmin(email, password)
    click.echo(f"{'Created' if created else 'Updated'} super admin {user.email}")


@click.command("ensure-superadmin")
def ensure_superadmin():
    """Create a first super admin when there is none (ADMIN_EMAIL / ADMIN_PASSWORD or generated)."""
    existing = db.session.scalar(select(User).where(User.is_super_admin.is_(True)).limit(1))
    if existing is not None:
        click.echo(f"Super admin exists: {existing.email}")
        return
    email = os.environ.get("ADMIN_EMAIL") or "admin@example.com"
    password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    _make_superadmin(email, password)
    click.echo("Created the first super admin:")
    click.echo(f"  email:    {email}")
    if os.environ.get("ADMIN_PASSWORD"):
        click.echo("  password: (from ADMIN_PASSWORD)")
    else:
        click.echo(f"  password: {password}   (shown once; change it or set ADMIN_PASSWORD)")


@click.command("create-api-token")
@click.option("--email", required=True)
@click.option("--name", default="", help="A label for the token.")
def create_api_token(email, name):
    """Issue an API token for a user; the token is printed alone on the last line."""
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise click.ClickException(f"No user with email {email}")
    token = issue_api_token(user, name)
    click.echo(f"API token for {user.email} (store it now; it is not shown again):")
    click.echo(token)
