"""How the web, worker and scheduler processes log: readable lines by default, or with
LOG_FORMAT=json one JSON object per line (time, level, logger, message, and the `mailbox_id`,
`run_id` and `job_id` of the sync the line belongs to) for a log search.

The ids travel in a context variable: `with log_context(mailbox_id=7, run_id=12, job_id=...)`
around a sync, and every line logged inside it (by any module, in that thread) carries them.
Nothing here adds values to a message: the code never logs a secret, and this keeps it that way
(only the three ids and the exception's traceback are added)."""
import json
import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar

CONTEXT_KEYS = ("mailbox_id", "run_id", "job_id")
TIMING_KEYS = ("duration_ms", "imap_ms")  # on a sync's end line
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"

_context: ContextVar[dict] = ContextVar("portal_log_context", default={})
# rq colours some of its messages when stdout is a terminal; a JSON value carries none of that.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextmanager
def log_context(**ids):
    """Lines logged inside carry these ids (None values are left out); nests, and restores on exit."""
    token = _context.set({**_context.get(), **{key: value for key, value in ids.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


_sync_log = logging.getLogger("portal.imap.sync")


@contextmanager
def sync_log_context(mailbox_id: int, run_id: int, job_id: str | None = None):
    """log_context for one sync of a mailbox, with a line as it starts and one as it ends."""
    with log_context(mailbox_id=mailbox_id, run_id=run_id, job_id=job_id):
        started = time.monotonic()
        _sync_log.info("sync of mailbox %s started (run %s)", mailbox_id, run_id)
        measured: dict = {}  # the caller may add imap_seconds: what the sync waited on the server
        try:
            yield measured
        except BaseException as exc:
            _sync_log.warning("sync of mailbox %s stopped after %.2f s (%s)", mailbox_id, time.monotonic() - started, type(exc).__name__)
            raise
        seconds = time.monotonic() - started
        timings = {"duration_ms": round(seconds * 1000, 1)}
        imap = measured.get("imap_seconds")
        if imap is not None:
            timings["imap_ms"] = round(imap * 1000, 1)
        _sync_log.info("sync of mailbox %s ended after %.3f s%s", mailbox_id, seconds,
                       f" (IMAP {timings['imap_ms']:.1f} ms)" if imap is not None else "", extra=timings)


def current_context() -> dict:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Puts the current ids on every record (as attributes, for both formatters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for key in CONTEXT_KEYS:
            if not hasattr(record, key):
                setattr(record, key, context.get(key))
        return True


class TextFormatter(logging.Formatter):
    """The readable line, with ` [mailbox_id=7 run_id=12 job_id=…]` when a sync is in progress."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ids = [f"{key}={getattr(record, key)}" for key in CONTEXT_KEYS if getattr(record, key, None) is not None]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback goes into `exception`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _ANSI.sub("", record.getMessage()),
        }
        for key in CONTEXT_KEYS + TIMING_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def _iso_time(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


def log_format(value: str | None = None) -> str:
    """The chosen format: `value`, else LOG_FORMAT, else text. Anything else is a mistake to say."""
    chosen = (value if value is not None else os.environ.get("LOG_FORMAT", "")).strip().lower() or "text"
    if chosen not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    return chosen


def make_formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(fmt: str | None = None, level: int = logging.INFO) -> str:
    """One handler on the root logger (stderr) in the chosen format; every library logger
    propagates to it (rq and rq-scheduler add handlers of their own only when none is found).
    Under gunicorn its own loggers keep their handlers; with json those get the JSON formatter."""
    fmt = log_format(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if fmt == "json":  # (gunicorn.conf.py does the same from the start, the master included)
        for name in ("gunicorn.error", "gunicorn.access"):
            for gunicorn_handler in logging.getLogger(name).handlers:
                gunicorn_handler.setFormatter(JsonFormatter())
                gunicorn_handler.addFilter(ContextFilter())
    return fmt
