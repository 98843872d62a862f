"""The mailbox form: Flask-WTF for CSRF and rendering. Its fields, labels, defaults and help
texts come from the field table; its rules are schemas.py's (the form only turns text into a
payload)."""
import json

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField, TextAreaField

from . import fields, filters
from .oauth_providers import OAUTH2


def _form_field(field: fields.Field):
    default = None if field.required else field.default
    options = {"label": field.label, "description": field.help}
    if field.kind == fields.BOOLEAN:
        return BooleanField(default=default, **options)
    if field.kind == fields.CHOICE:
        blank = [("", "—")] if field.nullable else []
        return SelectField(choices=blank + list(field.choices), default=default or "", **options)
    if field.kind == fields.REFERENCE:
        return SelectField(choices=[], default="", **options)  # choices: set_companies
    if field.kind == fields.SECRET:
        return TextAreaField(**options) if field.multiline else PasswordField(**options)
    if field.kind == fields.FILTER:
        return TextAreaField(**options)
    if field.kind == fields.INTEGER:
        return StringField(default=str(default), **options)
    return StringField(default=default, **options)


def _names(*kinds) -> tuple[str, ...]:
    return tuple(field.name for field in fields.WRITABLE if field.kind in kinds)


TEXT_FIELDS = _names(fields.TEXT, fields.CRON)
OPTIONAL_FIELDS = _names(fields.OPTIONAL_TEXT, fields.URL, fields.DATE)
INTEGER_FIELDS = _names(fields.INTEGER)
CHECKBOXES = _names(fields.BOOLEAN)
CHOICE_FIELDS = _names(fields.CHOICE)
OAUTH_SECRETS = tuple(name for name in _names(fields.SECRET) if name != "password")


class MailboxForm(FlaskForm):
    def set_companies(self, companies) -> None:
        self.company_id.choices = [("", "— none —")] + [(str(c.id), c.name) for c in companies]

    def load(self, account) -> None:
        """Fill the form from a stored mailbox (never the password)."""
        for name in TEXT_FIELDS + CHECKBOXES:
            getattr(self, name).data = getattr(account, name)
        for name in CHOICE_FIELDS + OPTIONAL_FIELDS:
            value = getattr(account, name)
            getattr(self, name).data = value.isoformat() if hasattr(value, "isoformat") else (value or "")
        for name in INTEGER_FIELDS:
            getattr(self, name).data = str(getattr(account, name))
        self.company_id.data = str(account.company_id) if account.company_id else ""
        self.filter_query.data = json.dumps(account.filter_query, indent=2) if account.filter_query else ""

    def to_payload(self, *, editing: bool) -> tuple[dict, dict[str, list[str]]]:
        """The API payload this form stands for, plus errors found before schema validation."""
        payload, errors = {}, {}
        for name in TEXT_FIELDS:
            payload[name] = (getattr(self, name).data or "").strip()
        for name in INTEGER_FIELDS:
            raw = (getattr(self, name).data or "").strip()
            try:
                payload[name] = int(raw)
            except ValueError:
                errors[name] = ["Must be an integer"]
        for name in CHECKBOXES:
            payload[name] = bool(getattr(self, name).data)
        for name in OPTIONAL_FIELDS:
            payload[name] = (getattr(self, name).data or "").strip() or None
        for name in CHOICE_FIELDS:
            payload[name] = getattr(self, name).data or None
        for name in OAUTH_SECRETS:  # blank: keep the stored one
            if getattr(self, name).data:
                payload[name] = getattr(self, name).data
        if payload.get("auth_method") == OAUTH2 and not payload.get("host"):
            payload.pop("host")  # the provider's server (oauth_providers.with_provider_defaults)
        company = self.company_id.data or ""
        payload["company_id"] = int(company) if company.isdigit() else None
        password = self.password.data or ""
        if password or not (editing or payload.get("auth_method") == OAUTH2):
            payload["password"] = password
        query, problems = filters.parse_filter_text(self.filter_query.data or "")
        if problems:
            errors["filter_query"] = problems
        else:
            payload["filter_query"] = query if query else None
        return payload, errors


def _add_table_fields(form_class) -> None:
    for field in fields.WRITABLE:
        setattr(form_class, field.name, _form_field(field))


_add_table_fields(MailboxForm)
