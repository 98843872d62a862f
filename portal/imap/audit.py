"""Sync runs and the processed-message audit: JSON shapes and queries."""
from sqlalchemy import select

from ..extensions import db
from ..models import isoformat
from .models import ProcessedMessage, SyncRun


def sync_run_json(run: SyncRun) -> dict:
    return {
        "id": run.id,
        "account_id": run.account_id,
        "trigger": run.trigger,
        "status": run.status,
        "job_id": run.job_id,
        "counts": run.counts or {},
        "error": run.error,
        "created_at": isoformat(run.created_at),
        "started_at": isoformat(run.started_at),
        "finished_at": isoformat(run.finished_at),
        "duration_ms": run.duration_ms,
    }


def processed_message_json(message: ProcessedMessage) -> dict:
    return {
        "id": message.id,
        "account_id": message.account_id,
        "uid_validity": message.uid_validity,
        "uid": message.uid,
        "message_id": message.message_id,
        "subject": message.subject,
        "from_address": message.from_address,
        "size": message.size,
        "outcome": message.outcome,
        "reason": message.reason,
        "ticket_id": message.ticket_id,
        "attempts": message.attempts,
        "created_at": isoformat(message.created_at),
        "updated_at": isoformat(message.updated_at),
    }


def messages_query(account_id: int, outcome: str | None = None):
    query = select(ProcessedMessage).where(ProcessedMessage.account_id == account_id)
    if outcome:
        query = query.where(ProcessedMessage.outcome == outcome)
    return query.order_by(ProcessedMessage.id.desc())


def reset_for_retry(message: ProcessedMessage) -> None:
    """A dead-lettered message gets a fresh set of attempts on the next sync."""
    message.attempts = 0
    message.reason = (message.reason or "") + " (retry requested)"
    db.session.commit()
