"""GET /api/openapi.json: the platform's document plus the parts other packages hand in.

The app factory calls add_document_part() with each package's part, so the platform never
imports those packages."""
import re

from flask import Blueprint, current_app, jsonify, request

from ..auth import api_user, require_super_admin_api
from ..openapi_helpers import DocumentPart

bp = Blueprint("openapi", __name__, url_prefix="/api")
# Like every other route: the document maps the whole attack surface, so only callers of the
# API may read it.
bp.before_request(require_super_admin_api)
PARTS_KEY = "openapi_parts"


def add_document_part(app, part: DocumentPart) -> None:
    app.extensions.setdefault(PARTS_KEY, []).append(part)


@bp.get("/openapi.json")
def openapi_document():
    from .openapi_spec import build_spec

    return jsonify(build_spec(current_app.extensions.get(PARTS_KEY, [])))


QUERY_NAMES_KEY = "openapi_query_names"


def declared_query_names(app) -> dict[tuple[str, str], frozenset]:
    """(OpenAPI path, METHOD) -> the query parameters the document declares for it (built once)."""
    names = app.extensions.get(QUERY_NAMES_KEY)
    if names is None:
        from .openapi_spec import build_spec

        document = build_spec(app.extensions.get(PARTS_KEY, []))
        shared = document["components"].get("parameters", {})

        def resolve(parameter):
            return shared[parameter["$ref"].rsplit("/", 1)[-1]] if "$ref" in parameter else parameter

        names = {}
        for path, item in document["paths"].items():
            for method, op in item.items():
                if method != "parameters":
                    declared = [resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
                    names[(path, method.upper())] = frozenset(p["name"] for p in declared if p["in"] == "query")
        app.extensions[QUERY_NAMES_KEY] = names
    return names


@bp.before_app_request
def reject_undeclared_query_args():
    """An API query argument the document does not declare is a 422, as unknown body fields are:
    a misspelt filter must not silently answer the unfiltered list."""
    rule = request.url_rule
    if rule is None or not rule.rule.startswith("/api/") or not request.args:
        return None
    user = api_user()
    if user is None or not user.is_super_admin:
        return None  # the blueprint's guard answers 401/403 first
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
    allowed = declared_query_names(current_app).get((path, request.method if request.method != "HEAD" else "GET"))
    if allowed is None:
        return None
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        return jsonify(error="Invalid query parameters", errors={name: ["Unknown query parameter"] for name in unknown}), 422
    return None
