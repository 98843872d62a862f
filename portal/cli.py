"""`flask --app wsgi ...` commands."""
import os
import re
import secrets
from datetime import timedelta

import click
from flask import Flask
from sqlalchemy import select

from .auth import issue_api_token
from .extensions import db
from .models import ApiToken, User, isoformat, normalize_email, utcnow
from .validation import MAX_ID


def register_cli(app: Flask) -> None:
    app.cli.add_command(create_superadmin)
    app.cli.add_command(create_api_token)
    app.cli.add_command(ensure_superadmin)
    app.cli.add_command(api_tokens_group)
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


DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class Duration(click.ParamType):
    """`90d`, `12h`, `30m`: a positive span of days, hours or minutes."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"\s*(\d{1,6})\s*([dhm])\s*", str(value).lower())
        if not match or int(match.group(1)) == 0:
            self.fail(f"{value!r} is not a duration such as 90d, 12h or 30m", param, ctx)
        return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})


@click.command("create-api-token")
@click.option("--email", required=True)
@click.option("--name", default="", help="A label for the token.")
@click.option("--expires-in", type=Duration(), default=None, help="Lifetime, e.g. 90d, 12h or 30m (default: no expiry).")
def create_api_token(email, name, expires_in):
    """Issue an API token for a user; the token is printed alone on the last line."""
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise click.ClickException(f"No user with email {email}")
    expires_at = utcnow() + expires_in if expires_in else None
    token = issue_api_token(user, name, expires_at)
    expiry = f"; it expires {isoformat(expires_at)}" if expires_at else ""
    click.echo(f"API token for {user.email} (store it now; it is not shown again{expiry}):")
    click.echo(token)


@click.group("api-tokens")
def api_tokens_group():
    """List and revoke API tokens (the tokens themselves are never shown again)."""


@api_tokens_group.command("list")
def list_api_tokens():
    """Every token: id, user, name, created, last used, expires, state."""
    rows = db.session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    if not rows:
        click.echo("No API tokens.")
        return
    now = utcnow()
    header = ("ID", "USER", "NAME", "CREATED", "LAST USED", "EXPIRES", "STATE")
    table = [header] + [
        (
            str(t.id), t.user.email, t.name or "-", isoformat(t.created_at) or "-", isoformat(t.last_used_at) or "never",
            isoformat(t.expires_at) or "never",
            "revoked" if t.revoked else "expired" if t.is_expired(now) else "active",
        )
        for t in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@api_tokens_group.command("revoke")
@click.argument("token_id", type=click.IntRange(1, MAX_ID))
def revoke_api_token(token_id):
    """Revoke a token by its id (see `api-tokens list`); requests with it answer 401 at once."""
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise click.ClickException(f"No API token with id {token_id}")
    token.revoked = True
    db.session.commit()
    click.echo(f"Revoked API token {token.id} ({token.name or 'unnamed'}) of {token.user.email}")
