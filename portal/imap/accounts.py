"""Mailbox lifecycle shared by the API and the pages: create, update, clone, delete.

Every change commits first, then makes the rq-scheduler job match; when Redis is down
the mailbox is still saved and `schedule_error` says the schedule is pending.
"""
from sqlalchemy import func, select

from .. import crypto
from ..extensions import db
from ..models import Company, isoformat
from ..validation import Conflict, ValidationError
from . import scheduling
from .models import ImapAccount

RULE_FIELDS = ("filter_query", "sync_known_only")


def account_json(account: ImapAccount, next_run_at=None) -> dict:
    return {
        "id": account.id,
        "name": account.name,
        "host": account.host,
        "port": account.port,
        "security": account.security,
        "verify_tls": account.verify_tls,
        "username": account.username,
        "has_password": account.has_password,
        "folder": account.folder,
        "company_id": account.company_id,
        "priority": account.priority,
        "process_unread_only": account.process_unread_only,
        "mark_as_read": account.mark_as_read,
        "sync_known_only": account.sync_known_only,
        "schedule_cron": account.schedule_cron,
        "filter_query": account.filter_query,
        "active": account.active,
        "scheduled_task_id": account.scheduled_task_id,
        "next_run_at": isoformat(next_run_at) if account.active else None,
        "schedule_error": account.schedule_error,
        "last_synced_at": isoformat(account.last_synced_at),
        "last_sync_status": account.last_sync_status,
        "last_error": account.last_error,
        "created_at": isoformat(account.created_at),
        "updated_at": isoformat(account.updated_at),
    }


def accounts_json(accounts: list[ImapAccount]) -> list[dict]:
    times = scheduling.next_run_times([a.id for a in accounts])
    return [account_json(a, times.get(a.id)) for a in accounts]


def one_account_json(account: ImapAccount) -> dict:
    return accounts_json([account])[0]


def _check_references(data: dict, account: ImapAccount | None) -> None:
    company_id = data.get("company_id")
    if company_id is not None and db.session.get(Company, company_id) is None:
        raise ValidationError({"company_id": [f"Company {company_id} does not exist"]})
    name = data.get("name")
    if name is not None:
        clash = db.session.scalar(select(ImapAccount).where(func.lower(ImapAccount.name) == name.lower()))
        if clash is not None and clash is not account:
            raise Conflict("name", f"A mailbox named '{name}' already exists")


def _assign(account: ImapAccount, data: dict) -> None:
    rules_changed = any(
        field in data and getattr(account, field) != data[field] for field in RULE_FIELDS
    )
    for field, value in data.items():
        if field == "password":
            account.password_encrypted = crypto.encrypt(value)
        else:
            setattr(account, field, value)
    if rules_changed and account.id is not None:
        # Messages skipped under the old rules are looked at again on the next sync.
        account.rules_version = (account.rules_version or 1) + 1


def _commit_and_schedule(account: ImapAccount) -> ImapAccount:
    account.schedule_error = None
    db.session.commit()
    error = scheduling.apply(account)
    if error != account.schedule_error:
        account.schedule_error = error
        db.session.commit()
    return account


def create_account(data: dict) -> ImapAccount:
    _check_references(data, None)
    account = ImapAccount()
    _assign(account, data)
    db.session.add(account)
    return _commit_and_schedule(account)


def update_account(account: ImapAccount, data: dict) -> ImapAccount:
    with db.session.no_autoflush:
        _check_references(data, account)
    _assign(account, data)
    return _commit_and_schedule(account)


MAX_NAME = 200


def clone_name(name: str) -> str:
    """'<name> (copy)', then '(copy 2)', ...; the name is shortened to keep within 200 characters."""
    taken = {n.lower() for n in db.session.scalars(select(ImapAccount.name))}
    number = 1
    while True:
        suffix = " (copy)" if number == 1 else f" (copy {number})"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        if candidate.lower() not in taken:
            return candidate
        number += 1


CLONED_FIELDS = (
    "host", "port", "security", "verify_tls", "username", "password_encrypted", "folder",
    "company_id", "priority", "process_unread_only", "mark_as_read", "sync_known_only",
    "schedule_cron", "filter_query", "active",
)


def clone_account(source: ImapAccount, overrides: dict) -> ImapAccount:
    """Copy every setting (the encrypted password and the filter too); sync state starts fresh."""
    copy = ImapAccount(**{field: getattr(source, field) for field in CLONED_FIELDS})
    copy.name = clone_name(source.name)
    with db.session.no_autoflush:
        _check_references(overrides, copy)
    _assign(copy, overrides)
    db.session.add(copy)
    return _commit_and_schedule(copy)


def delete_account(account: ImapAccount) -> str | None:
    """Delete the mailbox (its audit and runs go with it) and remove its schedule."""
    account_id = account.id
    db.session.delete(account)
    db.session.commit()
    return scheduling.remove(account_id)
