"""Mailbox lifecycle shared by the API and the pages: create, update, clone, delete.

Every change commits first, then makes the rq-scheduler job match; when Redis is down
the mailbox is still saved and `schedule_error` says the schedule is pending.
"""
from sqlalchemy import func, select

from .. import crypto
from ..extensions import db
from ..models import Company, isoformat
from ..validation import Conflict, ValidationError
from . import fields, scheduling
from .credentials import (
    PLAINTEXT_NOT_ALLOWED, SECRET_BOUND_TO, SECRET_FOR_NEW_SERVER, plaintext_refused, stored_secret_usable,
)
from .models import ImapAccount

RULE_FIELDS = ("filter_query", "sync_known_only")


def account_json(account: ImapAccount, next_run_at=None) -> dict:
    """A mailbox as the API shows it: every readable field of the table, timestamps in ISO 8601."""
    computed = {"next_run_at": next_run_at if account.active else None}
    result = {}
    for field in fields.READABLE:
        value = computed[field.name] if field.computed else getattr(account, field.stored_as)
        result[field.name] = isoformat(value) if field.kind == fields.TIMESTAMP else value
    return result


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


PLAINTEXT_INPUTS = ("security", "password", "allow_plaintext")


def _check_secrets(account: ImapAccount, data: dict) -> None:
    """`account` holds the stored secret and the values `data` is about to change.

    A stored secret is kept only for the server it was given for; a secret goes out in
    plaintext only with allow_plaintext (checked when the payload touches either, so pausing
    an older plaintext mailbox still works; its syncs fail until it opts in)."""
    errors = {}
    if "password" not in data and account.password_encrypted:
        destination = {name: data.get(name, getattr(account, name)) for name in SECRET_BOUND_TO}
        if not stored_secret_usable(account, **destination):
            errors["password"] = [SECRET_FOR_NEW_SERVER]
    if any(name in data for name in PLAINTEXT_INPUTS) and plaintext_refused(
        security=data.get("security", account.security),
        allow_plaintext=bool(data.get("allow_plaintext", account.allow_plaintext)),
        has_secret=bool(data.get("password") or account.password_encrypted),
    ):
        errors["security"] = [PLAINTEXT_NOT_ALLOWED]
    if errors:
        raise ValidationError(errors)


def _assign(account: ImapAccount, data: dict) -> None:
    rules_changed = any(
        field in data and getattr(account, field) != data[field] for field in RULE_FIELDS
    )
    for name, value in data.items():
        field = fields.FIELD[name]
        setattr(account, field.stored_as, crypto.encrypt(value) if field.kind == fields.SECRET else value)
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
    _check_secrets(account, data)
    _assign(account, data)
    db.session.add(account)
    return _commit_and_schedule(account)


def update_account(account: ImapAccount, data: dict) -> ImapAccount:
    with db.session.no_autoflush:
        _check_references(data, account)
    _check_secrets(account, data)
    _assign(account, data)
    return _commit_and_schedule(account)


MAX_NAME = fields.FIELD["name"].max_length


def clone_name(name: str) -> str:
    """'<name> (copy)', then '(copy 2)', ...; the name is shortened to keep within its maximum length."""
    taken = {n.lower() for n in db.session.scalars(select(ImapAccount.name))}
    number = 1
    while True:
        suffix = " (copy)" if number == 1 else f" (copy {number})"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        if candidate.lower() not in taken:
            return candidate
        number += 1


# Every setting but the name, the password as stored (encrypted).
CLONED_FIELDS = tuple(field.stored_as for field in fields.WRITABLE if field.name != "name")


def clone_account(source: ImapAccount, overrides: dict) -> ImapAccount:
    """Copy every setting (the encrypted password and the filter too); sync state starts fresh.

    The copied password stays only if the copy keeps the source's server (see _check_secrets)."""
    copy = ImapAccount(**{field: getattr(source, field) for field in CLONED_FIELDS})
    copy.name = clone_name(source.name)
    with db.session.no_autoflush:
        _check_references(overrides, copy)
        _check_secrets(copy, overrides)
    _assign(copy, overrides)
    db.session.add(copy)
    return _commit_and_schedule(copy)


def delete_account(account: ImapAccount) -> str | None:
    """Delete the mailbox (its audit and runs go with it) and remove its schedule."""
    account_id = account.id
    db.session.delete(account)
    db.session.commit()
    return scheduling.remove(account_id)
