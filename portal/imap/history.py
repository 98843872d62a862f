"""A mailbox's processed mail per day (UTC), for the detail page's chart: one aggregate query
over its ProcessedMessage rows of the last days, bounded by account and created_at."""
from datetime import date, datetime, time, timedelta

from sqlalchemy import case, func, select

from ..extensions import db
from ..models import utcnow
from . import history_chart
from .models import RULE_SKIPS, ProcessedMessage

IMPORTED = ("imported", "threaded")
SKIPPED = (*RULE_SKIPS, "skipped_too_large", "duplicate")
FAILED = ("failed",)


def _sum_of(outcomes: tuple[str, ...]):
    return func.sum(case((ProcessedMessage.outcome.in_(outcomes), 1), else_=0))


def daily_counts(account_id: int, today: date, days: int = history_chart.DAYS) -> list[tuple]:
    """(day, imported, skipped, failed) for each day with mail, from `today - days + 1` to today."""
    start = datetime.combine(today - timedelta(days=days - 1), time.min)
    end = datetime.combine(today + timedelta(days=1), time.min)
    day = func.date(ProcessedMessage.created_at)  # SQLite: 'YYYY-MM-DD'; PostgreSQL: a date
    query = (
        select(day, _sum_of(IMPORTED), _sum_of(SKIPPED), _sum_of(FAILED))
        .where(ProcessedMessage.account_id == account_id,
               ProcessedMessage.created_at >= start, ProcessedMessage.created_at < end)
        .group_by(day)
    )
    return [(_as_date(d), i, s, f) for d, i, s, f in db.session.execute(query)]


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def chart(account_id: int, today: date | None = None) -> history_chart.Chart:
    today = today or utcnow().date()
    return history_chart.build(history_chart.window(daily_counts(account_id, today), today))
