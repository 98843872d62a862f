"""Mailbox payload validation for the API and the form, read off the field table (pure)."""
from datetime import date

from crontab import CronTab

from ..validation import Checker, ValidationError
from . import fields, filters, oauth_providers
from .fields import DEFAULTS, MAX_CRON_LENGTH, MAX_PRIORITY, SECURITY_MODES

WRITABLE = frozenset(field.name for field in fields.WRITABLE)
# What the server reports (computed ones included): ignored in a payload, so that a mailbox's
# JSON from GET can be sent back as is, to PUT, to clone or to create. Unknown names stay errors.
READ_ONLY = frozenset(field.name for field in fields.FIELDS if field.read_only)
# The security a port implies when a payload leaves `security` out: implicit TLS on 993, STARTTLS
# on 143 (RFC 8314). Any other port keeps the field's default (ssl) on create.
PORT_SECURITY = {993: "ssl", 143: "starttls"}


def security_for_port(port) -> str | None:
    return PORT_SECURITY.get(port) if isinstance(port, int) and not isinstance(port, bool) else None


def without_read_only(payload):
    """The payload minus the fields the server reports; anything that is not a dict as is."""
    if not isinstance(payload, dict):
        return payload
    return {name: value for name, value in payload.items() if name not in READ_ONLY}


def cron_error(expression) -> str | None:
    """Why a cron string is unusable, checked with the parser rq-scheduler runs it with."""
    if not isinstance(expression, str) or not expression.strip():
        return "Must be a cron expression such as '*/15 * * * *'"
    if len(" ".join(expression.split())) > MAX_CRON_LENGTH:
        return f"Must be at most {MAX_CRON_LENGTH} characters"
    parts = expression.split()
    if len(parts) != 5:
        return f"Must have 5 fields (minute hour day month weekday); got {len(parts)}"
    try:
        cron = CronTab(" ".join(parts))
    except (ValueError, KeyError, IndexError) as exc:
        return f"Invalid cron expression: {exc}"
    if cron.next(default_utc=True) is None:
        return "This cron expression never runs"
    return None


def _text(check: Checker, field: fields.Field):
    return check.string(field.name, required=True, max_length=field.max_length)


NOT_GIVEN = object()  # a secret sent as null: the stored one is kept


def _secret(check: Checker, field: fields.Field):
    # Taken as typed (a password may start or end with a space); never echoed in a message.
    value = check.payload.get(field.name)
    if value is None:
        return NOT_GIVEN
    if not isinstance(value, str) or value == "":
        check.add(field.name, "This field is required" if value == "" else "Must be a string")
    elif len(value) > field.max_length:
        check.add(field.name, f"Must be at most {field.max_length} characters")
    elif field.name == "oauth_service_account_json" and (problem := oauth_providers.service_account_problem(value)):
        check.add(field.name, problem)
    else:
        return value
    return None


def _optional_text(check: Checker, field: fields.Field):
    if check.payload.get(field.name) is None:
        return None
    return check.string(field.name, max_length=field.max_length, allow_empty=True) or None


def _date(check: Checker, field: fields.Field):
    value = check.payload.get(field.name)
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        check.add(field.name, "Must be a date (YYYY-MM-DD) or null")
        return None


def _url(check: Checker, field: fields.Field):
    value = _optional_text(check, field)
    if value is not None and (problem := oauth_providers.url_problem(value)):
        check.add(field.name, problem)
        return None
    return value


def _integer(check: Checker, field: fields.Field):
    return check.integer(field.name, minimum=field.minimum, maximum=field.maximum, nullable=field.nullable)


def _boolean(check: Checker, field: fields.Field):
    return check.boolean(field.name)


def _choice(check: Checker, field: fields.Field):
    if field.nullable and check.payload.get(field.name) is None:
        return None
    return check.choice(field.name, field.choice_values)


def _cron(check: Checker, field: fields.Field):
    expression = check.payload[field.name]
    error = cron_error(expression)
    if error:
        check.add(field.name, error)
        return None
    return " ".join(expression.split())


def _filter(check: Checker, field: fields.Field):
    value = check.payload[field.name]
    if value is not None and not isinstance(value, dict):
        check.add(field.name, "Must be a JSON object or null")
        return None
    for problem in filters.validate(value):
        check.add(field.name, problem)
    return value or None  # {} means no filter, stored as null


def _check_sign_in_on_create(check: Checker, data: dict) -> None:
    """A new mailbox has nothing stored: its sign-in needs what the payload brings (a password,
    or the OAuth2 client its flow uses). Updates are checked against the stored mailbox (accounts.py)."""
    values = {**{name: DEFAULTS.get(name) for name in ("auth_method", "oauth_provider", "oauth_flow")}, **data}
    if data.get("import_existing") == "since" and not data.get("import_since") and "import_since" not in check.errors:
        check.add("import_since", "Required with import_existing 'since'")
    if values["auth_method"] == oauth_providers.PASSWORD:
        if "password" not in data and "password" not in check.errors:
            check.add("password", "This field is required")
        return
    problems = oauth_providers.oauth_problems(
        values, has_client_secret="oauth_client_secret" in data,
        has_service_account="oauth_service_account_json" in data,
    )
    for name, messages in problems.items():
        if name not in check.errors:
            for message in messages:
                check.add(name, message)


READERS = {
    fields.TEXT: _text,
    fields.SECRET: _secret,
    fields.OPTIONAL_TEXT: _optional_text,
    fields.URL: _url,
    fields.DATE: _date,
    fields.INTEGER: _integer,
    fields.REFERENCE: _integer,
    fields.BOOLEAN: _boolean,
    fields.CHOICE: _choice,
    fields.CRON: _cron,
    fields.FILTER: _filter,
}


def validate_account(payload, *, partial: bool) -> dict:
    """Clean a create (partial=False, defaults filled in) or update (partial=True) payload.

    Rules across fields that need the stored mailbox (a password or an OAuth2 client for the
    chosen sign-in) are accounts.py's. Read-only fields are dropped first (see READ_ONLY). On create,
    a payload without `security` gets the one its port implies (PORT_SECURITY); an update that
    moves the port is given the same rule by accounts.py, which knows the stored port."""
    payload = without_read_only(payload)
    if not partial and isinstance(payload, dict) and "security" not in payload:
        if implied := security_for_port(payload.get("port")):
            payload = {**payload, "security": implied}
    check = Checker(oauth_providers.with_provider_defaults(payload), WRITABLE)
    data = {}
    for field in fields.WRITABLE:
        if field.name in check.payload or (field.required and not partial):
            value = READERS[field.kind](check, field)
            if field.name not in check.errors and value is not NOT_GIVEN:
                data[field.name] = value
    if not partial:
        _check_sign_in_on_create(check, data)
    check.raise_if_errors()
    if not partial:
        for name, default in DEFAULTS.items():
            data.setdefault(name, default)
    return data


__all__ = [
    "ValidationError", "validate_account", "security_for_port", "READ_ONLY", "cron_error", "DEFAULTS",
    "SECURITY_MODES", "MAX_PRIORITY", "MAX_CRON_LENGTH",
]
