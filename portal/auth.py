"""Login/logout, browser sessions, API tokens, and the super-admin guards for pages and the API.

Sessions: the session cookie carries "<user id>:<session_version>" (User.get_id), so bumping the
user's session_version (logout, password change) ends every copy of the cookie; a session also
ends after SESSION_IDLE_MINUTES without a request."""
import hashlib
import logging
import math
import secrets
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, has_request_context, jsonify, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from . import login_throttle
from .extensions import db, login_manager
from .models import ApiToken, User, normalize_email, utcnow

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

LAST_SEEN_KEY = "last_seen"
LAST_SEEN_RESOLUTION_SECONDS = 60  # the idle clock is refreshed at most once a minute
TOKEN_USE_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute


# --- browser sessions ----------------------------------------------------------------


class SessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose cookie is Secure whenever the request came over https
    (directly, or through a trusted proxy: PROXY_FIX_HOPS), not only under SESSION_COOKIE_SECURE."""

    def get_cookie_secure(self, app) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def init_sessions(app) -> None:
    app.session_interface = SessionInterface()
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"


@login_manager.user_loader
def load_user(session_id: str):
    """The user a session (or remember-me cookie) names, if its session version is still current."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active or user.session_version != int(version):
        return None
    return user


@bp.before_app_request
def end_idle_session():
    if "_user_id" not in session:
        return
    now = int(time.time())
    last_seen = session.get(LAST_SEEN_KEY)
    idle_limit = current_app.config["SESSION_IDLE_MINUTES"] * 60
    if not isinstance(last_seen, int) or now - last_seen > idle_limit:
        logout_user()
        session.pop(LAST_SEEN_KEY, None)
    elif now - last_seen >= LAST_SEEN_RESOLUTION_SECONDS:
        session[LAST_SEEN_KEY] = now


def start_session(user: User) -> None:
    # No session.clear(): a signed-cookie session has no server-side id to fixate, and what it
    # holds before login (the form's CSRF token) is ours; pages open in other tabs keep working.
    session.permanent = True  # the cookie's own lifetime is the idle limit (PERMANENT_SESSION_LIFETIME)
    login_user(user)
    session[LAST_SEEN_KEY] = int(time.time())


def end_all_sessions(user: User) -> None:
    """Every session of this user, on every device, ends at its next request."""
    user.revoke_sessions()
    db.session.commit()


# --- API tokens ----------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_api_token(user: User, name: str = "", expires_at: datetime | None = None) -> str:
    """Store a hash of a new random token and return the token (shown once)."""
    token = "mp_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, name=name, token_hash=hash_token(token), expires_at=expires_at))
    db.session.commit()
    return token


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def user_for_token(token: str) -> User | None:
    api_token = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked.is_(False))
    )
    if api_token is None or api_token.is_expired() or not api_token.user.is_active:
        return None
    if api_token.last_used_at is None or utcnow() - api_token.last_used_at >= TOKEN_USE_RESOLUTION:
        record_token_use(api_token.id)
    return api_token.user


def record_token_use(token_id: int) -> None:
    """Set the token's last_used_at in a short transaction of its own that waits at most a moment
    for locks; a busy or failing database skips it (logged), never failing the request."""
    now = utcnow()
    statement = (
        update(ApiToken)
        .where(ApiToken.id == token_id)
        .where(or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - TOKEN_USE_RESOLUTION))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    try:
        with db.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                previous = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
                connection.exec_driver_sql("PRAGMA busy_timeout=100")
            else:
                connection.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")
                connection.exec_driver_sql("SET LOCAL statement_timeout = '2s'")
            try:
                connection.execute(statement)
                connection.commit()
            finally:
                if sqlite:
                    connection.rollback()
                    connection.exec_driver_sql(f"PRAGMA busy_timeout={int(previous)}")
    except SQLAlchemyError as error:
        log.warning("API token %s: last_used_at not recorded (%s)", token_id, type(error).__name__)


_UNSET = object()


def api_user() -> User | None:
    """The caller of an API request: Bearer token if one is sent, else the session."""
    cached = request.environ.get("portal.api_user", _UNSET)
    if cached is _UNSET:
        token = bearer_token()
        if token is not None:
            cached = user_for_token(token)
        else:
            cached = current_user._get_current_object() if current_user.is_authenticated else None
        request.environ["portal.api_user"] = cached
    return cached


def require_super_admin_api():
    """before_request guard for JSON blueprints."""
    user = api_user()
    if user is None:
        return jsonify(error="Authentication required"), 401
    if not user.is_super_admin:
        return jsonify(error="Super administrator access required"), 403
    return None


def require_super_admin_page():
    """before_request guard for HTML blueprints."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if not current_user.is_super_admin:
        abort(403)
    return None


def _safe_next(target: str | None) -> str:
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("platform_pages.tickets")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


_dummy_hash: str | None = None


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password. Exactly one password hash is checked
    whether or not the account exists, so the answer's timing does not tell which emails do."""
    global _dummy_hash
    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None and user.is_active and user.password_hash:
        return user if user.check_password(password) else None
    if _dummy_hash is None:
        _dummy_hash = generate_password_hash(secrets.token_urlsafe(16))
    check_password_hash(_dummy_hash, password)
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form, error=None)
    email = normalize_email(form.email.data)
    verdict = login_throttle.register_attempt(email, request.remote_addr or "")
    if not verdict.allowed:
        minutes = math.ceil(verdict.retry_after / 60)
        error = f"Too many sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        response = current_app.make_response((render_template("auth/login.html", form=form, error=error), 429))
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    user = authenticate(email, form.password.data)
    if user is None:
        return render_template("auth/login.html", form=form, error="Invalid email or password."), 401
    login_throttle.forget_account(email)
    start_session(user)
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    # Logging out ends this user's sessions everywhere, so a copied cookie dies with it.
    if current_user.is_authenticated:
        end_all_sessions(current_user._get_current_object())
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))
