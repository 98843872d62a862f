"""Sync runs and the processed-message audit: JSON shapes and queries."""
from sqlalchemy import func, select

from ..extensions import db
from ..http import fields_json
from .models import ProcessedMessage, SyncRun

SYNC_RUN_FIELDS = (
    "id", "account_id", "trigger", "status", "job_id", "retry_of_id", "counts", "error", "created_at", "started_at",
    "finished_at", "duration_ms",
)
PROCESSED_MESSAGE_FIELDS = (
    "id", "account_id", "uid_validity", "uid", "message_id", "subject", "from_address", "sent_at", "size", "outcome",
    "reason", "ticket_id", "attempts", "defects", "created_at", "updated_at",
)


def sync_run_json(run: SyncRun) -> dict:
    data = fields_json(run, SYNC_RUN_FIELDS)
    data["counts"] = data["counts"] or {}
    data["progress"] = progress(run)
    return data


def progress(run: SyncRun) -> dict:
    """`done`: the messages decided so far (the sum of the counts, committed batch by batch);
    `total`: the run's candidates, None until its search is done (or when it never got there)."""
    return {"done": sum((run.counts or {}).values()), "total": run.candidates}


def processed_message_json(message: ProcessedMessage) -> dict:
    return fields_json(message, PROCESSED_MESSAGE_FIELDS)


def messages_query(account_id: int, outcome: str | None = None):
    query = select(ProcessedMessage).where(ProcessedMessage.account_id == account_id)
    if outcome:
        query = query.where(ProcessedMessage.outcome == outcome)
    return query.order_by(ProcessedMessage.id.desc())


def outcome_counts(account_id: int) -> dict[str, int]:
    query = (
        select(ProcessedMessage.outcome, func.count())
        .where(ProcessedMessage.account_id == account_id)
        .group_by(ProcessedMessage.outcome)
    )
    return dict(db.session.execute(query).all())


def reset_for_retry(message: ProcessedMessage) -> None:
    """A dead-lettered message gets a fresh set of attempts on the next sync."""
    message.attempts = 0
    message.reason = (message.reason or "") + " (retry requested)"
    db.session.commit()
