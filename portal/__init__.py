"""MyPortal: the application factory."""
import os

from flask import Flask, request
from flask_login import current_user
from redis.exceptions import RedisError
from werkzeug.routing import IntegerConverter

from .config import load_config
from .extensions import csrf, db
from .validation import MAX_ID


def create_app(config: dict | None = None, *, web: bool = True) -> Flask:
    """The app. Workers pass web=False: no pages, API, CLI or migrations, so each of the
    many worker processes carries only what a sync job needs."""
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(load_config(config, instance_path=app.instance_path))
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.url_map.converters["id"] = IdConverter

    db.init_app(app)
    from . import models  # noqa: F401  (register tables)
    from .imap import models as imap_models  # noqa: F401

    if not web:
        return app

    from flask_migrate import Migrate

    Migrate(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"), render_as_batch=True)
    csrf.init_app(app)
    from .auth import init_sessions

    init_sessions(app)
    _trust_proxies(app)

    _register_blueprints(app)
    _register_csrf(app)
    _register_security_headers(app)
    _register_page_helpers(app)

    from .http import register_error_handlers

    register_error_handlers(app)

    from .cli import register_cli

    register_cli(app)
    return app


def _trust_proxies(app: Flask) -> None:
    """Behind PROXY_FIX_HOPS reverse proxies, take the client address, scheme and host from their
    X-Forwarded-* headers (so https requests get Secure cookies and login limits count real
    clients). Off by default: without a proxy, anyone could send those headers."""
    hops = app.config["PROXY_FIX_HOPS"]
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)


class IdConverter(IntegerConverter):
    """<id:...>: a row id. Numbers beyond the INTEGER column range become 0, an id no row has,
    so the view answers its usual 404 instead of the database overflowing."""

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= MAX_ID else 0


def _register_blueprints(app: Flask) -> None:
    from .auth import bp as auth_bp
    from .imap.api import bp as imap_api_bp
    from .imap.openapi import document_part as imap_document_part
    from .imap.views import bp as imap_views_bp
    from .ops import bp as ops_bp
    from .ops import document_part as ops_document_part
    from .platform.api import bp as platform_api_bp
    from .platform.openapi import add_document_part
    from .platform.openapi import bp as openapi_bp
    from .platform.pages import bp as platform_pages_bp

    for blueprint in (auth_bp, platform_pages_bp, platform_api_bp, openapi_bp, imap_api_bp, imap_views_bp, ops_bp):
        app.register_blueprint(blueprint)
    add_document_part(app, imap_document_part())
    add_document_part(app, ops_document_part())


# Email HTML is sanitised before it is stored; the CSP is the second wall: no scripts but
# our own files, and no remote images (tracking pixels) in rendered mail. Inline style
# attributes stay allowed: the sanitiser keeps only a short list of CSS properties.
def page_csp(form_action: str = "") -> str:
    """The pages' CSP; `form_action` adds an origin a form on the page may be redirected to
    (a mailbox's OAuth2 provider, for its Connect button)."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        + (f" {form_action}" if form_action else "")
    )


PAGE_CSP = page_csp()


def _register_security_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def _register_page_helpers(app: Flask) -> None:
    """Template helpers every page uses: the pending-restart banner and the `utc` filter."""
    from .imap import maintenance

    @app.context_processor
    def restart_banner():
        if not request.path.startswith(("/admin/", "/tickets", "/companies")):
            return {}
        try:
            return {"restart_pending": maintenance.restart_pending()}
        except RedisError:
            return {"restart_pending": False}

    @app.template_filter("utc")
    def utc(value, fmt="%Y-%m-%d %H:%M"):
        return value.strftime(fmt) + " UTC" if value else "—"


def _register_csrf(app: Flask) -> None:
    from .auth import bearer_token
    from .http import is_api_request

    @app.before_request
    def csrf_unless_bearer():
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if is_api_request() and (bearer_token() is not None or not current_user.is_authenticated):
            # No ambient credentials: token calls and anonymous calls (answered 401) need no token.
            return
        csrf.protect()
