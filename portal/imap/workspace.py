"""What the mailbox workspace shows: the mailbox list and its search, rows with their latest
run and next scheduled time, a mailbox's recent runs and audit page, and the live cron
preview. Reads only; the request handling stays in views.py."""
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select

from ..extensions import db
from ..http import paginate
from ..models import Company
from . import accounts, audit, history, push, scheduling, schemas
from .cron_words import describe
from .oauth_providers import AUTHORIZATION_CODE, NOT_CONNECTED, OAUTH2, STATUS_LABELS, endpoints
from .models import OUTCOMES, ImapAccount, SyncRun

RUNS_SHOWN = 20
MESSAGES_PER_PAGE = 25


def search_mailboxes(q: str) -> list[ImapAccount]:
    """Live mailboxes in priority order; with `q`, those whose name, username, host, folder or
    company name contains it (case-insensitive)."""
    query = accounts.live_query().order_by(ImapAccount.priority, ImapAccount.id)
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
    return list(db.session.scalars(query))


def latest_runs(account_ids: list[int]) -> dict[int, SyncRun]:
    if not account_ids:
        return {}
    newest = (
        select(func.max(SyncRun.id))
        .where(SyncRun.account_id.in_(account_ids), SyncRun.status.not_in(("deferred", "skipped")))
        .group_by(SyncRun.account_id)
    )
    return {run.account_id: run for run in db.session.scalars(select(SyncRun).where(SyncRun.id.in_(newest)))}


def rows_context(rows: list[ImapAccount]) -> dict:
    ids = [a.id for a in rows]
    return {
        "accounts": rows,
        "next_runs": scheduling.next_run_times(ids),
        "runs": latest_runs(ids),
        "describe": describe,
        "oauth_view": oauth_view,
        "unsaved_clone": accounts.is_unsaved_clone,
    }


def deleted_mailboxes() -> list[ImapAccount]:
    """The deleted mailboxes, most recently deleted first (their history stays readable)."""
    return list(db.session.scalars(accounts.deleted_query()))


def recent_runs(account: ImapAccount) -> list[SyncRun]:
    query = select(SyncRun).where(SyncRun.account_id == account.id).order_by(SyncRun.id.desc()).limit(RUNS_SHOWN)
    return list(db.session.scalars(query))


def detail_context(account: ImapAccount) -> dict:
    return {
        "runs": recent_runs(account),
        "next_run": scheduling.next_run_times([account.id]).get(account.id),
        "upcoming": scheduling.next_runs(account.schedule_cron, 3) if account.active else [],
        "describe": describe,
        "oauth": oauth_view(account),
        "unsaved_clone": accounts.is_unsaved_clone(account),
        "history": history.chart(account.id),
        "push": push.push_states([account.id])[account.id] if account.push_enabled else None,
    }


def messages_context(account: ImapAccount, outcome: str, page: int) -> dict:
    """One page of the processed-message audit; an unknown outcome shows them all."""
    if outcome not in OUTCOMES:
        outcome = ""
    results = paginate(audit.messages_query(account.id, outcome or None), page, MESSAGES_PER_PAGE)
    return {
        "messages": results.items,
        "results": results,
        "outcome": outcome,
        "outcomes": OUTCOMES,
        "outcome_counts": audit.outcome_counts(account.id),
    }


def cron_preview_context(expression: str) -> dict:
    error = schemas.cron_error(expression)
    if error:
        return {"error": error, "expression": expression}
    return {"error": None, "expression": expression, "words": describe(expression), "runs": scheduling.next_runs(expression, 3)}


def oauth_view(account: ImapAccount) -> dict | None:
    """What the row and the detail page say about an OAuth2 mailbox's sign-in (None: password)."""
    if account.auth_method != OAUTH2:
        return None
    ends = endpoints(account)
    connects = ends.flow == AUTHORIZATION_CODE and bool(ends.authorize_url)
    verb = "Connect" if account.oauth_status == NOT_CONNECTED else "Reconnect"
    return {
        "status": account.oauth_status,
        "status_label": STATUS_LABELS.get(account.oauth_status, account.oauth_status),
        "provider": ends.provider.label,
        "flow": ends.flow,
        "connect_label": f"{verb} with {ends.provider.label}" if connects else None,
    }


def authorize_origin(account: ImapAccount) -> str | None:
    """The origin the mailbox's Connect button is redirected to, for the page's CSP."""
    view = oauth_view(account)
    if view is None or view["connect_label"] is None:
        return None
    parts = urlsplit(endpoints(account).authorize_url)
    return f"{parts.scheme}://{parts.netloc}"
