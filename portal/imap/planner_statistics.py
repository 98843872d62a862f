"""PostgreSQL plans the ledger's lookups (IN lists of a batch's keys) from column statistics,
and a table that was never analyzed has none: the planner then takes an IN list of 200 keys
for the whole table, and scans all the rows of a mailbox (or of the table) per lookup. A first
import into new tables gets slower with every batch (measured at 10,000 messages: recorded
rows 39 ms, thread targets 39 ms, delivered keys 23 ms per batch; 0.2-1 ms once analyzed).
Autovacuum analyzes a table only a minute or so after it changed; so the tables the ledger
reads are analyzed here once they have rows and no statistics, at most once per process.
SQLite plans without statistics and needs none of this."""
import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db

log = logging.getLogger(__name__)

TABLES = ("imap_processed_messages", "ticket_messages", "tickets")

_settled: set[tuple[str, str]] = set()  # (database, table): has statistics, or was analyzed


def ensure() -> None:
    """Analyze those of TABLES that have rows but no statistics. Runs on a connection of its
    own in autocommit, so no lock of ANALYZE is held by the caller's transaction. Only speed
    depends on it: a failure is logged, and the sync goes on."""
    try:
        _analyze_unknown_tables()
    except SQLAlchemyError as exc:
        log.warning("Could not analyze %s for the query planner: %s", ", ".join(TABLES), exc)


def _analyze_unknown_tables() -> None:
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return
    database = engine.url.render_as_string(hide_password=True)
    pending = [t for t in TABLES if (database, t) not in _settled]
    if not pending:
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        known = set(connection.execute(
            text("SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = current_schema() AND tablename = ANY(:t)"),
            {"t": pending},
        ).scalars())
        # TABLES are constants of this module, never input: safe to name in the statement
        filled = [t for t in pending if t not in known and connection.execute(text(f"SELECT EXISTS (SELECT 1 FROM {t})")).scalar()]
        if filled:
            # SKIP_LOCKED: a table autovacuum is analyzing right now is left to it.
            # A user who does not own a table gets a warning, not an error; it is not tried again.
            connection.execute(text(f"ANALYZE (SKIP_LOCKED) {', '.join(filled)}"))
    _settled.update((database, t) for t in [*known, *filled])
