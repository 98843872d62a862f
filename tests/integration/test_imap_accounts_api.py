"""The mailbox API: CRUD, validation, clone, secrets, and the cron job in real Redis."""
import logging

import pytest
from rq.job import Job

from tests.conftest import Api

PASSWORD = "Sup3r-Secret-Mailbox-Pw"


def new_mailbox(api, **fields):
    payload = {"name": "Support", "host": "imap.example.com", "username": "support@example.com", "password": PASSWORD}
    payload.update(fields)
    response = api.post("/api/imap/accounts", json=payload)
    assert response.status_code == 201, response.json
    return response.json


def cron_job(app, account_id):
    from portal.extensions import get_redis, get_scheduler

    with app.app_context():
        scheduler = get_scheduler()
        if f"imap_sync-{account_id}" not in scheduler:
            return None
        return Job.fetch(f"imap_sync-{account_id}", connection=get_redis())


IMAP_ROUTES = [
    ("get", "/api/imap/accounts"),
    ("post", "/api/imap/accounts"),
    ("get", "/api/imap/accounts/1"),
    ("put", "/api/imap/accounts/1"),
    ("delete", "/api/imap/accounts/1"),
    ("post", "/api/imap/accounts/1/sync"),
    ("post", "/api/imap/accounts/1/clone"),
    ("get", "/api/imap/accounts/1/sync-runs"),
    ("get", "/api/imap/accounts/1/messages"),
    ("post", "/api/imap/accounts/1/messages/1/retry"),
]


@pytest.mark.parametrize("method,path", IMAP_ROUTES)
def test_every_imap_route_needs_a_super_admin(client, user_token, method, path):
    assert getattr(client, method)(path, json={}).status_code == 401
    assert getattr(Api(client, user_token), method)(path, json={}).status_code == 403


def test_create_returns_defaults_and_never_the_password(api, app):
    mailbox = new_mailbox(api)
    assert mailbox["port"] == 993 and mailbox["security"] == "ssl" and mailbox["verify_tls"] is True
    assert mailbox["folder"] == "INBOX" and mailbox["priority"] == 100
    assert mailbox["process_unread_only"] is True and mailbox["mark_as_read"] is True
    assert mailbox["sync_known_only"] is False and mailbox["active"] is True
    assert mailbox["schedule_cron"] == "*/15 * * * *" and mailbox["filter_query"] is None
    assert mailbox["has_password"] is True
    assert mailbox["scheduled_task_id"] == f"imap_sync:{mailbox['id']}"
    assert mailbox["next_run_at"].endswith("Z")
    assert mailbox["last_synced_at"] is None and mailbox["last_sync_status"] is None
    assert "password" not in mailbox
    listing = api.get("/api/imap/accounts")
    assert PASSWORD not in listing.get_data(as_text=True)
    assert PASSWORD not in api.get(f"/api/imap/accounts/{mailbox['id']}").get_data(as_text=True)


def test_password_is_ciphertext_in_the_database(api, app):
    from portal import crypto
    from portal.extensions import db

    mailbox = new_mailbox(api)
    with app.app_context():
        dump = []
        with db.engine.connect() as conn:
            for table in db.metadata.sorted_tables:
                dump.extend(repr(tuple(row)) for row in conn.execute(table.select()))
        assert PASSWORD not in "\n".join(dump)
        from portal.imap.models import ImapAccount

        stored = db.session.get(ImapAccount, mailbox["id"]).password_encrypted
        assert stored and crypto.decrypt(stored) == PASSWORD


def test_validation_messages_per_field(api):
    response = api.post(
        "/api/imap/accounts",
        json={
            "name": "",
            "host": "h",
            "username": "u",
            "port": 70000,
            "security": "tls",
            "priority": -1,
            "schedule_cron": "61 * * * *",
            "filter_query": {"field": "from.domain", "in": "acme.com"},
            "mark_as_read": "yes",
            "colour": "blue",
        },
    )
    assert response.status_code == 422
    errors = response.json["errors"]
    assert errors["filter_query"] == ["Operator 'in' expects an array of values"]
    assert errors["schedule_cron"] == ["Invalid cron expression: item value 61 out of range [0, 59]"]
    assert errors["name"] == ["This field is required"]
    assert errors["password"] == ["This field is required"]
    assert errors["port"] == ["Must be between 1 and 65535"]
    assert errors["security"] == ["Must be one of: ssl, starttls, none"]
    assert errors["priority"] == ["Must be between 0 and 32767"]
    assert errors["mark_as_read"] == ["Must be true or false"]
    assert errors["colour"] == ["Unknown field"]
    four_fields = api.post("/api/imap/accounts", json={"name": "x", "host": "h", "username": "u", "password": "p", "schedule_cron": "* * * *"})
    assert four_fields.json["errors"]["schedule_cron"] == ["Must have 5 fields (minute hour day month weekday); got 4"]
    never = api.post("/api/imap/accounts", json={"name": "x", "host": "h", "username": "u", "password": "p", "schedule_cron": "0 0 30 2 *"})
    assert never.json["errors"]["schedule_cron"] == ["This cron expression never runs"]
    nested = api.post("/api/imap/accounts", json={"name": "x", "host": "h", "username": "u", "password": "p", "filter_query": {"all": [{"field": "subject", "contains": "a"}, {"any": [{"field": "subject", "startswith": "b"}]}]}})
    assert nested.json["errors"]["filter_query"] == ["all[1].any[0]: unknown operator 'startswith'"]
    missing_company = api.post("/api/imap/accounts", json={"name": "x", "host": "h", "username": "u", "password": "p", "company_id": 999})
    assert missing_company.status_code == 422
    assert missing_company.json["errors"]["company_id"] == ["Company 999 does not exist"]


def test_update_is_partial_and_keeps_password(api, app):
    from portal import crypto
    from portal.extensions import db
    from portal.imap.models import ImapAccount

    company = api.post("/api/companies", json={"name": "Acme"}).json
    mailbox = new_mailbox(api)
    updated = api.put(f"/api/imap/accounts/{mailbox['id']}", json={"folder": "Support", "company_id": company["id"]})
    assert updated.status_code == 200
    assert updated.json["folder"] == "Support" and updated.json["company_id"] == company["id"]
    assert updated.json["host"] == "imap.example.com" and updated.json["has_password"] is True
    with app.app_context():
        assert crypto.decrypt(db.session.get(ImapAccount, mailbox["id"]).password_encrypted) == PASSWORD
    api.put(f"/api/imap/accounts/{mailbox['id']}", json={"password": "new-password"})
    with app.app_context():
        assert crypto.decrypt(db.session.get(ImapAccount, mailbox["id"]).password_encrypted) == "new-password"
    assert api.put(f"/api/imap/accounts/{mailbox['id']}", json={"company_id": None}).json["company_id"] is None
    assert api.put(f"/api/imap/accounts/{mailbox['id']}", json={"password": ""}).status_code == 422
    assert api.put("/api/imap/accounts/999", json={"folder": "x"}).status_code == 404


def test_duplicate_name_conflicts(api):
    mailbox = new_mailbox(api)
    assert api.post("/api/imap/accounts", json={"name": "support", "host": "h", "username": "u", "password": "p"}).status_code == 409
    other = new_mailbox(api, name="Sales")
    clash = api.put(f"/api/imap/accounts/{other['id']}", json={"name": "Support"})
    assert clash.status_code == 409 and clash.json["errors"]["name"]
    assert api.put(f"/api/imap/accounts/{mailbox['id']}", json={"name": "Support"}).status_code == 200


def test_cron_job_follows_create_update_pause_resume_delete(api, app):
    mailbox = new_mailbox(api, schedule_cron="*/5 * * * *")
    job = cron_job(app, mailbox["id"])
    assert job is not None
    assert job.meta["cron_string"] == "*/5 * * * *"
    assert job.description == f"imap_sync:{mailbox['id']}"
    assert job.meta["task"] == f"imap_sync:{mailbox['id']}"
    assert job.origin == "imap"
    assert job.func_name == "portal.imap.tasks.sync_mailbox" and list(job.args) == [mailbox["id"]]

    api.put(f"/api/imap/accounts/{mailbox['id']}", json={"schedule_cron": "0 * * * *"})
    assert cron_job(app, mailbox["id"]).meta["cron_string"] == "0 * * * *"

    paused = api.put(f"/api/imap/accounts/{mailbox['id']}", json={"active": False}).json
    assert paused["scheduled_task_id"] is None and paused["next_run_at"] is None
    assert cron_job(app, mailbox["id"]) is None
    from portal.extensions import get_redis

    assert not get_redis().exists(f"rq:job:imap_sync-{mailbox['id']}")

    resumed = api.put(f"/api/imap/accounts/{mailbox['id']}", json={"active": True}).json
    assert resumed["scheduled_task_id"] == f"imap_sync:{mailbox['id']}"
    assert cron_job(app, mailbox["id"]).meta["cron_string"] == "0 * * * *"

    assert api.delete(f"/api/imap/accounts/{mailbox['id']}").status_code == 204
    assert cron_job(app, mailbox["id"]) is None
    assert not get_redis().exists(f"rq:job:imap_sync-{mailbox['id']}")
    gone = api.get(f"/api/imap/accounts/{mailbox['id']}").json  # kept, read-only, for its history
    assert gone["deleted_at"] is not None and gone["scheduled_task_id"] is None and gone["active"] is False
    assert api.delete(f"/api/imap/accounts/{mailbox['id']}").status_code == 404


def test_clone_copies_everything_and_gets_its_own_schedule(api, app):
    from portal import crypto
    from portal.extensions import db
    from portal.imap.models import ImapAccount

    query = {"field": "from.domain", "in": ["acme.com"]}
    source = new_mailbox(api, filter_query=query, priority=5, sync_known_only=True, schedule_cron="*/7 * * * *")
    first = api.post(f"/api/imap/accounts/{source['id']}/clone")
    assert first.status_code == 201
    copy = first.json
    assert copy["name"] == "Support (copy)" and copy["id"] != source["id"]
    for field in ("host", "port", "username", "folder", "priority", "sync_known_only", "schedule_cron", "filter_query", "has_password"):
        assert copy[field] == source[field], field
    with app.app_context():
        assert crypto.decrypt(db.session.get(ImapAccount, copy["id"]).password_encrypted) == PASSWORD
    assert copy["active"] is False and cron_job(app, copy["id"]) is None  # scheduled once saved
    saved = api.put(f"/api/imap/accounts/{copy['id']}", json={})
    assert saved.json["active"] is True
    assert cron_job(app, copy["id"]).meta["cron_string"] == "*/7 * * * *"
    second = api.post(
        f"/api/imap/accounts/{source['id']}/clone",
        json={"username": "other@example.com", "folder": "Sales", "password": "other-password"},
    ).json
    assert second["name"] == "Support (copy 2)"
    assert second["username"] == "other@example.com" and second["folder"] == "Sales"
    assert api.post(f"/api/imap/accounts/{source['id']}/clone", json={"port": "x"}).status_code == 422
    assert api.post("/api/imap/accounts/999/clone").status_code == 404
    assert api.post(f"/api/imap/accounts/{source['id']}/clone", json={"name": "Support"}).status_code == 409


def test_reconcile_after_flushdb_restores_every_job(api, app):
    from portal.extensions import get_redis

    a = new_mailbox(api, name="A", schedule_cron="*/5 * * * *")
    b = new_mailbox(api, name="B", schedule_cron="0 9 * * 1-5")
    paused = new_mailbox(api, name="C", active=False)
    with app.app_context():
        get_redis().flushdb()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["imap", "schedules", "reconcile"])
    assert result.exit_code == 0, result.output
    assert f"added imap_sync:{a['id']} (*/5 * * * *)" in result.output
    assert f"added imap_sync:{b['id']} (0 9 * * 1-5)" in result.output
    assert cron_job(app, a["id"]).meta["cron_string"] == "*/5 * * * *"
    assert cron_job(app, b["id"]).meta["cron_string"] == "0 9 * * 1-5"
    assert cron_job(app, paused["id"]) is None
    again = runner.invoke(args=["imap", "schedules", "reconcile"])
    assert "0 change(s)" in again.output


def test_reconcile_fixes_changed_cron_and_removes_orphans(api, app):
    from portal.extensions import db
    from portal.imap import scheduling
    from portal.imap.models import ImapAccount

    a = new_mailbox(api, name="A", schedule_cron="*/5 * * * *")
    with app.app_context():
        account = db.session.get(ImapAccount, a["id"])
        account.schedule_cron = "*/10 * * * *"  # changed behind the API's back
        db.session.commit()
        orphan = ImapAccount(id=9999, name="gone", host="h", username="u", schedule_cron="* * * * *", active=True)
        scheduling.schedule(orphan)
    output = app.test_cli_runner().invoke(args=["imap", "schedules", "reconcile"]).output
    assert f"updated imap_sync:{a['id']}: */5 * * * * -> */10 * * * *" in output
    assert "removed imap_sync:9999" in output
    assert cron_job(app, 9999) is None
    assert cron_job(app, a["id"]).meta["cron_string"] == "*/10 * * * *"


def test_redis_down_still_saves_and_reports_pending_schedule(api, app):

    original = app.config["REDIS_URL"]
    app.extensions.pop("portal_redis", None)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    try:
        response = api.post("/api/imap/accounts", json={"name": "Offline", "host": "h", "username": "u", "password": "p"})
        assert response.status_code == 201
        assert response.json["schedule_error"].startswith("Schedule pending: Redis is unavailable")
        assert response.json["next_run_at"] is None
        sync = api.post(f"/api/imap/accounts/{response.json['id']}/sync")
        assert sync.status_code == 503
        assert "Redis" in sync.json["error"]
    finally:
        app.config["REDIS_URL"] = original
        app.extensions.pop("portal_redis", None)
    app.test_cli_runner().invoke(args=["imap", "schedules", "reconcile"])
    fixed = api.get(f"/api/imap/accounts/{response.json['id']}").json
    assert fixed["schedule_error"] is None and fixed["next_run_at"] is not None
    assert cron_job(app, response.json["id"]) is not None


def test_sync_endpoint_queues_a_job(api, app):
    from rq import Queue

    from portal.extensions import get_redis

    mailbox = new_mailbox(api)
    response = api.post(f"/api/imap/accounts/{mailbox['id']}/sync")
    assert response.status_code == 202
    body = response.json
    assert body["status"] == "queued" and body["scheduled_task_id"] == f"imap_sync:{mailbox['id']}"
    with app.app_context():
        queue = Queue("imap", connection=get_redis())
        assert body["job_id"] in queue.job_ids
        job = queue.fetch_job(body["job_id"])
        assert list(job.args) == [mailbox["id"]] and job.kwargs["run_id"] == body["sync_run_id"]
    runs = api.get(f"/api/imap/accounts/{mailbox['id']}/sync-runs").json["items"]
    assert runs[0]["id"] == body["sync_run_id"] and runs[0]["status"] == "queued" and runs[0]["trigger"] == "manual"
    assert api.post("/api/imap/accounts/999/sync").status_code == 404


def test_password_never_logged(api, app, caplog):
    caplog.set_level(logging.DEBUG)
    mailbox = new_mailbox(api)
    api.put(f"/api/imap/accounts/{mailbox['id']}", json={"password": "another-" + PASSWORD})
    api.post("/api/imap/accounts", json={"name": "Bad", "host": "h", "username": "u", "password": PASSWORD, "port": "x"})
    assert PASSWORD not in caplog.text
