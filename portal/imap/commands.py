"""IMAP, maintenance and crypto commands (registered by portal.cli)."""
import click
from flask.cli import AppGroup
from sqlalchemy import or_, select

from .. import crypto
from ..extensions import db
from .models import ENCRYPTED_COLUMNS, ImapAccount

imap_group = AppGroup("imap", help="Mailbox synchronisation and schedules.")
maintenance_group = AppGroup("maintenance", help="Pending-restart flag that pauses IMAP fetches.")
crypto_group = AppGroup("crypto", help="Stored secret encryption.")


@crypto_group.command("reencrypt")
def crypto_reencrypt():
    """Re-encrypt every stored secret with the current SECRET_KEY."""
    done = failed = 0
    holding = or_(*(getattr(ImapAccount, column).is_not(None) for column in ENCRYPTED_COLUMNS))
    for account in db.session.scalars(select(ImapAccount).where(holding)):
        for column in ENCRYPTED_COLUMNS:
            value = getattr(account, column)
            if value is None:
                continue
            try:
                setattr(account, column, crypto.reencrypt(value))
                done += 1
            except crypto.DecryptionError:
                failed += 1
                click.echo(f"Mailbox {account.id} ({account.name}): {column}: cannot decrypt with any "
                           "configured key", err=True)
    db.session.commit()
    click.echo(f"Re-encrypted {done} secret(s) with the current key; {failed} could not be decrypted.")
    if failed:
        raise SystemExit(1)


def _account_or_fail(account_id: int) -> ImapAccount:
    account = db.session.get(ImapAccount, account_id)
    if account is None:
        raise click.ClickException(f"Mailbox {account_id} not found")
    if account.deleted_at is not None:
        raise click.ClickException(f"Mailbox {account_id} ({account.name}) was deleted")
    return account


def _print_run(account: ImapAccount, run: dict) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in sorted((run.get("counts") or {}).items())) or "nothing new"
    line = f"Mailbox {account.id} ({account.name}): {run['status']} — {counts}"
    if run.get("error"):
        line += f" — {run['error']}"
    click.echo(line)


@imap_group.command("sync")
@click.argument("account_id", type=int)
@click.option("--inline", is_flag=True, help="Run here and now instead of queueing a job.")
def imap_sync(account_id, inline):
    """Sync one mailbox (queued for a worker, or --inline)."""
    from .tasks import enqueue_sync, sync_mailbox

    account = _account_or_fail(account_id)
    if inline:
        run = sync_mailbox(account.id, trigger="manual", raise_errors=False)
        _print_run(account, run)
        if run["status"] == "failed":
            raise SystemExit(1)
        return
    run = enqueue_sync(account, trigger="manual")
    click.echo(f"Queued sync run {run.id} (job {run.job_id}) for mailbox {account.id} ({account.name})")


@imap_group.command("sync-all")
@click.option("--inline", is_flag=True, help="Run here and now, one mailbox after another.")
def imap_sync_all(inline):
    """Sync every active mailbox in ascending priority (ties by id)."""
    from .tasks import active_accounts_in_order, enqueue_sync, sync_mailbox

    accounts = active_accounts_in_order()
    failed = 0
    for account in accounts:
        if inline:
            run = sync_mailbox(account.id, trigger="bulk", raise_errors=False)
            _print_run(account, run)
            failed += run["status"] == "failed"
        else:
            run = enqueue_sync(account, trigger="bulk")
            click.echo(f"Queued mailbox {account.id} ({account.name}, priority {account.priority}): run {run.id}")
    if not accounts:
        click.echo("No active mailboxes.")
    if failed:
        raise SystemExit(1)


schedules_group = AppGroup("schedules", help="The per-mailbox cron jobs in Redis.")
imap_group.add_command(schedules_group)


@schedules_group.command("reconcile")
def schedules_reconcile():
    """Make the rq-scheduler jobs match the database; prints what changed."""
    from . import scheduling

    from .accounts import clear_schedule_errors, live_query

    accounts = list(db.session.scalars(live_query()))
    changes = scheduling.reconcile(accounts)
    clear_schedule_errors(accounts)
    db.session.commit()
    for change in changes:
        click.echo(change)
    click.echo(f"Schedules reconciled: {len(changes)} change(s), {sum(a.active for a in accounts)} active mailbox(es).")


@maintenance_group.command("begin")
@click.option("--reason", default="", help="Shown by `maintenance status`.")
def maintenance_begin(reason):
    """Mark a pending restart: sync jobs defer instead of connecting."""
    from . import maintenance

    maintenance.begin(reason)
    click.echo("Restart pending: IMAP fetches are paused until `maintenance end`.")


@maintenance_group.command("end")
def maintenance_end():
    """Clear the pending-restart flag: deferred syncs run on their next retry."""
    from . import maintenance

    was_set = maintenance.end()
    click.echo("Restart flag cleared; IMAP fetches resume." if was_set else "No restart was pending.")


@maintenance_group.command("status")
def maintenance_status():
    """Say whether a restart is pending."""
    import datetime

    from . import maintenance

    state = maintenance.status()
    if state is None:
        click.echo("No restart pending; IMAP fetches run normally.")
        return
    since = state.get("since")
    when = datetime.datetime.fromtimestamp(since, datetime.timezone.utc).isoformat(timespec="seconds") if since else "?"
    click.echo(f"Restart pending since {when}{': ' + state['reason'] if state.get('reason') else ''}; IMAP fetches are paused.")
