"""GET /api/openapi.json: a valid OpenAPI document that covers every /api/ route and that the
app really follows (a bounded schemathesis run against the WSGI app, Bearer token of a super admin).

Knobs for a longer bug hunt: OPENAPI_FUZZ_EXAMPLES (examples per operation and mode, default 12)
and OPENAPI_FUZZ_SEED (default: fixed, so the suite is reproducible; "random" for a fresh seed).
"""
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import DATABASE_URL, Api

EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "12"))
SEED = os.environ.get("OPENAPI_FUZZ_SEED", "20240501")
# A guard against runaway generation, not a benchmark: the default run takes 15-25 s on 2 cores.
TIME_BUDGET = float(os.environ.get("OPENAPI_FUZZ_BUDGET", "120"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
IS_POSTGRES = DATABASE_URL.startswith("postgres")
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
FUZZ_TOKEN = "mp_openapi-fuzz-token-0123456789abcdefghijklmnopqrstuv"
FUZZ_ADMIN_EMAIL = "fuzz-admin@portal.test"


def flask_to_openapi(rule: str) -> str:
    """/api/companies/<int:company_id> -> /api/companies/{company_id}"""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def api_routes(app) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            routes.setdefault(flask_to_openapi(rule.rule), set()).update(rule.methods & HTTP_METHODS)
    return routes


# --- 1. the document ------------------------------------------------------------------


def test_openapi_document_needs_a_super_admin(client, user_token):
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/api/openapi.json", headers={"Authorization": f"Bearer {user_token}"}).status_code == 403


def test_openapi_document_is_valid(api):
    response = api.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    validate(document)
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }


def test_mailbox_password_is_write_only(api):
    schemas = api.get("/api/openapi.json").get_json()["components"]["schemas"]
    assert "password" not in schemas["Mailbox"]["properties"]
    assert "has_password" in schemas["Mailbox"]["required"]
    assert "password" not in schemas["MailboxCreate"]["required"]  # OAuth2 mailboxes have none
    assert "auth_method password" in schemas["MailboxCreate"]["properties"]["password"]["description"]
    assert "password" not in schemas["MailboxUpdate"].get("required", [])
    assert schemas["MailboxCreate"]["properties"]["password"]["writeOnly"] is True
    assert "password" not in schemas["User"]["properties"]


@pytest.mark.parametrize(
    "module,foreign", [("portal.platform.openapi", "portal.imap"), ("portal.imap.openapi", "portal.platform")]
)
def test_document_parts_meet_only_in_the_app_factory(module, foreign):
    """platform serves the document and imap describes its routes; neither imports the other."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('{foreign}')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_mailbox_schemas_carry_the_field_table(api):
    from portal.imap import fields

    schemas = api.get("/api/openapi.json").get_json()["components"]["schemas"]
    create = schemas["MailboxCreate"]["properties"]
    assert create["name"]["maxLength"] == fields.FIELD["name"].max_length == 200
    assert create["port"]["default"] == fields.FIELD["port"].default == 993
    assert create["security"]["enum"] == list(fields.SECURITY_MODES)
    assert set(schemas["Mailbox"]["properties"]) == {field.name for field in fields.READABLE}


# --- 2. every route, with its methods ---------------------------------------------------


def test_every_api_route_is_documented(app, api):
    document = api.get("/api/openapi.json").get_json()
    routes = api_routes(app)
    assert len(routes) > 10
    documented = {
        path: {method.upper() for method in item if method.upper() in HTTP_METHODS}
        for path, item in document["paths"].items()
    }
    for path, methods in routes.items():
        if path == "/api/openapi.json" and path not in documented:
            continue
        assert path in documented, f"{path} is not in the OpenAPI document"
        assert documented[path] == methods, f"{path}: app has {sorted(methods)}, document {sorted(documented[path])}"
    stale = set(documented) - set(routes)
    assert not stale, f"documented but not routed: {sorted(stale)}"


def test_security_and_error_responses(api):
    document = api.get("/api/openapi.json").get_json()
    assert document["security"] == [{"bearerAuth": []}]
    shared = document["components"]["parameters"]

    def resolve(parameter):
        return shared[parameter["$ref"].rsplit("/", 1)[-1]] if "$ref" in parameter else parameter

    for path, item in document["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            label = f"{method.upper()} {path}"
            codes = set(op["responses"])
            if path == "/api/openapi.json":
                assert "security" not in op and {"401", "403"} <= codes, label
                continue
            assert "security" not in op, f"{label} must use the global bearer security"
            assert {"401", "403"} <= codes, label
            assert codes & {"200", "201", "202", "204"}, label
            params = [resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
            if any(p["in"] == "path" for p in params):
                assert "404" in codes, label
            if "requestBody" in op or any(p["in"] == "query" for p in params):
                assert "422" in codes, label
            if path.endswith(("/sync", "/retry")):
                assert "503" in codes, label
            for code in codes - {"204"}:
                answer = op["responses"][code]
                if "$ref" in answer:
                    answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
                assert "application/json" in answer.get("content", {}) or (
                    label == "GET /api/attachments/{attachment_id}" and code == "200"
                ), f"{label} {code}"


# --- 3. schemathesis ------------------------------------------------------------------------


def ensure_fuzz_admin():
    """The fuzzer may demote, deactivate or delete any user, its own included: restore it."""
    from sqlalchemy import select

    from portal.auth import hash_token
    from portal.extensions import db
    from portal.models import ApiToken, User

    db.session.rollback()
    user = db.session.scalar(select(User).where(User.email == FUZZ_ADMIN_EMAIL))
    if user is None:  # deleted (its token went with it) or renamed by the fuzzer
        user = User(email=FUZZ_ADMIN_EMAIL, name="fuzz")
        db.session.add(user)
    user.is_super_admin = True
    user.is_active = True
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(FUZZ_TOKEN)))
    if token is None:
        db.session.add(ApiToken(user=user, name="openapi fuzz", token_hash=hash_token(FUZZ_TOKEN)))
    elif token.user_id != user.id or token.revoked:
        token.user, token.revoked = user, False
    db.session.commit()
    db.session.remove()


def seed_data(app, api) -> dict:
    """One of everything, so the fuzzer's id routes have real objects to hit."""
    from portal import storage
    from portal.extensions import db
    from portal.imap.models import ProcessedMessage, SyncRun
    from portal.models import Attachment, Ticket, TicketMessage

    company = api.post("/api/companies", json={"name": "Acme", "email_domains": ["acme.test"]})
    assert company.status_code == 201, company.json
    company_id = company.json["id"]
    staff = api.post("/api/staff", json={"company_id": company_id, "email": "jane@acme.test", "name": "Jane"})
    assert staff.status_code == 201, staff.json
    user = api.post("/api/users", json={"email": "agent@portal.test", "password": "password123"})
    assert user.status_code == 201, user.json
    mailbox = api.post(
        "/api/imap/accounts",
        json={
            "name": "Support",
            "host": "imap.acme.test",
            "username": "support@acme.test",
            # OAuth2 (authorization code), so that connecting it has a success path too.
            "auth_method": "oauth2",
            "oauth_provider": "custom",
            "oauth_client_id": "portal-client",
            "oauth_client_secret": "client-secret",
            "oauth_authorize_url": "https://login.acme.test/authorize",
            "oauth_token_url": "https://login.acme.test/token",
            "company_id": company_id,
            "filter_query": {"any": [{"field": "from.domain", "equals": "acme.test"}, {"field": "size", "lt": 1000}]},
        },
    )
    assert mailbox.status_code == 201, mailbox.json
    account_id = mailbox.json["id"]
    with app.app_context():
        ticket = Ticket(
            subject="Printer on fire", company_id=company_id, requester_email="jane@acme.test",
            source="email", source_mailbox_id=account_id,
        )
        message = TicketMessage(ticket=ticket, author_email="jane@acme.test", body_text="Help", message_id="m1@acme.test")
        content = b"%PDF-1.4 not really"
        attachment = Attachment(
            message=message, filename="report.pdf", content_type="application/pdf", size=len(content),
            sha256=storage.store(app.config["ATTACHMENT_DIR"], content),
        )
        run = SyncRun(account_id=account_id, trigger="manual", status="succeeded", counts={"imported": 1})
        failed = ProcessedMessage(
            account_id=account_id, uid_validity=1, uid=7, message_id="m2@acme.test", outcome="failed",
            reason="boom", attempts=3, subject="Broken", from_address="jane@acme.test", size=123,
        )
        db.session.add_all([ticket, message, attachment, run, failed])
        db.session.commit()
        ids = {
            "company_id": company_id,
            "staff_id": staff.json["id"],
            "user_id": user.json["id"],
            "ticket_id": ticket.id,
            "attachment_id": attachment.id,
            "account_id": account_id,
            "run_id": run.id,
            "message_id": failed.id,
        }
        db.session.remove()
    return ids


def operation_strategy(operation, mode, ids):
    """Half of the cases use the seeded objects (path ids, and the company a body refers to);
    the other half are left as generated (mostly unknown ids: 404 / 422)."""
    auth = {"Authorization": f"Bearer {FUZZ_TOKEN}"}
    generated = operation.as_strategy(generation_mode=mode, headers=auth)
    names = re.findall(r"{(\w+)}", operation.path)
    seeded = operation.as_strategy(
        generation_mode=mode, headers=auth, path_parameters={name: ids[name] for name in names}
    )

    def known_company(case):
        if isinstance(case.body, dict) and "company_id" in case.body:
            case.body["company_id"] = ids["company_id"]
        return case

    if mode == schemathesis.GenerationMode.POSITIVE:
        seeded = seeded.map(known_company)
    return st.one_of(seeded, generated)


def fuzz_operation(app, operation, mode, ids, statuses: Counter) -> tuple[int, str | None]:
    """Run the checks on generated cases of one operation; (cases run, failure report or None)."""
    calls = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )
    @given(case=operation_strategy(operation, mode, ids))
    def run(case):
        with app.app_context():
            ensure_fuzz_admin()
        calls[0] += 1
        response = case.call()
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    if SEED != "random":
        run = seed(int(SEED))(run)
    try:
        run()
    except Unsatisfiable:
        return calls[0], None  # nothing to negate in this operation (or every case was a known bug)
    except (Exception, BaseExceptionGroup) as exc:  # a check failed (FailureGroup): report the minimal case
        return calls[0], f"{operation.label} [{mode.value}]: {type(exc).__name__}: {exc}"
    return calls[0], None


# Deletes last (staff before the company that owns them), so the seeded objects live as long as possible.
DELETE_ORDER = ["/api/staff/", "/api/users/", "/api/imap/", "/api/companies/"]


def run_order(operation) -> tuple:
    if operation.method.upper() != "DELETE":
        return (0, 0)
    return (1, next(i for i, prefix in enumerate(DELETE_ORDER + ["/"]) if operation.path.startswith(prefix)))


# Its success path reads a real folder (the seeded mailbox has no server): covered against Dovecot
# in tests/integration/test_filter_preview.py; here its 404/409/422/502 answers are still checked.
NEEDS_A_LIVE_MAILBOX = {"POST /api/imap/accounts/{account_id}/filter-preview"}


def test_schemathesis_finds_no_server_errors_and_responses_match(app, client):
    # No app context is held here: each request gets its own, with a fresh session, as in production.
    with app.app_context():
        ensure_fuzz_admin()
    ids = seed_data(app, Api(client, FUZZ_TOKEN))
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers={"Authorization": f"Bearer {FUZZ_TOKEN}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    expected = {f"{m} {path}" for path, methods in api_routes(app).items() for m in methods}
    # schemathesis leaves out the operation that serves the schema it was loaded from.
    assert {op.label for op in operations} | {"GET /api/openapi.json"} == expected

    started = time.monotonic()
    failures, total, never_succeeded = [], 0, []
    for operation in sorted(operations, key=run_order):
        statuses = Counter()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            calls, failure = fuzz_operation(app, operation, mode, ids, statuses)
            total += calls
            if failure:
                failures.append(failure)
        print(f"  {operation.label}: {dict(sorted(statuses.items()))}")
        if not any(200 <= code < 300 for code in statuses) and operation.label not in NEEDS_A_LIVE_MAILBOX:
            never_succeeded.append(operation.label)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {len(operations)} operations, {total} calls, {elapsed:.1f}s (seed {SEED})")
    assert not failures, "\n\n".join(failures)
    # Every operation reached its success path at least once (the seeded ids see to that).
    assert not never_succeeded, never_succeeded
    assert total >= len(operations) * EXAMPLES
    assert elapsed < TIME_BUDGET, f"the fuzz run took {elapsed:.1f}s"


# --- inputs that once reached the database and answered 500 ---------------------------------

BIG = 2**64  # beyond SQLite's INTEGER; anything above 2**31 - 1 is beyond PostgreSQL's INTEGER
INT4_MAX = 2**31 - 1


@pytest.mark.parametrize(
    "method,path,body,expected",
    [
        ("get", f"/api/companies/{BIG}", None, {404}),  # ids beyond INTEGER: no such route
        ("get", f"/api/imap/accounts/{INT4_MAX + 1}", None, {404}),
        ("get", f"/api/tickets?company_id={BIG}", None, {422}),
        ("post", "/api/staff", {"company_id": BIG, "email": "a@b.test"}, {422}),
        ("get", f"/api/companies?page={10**17}&per_page=200", None, {422}),  # OFFSET overflow
        ("get", "/api/companies?page=%C2%B2", None, {422}),  # '²' passes str.isdigit()
        ("post", "/api/companies", {"name": "lone \ud800 surrogate"}, {422}),
        ("post", "/api/imap/accounts", {"name": "S", "host": "h.test", "username": "u", "password": "pw \udfff"}, {422}),
        ("post", "/api/companies", {"name": "nul \x00 byte"}, {422}),  # PostgreSQL text cannot hold NUL
        ("get", "/api/tickets?requester_email=%00", None, {422}),
    ],
)
def test_hostile_inputs_get_a_client_error(app, client, method, path, body, expected):
    with app.app_context():
        ensure_fuzz_admin()
    api = Api(client, FUZZ_TOKEN)
    response = getattr(api, method)(path, json=body) if body is not None else getattr(api, method)(path)
    assert response.status_code in expected, response.get_data(as_text=True)
    if response.status_code == 422:
        assert response.json["errors"]


def test_clone_of_a_mailbox_with_a_200_character_name_stays_within_200(app, client):
    with app.app_context():
        ensure_fuzz_admin()
    api = Api(client, FUZZ_TOKEN)
    source = api.post("/api/imap/accounts", json={"name": "N" * 200, "host": "h.test", "username": "u", "password": "p"})
    assert source.status_code == 201
    first = api.post(f"/api/imap/accounts/{source.json['id']}/clone")
    second = api.post(f"/api/imap/accounts/{source.json['id']}/clone")
    assert first.status_code == 201 and second.status_code == 201
    assert first.json["name"] == "N" * 193 + " (copy)"
    assert second.json["name"] == "N" * 191 + " (copy 2)"


def test_cron_longer_than_its_column_is_rejected(app, client):
    with app.app_context():
        ensure_fuzz_admin()
    api = Api(client, FUZZ_TOKEN)
    cron = ",".join(["0"] * 120) + " * * * *"
    response = api.post(
        "/api/imap/accounts",
        json={"name": "S", "host": "h.test", "username": "u", "password": "p", "schedule_cron": cron},
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.json["errors"]["schedule_cron"] == ["Must be at most 200 characters"]
