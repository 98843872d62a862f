"""Small, framework-free payload validation shared by the API and the forms."""
import re

MAX_ID = 2**31 - 1  # ids are INTEGER columns (PostgreSQL int4)
EMAIL_RE = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class ValidationError(Exception):
    def __init__(self, errors: dict[str, list[str]], message: str = "Invalid payload"):
        super().__init__(message)
        self.errors = errors
        self.message = message


class Conflict(Exception):
    """A unique value is already taken (answered 409)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class Checker:
    """Collects per-field errors while reading values out of a payload."""

    def __init__(self, payload, allowed: set[str]):
        self.errors: dict[str, list[str]] = {}
        if not isinstance(payload, dict):
            self.errors["_"] = ["Expected a JSON object"]
            payload = {}
        self.payload = payload
        for key, value in payload.items():
            if not storable_text(key):
                self.add("_", "Field names must be valid text")
            elif key not in allowed:
                self.add(key, "Unknown field")
            elif not all(storable_text(text) for text in _strings(value)):
                self.add(key, "Must not contain NUL characters or invalid Unicode")

    def add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def has(self, field: str) -> bool:
        return field in self.payload

    def string(self, field: str, *, required=False, max_length=255, allow_empty=False):
        value = self.payload.get(field)
        if value is None:
            if required:
                self.add(field, "This field is required")
            return None
        if not isinstance(value, str):
            self.add(field, "Must be a string")
            return None
        value = value.strip()
        if not value and not allow_empty:
            self.add(field, "This field is required" if required else "Must not be empty")
            return None
        if len(value) > max_length:
            self.add(field, f"Must be at most {max_length} characters")
            return None
        return value

    def email(self, field: str, *, required=False):
        value = self.string(field, required=required, max_length=320)
        if value is not None and not EMAIL_RE.match(value):
            self.add(field, "Must be a valid email address")
            return None
        return value.lower() if value else value

    def boolean(self, field: str):
        value = self.payload.get(field)
        if not isinstance(value, bool):
            self.add(field, "Must be true or false")
            return None
        return value

    def integer(self, field: str, *, minimum=None, maximum=None, nullable=False):
        value = self.payload.get(field)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(field, "Must be an integer" + (" or null" if nullable else ""))
            return None
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            self.add(field, f"Must be between {minimum} and {maximum}")
            return None
        return value

    def choice(self, field: str, choices):
        value = self.payload.get(field)
        if value not in choices:
            self.add(field, "Must be one of: " + ", ".join(choices))
            return None
        return value

    def identifier(self, field: str, *, nullable=False):
        return self.integer(field, minimum=1, maximum=MAX_ID, nullable=nullable)

    def raise_if_errors(self):
        if self.errors:
            raise ValidationError(self.errors)


def storable_text(text: str) -> bool:
    """Text every database can store: no NUL, no lone surrogates (from JSON \\ud800 escapes)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def parse_id(value: str | None) -> int | None:
    """A decimal id from a query string, or None when it is not one we could store."""
    if value is None or not re.fullmatch(r"[0-9]{1,10}", value):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def normalize_domain(value) -> str | None:
    if not isinstance(value, str):
        return None
    domain = value.strip().lower().lstrip("@").rstrip(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return domain if DOMAIN_RE.match(domain) else None
