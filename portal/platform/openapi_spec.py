"""The OpenAPI 3.1 document of the JSON API (served at GET /api/openapi.json).

The platform's own shapes and routes, and the frame every part goes into. Other packages hand
in their parts through the app factory (portal/platform/openapi.py); the builders they share
live in portal/openapi_helpers.py. The request rules mirror portal/platform/api.py and
portal/validation.py, the responses portal/platform/serializers.py.
tests/integration/test_openapi.py checks that every /api/ route is here and fuzzes the
document against the app with schemathesis.
"""
from collections.abc import Sequence

from .. import models
from ..openapi_helpers import (
    BOOLEAN, ID, MAX_ID, PAGINATION, TIMESTAMP, DocumentPart, error_responses, error_schemas, integer, json_content,
    nullable, obj, operation, page_of, param, path_ids, paging_parameters, query_id, ref, response, response_obj,
    string, text_field,
)

OPENAPI_VERSION = "3.1.0"

# Taken from the code, so the document cannot drift from it.
TICKET_STATUSES = list(models.TICKET_STATUSES)
TICKET_PRIORITIES = list(models.TICKET_PRIORITIES)
TICKET_SOURCES = list(models.TICKET_SOURCES)

# Checker.email: EMAIL_RE in portal/validation.py.
EMAIL_PATTERN = r'^[^@\s<>"]+@[^@\s<>"]+\.[^@\s<>"]+$'

TAGS = [{"name": "Companies"}, {"name": "Staff"}, {"name": "Users"}, {"name": "Tickets"}]
PATH_IDS = {
    "company_id": "Company",
    "staff_id": "Staff member",
    "user_id": "User",
    "ticket_id": "Ticket",
    "attachment_id": "Attachment",
}


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
        "source_mailbox_name": nullable(string(description="That mailbox's name when the ticket was created")),
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
                "author_name": nullable(string(description="The sender's display name")),
                "sent_at": nullable(string(format="date-time", description="The email's Date header (UTC)")),
                "cc": nullable({
                    "type": "array", "description": "Cc recipients of the email",
                    "items": obj({"name": string(), "email": string()}, required=["name", "email"]),
                }),
                "body_text": string(description="For a reply threaded onto a ticket: what the sender wrote, "
                                                "without the history it quotes"),
                "quoted_text": nullable(string(description="The history a threaded reply quoted (shown collapsed)")),
                "body_html": string(description="Untrusted HTML as received"),
                "message_id": nullable(string(description="Email Message-ID")),
                "import_notes": nullable(string(description="What the import left out of this message")),
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


def components(parts: Sequence[DocumentPart]) -> dict:
    schemas = {}
    for build in (error_schemas, company_schemas, staff_schemas, user_schemas, ticket_schemas):
        schemas.update(build())
    parameters = {**path_ids(PATH_IDS), **paging_parameters()}
    for part in parts:
        schemas.update(part.schemas)
        parameters.update(part.parameters)
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
        "parameters": parameters,
        "responses": error_responses(),
    }


# --- paths ---------------------------------------------------------------------------------


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


def openapi_paths() -> dict:
    document = {"200": {
        "description": "The OpenAPI document",
        "content": json_content({"type": "object", "required": ["openapi", "paths"]}),
    }}
    return {"/api/openapi.json": {"get": operation("getOpenApiDocument", "This document", "Meta", document)}}


def build_spec(parts: Sequence[DocumentPart] = ()) -> dict:
    """The whole document: the platform's paths, then each part's, then this document's own."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MyPortal API",
            "version": "1.0",
            "description": "Helpdesk JSON API. Every route, this document included, needs a super administrator. "
            "Errors are JSON: `{\"error\": \"...\"}`, plus `errors` (messages by field) on 422 and most 409s. "
            "Request bodies are JSON objects; unknown fields are rejected (422).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [*TAGS, *(part.tag for part in parts), {"name": "Meta"}],
        "paths": {**platform_paths(), **{path: item for part in parts for path, item in part.paths.items()},
                  **openapi_paths()},
        "components": components(parts),
    }
