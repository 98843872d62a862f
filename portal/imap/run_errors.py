"""What a run's error (or a message's failure reason) says about an exception: IMAP errors and
stop reasons as they are; database errors as a sentence, because their text carries the SQL
statement and its parameters (mail subjects, addresses)."""
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .client import ImapError
from .lease import SyncStopped

BUSY_WORDS = ("locked", "busy", "lock timeout", "could not obtain lock", "deadlock")


class NotSaved(Exception):
    """A write the database refused, described for people."""


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, (ImapError, SyncStopped, NotSaved)):
        return str(exc)
    if isinstance(exc, SQLAlchemyError):
        detail = str(exc.orig if isinstance(exc, DBAPIError) else exc).lower()
        if any(word in detail for word in BUSY_WORDS):
            return "Database busy: could not save the results"
        kind = type(exc.orig).__name__ if isinstance(exc, DBAPIError) else type(exc).__name__
        return f"Database error ({kind}): could not save the results"
    return f"{exc.__class__.__name__}: {exc}"[:1000]


def human(exc: BaseException) -> BaseException:
    """A message's failure to record: a database error becomes a NotSaved carrying the
    driver's first line (what was refused), without the statement and its parameters."""
    if not isinstance(exc, SQLAlchemyError):
        return exc
    described = describe_error(exc)
    if isinstance(exc, DBAPIError) and not described.startswith("Database busy"):
        first_line = (str(exc.orig).strip().splitlines() or [""])[0][:300]
        described = f"Database refused this message: {first_line}"
    return NotSaved(described)
