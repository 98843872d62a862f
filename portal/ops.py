"""Operator endpoints: /healthz (load balancers), /api/health (super admin, JSON), /metrics
(Prometheus, behind METRICS_TOKEN) and the status strip the IMAP workspace shows."""
import hmac

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask_login import current_user
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from . import health, metrics
from .auth import bearer_token, require_super_admin_api
from .extensions import db
from .openapi_helpers import DocumentPart, integer, nullable, obj, operation, path_item, ref, response, response_obj, string

bp = Blueprint("ops", __name__)

# The strip refreshes itself this many times (every 15 s: ten minutes), then waits for a reload,
# so a tab left open does not keep its session alive for ever (each request resets the idle clock).
STRIP_REFRESHES = 40
bp.record_once(lambda state: state.app.jinja_env.globals.update(HEALTH_STRIP_REFRESHES=STRIP_REFRESHES))


@bp.get("/healthz")
def healthz():
    """200 when this process reaches the database and Redis, else 503; no details, no auth."""
    ok = health.alive()
    response = Response("ok\n" if ok else "unavailable\n", status=200 if ok else 503, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api/health")
def api_health():
    denied = require_super_admin_api()
    if denied is not None:
        return denied
    report = health.report()
    db.session.rollback()
    return jsonify(report)


@bp.get("/metrics")
def prometheus_metrics():
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return Response("Not found\n", status=404, mimetype="text/plain")
    given = bearer_token() or ""
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        return Response("A valid metrics token is required\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    try:
        body = generate_latest(metrics.registry_for(current_app))
    except SQLAlchemyError as exc:
        db.session.rollback()
        current_app.logger.warning("metrics: the database did not answer (%s)", type(exc).__name__)
        return Response("The database is unavailable\n", status=503, mimetype="text/plain")
    db.session.rollback()
    return Response(body, mimetype=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


@bp.get("/admin/health/strip")
def strip():
    """The workspace's status strip alone (htmx refreshes it). A signed-out or other caller gets
    286 and an empty body: htmx stops polling and takes the strip away."""
    if not (current_user.is_authenticated and current_user.is_super_admin):
        return Response("", status=286)
    try:
        left = max(0, min(STRIP_REFRESHES, int(request.args.get("left", STRIP_REFRESHES))))
    except ValueError:
        left = STRIP_REFRESHES
    return render_template("ops/_health_strip.html", health=health.report(), refreshes_left=max(0, left - 1))


@bp.app_template_global("service_health")
def service_health() -> dict:
    """For pages that include ops/_health_strip.html: `{% with health=service_health() %}`."""
    return health.report()


# --- the OpenAPI part ------------------------------------------------------------------


def number_or_null() -> dict:
    return {"type": ["number", "null"]}


def document_part() -> DocumentPart:
    check = response_obj({"ok": {"type": "boolean"}, "error": nullable(string()), "latency_ms": number_or_null()})
    mailbox_ref = response_obj({"id": integer(1), "name": string()})
    worker = response_obj({
        "name": string(), "hostname": nullable(string()), "pid": nullable(integer()), "state": string(),
        "current_job_id": nullable(string()), "heartbeat_age_seconds": number_or_null(),
    })
    schemas = {
        "HealthCheck": check,
        "HealthReport": response_obj({
            "status": string(enum=[health.OK, health.DEGRADED, health.DOWN],
                             description="down: database or Redis unreachable; degraded: something needs an operator"),
            "checked_at": string(format="date-time"),
            "problems": {"type": "array", "items": string(), "description": "One sentence per problem"},
            "database": ref("HealthCheck"),
            "redis": ref("HealthCheck"),
            "scheduler": nullable(response_obj({
                "ok": {"type": "boolean"}, "heartbeat_age_seconds": number_or_null(),
                "host": nullable(string()), "pid": nullable(integer()), "stale_after_seconds": {"type": "number"},
            })),
            "workers": nullable(response_obj({
                "alive": integer(0), "busy": integer(0), "workers": {"type": "array", "items": worker},
            })),
            "listeners": response_obj({"alive": integer(0), "listeners": {"type": "array", "items": obj({}, closed=False)}}),
            "queue": nullable(response_obj({
                "name": string(), "depth": integer(0), "oldest_job_age_seconds": number_or_null(),
            })),
            "mailboxes": nullable(response_obj({
                "total": integer(0), "active": integer(0), "push": integer(0),
                "failing": integer(0), "failing_mailboxes": {"type": "array", "items": mailbox_ref},
                "needs_reauthorization": integer(0),
                "needs_reauthorization_mailboxes": {"type": "array", "items": mailbox_ref},
            })),
            "restart": nullable(response_obj({
                "pending": {"type": "boolean"}, "since": nullable(string(format="date-time")), "reason": nullable(string()),
            })),
        }, description="null sections could not be read (their database or Redis is unreachable)"),
    }
    tag = {"name": "Operations", "description": "Health of the service (also GET /healthz and GET /metrics, outside the API)"}
    paths = {
        "/api/health": path_item(get=operation(
            "getHealth", "Health: database, Redis, scheduler, workers, queue, mailboxes, pending restart",
            "Operations", {"200": response("The report (also when the service is degraded or down)", "HealthReport")},
        )),
    }
    return DocumentPart(tag=tag, paths=paths, schemas=schemas)
