"""Pure rules of a mailbox payload (issue 11, point 9): read-only fields are ignored, security
follows the port, and timestamps carry milliseconds."""
from datetime import datetime, timedelta, timezone

import pytest

from portal.imap import fields
from portal.imap.schemas import READ_ONLY, security_for_port, validate_account
from portal.models import isoformat
from portal.validation import ValidationError

BASE = {"name": "Support", "host": "imap.example.com", "username": "u@example.com", "password": "pw"}


@pytest.mark.parametrize("port,security", [
    (993, "ssl"), (143, "starttls"), (1143, None), (110, None), (None, None), ("993", None), (True, None),
])
def test_security_for_port(port, security):
    assert security_for_port(port) == security


@pytest.mark.parametrize("extra,security", [
    ({}, "ssl"),
    ({"port": 143}, "starttls"),
    ({"port": 993}, "ssl"),
    ({"port": 2143}, "ssl"),
    ({"port": 143, "security": "ssl"}, "ssl"),
    ({"port": 993, "security": "starttls"}, "starttls"),
])
def test_create_fills_security_from_the_port(extra, security):
    assert validate_account({**BASE, **extra}, partial=False)["security"] == security


def test_an_update_is_left_to_the_stored_mailbox():
    # schemas.py cannot know the stored port: accounts.update_account applies the rule.
    assert validate_account({"port": 143}, partial=True) == {"port": 143}


def test_a_bad_port_is_still_a_bad_port():
    with pytest.raises(ValidationError) as info:
        validate_account({**BASE, "port": "143"}, partial=False)
    assert info.value.errors == {"port": ["Must be an integer"]}


def test_read_only_is_every_server_reported_field():
    assert READ_ONLY == {f.name for f in fields.FIELDS if f.read_only}
    assert {"id", "created_at", "updated_at", "next_run_at", "deleted_at", "has_password"} <= READ_ONLY
    assert not READ_ONLY & {f.name for f in fields.WRITABLE}


@pytest.mark.parametrize("value,text", [
    (None, None),
    (datetime(2026, 11, 27, 8, 14, 23, 512345), "2026-11-27T08:14:23.512Z"),
    (datetime(2026, 11, 27, 8, 14, 23), "2026-11-27T08:14:23.000Z"),
    (datetime(2026, 11, 27, 8, 14, 23, 999999), "2026-11-27T08:14:23.999Z"),  # cut, never rounded into the next second
    (datetime(2026, 11, 27, 9, 14, 23, 1000, tzinfo=timezone(timedelta(hours=1))), "2026-11-27T08:14:23.001Z"),
])
def test_isoformat_carries_milliseconds_in_utc(value, text):
    assert isoformat(value) == text
