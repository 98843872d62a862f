"""GET /api/openapi.json: the platform's document plus the parts other packages hand in.

The app factory calls add_document_part() with each package's part, so the platform never
imports those packages."""
from flask import Blueprint, current_app, jsonify

from ..auth import require_super_admin_api
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
