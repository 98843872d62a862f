"""The IMAP part of the OpenAPI document: the mailbox schemas, derived from the field table,
the audit and sync-run shapes, and the /api/imap/ paths. The app factory hands it to the
platform's document (portal/platform/openapi.py)."""
from ..openapi_helpers import (
    BOOLEAN, ID, NOT_BLANK, PAGINATION, TIMESTAMP, DocumentPart, integer, nullable, obj, operation, page_of,
    path_ids, path_item, ref, response, response_obj, string,
)
from . import fields, filters, models, preview

TAG = {"name": "IMAP", "description": "Mailboxes that turn email into tickets"}
# Taken from the code, so the document cannot drift from it.
OUTCOMES = list(models.OUTCOMES)
RUN_TRIGGERS = list(models.RUN_TRIGGERS)
RUN_STATUSES = list(models.RUN_STATUSES)
FILTER_FIELDS = sorted(filters.FIELDS)
FILTER_OPERATORS = dict(filters.VALUE_KINDS)  # operator -> kind of value
MAX_FILTER_PATTERN = filters.MAX_PATTERN_LENGTH
# Five fields; schemas.cron_error has the last word (the length limit applies once whitespace is
# collapsed, so it is not a maxLength here).
CRON_PATTERN = r"^\s*\S+(\s+\S+){4}\s*$"


# --- mailboxes: from the field table ------------------------------------------------------


def described(op: dict, description: str) -> dict:
    """An operation with a longer description than its summary."""
    return {**op, "description": description}


def _value_schema(field: fields.Field) -> dict:
    """The type of a field's value, as a response carries it."""
    kind = field.kind
    if kind in (fields.INTEGER, fields.REFERENCE):
        return integer(field.minimum, None if kind == fields.REFERENCE else field.maximum)
    if kind == fields.CHOICE:
        return string(enum=list(field.choice_values))
    if kind == fields.BOOLEAN:
        return dict(BOOLEAN)
    if kind == fields.FILTER:
        return ref("FilterNode")
    if kind == fields.ID:
        return integer(1)
    if kind == fields.TIMESTAMP:
        return dict(TIMESTAMP)
    if kind == fields.DATE:
        return string(format="date")
    return string()


def response_schema(field: fields.Field) -> dict:
    """A field in the Mailbox response: its type; server-set fields are readOnly and described."""
    schema = _value_schema(field)
    if field.read_only:
        schema["readOnly"] = True
        if field.kind == fields.TIMESTAMP:  # the format (with its example), then what the time is
            extra = "" if field.description in ("", fields.UTC_TIMESTAMP) else "; " + field.description
            schema["description"] = TIMESTAMP["description"] + extra
        elif field.description:
            schema["description"] = field.description
    elif field.kind == fields.REFERENCE:
        schema["description"] = ID["description"]
    if field.examples:
        schema["examples"] = list(field.examples)
    return nullable(schema) if field.nullable else schema


def request_schema(field: fields.Field, *, create: bool) -> dict:
    """A field in MailboxCreate / MailboxUpdate: its limits, default and description."""
    kind = field.kind
    if kind == fields.TEXT:
        schema = string(minLength=1, maxLength=field.max_length, pattern=NOT_BLANK)
    elif kind == fields.SECRET:
        schema = string(minLength=1, maxLength=field.max_length, writeOnly=True)
    elif kind == fields.OPTIONAL_TEXT:
        schema = string(maxLength=field.max_length)
    elif kind == fields.URL:
        schema = string(maxLength=field.max_length, format="uri")
    elif kind in (fields.INTEGER, fields.REFERENCE):
        schema = integer(field.minimum, field.maximum)
    elif kind == fields.CRON:
        schema = string(pattern=CRON_PATTERN)
    elif kind == fields.FILTER:
        schema = ref("Filter")
    else:
        schema = _value_schema(field)
    if field.nullable and kind != fields.FILTER:  # Filter itself allows null
        schema = nullable(schema)
    if not field.required and kind != fields.SECRET:
        schema["default"] = field.default
    description = field.description
    if field.write_only and not create:
        description += (
            "; omit (or null) to keep the current one. A stored secret is kept only for the destination it was "
            "given for: a password for its server (host, port, username, security), an OAuth2 secret for its "
            "token endpoint and client; changing those without the secret is refused (422)"
        )
    if field.name == "security":
        description = SECURITY_FOLLOWS_PORT if create else SECURITY_FOLLOWS_NEW_PORT
    if description:
        schema["description"] = description
    return schema


SECURITY_FOLLOWS_PORT = (
    "Omitted: follows the port (993: ssl, 143: starttls; ssl on any other port). An OAuth2 provider "
    "(microsoft, google) fills in its own server, port 993 and ssl")
SECURITY_FOLLOWS_NEW_PORT = (
    "Omitted while the port changes to 993 or 143: follows the new port (993: ssl, 143: starttls); "
    "otherwise the stored security is kept")
READ_ONLY_IGNORED = (
    "Read-only fields (the ones the server reports, such as id, has_password, created_at or next_run_at) are "
    "accepted and ignored, so a mailbox's JSON from GET can be sent back as is; unknown fields are a 422.")


# A server-reported field in a request body: accepted with any value, and ignored.
READ_ONLY_PROPERTY = {"readOnly": True, "description": "Ignored: reported by the server"}


def mailbox_writable(*, create: bool) -> dict:
    props = {field.name: request_schema(field, create=create) for field in fields.WRITABLE}
    props.update({field.name: dict(READ_ONLY_PROPERTY) for field in fields.FIELDS if field.read_only})
    if create:
        schema = obj(props, fields.REQUIRED_ON_CREATE, description=(
            "Omitted fields take their defaults. auth_method password needs a password; oauth2 needs the client "
            "its oauth_flow uses (docs/oauth2.md). " + READ_ONLY_IGNORED))
        schema["examples"] = [
            {"name": "Support desk", "host": "imap.example.com", "username": "support@example.com",
             "password": "app-password"},
            {"name": "Microsoft 365 support", "username": "support@contoso.com", "auth_method": "oauth2",
             "oauth_provider": "microsoft", "oauth_client_id": "00000000-0000-0000-0000-000000000000",
             "oauth_client_secret": "client-secret"},
        ]
        return schema
    return obj(props, description="Only the fields sent are changed. " + READ_ONLY_IGNORED)


def mailbox_schemas() -> dict:
    mailbox = {field.name: response_schema(field) for field in fields.READABLE}
    return {
        "Mailbox": response_obj(mailbox, description="An IMAP mailbox; its password is never returned."),
        "MailboxCreate": mailbox_writable(create=True),
        "MailboxUpdate": mailbox_writable(create=False),
        "MailboxList": response_obj(
            {"items": {"type": "array", "items": ref("Mailbox")}, "total": integer(0)},
            description="Every live mailbox by priority, then id; with deleted=true the deleted ones, most "
                        "recently deleted first",
        ),
    }


# --- filters ---------------------------------------------------------------------------


def filter_schemas() -> dict:
    scalar = {"type": ["string", "number", "boolean"]}
    values = {
        "scalar": scalar,
        "array": {"type": "array", "items": scalar},
        "string": string(),
        "regex": string(maxLength=MAX_FILTER_PATTERN, description="A Python regular expression"),
        "substring": {**scalar, "description": "Text to find; a number or boolean is compared whole"},
        "bool": {"type": ["boolean", "null"], "description": "null reads as true"},
        "number": {"type": "number"},
    }
    field = {
        "description": "Field names are case-insensitive (`Subject` is `subject`).",
        "anyOf": [
            string(enum=FILTER_FIELDS),
            string(pattern=r"[A-Z]", description="One of the same names, in any case"),
            string(pattern=r"^[Hh][Ee][Aa][Dd][Ee][Rr][Ss]\.[\s\S]", description="Any header by its name"),
        ],
    }
    conditions = [
        obj(
            {"field": field, "case_sensitive": {"type": ["boolean", "null"]}, operator: values[kind]},
            ["field", operator],
            closed=False,  # other keys (a description) are ignored, as MyPortal ignored them
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
        "FilterGroup": obj(
            {"all": children, "any": children, "none": children}, closed=False,
            anyOf=[{"required": [key]} for key in ("all", "any", "none")], **{"not": {"required": ["field"]}},
        ),
        "Filter": {
            "description": "A filter, or null / {} for none (every message passes; stored as null).",
            "anyOf": [ref("FilterNode"), {"type": "object", "maxProperties": 0}, {"type": "null"}],
        },
        **preview_schemas(),
    }


def preview_schemas() -> dict:
    """The filter preview: unsaved settings in, one decision per recent message out."""
    switch = {"type": "boolean", "description": "As the mailbox field; omitted: the saved value"}
    outcome = string(enum=[*OUTCOMES, preview.NOT_PREVIEWED])
    return {
        "FilterPreviewRequest": obj({
            "filter_query": {**ref("Filter"), "description": "The filter to try; omitted: the saved one"},
            **{name: switch for name in preview.SETTINGS if name != "filter_query"},
            "limit": integer(1, preview.MAX_LIMIT, default=preview.DEFAULT_LIMIT,
                             description="How many of the newest messages of the folder"),
        }, description="Settings to try, laid over the saved mailbox (nothing is saved)."),
        "FilterPreviewItem": response_obj({
            "uid": integer(1), "date": nullable(string(format="date-time", description="The email's Date")),
            "from": string(), "subject": string(), "size": integer(0), "flags": {"type": "array", "items": string()},
            "outcome": outcome,
            "rule": nullable(string(description="The mailbox setting or sync step that decided, e.g. filter_query, "
                                    "skip_auto_replies, sync_known_only, dedupe, threading")),
            "reason": nullable(string(description="Why; for a filter skip, the part of the filter that decided")),
            "ticket_id": nullable(integer(1, description="The stored ticket it would join or duplicate")),
            "candidate": {"type": "boolean", "description": "Whether the next sync would consider it at all"},
            "recorded": nullable(obj({"outcome": string(enum=OUTCOMES), "ticket_id": nullable(integer(1))},
                                     ["outcome", "ticket_id"], description="Its audit row, if it has one")),
            "note": nullable(string(description="Why the next sync would leave it alone")),
        }),
        "FilterPreviewResult": response_obj({
            "folder": string(), "messages_in_folder": integer(0), "previewed": integer(0),
            "limit": integer(1, preview.MAX_LIMIT),
            "counts": {"type": "object", "additionalProperties": integer(1), "description": "Messages by outcome"},
            "items": {"type": "array", "items": ref("FilterPreviewItem"), "description": "Newest first"},
        }, description="What a sync would do with the newest messages; nothing was changed."),
    }


# --- sync runs and the audit ---------------------------------------------------------------


def sync_schemas() -> dict:
    return {
        "SyncRun": response_obj(
            {
                "id": ID,
                "account_id": ID,
                "trigger": string(enum=RUN_TRIGGERS),
                "status": string(enum=RUN_STATUSES, description=(
                    "deferred: waiting for a pending restart to end; the same run then goes to running and "
                    "its outcome (scheduled ticks meanwhile fold into it)")),
                "job_id": nullable(string(description="RQ job id")),
                "retry_of_id": nullable(integer(1, description="The failed run this attempt retries")),
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
                "progress": response_obj(
                    {
                        "done": integer(0, description=(
                            "Messages decided so far: the sum of `counts`, updated after each batch's commit")),
                        "total": nullable(integer(0, description=(
                            "The run's candidates (the new messages its search found); null until the search "
                            "is done, and for a run that never got that far"))),
                    },
                    description="How far the run is, for \"412 / 2,000\": done reaches total when every candidate "
                    "is decided (a message removed from the server meanwhile is never decided)",
                ),
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
                "sent_at": nullable(string(format="date-time", description="The email's Date header (UTC)")),
                "size": nullable(integer(0)),
                "outcome": string(enum=OUTCOMES),
                "reason": nullable(string()),
                "ticket_id": nullable(ID),
                "attempts": integer(0),
                "defects": nullable({
                    "type": "array", "items": string(),
                    "description": "What the parser noticed about the message (malformed parts, what it left out)",
                }),
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
        "OAuthAuthorization": response_obj(
            {"authorization_url": string(format="uri", description=(
                "Open it in a browser signed in to the portal as the same user; the provider redirects back "
                "to <PUBLIC_BASE_URL>/admin/modules/imap/oauth/callback. Single use, valid 10 minutes"))},
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


# --- paths -------------------------------------------------------------------------------------


def imap_paths() -> dict:
    tag = "IMAP"
    base = "/api/imap/accounts"
    one = f"{base}/{{account_id}}"
    outcome = {
        "name": "outcome", "in": "query", "required": False,
        "description": "Only messages with this outcome",
        "schema": string(enum=OUTCOMES),
    }
    deleted = {
        "name": "deleted", "in": "query", "required": False,
        "description": "true: list the deleted mailboxes instead of the live ones (their sync runs and "
                       "processed messages stay readable under /api/imap/accounts/{account_id}/...)",
        "schema": string(enum=["true", "false"], default="false"),
    }
    return {
        base: path_item(
            get=operation(
                "listMailboxes", "List IMAP mailboxes (live ones, or the deleted ones)", tag,
                {"200": response("The mailboxes", "MailboxList")}, params=[deleted], invalid=True,
            ),
            post=operation(
                "createMailbox", "Create an IMAP mailbox and schedule its sync", tag,
                {"201": response("The new mailbox (`schedule_error` is set if Redis was down)", "Mailbox")},
                body="MailboxCreate", conflict=True, invalid=True, write=True,
            ),
        ),
        one: path_item(
            "account_id",
            get=described(operation(
                "getMailbox", "Get an IMAP mailbox (a deleted one too)", tag,
                {"200": response("The mailbox; a deleted one has deleted_at set", "Mailbox")}, not_found=True,
            ), "A deleted mailbox is still returned, read-only (no secrets, inactive, `deleted_at` set), so "
               "that the tickets it made stay explainable; every change, sync, clone or OAuth2 connect of it "
               "answers 404."),
            put=operation(
                "updateMailbox", "Update an IMAP mailbox and its schedule", tag,
                {"200": response("The updated mailbox (`schedule_error` is set if Redis was down)", "Mailbox")},
                body="MailboxUpdate", not_found=True, conflict=True, invalid=True, write=True,
            ),
            delete=described(operation(
                "deleteMailbox", "Delete an IMAP mailbox (its sync runs and audit are kept)", tag,
                {"204": {"description": "Deleted (the schedule is removed when Redis is reachable)"}},
                not_found=True, write=True,
            ), "Soft delete: the mailbox leaves the list, the scheduler and bulk syncs, and its password, "
               "OAuth2 secrets and tokens are wiped; its sync runs and processed messages stay readable "
               "(GET /api/imap/accounts?deleted=true lists it) and its tickets keep its name. A new mailbox "
               "may take its name. Jobs already queued for it end as skipped (\"Mailbox was deleted\")."),
        ),
        f"{one}/clone": path_item("account_id", post=described(operation(
            "cloneMailbox", "Copy a mailbox (password and filter included; sync state starts fresh)", tag,
            {"201": response("The copy, named '<name> (copy)' unless overridden; inactive until saved", "Mailbox")},
            body="MailboxUpdate", body_required=False, not_found=True, conflict=True, invalid=True, write=True,
            body_description="Optional settings to change in the copy (same rules as an update: a new host, "
            "port, username or security needs the password again); no body or {} copies as is",
        ), "The copy is created inactive, without a schedule, and its `schedule_error` reads \"Clone: not "
           "scheduled until saved\". Its first update (PUT, or the edit form) makes it active and schedules "
           "it, unless that update sends `active`.")),
        f"{one}/oauth/authorize": path_item("account_id", post=operation(
            "authorizeMailboxOAuth", "Start connecting an OAuth2 mailbox (authorization code flow)", tag,
            {"200": response("The provider's authorization URL (PKCE S256, single-use state)", "OAuthAuthorization")},
            not_found=True, conflict=True, write=True,
        )),
        f"{one}/sync": path_item("account_id", post=operation(
            "syncMailbox", "Queue a sync now (follow the run at sync-runs/{run_id})", tag,
            {"202": response("The sync run is queued; during a pending restart it becomes deferred and keeps "
                             "its id until it runs", "SyncQueued")},
            not_found=True, redis=True, write=True,
        )),
        f"{one}/sync-runs": path_item("account_id", get=operation(
            "listSyncRuns", "List the sync runs of a mailbox (a deleted one too)", tag,
            {"200": response("A page of sync runs", "SyncRunPage")}, params=PAGINATION, not_found=True, invalid=True,
        )),
        f"{one}/sync-runs/{{run_id}}": path_item("account_id", "run_id", get=operation(
            "getSyncRun", "Get one sync run", tag, {"200": response("The sync run", "SyncRun")}, not_found=True
        )),
        f"{one}/messages": path_item("account_id", get=operation(
            "listProcessedMessages", "List the processed-message audit of a mailbox (a deleted one too)", tag,
            {"200": response("A page of processed messages", "ProcessedMessagePage")},
            params=[*PAGINATION, outcome], not_found=True, invalid=True,
        )),
        f"{one}/filter-preview": path_item("account_id", post=filter_preview_operation(tag)),
        f"{one}/messages/{{message_id}}/retry": path_item("account_id", "message_id", post=operation(
            "retryProcessedMessage", "Retry a failed message: reset its attempts and queue a sync", tag,
            {"202": response("The message and the queued sync run", "RetryQueued")},
            not_found=True, conflict=True, redis=True, write=True,
        )),
    }


def filter_preview_operation(tag: str) -> dict:
    op = operation(
        "previewMailboxFilter", "Try a filter and switches on the newest mail, changing nothing", tag,
        {"200": response("Each message with what a sync would do", "FilterPreviewResult"),
         "502": response("The mailbox could not be read (connection, sign-in, folder): `error` says why", "Error")},
        body="FilterPreviewRequest", body_required=False, not_found=True, conflict=True, invalid=True, write=True,
    )
    op["description"] = (
        "Reads the newest `limit` messages of the mailbox's folder read-only (EXAMINE, BODY.PEEK) and runs the "
        "sync's own decision code on them with the given settings laid over the saved ones: no flag, ticket, "
        "audit row or sync run is written. 409: the mailbox cannot sign in until someone reconnects it (OAuth2). "
        "Messages over IMAP_MAX_MESSAGE_BYTES are listed as not_previewed.")
    return op


def document_part() -> DocumentPart:
    return DocumentPart(
        tag=TAG,
        paths=imap_paths(),
        schemas={**filter_schemas(), **mailbox_schemas(), **sync_schemas()},
        parameters=path_ids({"account_id": "Mailbox", "run_id": "Sync run", "message_id": "Processed message"}),
    )
