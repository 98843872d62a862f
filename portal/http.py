"""HTTP and JSON helpers shared by every blueprint: error answers, JSON bodies, query
arguments, pagination and the JSON shape of a model's columns."""
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from flask import Blueprint, Flask, abort, jsonify, render_template, request
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .extensions import db
from .models import isoformat
from .validation import MAX_ID, Conflict, ValidationError, parse_id

MAX_PAGE = 1_000_000
MAX_PER_PAGE = 200


# --- errors --------------------------------------------------------------------------


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def error_response(message: str, code: int):
    """JSON for the API, the error page for everything else."""
    if is_api_request():
        return jsonify(error=message), code
    return render_template("errors/error.html", code=code, message=message), code


def register_error_handlers(app: Flask) -> None:
    """App-wide answers for expired CSRF tokens, HTTP errors, a Redis outage and bugs."""
    from flask_wtf.csrf import CSRFError  # web only: workers import this module for fields_json

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return error_response("The form expired or is missing its CSRF token; reload the page and try again.", 400)

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(error):
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        return error_response(f"The request body is larger than the limit of {limit:,} bytes.", 413)

    @app.errorhandler(HTTPException)
    def http_error(error):
        if is_api_request():
            return jsonify(error=error.description or error.name), error.code
        return render_template("errors/error.html", code=error.code, message=error.description), error.code

    @app.errorhandler(RedisError)
    def redis_down(error):
        app.logger.warning("Redis unavailable: %s", error)
        return error_response("The job queue (Redis) is unavailable; try again shortly.", 503)

    @app.errorhandler(Exception)
    def unexpected_error(error):
        app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return error_response("Internal error; the details are in the server log.", 500)


def register_json_errors(blueprint: Blueprint) -> None:
    """422 for invalid payloads, 409 for taken unique values (also when two requests race)."""

    @blueprint.errorhandler(ValidationError)
    def validation_failed(error: ValidationError):
        return jsonify(error=error.message, errors=error.errors), 422

    @blueprint.errorhandler(Conflict)
    def conflict(error: Conflict):
        db.session.rollback()
        return jsonify(error=error.message, errors={error.field: [error.message]}), 409

    @blueprint.errorhandler(IntegrityError)
    def integrity_conflict(error: IntegrityError):
        db.session.rollback()
        return jsonify(error="A record with the same unique value already exists"), 409


def get_or_404(model, object_id: int, name: str | None = None):
    obj = db.session.get(model, object_id)
    if obj is None:
        abort(404, description=f"{name or model.__name__} {object_id} not found")
    return obj


# --- request bodies and query arguments ------------------------------------------------


def json_body(*, optional: bool = False) -> dict:
    """The request's JSON body; with `optional`, an empty body reads as {}."""
    if optional and not request.get_data():
        return {}
    try:
        payload = request.get_json(silent=True)
    except RecursionError:  # nesting deeper than the JSON decoder's recursion limit
        payload = None
    if payload is None:
        raise ValidationError({"_": ["Expected a JSON object body"]}, "Invalid JSON body")
    return payload


def int_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    number = parse_id(value)
    if number is None:
        raise ValidationError({name: [f"Must be an integer between 1 and {MAX_ID}"]}, "Invalid query parameters")
    return number


def reject_unstorable_query_args():
    """before_request: NUL bytes in a query string would reach the database (PostgreSQL refuses them)."""
    bad = {name: ["Must not contain NUL characters"] for name, value in request.args.items(multi=True) if "\x00" in value}
    if bad:
        return jsonify(error="Invalid query parameters", errors=bad), 422
    return None


# --- pagination ------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, (self.total + self.per_page - 1) // self.per_page)


def paginate(query, page: int, per_page: int) -> Page:
    """One page of a select() and the number of rows the whole query has."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(list(rows), page, per_page, total)


def pagination() -> tuple[int, int]:
    """API paging arguments: out-of-range values are a 422."""
    errors = {}
    page = parse_id(request.args.get("page", "1"))
    per_page = parse_id(request.args.get("per_page", "50"))
    if page is None or page > MAX_PAGE:
        errors["page"] = [f"Must be an integer between 1 and {MAX_PAGE}"]
    if per_page is None or per_page > MAX_PER_PAGE:
        errors["per_page"] = [f"Must be an integer between 1 and {MAX_PER_PAGE}"]
    if errors:
        raise ValidationError(errors, "Invalid query parameters")
    return page, per_page


def page_arg() -> int:
    """Page number for pages and partials: anything unusable reads as the nearest valid page."""
    page = request.args.get("page", 1, type=int) or 1
    return min(max(page, 1), MAX_PAGE)


def paginated(query, page: int, per_page: int, serialize: Callable) -> dict:
    """The API's paged envelope."""
    result = paginate(query, page, per_page)
    return {"items": [serialize(r) for r in result.items], "page": page, "per_page": per_page, "total": result.total}


# --- JSON shapes -----------------------------------------------------------------------


def fields_json(obj, names: Iterable[str]) -> dict:
    """The named attributes of `obj`, in that order; datetimes as ISO 8601 UTC strings."""
    return {name: _json_value(getattr(obj, name)) for name in names}


def _json_value(value):
    return isoformat(value) if isinstance(value, datetime) else value
