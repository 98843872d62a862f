"""The OpenAPI 3.1 document of the JSON API (served at GET /api/openapi.json).

Static data, built by small functions. It mirrors the code: the request rules of
portal/platform/api.py, portal/imap/schemas.py and portal/validation.py, the response
shapes of portal/platform/serializers.py, portal/imap/accounts.py and portal/imap/audit.py,
and the error handlers of portal/__init__.py and the API blueprints.
tests/integration/test_openapi.py checks that every /api/ route is here and fuzzes the
document against the app with schemathesis.
"""
from copy import deepcopy

from .. import models, validation
from ..imap import filters, schemas
from ..imap import models as imap_models

OPENAPI_VERSION = "3.1.0"

# Taken from the code, so the document cannot drift from it.
TICKET_STATUSES = list(models.TICKET_STATUSES)
TICKET_PRIORITIES = list(models.TICKET_PRIORITIES)
TICKET_SOURCES = list(models.TICKET_SOURCES)
SECURITY_MODES = list(schemas.SECURITY_MODES)
OUTCOMES = list(imap_models.OUTCOMES)
RUN_TRIGGERS = list(imap_models.RUN_TRIGGERS)
RUN_STATUSES = list(imap_models.RUN_STATUSES)
FILTER_FIELDS = sorted(filters.FIELDS)
# Operator -> kind of value.
FILTER_OPERATORS = dict(filters.VALUE_KINDS)
MAX_FILTER_PATTERN = filters.MAX_PATTERN_LENGTH
MAX_PRIORITY = schemas.MAX_PRIORITY
MAX_ID = validation.MAX_ID

# Checker.email: EMAIL_RE in portal/validation.py.
EMAIL_PATTERN = r'^[^@\s<>"]+@[^@\s<>"]+\.[^@\s<>"]+$'
# Checker.string strips and rejects blank values.
NOT_BLANK = r"\S"
CRON_PATTERN = r"^\s*\S+(\s+\S+){4}\s*$"


# --- helpers -----------------------------------------------------------------


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    """`schema` or null (OpenAPI 3.1 / JSON Schema 2020-12)."""
    if "$ref" in schema or "oneOf" in schema or "anyOf" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    schema = deepcopy(schema)
    kind = schema["type"]
    schema["type"] = [kind, "null"] if isinstance(kind, str) else [*kind, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def obj(properties: dict, required=(), *, closed=True, **extra) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def response_obj(properties: dict, **extra) -> dict:
    """A response object: every key is always present, and no others."""
    return obj(properties, required=list(properties), **extra)


def integer(minimum=None, maximum=None, **extra) -> dict:
    schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    schema.update(extra)
    return schema


def string(**extra) -> dict:
    return {"type": "string", **extra}


def text_field(max_length: int, description: str = "") -> dict:
    """A Checker.string field: stripped, must not be blank, at most `max_length` characters."""
    schema = string(minLength=1, maxLength=max_length, pattern=NOT_BLANK)
    if description:
        schema["description"] = description
    return schema


ID = integer(1, description="Database id")
TIMESTAMP = string(format="date-time", description="UTC, ISO 8601 with a Z suffix, e.g. 2024-05-01T09:30:00Z")
BOOLEAN = {"type": "boolean"}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def response(description: str, schema_name: str | None = None) -> dict:
    result = {"description": description}
    if schema_name:
        result["content"] = json_content(ref(schema_name))
    return result


def error_ref(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


# --- components: shared shapes -----------------------------------------------


def error_schemas() -> dict:
    errors_map = {
        "type": "object",
        "description": "Messages by field name; `_` is about the body as a whole.",
        "additionalProperties": {"type": "array", "items": string(), "minItems": 1},
    }
    return {
        "Error": obj({"error": string(description="What went wrong")}, ["error"]),
        "ValidationError": obj(
            {"error": string(examples=["Invalid payload"]), "errors": errors_map},
            ["error", "errors"],
            description="A payload or query parameter failed validation; every problem is listed.",
        ),
        "ConflictError": obj(
            {"error": string(), "errors": errors_map},
            ["error"],
            description="A unique value is taken. `errors` names the field when the check "
            "happened before the write; a race caught by the database gives `error` only.",
        ),
    }


def page_of(item_schema: str, description: str) -> dict:
    return response_obj(
        {
            "items": {"type": "array", "items": ref(item_schema)},
            "page": integer(1),
            "per_page": integer(1, 200),
            "total": integer(0, description="Number of matching rows over all pages"),
        },
        description=description,
    )


# --- components: companies, staff, users ---------------------------------------


def company_schemas() -> dict:
    domains = {
        "type": ["array", "null"],
        "items": string(
            maxLength=253,
            description="A domain name; lower-cased, a leading `@` and a trailing `.` are dropped, "
            "IDN names are stored in punycode",
            examples=["example.com"],
        ),
        "description": "Email domains whose senders belong to the company. Duplicates are merged. "
        "Omitted or null on create: none. null on update: remove them all. "
        "A domain can belong to one company only (409).",
    }
    name = text_field(200, "Unique, case-insensitively (409)")
    return {
        "Company": response_obj(
            {
                "id": ID,
                "name": string(),
                "email_domains": {"type": "array", "items": string(), "description": "Sorted"},
                "created_at": TIMESTAMP,
            }
        ),
        "CompanyCreate": obj({"name": name, "email_domains": domains}, ["name"]),
        "CompanyUpdate": obj(
            {"name": name, "email_domains": domains}, description="Only the fields sent are changed."
        ),
        "CompanyPage": page_of("Company", "Companies by name"),
    }


def staff_schemas() -> dict:
    company_id = integer(1, MAX_ID, description="An existing company (422 otherwise)")
    email = string(
        maxLength=320, pattern=EMAIL_PATTERN, description="Stored lower-case; unique within the company (409)"
    )
    name = {"type": ["string", "null"], "maxLength": 200, "description": "Stripped; null is ignored"}
    return {
        "Staff": response_obj(
            {"id": ID, "company_id": ID, "email": string(), "name": string(), "created_at": TIMESTAMP},
            description="A contact person of a company",
        ),
        "StaffCreate": obj({"company_id": company_id, "email": email, "name": name}, ["company_id", "email"]),
        "StaffUpdate": obj(
            {"company_id": company_id, "email": email, "name": name},
            description="Only the fields sent are changed.",
        ),
        "StaffPage": page_of("Staff", "Staff by email"),
    }


def user_schemas() -> dict:
    email = string(maxLength=320, pattern=EMAIL_PATTERN, description="Stored lower-case; unique (409)")
    name = {"type": ["string", "null"], "maxLength": 200, "description": "Stripped; null is ignored"}
    password = string(minLength=8, writeOnly=True, description="Write-only; stored as a hash")
    props = {
        "email": email,
        "name": name,
        "password": password,
        "is_super_admin": {"type": "boolean", "default": False},
        "is_active": {"type": "boolean", "default": True},
    }
    return {
        "User": response_obj(
            {
                "id": ID,
                "email": string(),
                "name": string(),
                "is_super_admin": BOOLEAN,
                "is_active": BOOLEAN,
                "created_at": TIMESTAMP,
            },
            description="A portal login. The password is never returned.",
        ),
        "UserCreate": obj(props, ["email", "password"]),
        "UserUpdate": obj(props, description="Only the fields sent are changed."),
        "UserPage": page_of("User", "Users by email"),
    }


# --- components: tickets --------------------------------------------------------


def ticket_schemas() -> dict:
    ticket = {
        "id": ID,
        "subject": string(),
        "status": string(enum=TICKET_STATUSES),
        "priority": string(enum=TICKET_PRIORITIES),
        "company_id": nullable(ID),
        "requester": nullable(ref("Requester")),
        "source": string(enum=TICKET_SOURCES),
        "source_mailbox_id": nullable(integer(description="The IMAP mailbox that created it (may since be deleted)")),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
    return {
        "Requester": response_obj(
            {
                "type": string(enum=["staff", "user", "email"]),
                "id": nullable(integer(description="Staff or user id; null for a bare email address")),
                "email": string(),
            },
            description="Who asked: a company contact, a portal user, or just an email address.",
        ),
        "AttachmentInfo": response_obj(
            {
                "id": ID,
                "filename": string(),
                "content_type": string(),
                "size": integer(0, description="Bytes"),
            },
            description="Download the bytes with GET /api/attachments/{attachment_id}.",
        ),
        "TicketMessage": response_obj(
            {
                "id": ID,
                "author_email": nullable(string()),
                "body_text": string(),
                "body_html": string(description="Untrusted HTML as received"),
                "message_id": nullable(string(description="Email Message-ID")),
                "created_at": TIMESTAMP,
                "attachments": {"type": "array", "items": ref("AttachmentInfo")},
            }
        ),
        "TicketSummary": response_obj(ticket, description="A ticket without its messages (listings)"),
        "Ticket": response_obj(
            {**ticket, "messages": {"type": "array", "items": ref("TicketMessage")}},
            description="A ticket with its messages, oldest first",
        ),
        "TicketPage": page_of("TicketSummary", "Tickets, newest first"),
    }


# --- components: IMAP -------------------------------------------------------------


def filter_schemas() -> dict:
    scalar = {"type": ["string", "number", "boolean"]}
    values = {
        "scalar": scalar,
        "array": {"type": "array", "items": scalar},
        "string": string(),
        "regex": string(maxLength=MAX_FILTER_PATTERN, description="A Python regular expression"),
        "bool": BOOLEAN,
        "number": {"type": "number"},
    }
    field = {
        "anyOf": [
            string(enum=FILTER_FIELDS),
            string(pattern=r"^headers\.[\s\S]", description="Any header by its lower-case name"),
        ]
    }
    conditions = [
        obj(
            {"field": field, "case_sensitive": BOOLEAN, operator: values[kind]},
            ["field", operator],
            title=f"{operator} condition",
        )
        for operator, kind in FILTER_OPERATORS.items()
    ]
    children = {"type": "array", "items": ref("FilterNode")}
    return {
        "FilterNode": {
            "description": "A filter deciding which messages become tickets: a condition "
            "(`field`, exactly one operator, optional `case_sensitive`) or a group "
            "(`all`, `any`, `none`: arrays of nodes; a group passes when every key present passes). "
            "At most 20 levels and 500 nodes. The full DSL: docs/imap-filters.md.",
            "oneOf": [ref("FilterCondition"), ref("FilterGroup")],
        },
        "FilterCondition": {"oneOf": conditions},
        "FilterGroup": obj({"all": children, "any": children, "none": children}, minProperties=1),
        "Filter": {
            "description": "A filter, or null / {} for none (every message passes; stored as null).",
            "anyOf": [ref("FilterNode"), {"type": "object", "maxProperties": 0}, {"type": "null"}],
        },
    }


def mailbox_writable(*, create: bool) -> dict:
    password = string(
        minLength=1, maxLength=1024, writeOnly=True,
        description="Stored encrypted, never returned" + ("" if create else "; omit to keep the current one"),
    )
    props = {
        "name": text_field(200, "Unique, case-insensitively (409)"),
        "host": text_field(255),
        "port": integer(1, 65535, default=993),
        "security": string(enum=SECURITY_MODES, default="ssl"),
        "verify_tls": {"type": "boolean", "default": True},
        "username": text_field(320),
        "password": password,
        "folder": text_field(500, "IMAP folder to read") | {"default": "INBOX"},
        "company_id": nullable(integer(1, MAX_ID, description="An existing company (422 otherwise)"))
        | {"default": None, "description": "Tickets of this mailbox belong to this company; null: none"},
        "priority": integer(0, MAX_PRIORITY, default=100, description="Lower numbers sync first"),
        "process_unread_only": {"type": "boolean", "default": True},
        "mark_as_read": {"type": "boolean", "default": True},
        "sync_known_only": {
            "type": "boolean",
            "default": False,
            "description": "Only import mail from known senders (users, staff, company domains)",
        },
        "schedule_cron": string(
            pattern=CRON_PATTERN,
            default="*/15 * * * *",
            description="5-field cron (minute hour day month weekday), UTC; must run at least once",
        ),
        "filter_query": {"$ref": "#/components/schemas/Filter", "default": None},
        "active": {"type": "boolean", "default": True, "description": "Inactive mailboxes have no schedule"},
    }
    if create:
        return obj(props, ["name", "host", "username", "password"], description="Omitted fields take their defaults.")
    return obj(props, description="Only the fields sent are changed.")


def mailbox_schemas() -> dict:
    mailbox = {
        "id": ID,
        "name": string(),
        "host": string(),
        "port": integer(1, 65535),
        "security": string(enum=SECURITY_MODES),
        "verify_tls": BOOLEAN,
        "username": string(),
        "has_password": {"type": "boolean", "readOnly": True},
        "folder": string(),
        "company_id": nullable(ID),
        "priority": integer(0, MAX_PRIORITY),
        "process_unread_only": BOOLEAN,
        "mark_as_read": BOOLEAN,
        "sync_known_only": BOOLEAN,
        "schedule_cron": string(),
        "filter_query": nullable(ref("FilterNode")),
        "active": BOOLEAN,
        "scheduled_task_id": nullable(
            string(readOnly=True, description="`imap_sync:<id>` while active, else null", examples=["imap_sync:7"])
        ),
        "next_run_at": nullable(
            string(format="date-time", readOnly=True, description="From the scheduler; null when inactive or Redis is down")
        ),
        "schedule_error": nullable(
            string(readOnly=True, description="Set when the schedule could not be written (Redis down)")
        ),
        "last_synced_at": nullable(string(format="date-time", readOnly=True)),
        "last_sync_status": nullable(string(readOnly=True, examples=["succeeded"])),
        "last_error": nullable(string(readOnly=True)),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
    return {
        "Mailbox": response_obj(mailbox, description="An IMAP mailbox; its password is never returned."),
        "MailboxCreate": mailbox_writable(create=True),
        "MailboxUpdate": mailbox_writable(create=False),
        "MailboxList": response_obj(
            {"items": {"type": "array", "items": ref("Mailbox")}, "total": integer(0)},
            description="Every mailbox by priority, then id",
        ),
        "SyncRun": response_obj(
            {
                "id": ID,
                "account_id": ID,
                "trigger": string(enum=RUN_TRIGGERS),
                "status": string(enum=RUN_STATUSES),
                "job_id": nullable(string(description="RQ job id")),
                "counts": {
                    "type": "object",
                    "description": "Messages per outcome",
                    "propertyNames": {"enum": OUTCOMES},
                    "additionalProperties": integer(0),
                },
                "error": nullable(string()),
                "created_at": TIMESTAMP,
                "started_at": nullable(TIMESTAMP),
                "finished_at": nullable(TIMESTAMP),
                "duration_ms": nullable(integer(0)),
            }
        ),
        "SyncRunPage": page_of("SyncRun", "Sync runs, newest first"),
        "ProcessedMessage": response_obj(
            {
                "id": ID,
                "account_id": ID,
                "uid_validity": integer(0),
                "uid": integer(0),
                "message_id": nullable(string()),
                "subject": nullable(string()),
                "from_address": nullable(string()),
                "size": nullable(integer(0)),
                "outcome": string(enum=OUTCOMES),
                "reason": nullable(string()),
                "ticket_id": nullable(ID),
                "attempts": integer(0),
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
            },
            description="What a sync did with one message (the audit)",
        ),
        "ProcessedMessagePage": page_of("ProcessedMessage", "Processed messages, newest first"),
        "SyncQueued": response_obj(
            {
                "sync_run_id": ID,
                "job_id": string(),
                "status": string(enum=["queued"]),
                "scheduled_task_id": nullable(string()),
            }
        ),
        "RetryQueued": response_obj(
            {
                "message": ref("ProcessedMessage"),
                "sync_run_id": ID,
                "job_id": string(),
                "status": string(enum=["queued"]),
            }
        ),
    }


def components() -> dict:
    schemas = {}
    for part in (
        error_schemas, company_schemas, staff_schemas, user_schemas, ticket_schemas, filter_schemas, mailbox_schemas
    ):
        schemas.update(part())
    return {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token of an active super administrator: `Authorization: Bearer mp_...`. "
                "(Browser sessions of a super administrator also work; their writes then need a CSRF token.)",
            }
        },
        "schemas": schemas,
        "parameters": parameters(),
        "responses": {
            "BadRequest": response("CSRF token missing or invalid (session-cookie callers only)", "Error"),
            "Unauthorized": response("No valid Bearer token (or session)", "Error"),
            "Forbidden": response("The caller is not a super administrator", "Error"),
            "NotFound": response("No such object", "Error"),
            "Conflict": response("A unique value is already taken", "ConflictError"),
            "Unprocessable": response("Invalid payload or query parameters", "ValidationError"),
            "RedisDown": response("The job queue (Redis) is unavailable", "Error"),
        },
    }


# --- parameters -------------------------------------------------------------------------

PATH_IDS = {
    "company_id": "Company",
    "staff_id": "Staff member",
    "user_id": "User",
    "ticket_id": "Ticket",
    "attachment_id": "Attachment",
    "account_id": "Mailbox",
    "run_id": "Sync run",
    "message_id": "Processed message",
}


def parameters() -> dict:
    params = {
        name: {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"{label} id",
            "schema": integer(1, MAX_ID),
        }
        for name, label in PATH_IDS.items()
    }
    params["page"] = {
        "name": "page", "in": "query", "required": False,
        "description": "Page number (1-based); past the end gives an empty page",
        "schema": integer(1, MAX_ID, default=1),
    }
    params["per_page"] = {
        "name": "per_page", "in": "query", "required": False,
        "schema": integer(1, 200, default=50),
    }
    return params


def param(name: str) -> dict:
    return {"$ref": f"#/components/parameters/{name}"}


def query_id(name: str, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": integer(0, MAX_ID)}


PAGINATION = [param("page"), param("per_page")]


# --- operations ---------------------------------------------------------------------------


def operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict,
    *,
    params=(),
    body: str | None = None,
    body_required=True,
    body_description: str | None = None,
    not_found=False,
    conflict=False,
    invalid=False,
    redis=False,
    write=False,
) -> dict:
    """One operation; the error responses every API route shares are added here."""
    all_responses = dict(responses)
    if write:
        all_responses["400"] = error_ref("BadRequest")
    all_responses["401"] = error_ref("Unauthorized")
    all_responses["403"] = error_ref("Forbidden")
    if not_found:
        all_responses["404"] = error_ref("NotFound")
    if conflict:
        all_responses["409"] = error_ref("Conflict")
    if invalid:
        all_responses["422"] = error_ref("Unprocessable")
    if redis:
        all_responses["503"] = error_ref("RedisDown")
    op = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if params:
        op["parameters"] = list(params)
    if body:
        op["requestBody"] = {"required": body_required, "content": json_content(ref(body))}
        if body_description:
            op["requestBody"]["description"] = body_description
    op["responses"] = dict(sorted(all_responses.items()))
    return op


def crud_paths(prefix: str, id_name: str, tag: str, noun: str, schema: str, *, list_params=()) -> dict:
    """List/create on the collection, get/update/delete on one item (companies, staff, users)."""
    plural = tag
    return {
        prefix: {
            "get": operation(
                f"list{plural}", f"List {plural.lower()}", tag,
                {"200": response(f"A page of {plural.lower()}", f"{schema}Page")},
                params=[*PAGINATION, *list_params], invalid=True,
            ),
            "post": operation(
                f"create{schema}", f"Create a {noun}", tag,
                {"201": response(f"The new {noun}", schema)},
                body=f"{schema}Create", conflict=True, invalid=True, write=True,
            ),
        },
        f"{prefix}/{{{id_name}}}": {
            "parameters": [param(id_name)],
            "get": operation(
                f"get{schema}", f"Get a {noun}", tag, {"200": response(f"The {noun}", schema)}, not_found=True
            ),
            "put": operation(
                f"update{schema}", f"Update a {noun}", tag,
                {"200": response(f"The updated {noun}", schema)},
                body=f"{schema}Update", not_found=True, conflict=True, invalid=True, write=True,
            ),
            "delete": operation(
                f"delete{schema}", f"Delete a {noun}", tag, {"204": {"description": "Deleted"}},
                not_found=True, write=True,
            ),
        },
    }


def platform_paths() -> dict:
    paths = {}
    paths.update(crud_paths("/api/companies", "company_id", "Companies", "company", "Company"))
    paths.update(
        crud_paths(
            "/api/staff", "staff_id", "Staff", "staff member", "Staff",
            list_params=[query_id("company_id", "Only the staff of this company")],
        )
    )
    paths.update(crud_paths("/api/users", "user_id", "Users", "user", "User"))
    paths["/api/tickets"] = {
        "get": operation(
            "listTickets", "List tickets", "Tickets",
            {"200": response("A page of tickets (without messages)", "TicketPage")},
            params=[
                *PAGINATION,
                query_id("mailbox_id", "Only tickets created by this IMAP mailbox"),
                query_id("company_id", "Only tickets of this company"),
                {
                    "name": "requester_email", "in": "query", "required": False,
                    "description": "Only tickets whose requester has this email (case-insensitive)",
                    "schema": string(),
                },
            ],
            invalid=True,
        )
    }
    paths["/api/tickets/{ticket_id}"] = {
        "parameters": [param("ticket_id")],
        "get": operation(
            "getTicket", "Get a ticket with its messages", "Tickets",
            {"200": response("The ticket", "Ticket")}, not_found=True,
        ),
    }
    paths["/api/attachments/{attachment_id}"] = {
        "parameters": [param("attachment_id")],
        "get": operation(
            "downloadAttachment", "Download an attachment", "Tickets",
            {
                "200": {
                    "description": "The bytes, always as a download (never rendered inline)",
                    "headers": {
                        "Content-Disposition": {
                            "description": "attachment; filename=...",
                            "schema": string(pattern="^attachment"),
                        },
                        "X-Content-Type-Options": {"schema": string(enum=["nosniff"])},
                    },
                    "content": {"application/octet-stream": {"schema": string(format="binary")}},
                }
            },
            not_found=True,
        ),
    }
    return paths


def imap_paths() -> dict:
    tag = "IMAP"
    base = "/api/imap/accounts"
    one = f"{base}/{{account_id}}"
    return {
        base: {
            "get": operation(
                "listMailboxes", "List IMAP mailboxes", tag, {"200": response("Every mailbox", "MailboxList")}
            ),
            "post": operation(
                "createMailbox", "Create an IMAP mailbox and schedule its sync", tag,
                {"201": response("The new mailbox (`schedule_error` is set if Redis was down)", "Mailbox")},
                body="MailboxCreate", conflict=True, invalid=True, write=True,
            ),
        },
        one: {
            "parameters": [param("account_id")],
            "get": operation(
                "getMailbox", "Get an IMAP mailbox", tag, {"200": response("The mailbox", "Mailbox")}, not_found=True
            ),
            "put": operation(
                "updateMailbox", "Update an IMAP mailbox and its schedule", tag,
                {"200": response("The updated mailbox (`schedule_error` is set if Redis was down)", "Mailbox")},
                body="MailboxUpdate", not_found=True, conflict=True, invalid=True, write=True,
            ),
            "delete": operation(
                "deleteMailbox", "Delete an IMAP mailbox, its audit, its runs and its schedule", tag,
                {"204": {"description": "Deleted (the schedule is removed when Redis is reachable)"}},
                not_found=True, write=True,
            ),
        },
        f"{one}/clone": {
            "parameters": [param("account_id")],
            "post": operation(
                "cloneMailbox", "Copy a mailbox (password and filter included; sync state starts fresh)", tag,
                {"201": response("The copy, named '<name> (copy)' unless overridden", "Mailbox")},
                body="MailboxUpdate", body_required=False, not_found=True, conflict=True, invalid=True, write=True,
                body_description="Optional settings to change in the copy (same rules as an update); "
                "no body or {} copies as is",
            ),
        },
        f"{one}/sync": {
            "parameters": [param("account_id")],
            "post": operation(
                "syncMailbox", "Queue a sync now", tag,
                {"202": response("The sync run is queued", "SyncQueued")},
                not_found=True, redis=True, write=True,
            ),
        },
        f"{one}/sync-runs": {
            "parameters": [param("account_id")],
            "get": operation(
                "listSyncRuns", "List the sync runs of a mailbox", tag,
                {"200": response("A page of sync runs", "SyncRunPage")},
                params=PAGINATION, not_found=True, invalid=True,
            ),
        },
        f"{one}/sync-runs/{{run_id}}": {
            "parameters": [param("account_id"), param("run_id")],
            "get": operation(
                "getSyncRun", "Get one sync run", tag, {"200": response("The sync run", "SyncRun")}, not_found=True
            ),
        },
        f"{one}/messages": {
            "parameters": [param("account_id")],
            "get": operation(
                "listProcessedMessages", "List the processed-message audit of a mailbox", tag,
                {"200": response("A page of processed messages", "ProcessedMessagePage")},
                params=[
                    *PAGINATION,
                    {
                        "name": "outcome", "in": "query", "required": False,
                        "description": "Only messages with this outcome",
                        "schema": string(enum=OUTCOMES),
                    },
                ],
                not_found=True, invalid=True,
            ),
        },
        f"{one}/messages/{{message_id}}/retry": {
            "parameters": [param("account_id"), param("message_id")],
            "post": operation(
                "retryProcessedMessage", "Retry a failed message: reset its attempts and queue a sync", tag,
                {"202": response("The message and the queued sync run", "RetryQueued")},
                not_found=True, conflict=True, redis=True, write=True,
            ),
        },
    }


def openapi_paths() -> dict:
    return {
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document",
                "tags": ["Meta"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "content": json_content({"type": "object", "required": ["openapi", "paths"]}),
                    }
                },
            }
        }
    }


def build_spec() -> dict:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MyPortal API",
            "version": "1.0",
            "description": "Helpdesk JSON API. Every route except this document needs a super administrator. "
            "Errors are JSON: `{\"error\": \"...\"}`, plus `errors` (messages by field) on 422 and most 409s. "
            "Request bodies are JSON objects; unknown fields are rejected (422).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "Companies"},
            {"name": "Staff"},
            {"name": "Users"},
            {"name": "Tickets"},
            {"name": "IMAP", "description": "Mailboxes that turn email into tickets"},
            {"name": "Meta"},
        ],
        "paths": {**platform_paths(), **imap_paths(), **openapi_paths()},
        "components": components(),
    }
