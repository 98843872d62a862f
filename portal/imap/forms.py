"""The mailbox form: Flask-WTF for CSRF and rendering; every rule comes from schemas.py."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField, TextAreaField

from . import filters
from .schemas import DEFAULTS, SECURITY_MODES

CHECKBOXES = ("verify_tls", "process_unread_only", "mark_as_read", "sync_known_only", "active")
TEXT_FIELDS = ("name", "host", "username", "folder", "schedule_cron")
INTEGER_FIELDS = ("port", "priority")


class MailboxForm(FlaskForm):
    name = StringField("Name")
    host = StringField("IMAP host")
    port = StringField("Port", default=str(DEFAULTS["port"]))
    security = SelectField("Security", choices=[(m, {"ssl": "SSL/TLS", "starttls": "STARTTLS", "none": "None (plaintext)"}[m]) for m in SECURITY_MODES], default="ssl")
    verify_tls = BooleanField("Verify TLS certificate", default=True)
    username = StringField("Username")
    password = PasswordField("Password")
    folder = StringField("Folder", default="INBOX")
    company_id = SelectField("Company", choices=[], default="")
    priority = StringField("Priority", default=str(DEFAULTS["priority"]))
    process_unread_only = BooleanField("Only process unread messages", default=True)
    mark_as_read = BooleanField("Mark processed mail as read", default=True)
    sync_known_only = BooleanField("Only known senders (portal users and staff contacts)", default=False)
    schedule_cron = StringField("Schedule (cron)", default=DEFAULTS["schedule_cron"])
    filter_query = TextAreaField("Filter (JSON)")
    active = BooleanField("Active", default=True)

    def set_companies(self, companies) -> None:
        self.company_id.choices = [("", "— none —")] + [(str(c.id), c.name) for c in companies]

    def load(self, account) -> None:
        """Fill the form from a stored mailbox (never the password)."""
        import json

        for field in TEXT_FIELDS:
            getattr(self, field).data = getattr(account, field)
        for field in INTEGER_FIELDS:
            getattr(self, field).data = str(getattr(account, field))
        for field in CHECKBOXES:
            getattr(self, field).data = getattr(account, field)
        self.security.data = account.security
        self.company_id.data = str(account.company_id) if account.company_id else ""
        self.filter_query.data = json.dumps(account.filter_query, indent=2) if account.filter_query else ""

    def to_payload(self, *, editing: bool) -> tuple[dict, dict[str, list[str]]]:
        """The API payload this form stands for, plus errors found before schema validation."""
        payload, errors = {}, {}
        for field in TEXT_FIELDS:
            payload[field] = (getattr(self, field).data or "").strip()
        for field in INTEGER_FIELDS:
            raw = (getattr(self, field).data or "").strip()
            try:
                payload[field] = int(raw)
            except ValueError:
                errors[field] = ["Must be an integer"]
        for field in CHECKBOXES:
            payload[field] = bool(getattr(self, field).data)
        payload["security"] = self.security.data
        company = self.company_id.data or ""
        payload["company_id"] = int(company) if company.isdigit() else None
        password = self.password.data or ""
        if password or not editing:
            payload["password"] = password
        query, problems = filters.parse_filter_text(self.filter_query.data or "")
        if problems:
            errors["filter_query"] = problems
        else:
            payload["filter_query"] = query if query else None
        return payload, errors
