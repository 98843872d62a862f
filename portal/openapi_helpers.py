"""Building blocks of the OpenAPI 3.1 document, shared by the packages that describe their routes.

JSON Schema builders, the operation builder (which adds the error responses every API route
shares) and the components those responses and the paging parameters refer to. Neutral ground:
`portal.platform` assembles the document, `portal.imap` hands in its part (see create_app).
"""
from copy import deepcopy
from dataclasses import dataclass, field

from .validation import MAX_ID

# Checker.string strips and rejects blank values.
NOT_BLANK = r"\S"


@dataclass
class DocumentPart:
    """What one package adds to the document: a tag, its paths and its components."""

    tag: dict
    paths: dict
    schemas: dict
    parameters: dict = field(default_factory=dict)


# --- JSON Schema -----------------------------------------------------------------


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
TIMESTAMP = string(format="date-time", description="UTC, ISO 8601 with milliseconds and a Z suffix, e.g. 2026-11-27T08:14:23.512Z")
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


# --- parameters ------------------------------------------------------------------


def path_ids(labels: dict[str, str]) -> dict:
    """Path parameters for row ids, by name: {"run_id": "Sync run"} -> the `run_id` parameter."""
    return {
        name: {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"{label} id",
            "schema": integer(1, MAX_ID),
        }
        for name, label in labels.items()
    }


def paging_parameters() -> dict:
    return {
        "page": {
            "name": "page", "in": "query", "required": False,
            "description": "Page number (1-based); past the end gives an empty page",
            "schema": integer(1, MAX_ID, default=1),
        },
        "per_page": {
            "name": "per_page", "in": "query", "required": False,
            "schema": integer(1, 200, default=50),
        },
    }


def param(name: str) -> dict:
    return {"$ref": f"#/components/parameters/{name}"}


def path_item(*path_params: str, **operations: dict) -> dict:
    """The operations on one path, with the path parameters they share: path_item("run_id", get=...)."""
    item = {"parameters": [param(name) for name in path_params]} if path_params else {}
    return {**item, **operations}


def query_id(name: str, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": integer(0, MAX_ID)}


PAGINATION = [param("page"), param("per_page")]


# --- operations and the error responses they share ----------------------------------


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


def error_responses() -> dict:
    return {
        "BadRequest": response("CSRF token missing or invalid (session-cookie callers only)", "Error"),
        "Unauthorized": response("No valid Bearer token (or session)", "Error"),
        "Forbidden": response("The caller is not a super administrator", "Error"),
        "NotFound": response("No such object", "Error"),
        "Conflict": response("A unique value is already taken", "ConflictError"),
        "Unprocessable": response("Invalid payload or query parameters", "ValidationError"),
        "RedisDown": response("The job queue (Redis) is unavailable", "Error"),
    }


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
