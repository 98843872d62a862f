"""The log formats: readable lines by default, one JSON object per line with LOG_FORMAT=json,
and the ids of the sync a line belongs to."""
import json
import logging

import pytest

from portal.log_format import (ContextFilter, JsonFormatter, TextFormatter, current_context, log_context,
                               log_format, sync_log_context)


def record(message="hello %s", args=("world",), level=logging.INFO, exc_info=None, name="portal.test"):
    entry = logging.LogRecord(name, level, __file__, 1, message, args, exc_info)
    entry.created = 1795767263.512  # 2026-11-27T08:14:23.512Z
    ContextFilter().filter(entry)
    return entry


@pytest.mark.parametrize("value,expected", [
    (None, "text"), ("", "text"), ("  ", "text"), ("json", "json"), ("JSON", "json"), (" text ", "text"),
])
def test_format_choice(value, expected, monkeypatch):
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert log_format(value) == expected


def test_format_from_the_environment_and_a_wrong_one(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert log_format() == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of text, json"):
        log_format("yaml")


def test_json_line_has_time_level_logger_message():
    line = JsonFormatter().format(record())
    assert "\n" not in line
    assert json.loads(line) == {"time": "2026-11-27T08:14:23.512Z", "level": "INFO",
                                "logger": "portal.test", "message": "hello world"}


def test_json_line_carries_the_context_ids_and_drops_colour_codes():
    with log_context(mailbox_id=7, run_id=12, job_id="abc-123"):
        entry = json.loads(JsonFormatter().format(record("\x1b[32mimap\x1b[39;49;00m: Job OK", ())))
    assert entry["message"] == "imap: Job OK"
    assert (entry["mailbox_id"], entry["run_id"], entry["job_id"]) == (7, 12, "abc-123")


def test_a_traceback_stays_inside_the_one_json_line():
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        import sys

        line = JsonFormatter().format(record(level=logging.ERROR, exc_info=sys.exc_info()))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and "RuntimeError: boom" in entry["exception"]


def test_text_line_is_readable_and_names_the_ids_only_when_set():
    formatter = TextFormatter()
    assert formatter.format(record()).endswith("INFO portal.test: hello world")
    with log_context(mailbox_id=7, run_id=12):
        assert formatter.format(record()).endswith("INFO portal.test: hello world [mailbox_id=7 run_id=12]")


def test_contexts_nest_and_restore():
    assert current_context() == {}
    with log_context(job_id="j1", mailbox_id=3):
        with log_context(run_id=9, mailbox_id=None):  # None leaves the outer value
            assert current_context() == {"job_id": "j1", "mailbox_id": 3, "run_id": 9}
        assert current_context() == {"job_id": "j1", "mailbox_id": 3}
    assert current_context() == {}


def test_sync_log_context_says_when_a_sync_starts_ends_or_stops(caplog):
    caplog.set_level(logging.INFO, logger="portal.imap.sync")
    with sync_log_context(4, 21, "job-4"):
        pass
    with pytest.raises(ValueError):
        with sync_log_context(4, 22, None):
            raise ValueError("secret-looking text never reaches the log")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0] == ("INFO", "sync of mailbox 4 started (run 21)")
    assert lines[1][1].startswith("sync of mailbox 4 ended after ")
    assert lines[3][0] == "WARNING" and lines[3][1].endswith("(ValueError)")
    assert all("secret-looking" not in message for _, message in lines)
    assert current_context() == {}
