"""The mailbox field table and what is derived from it: validation, form, serializer, OpenAPI
schemas and column lengths all agree with the table, field by field."""
import pytest

from portal.imap import fields
from portal.imap.openapi import mailbox_schemas
from portal.imap.schemas import validate_account
from portal.validation import ValidationError

WRITABLE = [field.name for field in fields.WRITABLE]
READABLE = [field.name for field in fields.READABLE]
WITH_MAX_LENGTH = [field.name for field in fields.WRITABLE if field.max_length
                   and field.kind not in (fields.URL,) and field.name != "oauth_service_account_json"]
WITH_RANGE = [field.name for field in fields.WRITABLE if field.kind == fields.INTEGER]
WITH_DEFAULT = [field.name for field in fields.WRITABLE if not field.required and field.kind != fields.SECRET]
VALID = {"name": "Support", "host": "imap.example.com", "username": "u@example.com", "password": "pw"}


@pytest.fixture(scope="module")
def openapi():
    return mailbox_schemas()


@pytest.fixture(scope="module")
def form_class():
    from portal.imap.forms import MailboxForm

    return MailboxForm


@pytest.fixture
def form(app, form_class):
    with app.test_request_context():
        yield form_class(meta={"csrf": False})


def accepts_null(schema: dict) -> bool:
    types = schema.get("type", [])
    return "null" in types or {"type": "null"} in schema.get("anyOf", [])


def errors_of(payload, partial=False):
    with pytest.raises(ValidationError) as info:
        validate_account(payload, partial=partial)
    return info.value.errors


# --- the table itself ------------------------------------------------------------------


def test_names_are_unique_and_flags_consistent():
    assert len(fields.FIELD) == len(fields.FIELDS)
    for field in fields.FIELDS:
        assert not (field.read_only and field.write_only), field.name
        if field.read_only:
            assert not field.label, f"{field.name} is read-only: not on the form"
        else:
            assert field.label, f"{field.name} has no form label"
        if field.kind == fields.CHOICE:
            assert field.default in field.choice_values or (field.nullable and field.default is None)
    # The password is required with auth_method password only (accounts.py); OAuth2 needs none.
    assert fields.REQUIRED_ON_CREATE == ("name", "host", "username")
    assert [f.name for f in fields.FIELDS if f.write_only] == [
        "password", "oauth_client_secret", "oauth_service_account_json"]


# --- validation --------------------------------------------------------------------------


def test_validation_accepts_exactly_the_writable_fields():
    # Read-only fields are ignored (a GET response can be sent back as is); unknown ones are errors.
    for field in fields.FIELDS:
        if field.read_only:
            assert validate_account({field.name: "anything"}, partial=True) == {}, field.name
            assert validate_account({**VALID, field.name: "anything"}, partial=False) == validate_account(
                dict(VALID), partial=False), field.name
    assert errors_of({"colour": "blue"}, partial=True) == {"colour": ["Unknown field"]}
    secrets_not_sent = {f.name for f in fields.WRITABLE if f.kind == fields.SECRET and f.name not in VALID}
    assert set(validate_account(dict(VALID), partial=False)) == set(WRITABLE) - secrets_not_sent


@pytest.mark.parametrize("name", WITH_DEFAULT)
def test_validation_fills_the_table_default(name):
    assert validate_account(dict(VALID), partial=False)[name] == fields.FIELD[name].default


@pytest.mark.parametrize("name", WITH_MAX_LENGTH)
def test_validation_enforces_the_table_max_length(name):
    limit = fields.FIELD[name].max_length
    if name == "schedule_cron":
        ok, too_long = "0 " + "0," * ((limit - 10) // 2) + "0 * * *", "0 " + "0," * (limit // 2) + "0 * * *"
        assert len(ok) <= limit < len(too_long)
    else:
        ok, too_long = "x" * limit, "x" * (limit + 1)
    assert validate_account({name: ok}, partial=True) == {name: ok}
    assert errors_of({name: too_long}, partial=True) == {name: [f"Must be at most {limit} characters"]}


@pytest.mark.parametrize("name", WITH_RANGE)
def test_validation_enforces_the_table_range(name):
    field = fields.FIELD[name]
    for value in (field.minimum, field.maximum):
        assert validate_account({name: value}, partial=True) == {name: value}
    message = [f"Must be between {field.minimum} and {field.maximum}"]
    assert errors_of({name: field.minimum - 1}, partial=True) == {name: message}
    assert errors_of({name: field.maximum + 1}, partial=True) == {name: message}


def test_validation_takes_the_table_choices():
    field = fields.FIELD["security"]
    for value in field.choice_values:
        assert validate_account({"security": value}, partial=True) == {"security": value}
    message = "Must be one of: " + ", ".join(field.choice_values)
    assert errors_of({"security": "tls"}, partial=True) == {"security": [message]}


# --- form -------------------------------------------------------------------------------------


def test_form_has_every_writable_field_and_nothing_else(form):
    assert [f.name for f in form if f.name != "csrf_token"] == WRITABLE


@pytest.mark.parametrize("name", WRITABLE)
def test_form_field_label_help_and_default_come_from_the_table(form, name):
    field, form_field = fields.FIELD[name], form[name]
    assert form_field.label.text == field.label
    assert form_field.description == field.help
    if field.kind == fields.INTEGER:
        assert form_field.data == str(field.default)
    elif field.kind == fields.REFERENCE:
        assert form_field.data == ""  # "— none —"
    elif not field.required and field.default is not None:
        assert form_field.data == field.default
    if field.kind == fields.CHOICE:
        blank = [""] if field.nullable else []
        assert [value for value, _ in form_field.choices] == blank + list(field.choice_values)


def test_untouched_form_gives_the_table_defaults(form):
    for name, value in VALID.items():
        form[name].data = value
    payload, errors = form.to_payload(editing=False)
    assert errors == {}
    assert validate_account(payload, partial=False) == {**fields.DEFAULTS, **VALID}


# --- serializer --------------------------------------------------------------------------------


def test_serializer_writes_every_readable_field_and_never_the_password(app):
    from portal.imap.accounts import account_json
    from portal.imap.models import ImapAccount

    with app.app_context():
        account = ImapAccount(id=7, password_encrypted="secret", **{
            name: value for name, value in validate_account(dict(VALID), partial=False).items() if name != "password"
        })
        result = account_json(account)
    assert list(result) == READABLE
    assert "password" not in result and "password_encrypted" not in result
    assert result["has_password"] is True and result["scheduled_task_id"] == "imap_sync:7"
    for name, default in fields.DEFAULTS.items():
        assert result[name] == default


# --- OpenAPI -------------------------------------------------------------------------------------


def test_openapi_response_has_every_readable_field(openapi):
    mailbox = openapi["Mailbox"]
    assert list(mailbox["properties"]) == READABLE
    assert mailbox["required"] == READABLE
    for field in fields.READABLE:
        schema = mailbox["properties"][field.name]
        value = schema["anyOf"][0] if "anyOf" in schema else schema
        assert value.get("readOnly", False) is field.read_only, field.name
        assert accepts_null(schema) is field.nullable, field.name


@pytest.mark.parametrize("create", [True, False])
def test_openapi_request_schemas_follow_the_table(openapi, create):
    schema = openapi["MailboxCreate" if create else "MailboxUpdate"]
    writable = [name for name, prop in schema["properties"].items() if not prop.get("readOnly")]
    assert writable == WRITABLE
    # The server-reported fields are listed as read-only: accepted and ignored.
    assert {name for name, prop in schema["properties"].items() if prop.get("readOnly")} == {
        f.name for f in fields.FIELDS if f.read_only}
    assert schema.get("required", []) == (list(fields.REQUIRED_ON_CREATE) if create else [])
    for field in fields.WRITABLE:
        prop = schema["properties"][field.name]
        no_default = field.required or field.kind == fields.SECRET
        assert prop.get("default", "absent") == ("absent" if no_default else field.default), field.name
        assert prop.get("writeOnly", False) is field.write_only, field.name
        if field.kind in (fields.TEXT, fields.SECRET):
            assert prop["maxLength"] == field.max_length, field.name
        if field.kind == fields.INTEGER:
            assert (prop["minimum"], prop["maximum"]) == (field.minimum, field.maximum), field.name
        if field.kind == fields.CHOICE:
            assert [v for v in prop["enum"] if v is not None] == list(field.choice_values)
        if field.description:
            assert prop["description"].startswith(field.description), field.name


# --- model --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in WITH_MAX_LENGTH if not fields.FIELD[n].write_only])
def test_model_columns_are_as_long_as_the_table_allows(name):
    from portal.imap.models import ImapAccount

    assert ImapAccount.__table__.columns[name].type.length == fields.FIELD[name].max_length


@pytest.mark.parametrize("module", ["fields", "schemas"])
def test_table_and_validation_are_pure(module):
    import ast
    import pathlib

    import portal.imap

    source = pathlib.Path(portal.imap.__file__).with_name(f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= {"dataclasses", "datetime", "crontab", "..validation", ".", ".fields", ".oauth_providers"}, imported
