"""/api/imap/... JSON blueprint (super admin only)."""
from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select

from ..auth import api_user, require_super_admin_api
from ..extensions import db
from ..http import get_or_404, json_body, paginated, pagination, register_json_errors, reject_unstorable_query_args
from ..validation import Conflict, ValidationError
from . import accounts, audit, oauth_connect, preview, schemas, tasks
from .client_errors import ImapError
from .oauth_access import SignInNeedsAction
from .models import OUTCOMES, ImapAccount, ProcessedMessage, SyncRun

bp = Blueprint("imap_api", __name__, url_prefix="/api/imap")
bp.before_request(require_super_admin_api)
bp.before_request(reject_unstorable_query_args)
register_json_errors(bp)


def account_or_404(account_id: int) -> ImapAccount:
    """A live mailbox: every change and every sync 404s on a deleted one."""
    account = get_or_404(ImapAccount, account_id, "Mailbox")
    if account.deleted_at is not None:
        abort(404, description=f"Mailbox {account_id} was deleted; its history stays readable")
    return account


def any_account_or_404(account_id: int) -> ImapAccount:
    """A live or deleted mailbox: reading a mailbox and its history works after a delete."""
    return get_or_404(ImapAccount, account_id, "Mailbox")


@bp.get("/accounts")
def list_accounts():
    """Live mailboxes by priority; ?deleted=true: the deleted ones, most recently deleted first."""
    deleted = request.args.get("deleted", "false")
    if deleted not in ("true", "false"):
        raise ValidationError({"deleted": ["Must be true or false"]}, "Invalid query parameters")
    if deleted == "true":
        query = accounts.deleted_query()
    else:
        query = accounts.live_query().order_by(ImapAccount.priority, ImapAccount.id)
    rows = db.session.scalars(query).all()
    return jsonify({"items": accounts.accounts_json(rows), "total": len(rows)})


@bp.post("/accounts")
def create_account():
    data = schemas.validate_account(json_body(), partial=False)
    account = accounts.create_account(data)
    return jsonify(accounts.one_account_json(account)), 201


@bp.get("/accounts/<id:account_id>")
def get_account(account_id):
    return jsonify(accounts.one_account_json(any_account_or_404(account_id)))


@bp.put("/accounts/<id:account_id>")
def update_account(account_id):
    account = account_or_404(account_id)
    data = schemas.validate_account(json_body(), partial=True)
    accounts.update_account(account, data)
    return jsonify(accounts.one_account_json(account))


@bp.delete("/accounts/<id:account_id>")
def delete_account(account_id):
    accounts.delete_account(account_or_404(account_id))
    return "", 204


@bp.post("/accounts/<id:account_id>/clone")
def clone_account(account_id):
    source = account_or_404(account_id)
    overrides = schemas.validate_account(json_body(optional=True), partial=True)
    copy = accounts.clone_account(source, overrides)
    return jsonify(accounts.one_account_json(copy)), 201


@bp.post("/accounts/<id:account_id>/oauth/authorize")
def oauth_authorize(account_id):
    """The provider URL an admin opens (signed in here as the same user) to connect the mailbox."""
    account = account_or_404(account_id)
    json_body(optional=True)
    try:
        url = oauth_connect.start(account, api_user().id)
    except oauth_connect.NotAuthorizationCode as exc:
        raise Conflict("oauth_flow", str(exc)) from None
    return jsonify(authorization_url=url)


@bp.post("/accounts/<id:account_id>/sync")
def sync_account(account_id):
    account = account_or_404(account_id)
    run = tasks.enqueue_sync(account, trigger="manual")
    return (
        jsonify(
            sync_run_id=run.id,
            job_id=run.job_id,
            status=run.status,
            scheduled_task_id=account.scheduled_task_id,
        ),
        202,
    )


@bp.get("/accounts/<id:account_id>/sync-runs")
def list_sync_runs(account_id):
    any_account_or_404(account_id)
    page, per_page = pagination()
    query = select(SyncRun).where(SyncRun.account_id == account_id).order_by(SyncRun.id.desc())
    return jsonify(paginated(query, page, per_page, audit.sync_run_json))


@bp.get("/accounts/<id:account_id>/sync-runs/<id:run_id>")
def get_sync_run(account_id, run_id):
    run = db.session.get(SyncRun, run_id)
    if run is None or run.account_id != account_id:
        abort(404, description=f"Sync run {run_id} not found")
    return jsonify(audit.sync_run_json(run))


@bp.get("/accounts/<id:account_id>/messages")
def list_messages(account_id):
    any_account_or_404(account_id)
    page, per_page = pagination()
    outcome = request.args.get("outcome")
    if outcome and outcome not in OUTCOMES:
        raise ValidationError({"outcome": ["Must be one of: " + ", ".join(OUTCOMES)]}, "Invalid query parameters")
    query = audit.messages_query(account_id, outcome)
    return jsonify(paginated(query, page, per_page, audit.processed_message_json))


@bp.post("/accounts/<id:account_id>/messages/<id:message_id>/retry")
def retry_message(account_id, message_id):
    account = account_or_404(account_id)
    message = db.session.get(ProcessedMessage, message_id)
    if message is None or message.account_id != account_id:
        abort(404, description=f"Processed message {message_id} not found")
    if message.outcome != "failed":
        raise Conflict("outcome", f"Only failed messages can be retried; this one is '{message.outcome}'")
    run = tasks.retry_failed(account, message)
    return jsonify(
        message=audit.processed_message_json(message), sync_run_id=run.id, job_id=run.job_id, status=run.status
    ), 202


@bp.post("/accounts/<id:account_id>/filter-preview")
def filter_preview(account_id):
    """What a sync would do with the newest messages under the given (unsaved) settings; changes nothing."""
    account = account_or_404(account_id)
    settings, limit = preview.read_request(json_body(optional=True))
    try:
        result = preview.preview(account, settings, limit)
    except SignInNeedsAction as exc:
        raise Conflict("auth", f"The mailbox cannot sign in until someone acts: {exc}") from None
    except ImapError as exc:
        db.session.rollback()
        return jsonify(error=f"Could not read the mailbox: {exc}"), 502
    return jsonify(result)
