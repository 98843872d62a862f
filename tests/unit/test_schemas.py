"""Mailbox payload validation (pure; shared by the API and the forms)."""
import pytest

from portal.imap.schemas import DEFAULTS, cron_error, validate_account
from portal.validation import ValidationError

BASE = {"name": "Support", "host": "imap.example.com", "username": "u@example.com", "password": "pw"}


def errors_of(payload, partial=False):
    with pytest.raises(ValidationError) as info:
        validate_account(payload, partial=partial)
    return info.value.errors


def test_create_fills_defaults():
    data = validate_account(dict(BASE), partial=False)
    for field, default in DEFAULTS.items():
        assert data[field] == default
    assert data["password"] == "pw" and data["name"] == "Support"


def test_update_keeps_only_given_fields():
    assert validate_account({"priority": 0}, partial=True) == {"priority": 0}
    assert validate_account({}, partial=True) == {}
    assert validate_account({"company_id": None}, partial=True) == {"company_id": None}


def test_required_fields_on_create():
    errors = errors_of({})
    # The password only with auth_method password (the default).
    assert set(errors) == {"name", "host", "username", "password"}
    assert set(errors_of({"auth_method": "oauth2", "oauth_provider": "custom"})) == {
        "name", "host", "username", "oauth_client_id", "oauth_token_url", "oauth_authorize_url"}


def test_types_and_ranges():
    errors = errors_of({**BASE, "port": True, "priority": 40000, "active": 1, "folder": "  ", "filter_query": "[]"})
    assert errors == {
        "port": ["Must be an integer"],
        "priority": ["Must be between 0 and 32767"],
        "active": ["Must be true or false"],
        "folder": ["This field is required"],
        "filter_query": ["Must be a JSON object or null"],
    }


def test_password_is_never_echoed_in_errors():
    errors = errors_of({**BASE, "password": 12345678})
    assert errors == {"password": ["Must be a string"]}
    assert "12345678" not in str(errors)


@pytest.mark.parametrize(
    "expression,message",
    [
        ("", "Must be a cron expression such as '*/15 * * * *'"),
        ("* * * *", "Must have 5 fields (minute hour day month weekday); got 4"),
        ("* * * * * *", "Must have 5 fields (minute hour day month weekday); got 6"),
        ("*/0 * * * *", "Invalid cron expression: you can only use positive increment values, you provided 0"),
        ("0 0 30 2 *", "This cron expression never runs"),
    ],
)
def test_cron_errors(expression, message):
    assert cron_error(expression) == message


@pytest.mark.parametrize("expression", ["*/15 * * * *", "0 9 * * MON-FRI", "5 4 * * sun", "0 0 1 1 *"])
def test_valid_cron(expression):
    assert cron_error(expression) is None


def test_cron_whitespace_is_normalised():
    assert validate_account({"schedule_cron": " */5  *  * * * "}, partial=True) == {"schedule_cron": "*/5 * * * *"}


def test_filter_query_errors_carry_paths():
    errors = errors_of({"filter_query": {"any": [{"field": "nope", "equals": "x"}]}}, partial=True)
    assert errors["filter_query"] == ["any[0]: unknown field 'nope'"]
