"""Mailbox payload validation: the one source of truth for the API and the forms (pure)."""
from crontab import CronTab

from ..validation import Checker, ValidationError
from . import filters

SECURITY_MODES = ("ssl", "starttls", "none")
MAX_PRIORITY = 32767
MAX_CRON_LENGTH = 200

DEFAULTS = {
    "port": 993,
    "security": "ssl",
    "verify_tls": True,
    "folder": "INBOX",
    "company_id": None,
    "priority": 100,
    "process_unread_only": True,
    "mark_as_read": True,
    "sync_known_only": False,
    "schedule_cron": "*/15 * * * *",
    "filter_query": None,
    "active": True,
}
REQUIRED = ("name", "host", "username", "password")
WRITABLE = set(DEFAULTS) | set(REQUIRED)
BOOLEANS = ("verify_tls", "process_unread_only", "mark_as_read", "sync_known_only", "active")


def cron_error(expression) -> str | None:
    """Why a cron string is unusable, checked with the parser rq-scheduler runs it with."""
    if not isinstance(expression, str) or not expression.strip():
        return "Must be a cron expression such as '*/15 * * * *'"
    if len(" ".join(expression.split())) > MAX_CRON_LENGTH:
        return f"Must be at most {MAX_CRON_LENGTH} characters"
    fields = expression.split()
    if len(fields) != 5:
        return f"Must have 5 fields (minute hour day month weekday); got {len(fields)}"
    try:
        cron = CronTab(" ".join(fields))
    except (ValueError, KeyError, IndexError) as exc:
        return f"Invalid cron expression: {exc}"
    if cron.next(default_utc=True) is None:
        return "This cron expression never runs"
    return None


def validate_account(payload, *, partial: bool) -> dict:
    """Clean a create (partial=False, defaults filled in) or update (partial=True) payload."""
    check = Checker(payload, WRITABLE)
    present = set(check.payload) & WRITABLE
    wanted = present if partial else WRITABLE
    data = {}

    def take(field, value):
        if value is not None or field == "company_id" or field == "filter_query":
            data[field] = value

    for field in ("name", "host", "username"):
        if field in wanted:
            limit = {"name": 200, "host": 255, "username": 320}[field]
            take(field, check.string(field, required=True, max_length=limit))
    if "password" in wanted:
        value = check.payload.get("password")
        if not isinstance(value, str) or value == "":
            check.add("password", "This field is required" if value in (None, "") else "Must be a string")
        elif len(value) > 1024:
            check.add("password", "Must be at most 1024 characters")
        else:
            data["password"] = value
    for field in BOOLEANS:
        if field in present:
            take(field, check.boolean(field))
    if "port" in present:
        take("port", check.integer("port", minimum=1, maximum=65535))
    if "priority" in present:
        take("priority", check.integer("priority", minimum=0, maximum=MAX_PRIORITY))
    if "security" in present:
        take("security", check.choice("security", SECURITY_MODES))
    if "folder" in present:
        take("folder", check.string("folder", required=True, max_length=500))
    if "company_id" in present:
        value = check.identifier("company_id", nullable=True)
        if "company_id" not in check.errors:
            data["company_id"] = value
    if "schedule_cron" in present:
        error = cron_error(check.payload["schedule_cron"])
        if error:
            check.add("schedule_cron", error)
        else:
            data["schedule_cron"] = " ".join(check.payload["schedule_cron"].split())
    if "filter_query" in present:
        value = check.payload["filter_query"]
        if value is not None and not isinstance(value, dict):
            check.add("filter_query", "Must be a JSON object or null")
        else:
            problems = filters.validate(value)
            for problem in problems:
                check.add("filter_query", problem)
            if not problems:
                data["filter_query"] = value or None
    check.raise_if_errors()
    if not partial:
        for field, default in DEFAULTS.items():
            data.setdefault(field, default)
    return data


__all__ = ["ValidationError", "validate_account", "cron_error", "DEFAULTS", "SECURITY_MODES"]
