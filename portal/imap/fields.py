"""The mailbox field table: every field of a mailbox as the API, the form and the document see it.

Declared once here; derived from it: payload validation (schemas.py), the form (forms.py), the
JSON of a mailbox (accounts.py), the OpenAPI schemas (openapi.py) and the column lengths of
models.py. The migration stays explicit. Pure: no Flask, no IO.
"""
from dataclasses import dataclass

from ..validation import MAX_ID
from .oauth_providers import AUTH_METHODS, FLOWS, PROVIDER_CHOICES, STATUSES

# Kinds: how a value is checked, rendered and documented.
TEXT = "text"  # stripped, must not be blank, at most max_length characters
SECRET = "secret"  # taken as typed (not stripped), stored encrypted, never returned
OPTIONAL_TEXT = "optional_text"  # stripped; blank or null is stored as null
URL = "url"  # an https:// endpoint (oauth_providers.url_problem), or null
DATE = "date"  # YYYY-MM-DD, or null
INTEGER = "integer"  # within minimum..maximum
BOOLEAN = "boolean"
CHOICE = "choice"  # one of `choices`
REFERENCE = "reference"  # the id of another row, or null
CRON = "cron"  # 5-field cron; max_length applies once whitespace is collapsed
FILTER = "filter"  # the filter DSL (filters.py), or null
# Read-only kinds: what the server reports.
ID = "id"
STRING = "string"
TIMESTAMP = "timestamp"

REQUIRED = object()  # the default of a field that a create must send

SECURITY_MODES = ("ssl", "starttls", "none")
MAX_PRIORITY = 32767  # SMALLINT range
MAX_CRON_LENGTH = 200
UTC_TIMESTAMP = "UTC, ISO 8601 with milliseconds and a Z suffix, e.g. 2024-05-01T09:30:00.512Z"


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    label: str = ""  # on the form
    help: str = ""  # under the form field
    description: str = ""  # in the API document
    default: object = REQUIRED
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    nullable: bool = False
    write_only: bool = False
    read_only: bool = False
    computed: bool = False  # not stored on the mailbox: the serializer is handed the value
    attribute: str = ""  # the model attribute, when it is not `name`
    examples: tuple = ()
    multiline: bool = False  # a secret typed into a text area (a JSON key), not a password box

    @property
    def required(self) -> bool:
        """A create must send it (no default)."""
        return not self.read_only and self.default is REQUIRED

    @property
    def choice_values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    @property
    def stored_as(self) -> str:
        return self.attribute or self.name


FIELDS = (
    Field("id", ID, read_only=True, description="Database id"),
    Field("name", TEXT, label="Name", max_length=200, description="Unique, case-insensitively (409)"),
    Field("host", TEXT, label="IMAP host", max_length=255),
    Field("port", INTEGER, label="Port", default=993, minimum=1, maximum=65535),
    Field(
        "security", CHOICE, label="Security", default="ssl",
        choices=(("ssl", "SSL/TLS"), ("starttls", "STARTTLS"), ("none", "None (plaintext)")),
    ),
    Field("verify_tls", BOOLEAN, label="Verify TLS certificate", default=True),
    Field(
        "allow_plaintext", BOOLEAN, label="Allow plaintext sign-in",
        default=False, description="Required with security 'none' (422 otherwise): the password is sent unencrypted",
        help="Needed with security None; only for a server on a network you trust.",
    ),
    Field(
        "auth_method", CHOICE, label="Sign-in", default="password", choices=AUTH_METHODS,
        description="password: LOGIN with the password; oauth2: AUTHENTICATE XOAUTH2 with a token (docs/oauth2.md)",
    ),
    Field("username", TEXT, label="Username", max_length=320),
    Field(
        "password", SECRET, label="Password", max_length=1024, write_only=True, default=None,
        attribute="password_encrypted", description="Stored encrypted, never returned; required with auth_method password",
    ),
    Field("has_password", BOOLEAN, read_only=True),
    Field(
        "oauth_provider", CHOICE, label="OAuth2 provider", default=None, nullable=True, choices=PROVIDER_CHOICES,
        description="microsoft / google fill in host, port, security, endpoints and scope",
    ),
    Field(
        "oauth_flow", CHOICE, label="OAuth2 flow", default=None, nullable=True, choices=FLOWS,
        help="Authorization code: an admin signs in once. Client credentials: Microsoft app-only. "
             "Service account: Google domain-wide delegation.",
        description="authorization_code when null; microsoft: authorization_code or client_credentials; "
                    "google: authorization_code or service_account",
    ),
    Field("oauth_client_id", OPTIONAL_TEXT, label="Client ID", default=None, nullable=True, max_length=500),
    Field(
        "oauth_client_secret", SECRET, label="Client secret", max_length=4096, write_only=True, default=None,
        nullable=True,
        attribute="oauth_client_secret_encrypted", description="Stored encrypted, never returned",
        help="Kept when left blank.",
    ),
    Field("has_oauth_client_secret", BOOLEAN, read_only=True),
    Field(
        "oauth_service_account_json", SECRET, label="Service account key (JSON)", max_length=16384,
        write_only=True, default=None, nullable=True, multiline=True, attribute="oauth_service_account_encrypted",
        description="The service account's JSON key; stored encrypted, never returned",
        help="Paste the JSON key file. Kept when left blank.",
    ),
    Field("has_oauth_service_account", BOOLEAN, read_only=True),
    Field(
        "oauth_tenant", OPTIONAL_TEXT, label="Tenant (Microsoft)", default=None, nullable=True, max_length=200,
        description="Tenant ID or domain; organizations when null", help="Tenant ID or domain; blank: organizations.",
    ),
    Field(
        "oauth_scope", OPTIONAL_TEXT, label="Scope", default=None, nullable=True, max_length=1000,
        description="The provider's default when null", help="Blank: the provider's default.",
    ),
    Field(
        "oauth_authorize_url", URL, label="Authorize URL", default=None, nullable=True, max_length=2000,
        description="Required for custom; overrides the provider's otherwise",
    ),
    Field(
        "oauth_token_url", URL, label="Token URL", default=None, nullable=True, max_length=2000,
        description="Required for custom; overrides the provider's otherwise",
    ),
    Field(
        "oauth_status", STRING, read_only=True, examples=("connected",),
        description="One of: " + ", ".join(STATUSES),
    ),
    Field("oauth_account", STRING, read_only=True, nullable=True, description="Whom the tokens belong to, when known"),
    Field("oauth_expires_at", TIMESTAMP, read_only=True, nullable=True, description="When the access token expires"),
    Field("oauth_error", STRING, read_only=True, nullable=True, description="The last OAuth2 sign-in problem"),
    Field(
        "folder", TEXT, label="Folder", default="INBOX", max_length=500, description="IMAP folder to read",
        help="Pick one after testing the connection, or type it.",
    ),
    Field(
        "company_id", REFERENCE, label="Company", default=None, nullable=True, minimum=1, maximum=MAX_ID,
        description="Tickets of this mailbox belong to this company; null: none",
        help="Used when the sender's domain matches no company.",
    ),
    Field(
        "priority", INTEGER, label="Priority", default=100, minimum=0, maximum=MAX_PRIORITY,
        description="Lower numbers sync first", help="Lower runs first (0 before 10).",
    ),
    Field("process_unread_only", BOOLEAN, label="Only process unread messages", default=True),
    Field("mark_as_read", BOOLEAN, label="Mark processed mail as read", default=True),
    Field(
        "skip_auto_replies", BOOLEAN, label="Skip out-of-office and auto-replies", default=True,
        description="Skip Auto-Submitted: auto-replied, X-Autoreply, X-Autorespond and Precedence: auto_reply "
                    "(outcome skipped_auto_reply). Alerts, lists and bulk mail are imported either way",
    ),
    Field(
        "skip_bounces", BOOLEAN, label="Skip bounces (delivery failure reports)", default=True,
        description="Skip delivery status notifications: multipart/report; report-type=delivery-status, or a "
                    "null Return-Path (outcome skipped_bounce)",
    ),
    Field(
        "import_existing", CHOICE, label="Existing mail", default="all",
        choices=(("all", "Import all"), ("since", "Import since a date"),
                 ("none", "None: only mail that arrives from now on")),
        description="What the first syncs take of the mail already in the folder: all of it, what arrived "
                    "on or after import_since, or none (only mail that arrives after the mailbox is created)",
    ),
    Field(
        "import_since", DATE, label="Import since", default=None, nullable=True,
        description="With import_existing 'since': older messages are not candidates (UID SEARCH SINCE)",
        help="With “Import since a date”.",
    ),
    Field(
        "sync_known_only", BOOLEAN, label="Only known senders (portal users and staff contacts)", default=False,
        description="Only import mail from known senders (users, staff, company domains)",
    ),
    Field(
        "schedule_cron", CRON, label="Schedule (cron)", default="*/15 * * * *", max_length=MAX_CRON_LENGTH,
        description="5-field cron (minute hour day month weekday), UTC; must run at least once",
        help="minute hour day month weekday, in UTC.",
    ),
    Field(
        "filter_query", FILTER, label="Filter (JSON)", default=None, nullable=True,
        help="Optional. Only messages that match are processed.",
    ),
    Field("active", BOOLEAN, label="Active", default=True, description="Inactive mailboxes have no schedule"),
    Field(
        "push_enabled", BOOLEAN, label="Push (IMAP IDLE): sync as soon as mail arrives", default=False,
        description="A listener process holds an IDLE connection and syncs on new mail; the cron schedule stays "
                    "as a fallback",
    ),
    Field(
        "push_state", STRING, read_only=True, computed=True, examples=("listening",),
        description="IMAP IDLE push, from the listeners: listening, reconnecting, unsupported (the server has no "
                    "IDLE: cron only) or off (push disabled, mailbox paused, or no listener holds it)",
    ),
    Field(
        "push_listener", STRING, read_only=True, nullable=True, computed=True, examples=("host:1234",),
        description="The listener (listener.py --name, default host:pid) watching the mailbox; null when none",
    ),
    Field(
        "scheduled_task_id", STRING, read_only=True, nullable=True,
        description="`imap_sync:<id>` while active, else null", examples=("imap_sync:7",),
    ),
    Field(
        "next_run_at", TIMESTAMP, read_only=True, nullable=True, computed=True,
        description="From the scheduler; null when inactive or Redis is down",
    ),
    Field(
        "schedule_error", STRING, read_only=True, nullable=True,
        description="Set when the schedule could not be written (Redis down), and on a clone until it is saved "
                    "once (\"Clone: not scheduled until saved\")",
    ),
    Field(
        "import_left_out", INTEGER, read_only=True, minimum=0,
        description="Messages in the folder left out by import_existing at the last sync",
    ),
    Field("last_synced_at", TIMESTAMP, read_only=True, nullable=True),
    Field("last_sync_status", STRING, read_only=True, nullable=True, examples=("succeeded",)),
    Field("last_error", STRING, read_only=True, nullable=True),
    Field("created_at", TIMESTAMP, read_only=True, description=UTC_TIMESTAMP),
    Field("updated_at", TIMESTAMP, read_only=True, description=UTC_TIMESTAMP),
    Field("deleted_at", TIMESTAMP, read_only=True, nullable=True,
          description="Set on a deleted mailbox, whose audit and sync history are kept"),
)

FIELD = {field.name: field for field in FIELDS}
WRITABLE = tuple(field for field in FIELDS if not field.read_only)
READABLE = tuple(field for field in FIELDS if not field.write_only)
REQUIRED_ON_CREATE = tuple(field.name for field in WRITABLE if field.required)
# Secrets have no default value to store: left out, nothing is stored.
DEFAULTS = {field.name: field.default for field in WRITABLE if not field.required and field.kind != SECRET}
MAX_LENGTH = {field.name: field.max_length for field in FIELDS if field.max_length}
