"""GET /api/openapi.json."""
from flask import Blueprint, jsonify

from ..auth import require_super_admin_api

bp = Blueprint("openapi", __name__, url_prefix="/api")


@bp.get("/openapi.json")
def openapi_document():
    from .openapi_spec import build_spec

    return jsonify(build_spec())
