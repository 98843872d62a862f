"""Login/logout, API tokens, and the super-admin guards for pages and the API."""
import hashlib
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from .extensions import db, login_manager
from .models import ApiToken, User, normalize_email, utcnow

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(user_id: str):
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user if user is not None and user.is_active else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_api_token(user: User, name: str = "") -> str:
    """Store a hash of a new random token and return the token (shown once)."""
    token = "mp_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, name=name, token_hash=hash_token(token)))
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
    if api_token is None or not api_token.user.is_active:
        return None
    api_token.last_used_at = utcnow()
    db.session.commit()
    return api_token.user


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
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.email == normalize_email(form.email.data)))
        if user is not None and user.is_active and user.check_password(form.password.data):
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        error = "Invalid email or password."
    status = 401 if error else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    return redirect(url_for("auth.login"))
