"""GET /api/openapi.json."""
from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__, url_prefix="/api")


@bp.get("/openapi.json")
def openapi_document():
    from .openapi_spec import build_spec

    return jsonify(build_spec())
