"""Mailbox payload validation for the API and the form, read off the field table (pure)."""
from crontab import CronTab

from ..validation import Checker, ValidationError
from . import fields, filters
from .fields import DEFAULTS, MAX_CRON_LENGTH, MAX_PRIORITY, SECURITY_MODES

WRITABLE = frozenset(field.name for field in fields.WRITABLE)


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


def _secret(check: Checker, field: fields.Field):
    # Taken as typed (a password may start or end with a space); never echoed in a message.
    value = check.payload.get(field.name)
    if not isinstance(value, str) or value == "":
        check.add(field.name, "This field is required" if value in (None, "") else "Must be a string")
    elif len(value) > field.max_length:
        check.add(field.name, f"Must be at most {field.max_length} characters")
    else:
        return value
    return None


def _integer(check: Checker, field: fields.Field):
    return check.integer(field.name, minimum=field.minimum, maximum=field.maximum, nullable=field.nullable)


def _boolean(check: Checker, field: fields.Field):
    return check.boolean(field.name)


def _choice(check: Checker, field: fields.Field):
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


READERS = {
    fields.TEXT: _text,
    fields.SECRET: _secret,
    fields.INTEGER: _integer,
    fields.REFERENCE: _integer,
    fields.BOOLEAN: _boolean,
    fields.CHOICE: _choice,
    fields.CRON: _cron,
    fields.FILTER: _filter,
}


def validate_account(payload, *, partial: bool) -> dict:
    """Clean a create (partial=False, defaults filled in) or update (partial=True) payload."""
    check = Checker(payload, WRITABLE)
    data = {}
    for field in fields.WRITABLE:
        if field.name in check.payload or (field.required and not partial):
            value = READERS[field.kind](check, field)
            if field.name not in check.errors:
                data[field.name] = value
    check.raise_if_errors()
    if not partial:
        for name, default in DEFAULTS.items():
            data.setdefault(name, default)
    return data


__all__ = [
    "ValidationError", "validate_account", "cron_error", "DEFAULTS", "SECURITY_MODES", "MAX_PRIORITY",
    "MAX_CRON_LENGTH",
]
