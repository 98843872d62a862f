"""Mailbox lifecycle shared by the API and the pages: create, update, clone, delete.

Every change commits first, then makes the rq-scheduler job match; when Redis is down
the mailbox is still saved and `schedule_error` says the schedule is pending. A clone starts
inactive, with `schedule_error` saying so, until it is saved once. A deleted mailbox stays,
without secrets or schedule (`deleted_at`), so its runs and audit keep explaining its tickets.
"""
from types import SimpleNamespace

from sqlalchemy import delete, func, select, update

from .. import crypto
from ..extensions import db
from ..models import Company, Ticket, isoformat, utcnow
from ..validation import Conflict, ValidationError
from . import fields, oauth_access, oauth_providers, scheduling, schemas
from .credentials import (
    PLAINTEXT_NOT_ALLOWED, SECRET_BOUND_TO, SECRET_FOR_NEW_SERVER, plaintext_refused, stored_secret_usable,
)
from .models import ENCRYPTED_COLUMNS, ImapAccount, OAuthState
from .push import OFF, push_states

# What a clone's schedule_error says until its first save (the edit form, a PUT, Resume).
CLONE_NOT_SCHEDULED = "Clone: not scheduled until saved"


def live(account_id: int) -> ImapAccount | None:
    """The mailbox, unless it does not exist or was deleted."""
    account = db.session.get(ImapAccount, account_id)
    return account if account is not None and account.deleted_at is None else None


def live_query():
    return select(ImapAccount).where(ImapAccount.deleted_at.is_(None))


def deleted_query():
    return select(ImapAccount).where(ImapAccount.deleted_at.is_not(None)).order_by(
        ImapAccount.deleted_at.desc(), ImapAccount.id.desc())


def is_unsaved_clone(account: ImapAccount) -> bool:
    return account.schedule_error == CLONE_NOT_SCHEDULED


def clear_schedule_errors(accounts) -> None:
    """After a reconcile: the schedules match, so no Redis error stands (a clone's note does)."""
    for account in accounts:
        if not is_unsaved_clone(account):
            account.schedule_error = None

RULE_FIELDS = ("filter_query", "sync_known_only", "skip_auto_replies", "skip_bounces")


def account_json(account: ImapAccount, next_run_at=None, push=None) -> dict:
    """A mailbox as the API shows it: every readable field of the table, timestamps in ISO 8601.
    `push`: its IDLE state from Redis (push.push_states), for the computed push_* fields."""
    push = push or {}
    computed = {
        "next_run_at": next_run_at if account.active else None,
        "push_state": push.get("state", OFF) if account.push_enabled else OFF,
        "push_listener": push.get("listener") if account.push_enabled else None,
    }
    result = {}
    for field in fields.READABLE:
        value = computed[field.name] if field.computed else getattr(account, field.stored_as)
        if field.kind == fields.TIMESTAMP:
            value = isoformat(value)
        elif field.kind == fields.DATE and value is not None:
            value = value.isoformat()
        result[field.name] = value
    return result


def accounts_json(accounts: list[ImapAccount]) -> list[dict]:
    times = scheduling.next_run_times([a.id for a in accounts])
    pushed = push_states([a.id for a in accounts if a.push_enabled])
    return [account_json(a, times.get(a.id), pushed.get(a.id)) for a in accounts]


def one_account_json(account: ImapAccount) -> dict:
    return accounts_json([account])[0]


def _check_references(data: dict, account: ImapAccount | None) -> None:
    company_id = data.get("company_id")
    if company_id is not None and db.session.get(Company, company_id) is None:
        raise ValidationError({"company_id": [f"Company {company_id} does not exist"]})
    name = data.get("name")
    if name is not None:
        clash = db.session.scalar(select(ImapAccount).where(
            func.lower(ImapAccount.name) == name.lower(), ImapAccount.deleted_at.is_(None)))
        if clash is not None and clash is not account:
            raise Conflict("name", f"A mailbox named '{name}' already exists")


PLAINTEXT_INPUTS = ("security", "password", "allow_plaintext", "auth_method")
SECRET_FOR_NEW_ENDPOINT = "Enter it again to use it with a new token endpoint or client"
# What stored tokens are bound to: the IMAP server they open, and the client that got them.
TOKEN_BOUND_TO = SECRET_BOUND_TO + ("auth_method",)
OAUTH_SETTINGS = tuple(field.name for field in fields.WRITABLE
                       if field.name.startswith("oauth_") and field.kind != fields.SECRET)


def _final(account: ImapAccount, data: dict) -> SimpleNamespace:
    """The sign-in settings the mailbox will have once `data` is applied."""
    names = ("allow_plaintext",) + TOKEN_BOUND_TO + OAUTH_SETTINGS
    return SimpleNamespace(**{name: data.get(name, getattr(account, name)) for name in names})


def _client_binding(values) -> tuple:
    """What a stored client secret or service-account key may be sent to."""
    ends = oauth_providers.endpoints(values)
    return ends.provider.name, ends.token_url, ends.client_id


def _check_sign_in(account: ImapAccount, data: dict) -> None:
    """`account` holds the stored secrets and the values `data` is about to change.

    A stored secret is kept only for the destination it was given for: the password for its
    IMAP server, an OAuth2 client secret or key for its token endpoint and client; a secret the
    new settings no longer use is dropped. Stored tokens are dropped when the server or the
    OAuth2 client changes (the mailbox must connect again). A secret goes out in plaintext
    only with allow_plaintext (checked when the payload touches either, so pausing an older
    plaintext mailbox still works; its syncs fail until it opts in)."""
    before, after = _final(account, {}), _final(account, data)
    oauth = after.auth_method == oauth_providers.OAUTH2
    errors: dict[str, list[str]] = {}
    dropped: list[str] = []  # stored secrets the new settings cannot use
    server_moved = not stored_secret_usable(account, **{name: getattr(after, name) for name in SECRET_BOUND_TO}) \
        if account.host is not None else False
    if "password" not in data and account.password_encrypted and server_moved:
        if oauth:
            dropped.append("password_encrypted")
        else:
            errors["password"] = [SECRET_FOR_NEW_SERVER]
    if not oauth and "password" not in data and not account.password_encrypted and "password" not in errors:
        errors["password"] = ["This field is required with auth_method password"]

    client_moved = account.host is not None and _client_binding(before) != _client_binding(after)
    uses = {"oauth_client_secret": oauth_providers.uses_client_secret(vars(after)),
            "oauth_service_account_json": oauth_providers.uses_service_account(vars(after))}
    has = {}
    for name, used in uses.items():
        stored_as = fields.FIELD[name].stored_as
        if name not in data and getattr(account, stored_as) and (client_moved or not used):
            if used:
                errors[name] = [SECRET_FOR_NEW_ENDPOINT]
            else:
                dropped.append(stored_as)
        has[name] = name in data or (bool(getattr(account, stored_as)) and stored_as not in dropped)
    for name, messages in oauth_providers.oauth_problems(
        vars(after), has_client_secret=has["oauth_client_secret"],
        has_service_account=has["oauth_service_account_json"],
    ).items():
        errors.setdefault(name, messages)

    if any(name in data for name in PLAINTEXT_INPUTS) and plaintext_refused(
        security=after.security,
        allow_plaintext=bool(after.allow_plaintext),
        has_secret=oauth or bool(data.get("password") or (account.password_encrypted and "password_encrypted" not in dropped)),
    ):
        errors["security"] = [PLAINTEXT_NOT_ALLOWED]
    if data.get("import_existing") == "since" and not data.get("import_since", account.import_since):
        errors["import_since"] = ["Required with import_existing 'since'"]
    if errors:
        raise ValidationError(errors)
    for stored_as in dropped:
        setattr(account, stored_as, None)
    if account.id is not None and (
        any(getattr(before, name) != getattr(after, name) for name in TOKEN_BOUND_TO)
        or oauth_providers.endpoints(before).fingerprint() != oauth_providers.endpoints(after).fingerprint()
        or "oauth_client_secret" in data or "oauth_service_account_json" in data
    ):
        oauth_access.forget_tokens(account)


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
    _check_sign_in(account, data)
    _assign(account, data)
    db.session.add(account)
    return _commit_and_schedule(account)


def _follow_port(account: ImapAccount, data: dict) -> dict:
    """An update that moves the port and leaves `security` out gets the security the new port
    implies (993: ssl, 143: starttls; schemas.PORT_SECURITY); other ports keep the stored one."""
    if "security" in data or "port" not in data or data["port"] == account.port:
        return data
    implied = schemas.security_for_port(data["port"])
    return {**data, "security": implied} if implied else data


def update_account(account: ImapAccount, data: dict) -> ImapAccount:
    """Apply a partial update. The first save of a clone makes it active unless it says otherwise."""
    data = _follow_port(account, data)
    if is_unsaved_clone(account) and "active" not in data:
        data = {**data, "active": True}
    with db.session.no_autoflush:
        _check_references(data, account)
        _check_sign_in(account, data)
    _assign(account, data)
    return _commit_and_schedule(account)


MAX_NAME = fields.FIELD["name"].max_length


def clone_name(name: str) -> str:
    """'<name> (copy)', then '(copy 2)', ...; the name is shortened to keep within its maximum length."""
    taken = {n.lower() for n in db.session.scalars(
        select(ImapAccount.name).where(ImapAccount.deleted_at.is_(None)))}
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

    The copied password stays only if the copy keeps the source's server (see _check_sign_in);
    tokens are not copied: the copy connects by itself (a refresh token rotated by one mailbox
    would stop working for the other). The copy is inactive, without a schedule, until it is
    saved once (two mailboxes reading one folder on the same schedule is rarely what was meant):
    `schedule_error` says so, and update_account activates it unless that save says otherwise."""
    copy = ImapAccount(**{field: getattr(source, field) for field in CLONED_FIELDS})
    copy.name = clone_name(source.name)
    overrides = _follow_port(source, overrides)
    with db.session.no_autoflush:
        _check_references(overrides, copy)
        _check_sign_in(copy, overrides)
    _assign(copy, overrides)
    copy.active = False  # a new id has no cron job to remove: nothing to tell Redis
    copy.schedule_error = CLONE_NOT_SCHEDULED
    db.session.add(copy)
    db.session.commit()
    return copy


def delete_account(account: ImapAccount) -> str | None:
    """Soft delete: the mailbox leaves every list, sync and schedule, and its secrets are wiped
    (password, OAuth2 client secret, key and tokens, pending sign-ins); its sync runs and audit
    stay, readable, and so does its name on the tickets it made. Its name is free again."""
    account_id = account.id
    db.session.execute(update(Ticket).where(
        Ticket.source_mailbox_id == account_id, Ticket.source_mailbox_name.is_(None),
    ).values(source_mailbox_name=account.name))
    for column in ENCRYPTED_COLUMNS:
        setattr(account, column, None)
    oauth_access.forget_tokens(account)
    db.session.execute(delete(OAuthState).where(OAuthState.account_id == account_id))
    account.active = False
    account.schedule_error = None
    account.deleted_at = utcnow()
    db.session.commit()
    return scheduling.remove(account_id)
