"""/admin/modules/imap: the mailbox workspace (full pages that work without JavaScript,
and the partials htmx swaps in)."""
import os

from flask import (
    Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for,
)
from markupsafe import Markup
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select

from .. import crypto
from ..auth import require_super_admin_page
from ..extensions import db
from ..models import Company
from ..validation import Conflict, ValidationError
from . import accounts, audit, filters, maintenance, scheduling, schemas, tasks
from .client import ConnectionSettings, ImapError, test_connection
from .cron_words import describe
from .forms import MailboxForm
from .models import OUTCOMES, ImapAccount, ProcessedMessage, SyncRun

bp = Blueprint("imap_views", __name__, url_prefix="/admin/modules/imap")
bp.before_request(require_super_admin_page)

RUNS_SHOWN = 20
MESSAGES_PER_PAGE = 25


@bp.app_context_processor
def restart_banner():
    if not request.path.startswith("/admin/") and not request.path.startswith("/tickets") and not request.path.startswith("/companies"):
        return {}
    try:
        return {"restart_pending": maintenance.restart_pending()}
    except RedisError:
        return {"restart_pending": False}


@bp.app_template_filter("utc")
def utc_filter(value, fmt="%Y-%m-%d %H:%M"):
    return value.strftime(fmt) + " UTC" if value else "—"


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def toast(message: str, category: str = "info") -> str:
    """An out-of-band toast appended to #toasts by htmx."""
    from markupsafe import escape

    return f'<div id="toasts" hx-swap-oob="beforeend"><div class="toast {category}" role="status">{escape(message)}</div></div>'


def account_or_404(account_id: int) -> ImapAccount:
    account = db.session.get(ImapAccount, account_id)
    if account is None:
        abort(404, description=f"Mailbox {account_id} not found")
    return account


def latest_runs(account_ids: list[int]) -> dict[int, SyncRun]:
    if not account_ids:
        return {}
    newest = (
        select(func.max(SyncRun.id))
        .where(SyncRun.account_id.in_(account_ids), SyncRun.status.not_in(("deferred", "skipped")))
        .group_by(SyncRun.account_id)
    )
    return {run.account_id: run for run in db.session.scalars(select(SyncRun).where(SyncRun.id.in_(newest)))}


def row_context(rows: list[ImapAccount]) -> dict:
    ids = [a.id for a in rows]
    return {
        "accounts": rows,
        "next_runs": scheduling.next_run_times(ids),
        "runs": latest_runs(ids),
        "describe": describe,
    }


def render_row(account: ImapAccount, extra: str = "") -> str:
    return render_template("imap/_row.html", account=account, **row_context([account])) + extra


# --- list ----------------------------------------------------------------------


@bp.get("/")
@bp.get("")
def index():
    q = (request.args.get("q") or "").replace("\x00", "").strip()
    query = select(ImapAccount).order_by(ImapAccount.priority, ImapAccount.id)
    if q:
        like = f"%{q.lower()}%"
        query = query.outerjoin(Company).where(
            or_(
                func.lower(ImapAccount.name).like(like),
                func.lower(ImapAccount.username).like(like),
                func.lower(ImapAccount.host).like(like),
                func.lower(ImapAccount.folder).like(like),
                func.lower(Company.name).like(like),
            )
        )
    rows = list(db.session.scalars(query))
    context = row_context(rows)
    if is_htmx() and request.headers.get("HX-Target") == "mailbox-rows":
        return render_template("imap/_rows.html", q=q, **context)
    return render_template("imap/index.html", q=q, **context)


@bp.get("/<id:account_id>/row")
def row(account_id):
    return render_row(account_or_404(account_id))


# --- create / edit ---------------------------------------------------------------


def _companies():
    return list(db.session.scalars(select(Company).order_by(Company.name)))


def _save(form: MailboxForm, account: ImapAccount | None):
    """Validate through schemas.py and save; returns (account, errors)."""
    payload, errors = form.to_payload(editing=account is not None)
    try:
        data = schemas.validate_account(payload, partial=account is not None)
    except ValidationError as exc:
        data = None
        for field, messages in exc.errors.items():
            errors.setdefault(field, []).extend(m for m in messages if m not in errors.get(field, []))
    if errors:
        return None, errors
    try:
        saved = accounts.update_account(account, data) if account else accounts.create_account(data)
    except ValidationError as exc:
        db.session.rollback()
        return None, exc.errors
    except Conflict as exc:
        db.session.rollback()
        return None, {exc.field: [exc.message]}
    return saved, {}


def _render_form(form, account, errors, status=200):
    return (
        render_template(
            "imap/form.html",
            form=form,
            account=account,
            errors=errors,
            cron_preview=cron_preview_context(form.schedule_cron.data or ""),
        ),
        status,
    )


@bp.route("/new", methods=["GET", "POST"])
def create():
    return _form_page(None)


@bp.route("/<id:account_id>/edit", methods=["GET", "POST"])
def edit(account_id):
    return _form_page(account_or_404(account_id))


def _form_page(account: ImapAccount | None):
    """The create (account None) and edit form: shown, or saved and then the mailbox page."""
    form = MailboxForm()
    form.set_companies(_companies())
    if request.method == "GET":
        if account is not None:
            form.load(account)
        return _render_form(form, account, {})
    if not form.validate():
        return _render_form(form, account, {"csrf_token": ["The form expired; submit it again."]}, 400)
    saved, errors = _save(form, account)
    if errors:
        db.session.rollback()
        return _render_form(form, account, errors, 422)
    flash(_saved_message(saved, "saved" if account else "created"), "info")
    return redirect(url_for(".detail", account_id=saved.id))


def _saved_message(account, verb):
    message = f"Mailbox '{account.name}' {verb}."
    if account.schedule_error:
        message += " " + account.schedule_error
    return message


# --- live helpers for the form ---------------------------------------------------


def cron_preview_context(expression: str) -> dict:
    error = schemas.cron_error(expression)
    if error:
        return {"error": error, "expression": expression}
    return {"error": None, "expression": expression, "words": describe(expression), "runs": scheduling.next_runs(expression, 3)}


@bp.get("/cron-preview")
def cron_preview():
    expression = request.args.get("schedule_cron", "")
    return render_template("imap/_cron_preview.html", cron_preview=cron_preview_context(expression))


@bp.post("/filter-check")
def filter_check():
    _, problems = filters.parse_filter_text(request.form.get("filter_query", ""))
    blank = not (request.form.get("filter_query") or "").strip()
    return render_template("imap/_filter_check.html", problems=problems, blank=blank)


@bp.post("/test-connection")
def test_connection_view():
    form = request.form
    password = form.get("password") or ""
    account_id = form.get("account_id", "")
    if not password and account_id.isdigit():
        stored = db.session.get(ImapAccount, int(account_id))
        if stored is not None and stored.password_encrypted:
            password = crypto.decrypt(stored.password_encrypted)
    problems = []
    port = form.get("port", "").strip()
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        problems.append("Port must be between 1 and 65535.")
    if not form.get("host", "").strip() or not form.get("username", "").strip():
        problems.append("Host and username are needed to test the connection.")
    if not password:
        problems.append("Enter the password to test the connection.")
    if form.get("security") not in schemas.SECURITY_MODES:
        problems.append("Choose a security mode.")
    if problems:
        return render_template("imap/_test_connection.html", error=" ".join(problems), folders=None)
    settings = ConnectionSettings(
        host=form["host"].strip(),
        port=int(port),
        security=form["security"],
        verify_tls=form.get("verify_tls") in ("y", "on", "true", "1"),
        username=form["username"].strip(),
        password=password,
        timeout=min(current_app.config["IMAP_TIMEOUT_SECONDS"], 15),
        ca_file=current_app.config.get("IMAP_CA_FILE"),
    )
    try:
        folders = test_connection(settings)
    except ImapError as exc:
        return render_template("imap/_test_connection.html", error=str(exc), folders=None)
    return render_template("imap/_test_connection.html", error=None, folders=folders)


# --- detail ------------------------------------------------------------------------


@bp.get("/<id:account_id>")
def detail(account_id):
    account = account_or_404(account_id)
    runs = recent_runs(account)
    next_run = scheduling.next_run_times([account.id]).get(account.id)
    upcoming = scheduling.next_runs(account.schedule_cron, 3) if account.active else []
    return render_template(
        "imap/detail.html",
        account=account,
        runs=runs,
        next_run=next_run,
        upcoming=upcoming,
        describe=describe,
        **messages_context(account),
    )


def recent_runs(account) -> list[SyncRun]:
    query = select(SyncRun).where(SyncRun.account_id == account.id).order_by(SyncRun.id.desc()).limit(RUNS_SHOWN)
    return list(db.session.scalars(query))


def messages_context(account) -> dict:
    outcome = request.args.get("outcome") or ""
    if outcome not in OUTCOMES:
        outcome = ""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    query = audit.messages_query(account.id, outcome or None)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list(db.session.scalars(query.limit(MESSAGES_PER_PAGE).offset((page - 1) * MESSAGES_PER_PAGE)))
    counts = dict(
        db.session.execute(
            select(ProcessedMessage.outcome, func.count()).where(ProcessedMessage.account_id == account.id).group_by(ProcessedMessage.outcome)
        ).all()
    )
    return {
        "messages": rows,
        "outcome": outcome,
        "outcomes": OUTCOMES,
        "outcome_counts": counts,
        "page": page,
        "pages": max(1, (total + MESSAGES_PER_PAGE - 1) // MESSAGES_PER_PAGE),
        "total_messages": total,
    }


@bp.get("/<id:account_id>/messages")
def messages(account_id):
    account = account_or_404(account_id)
    if not is_htmx():
        return redirect(url_for(".detail", account_id=account_id, **request.args))
    return render_template("imap/_audit_results.html", account=account, **messages_context(account))


@bp.get("/<id:account_id>/runs")
def runs(account_id):
    account = account_or_404(account_id)
    return render_template("imap/_runs.html", account=account, runs=recent_runs(account))


@bp.post("/<id:account_id>/messages/<id:message_id>/retry")
def retry_message(account_id, message_id):
    account = account_or_404(account_id)
    message = db.session.get(ProcessedMessage, message_id)
    if message is None or message.account_id != account.id:
        abort(404, description="Processed message not found")
    if message.outcome != "failed":
        abort(409, description="Only failed messages can be retried.")
    tasks.retry_failed(account, message)
    text = f"Retry of UID {message.uid} queued; a sync is on its way."
    if not is_htmx():
        flash(text, "info")
        return redirect(url_for(".detail", account_id=account.id))
    return render_template("imap/_message_row.html", account=account, m=message) + toast(text)


# --- row actions -----------------------------------------------------------------------


def _row_or_redirect(account, text, category="info"):
    if is_htmx():
        return render_row(account, toast(text, category))
    flash(text, category)
    return redirect(url_for(".index"))


@bp.post("/<id:account_id>/sync")
def sync(account_id):
    account = account_or_404(account_id)
    run = tasks.enqueue_sync(account, trigger="manual")
    return _row_or_redirect(account, f"Sync of '{account.name}' queued (run {run.id}).")


@bp.post("/<id:account_id>/pause")
def pause(account_id):
    account = accounts.update_account(account_or_404(account_id), {"active": False})
    return _row_or_redirect(account, f"'{account.name}' paused: no scheduled syncs until resumed.")


@bp.post("/<id:account_id>/resume")
def resume(account_id):
    account = accounts.update_account(account_or_404(account_id), {"active": True})
    return _row_or_redirect(account, _saved_message(account, "resumed"))


@bp.post("/<id:account_id>/clone")
def clone(account_id):
    copy = accounts.clone_account(account_or_404(account_id), {})
    flash(f"Cloned as '{copy.name}'. Adjust it and save.", "info")
    target = url_for(".edit", account_id=copy.id)
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


@bp.route("/<id:account_id>/delete", methods=["POST", "DELETE"])
def delete(account_id):
    account = account_or_404(account_id)
    name = account.name
    accounts.delete_account(account)
    text = f"Mailbox '{name}' deleted; its schedule is removed."
    if is_htmx():
        return toast(text)
    flash(text, "info")
    return redirect(url_for(".index"))


# --- filter guide ---------------------------------------------------------------------


@bp.get("/filter-guide")
def filter_guide():
    from markdown_it import MarkdownIt

    path = os.path.join(os.path.dirname(current_app.root_path), "docs", "imap-filters.md")
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(source)
    return render_template("imap/guide.html", guide=Markup(html))
