"""/admin/modules/imap: the mailbox workspace (full pages that work without JavaScript,
and the partials htmx swaps in)."""
from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from markupsafe import escape
from sqlalchemy import select

from .. import page_csp
from ..auth import require_super_admin_page
from ..extensions import db
from ..http import get_or_404, page_arg
from ..models import Company
from ..validation import Conflict, ValidationError
from . import accounts, filters, oauth_connect, preview, schemas, tasks, workspace
from .client_errors import ImapError
from .connection_check import check_connection
from .filter_guide import guide_html
from .forms import MailboxForm
from .models import ImapAccount, ProcessedMessage

bp = Blueprint("imap_views", __name__, url_prefix="/admin/modules/imap")
bp.before_request(require_super_admin_page)


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def toast(message: str, category: str = "info") -> str:
    """An out-of-band toast appended to #toasts by htmx."""
    return f'<div id="toasts" hx-swap-oob="beforeend"><div class="toast {category}" role="status">{escape(message)}</div></div>'


def account_or_404(account_id: int) -> ImapAccount:
    """A live mailbox; a deleted one is only shown by `history`."""
    account = accounts.live(account_id)
    if account is None:
        abort(404, description=f"Mailbox {account_id} not found")
    return account


def render_row(account: ImapAccount, extra: str = "") -> str:
    return render_template("imap/_row.html", account=account, **workspace.rows_context([account])) + extra


# --- list ----------------------------------------------------------------------


@bp.get("/")
@bp.get("")
def index():
    q = (request.args.get("q") or "").replace("\x00", "").strip()
    context = workspace.rows_context(workspace.search_mailboxes(q))
    if is_htmx() and request.headers.get("HX-Target") == "mailbox-rows":
        return render_template("imap/_rows.html", q=q, **context)
    page = render_template("imap/index.html", q=q, deleted=workspace.deleted_mailboxes(), **context)
    return _with_connect_targets(page, context["accounts"])


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
            cron_preview=workspace.cron_preview_context(form.schedule_cron.data or ""),
            unsaved_clone=account is not None and accounts.is_unsaved_clone(account),
            redirect_uri=oauth_connect.redirect_uri(),
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
            if accounts.is_unsaved_clone(account):
                form.active.data = True  # saving the copy schedules it, unless unticked
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


@bp.get("/cron-preview")
def cron_preview():
    expression = request.args.get("schedule_cron", "")
    return render_template("imap/_cron_preview.html", cron_preview=workspace.cron_preview_context(expression))


@bp.post("/filter-check")
def filter_check():
    _, problems = filters.parse_filter_text(request.form.get("filter_query", ""))
    blank = not (request.form.get("filter_query") or "").strip()
    return render_template("imap/_filter_check.html", problems=problems, blank=blank)


@bp.post("/test-connection")
def test_connection_view():
    result = check_connection(request.form)
    return render_template("imap/_test_connection.html", error=result.error, folders=result.folders)


# --- detail ------------------------------------------------------------------------


@bp.get("/<id:account_id>")
def detail(account_id):
    account = account_or_404(account_id)
    page = render_template(
        "imap/detail.html", account=account, **workspace.detail_context(account), **_messages_context(account)
    )
    return _with_connect_targets(page, [account])


def _with_connect_targets(page: str, shown: list[ImapAccount]):
    """A Connect button's form is answered with a redirect to the provider: the page's CSP lets
    forms go to the providers of the mailboxes shown, and nowhere else."""
    response = make_response(page)
    origins = sorted({origin for account in shown if (origin := workspace.authorize_origin(account))})
    if origins:
        response.headers["Content-Security-Policy"] = page_csp(form_action=" ".join(origins))
    return response


# --- OAuth2 connect ------------------------------------------------------------------------


@bp.post("/<id:account_id>/oauth/connect")
def oauth_connect_start(account_id):
    account = account_or_404(account_id)
    try:
        url = oauth_connect.start(account, current_user.id)
    except oauth_connect.NotAuthorizationCode as exc:
        flash(str(exc), "error")
        return redirect(url_for(".detail", account_id=account.id))
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, 303)


@bp.get("/oauth/callback")
def oauth_callback():
    outcome = oauth_connect.finish(request.args, current_user.id)
    flash(outcome.message, "info" if outcome.ok else "error")
    if outcome.account_id is None:
        return redirect(url_for(".index"))
    return redirect(url_for(".detail", account_id=outcome.account_id))


def _messages_context(account: ImapAccount) -> dict:
    return workspace.messages_context(account, request.args.get("outcome") or "", page_arg())


@bp.get("/<id:account_id>/messages")
def messages(account_id):
    account = account_or_404(account_id)
    if not is_htmx():
        kept = {name: value for name, value in request.args.items() if name != "account_id"}  # the path names the mailbox
        return redirect(url_for(".detail", account_id=account_id, **kept))
    return render_template("imap/_audit_results.html", account=account, **_messages_context(account))


@bp.get("/<id:account_id>/runs")
def runs(account_id):
    account = account_or_404(account_id)
    return render_template("imap/_runs.html", account=account, runs=workspace.recent_runs(account))


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
    flash(f"Cloned as '{copy.name}'. It is not scheduled until you save it: adjust it and save.", "info")
    target = url_for(".edit", account_id=copy.id)
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


@bp.route("/<id:account_id>/delete", methods=["GET", "POST", "DELETE"])
def delete(account_id):
    """GET: the confirm page (the Delete button without JavaScript); POST/DELETE: delete it."""
    account = account_or_404(account_id)
    if request.method == "GET":
        return render_template("imap/confirm_delete.html", account=account)
    name = account.name
    error = accounts.delete_account(account)
    text = f"Mailbox '{name}' deleted; its sync history and audit are kept under Deleted mailboxes."
    if error:
        text += " " + error
    if is_htmx():
        deleted = render_template("imap/_deleted.html", deleted=workspace.deleted_mailboxes(), oob=True)
        return deleted + toast(text)
    flash(text, "info")
    return redirect(url_for(".index"))


@bp.get("/<id:account_id>/history")
def history(account_id):
    """A deleted mailbox, read-only: what it was, its sync runs and its audit (a live one: its page)."""
    account = get_or_404(ImapAccount, account_id, "Mailbox")
    if account.deleted_at is None:
        return redirect(url_for(".detail", account_id=account.id))
    return render_template(
        "imap/history.html", account=account, runs=workspace.recent_runs(account), describe=workspace.describe,
        readonly=True, **_messages_context(account),
    )


# --- filter guide ---------------------------------------------------------------------


@bp.get("/filter-guide")
def filter_guide():
    return render_template("imap/guide.html", guide=guide_html())


# --- filter preview ---------------------------------------------------------------------


@bp.post("/<id:account_id>/filter-preview")
def filter_preview(account_id):
    """The form's current filter and switches tried on the folder's newest mail (nothing saved,
    nothing changed); the table for htmx, a page of its own without JavaScript."""
    account = account_or_404(account_id)
    query, problems = filters.parse_filter_text(request.form.get("filter_query", ""))
    settings = {name: bool(request.form.get(name)) for name in preview.SETTINGS if name != "filter_query"}
    settings["filter_query"] = query or None
    result = error = None
    if not problems:
        try:
            result = preview.preview(account, settings)
        except ImapError as exc:
            db.session.rollback()
            error = f"Could not read the mailbox: {exc}"
    context = dict(account=account, problems=problems, error=error, result=result)
    if is_htmx():
        return render_template("imap/_preview.html", **context)
    return render_template("imap/preview.html", **context)
