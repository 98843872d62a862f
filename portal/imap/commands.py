"""IMAP, maintenance and crypto commands (registered by portal.cli)."""
import click
from flask.cli import AppGroup
from sqlalchemy import select

from .. import crypto
from ..extensions import db
from .models import ImapAccount

imap_group = AppGroup("imap", help="Mailbox synchronisation and schedules.")
maintenance_group = AppGroup("maintenance", help="Pending-restart flag that pauses IMAP fetches.")
crypto_group = AppGroup("crypto", help="Stored secret encryption.")


@crypto_group.command("reencrypt")
def crypto_reencrypt():
    """Re-encrypt every stored secret with the current SECRET_KEY."""
    done = failed = 0
    for account in db.session.scalars(select(ImapAccount).where(ImapAccount.password_encrypted.is_not(None))):
        try:
            account.password_encrypted = crypto.reencrypt(account.password_encrypted)
            done += 1
        except crypto.DecryptionError:
            failed += 1
            click.echo(f"Mailbox {account.id} ({account.name}): cannot decrypt with any configured key", err=True)
    db.session.commit()
    click.echo(f"Re-encrypted {done} secret(s) with the current key; {failed} could not be decrypted.")
    if failed:
        raise SystemExit(1)
