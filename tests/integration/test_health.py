"""Health: /healthz for load balancers, /api/health for operators, and the workspace's status strip,
against the real database and Redis (and a Redis that is not there)."""
import json
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue, Worker

from portal.extensions import IMAP_QUEUE, db, get_redis
from portal.health import SCHEDULER_HEARTBEAT_KEY, beat_scheduler
from portal.imap import maintenance
from tests.conftest import TEST_CONFIG, login
from tests.integration.imap_helpers import create_mailbox, sync
from tests.support.mail import make_email


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_down_app(app):
    """The same database, but Redis on a port nothing listens on."""
    from portal import create_app

    return create_app(dict(TEST_CONFIG, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"))


@pytest.fixture
def healthy(app_ctx):
    """A scheduler that just looped and one live worker on the imap queue."""
    redis = get_redis()
    beat_scheduler(redis, 5.0)
    worker = Worker([Queue(IMAP_QUEUE, connection=redis)], connection=redis, name="health-test-worker")
    worker.register_birth()
    yield worker
    worker.register_death()


def test_healthz_is_200_without_auth_and_says_nothing_more(client, app_ctx):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "ok\n"
    assert response.headers["Cache-Control"] == "no-store"
    assert client.head("/healthz").status_code == 200


def test_healthz_is_503_when_redis_is_down(redis_down_app):
    started = time.monotonic()
    response = redis_down_app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_data(as_text=True) == "unavailable\n"
    assert time.monotonic() - started < 5  # a load balancer's probe gets its answer quickly


def test_api_health_needs_a_super_admin(client, user_api):
    assert client.get("/api/health").status_code == 401
    assert client.get("/api/health").json == {"error": "Authentication required"}
    assert user_api.get("/api/health").status_code == 403


def test_api_health_is_ok_with_scheduler_and_worker(api, healthy):
    report = api.get("/api/health").json
    assert report["status"] == "ok", report["problems"]
    assert report["problems"] == []
    assert report["database"]["ok"] and report["redis"]["ok"]
    assert report["scheduler"]["ok"] and report["scheduler"]["heartbeat_age_seconds"] < 5
    assert report["workers"]["alive"] == 1
    assert report["workers"]["workers"][0]["name"] == "health-test-worker"
    assert report["listeners"] == {"alive": 0, "listeners": []}
    assert report["queue"] == {"name": "imap", "depth": 0, "oldest_job_age_seconds": None}
    assert report["restart"] == {"pending": False, "since": None, "reason": None}


def test_api_health_without_scheduler_or_worker_is_degraded(api, app_ctx):
    report = api.get("/api/health").json
    assert report["status"] == "degraded"
    assert report["scheduler"]["heartbeat_age_seconds"] is None
    assert report["workers"] == {"alive": 0, "busy": 0, "workers": []}
    assert any("No scheduler" in problem for problem in report["problems"])
    assert any("No worker" in problem for problem in report["problems"])


def test_a_stale_scheduler_heartbeat_is_a_problem(api, healthy):
    value = json.loads(get_redis().get(SCHEDULER_HEARTBEAT_KEY))
    get_redis().set(SCHEDULER_HEARTBEAT_KEY, json.dumps(dict(value, at=time.time() - 600)))
    report = api.get("/api/health").json
    assert report["status"] == "degraded"
    assert report["scheduler"]["ok"] is False and report["scheduler"]["heartbeat_age_seconds"] >= 600
    assert report["problems"] == ["The scheduler last reported 10 min ago: scheduled syncs do not run."]


def test_queue_depth_and_a_job_waiting_too_long(api, healthy):
    queue = Queue(IMAP_QUEUE, connection=get_redis())
    first = queue.enqueue("portal.imap.tasks.sync_mailbox", 1)
    queue.enqueue("portal.imap.tasks.sync_mailbox", 2)
    first.enqueued_at = datetime.now(timezone.utc) - timedelta(minutes=20)
    first.save()
    report = api.get("/api/health").json
    assert report["queue"]["depth"] == 2
    assert 1190 <= report["queue"]["oldest_job_age_seconds"] <= 1260
    assert report["status"] == "degraded"
    assert report["problems"] == ["The oldest queued sync has waited 20 min (2 queued): the workers do not keep up."]


def test_failing_mailboxes_reauthorization_and_pending_restart(api, healthy, imap_account):
    broken = create_mailbox(imap_account, name="Broken", password_encrypted=None)
    sync(broken)
    assert broken.last_sync_status == "failed"
    create_mailbox(imap_account, name="Expired sign-in", auth_method="oauth2", oauth_provider="google",
                   oauth_status="needs_reauthorization", password_encrypted=None)
    fine = create_mailbox(imap_account, name="Fine")
    imap_account.append(make_email())
    assert sync(fine)["status"] == "succeeded"
    maintenance.begin("upgrade to 2.0")
    report = api.get("/api/health").json
    assert report["status"] == "degraded"
    mailboxes = report["mailboxes"]
    assert (mailboxes["total"], mailboxes["active"]) == (3, 3)
    assert mailboxes["failing"] == 1 and mailboxes["failing_mailboxes"] == [{"id": broken.id, "name": "Broken"}]
    assert mailboxes["needs_reauthorization"] == 1
    assert [m["name"] for m in mailboxes["needs_reauthorization_mailboxes"]] == ["Expired sign-in"]
    assert report["restart"]["pending"] is True and report["restart"]["reason"] == "upgrade to 2.0"
    assert report["problems"] == [
        "1 mailbox failed at the last sync.",
        "1 mailbox needs a new sign-in.",
        "A restart is pending: syncs are deferred until it completes.",
    ]


def test_api_health_when_redis_is_down_says_so(redis_down_app, admin_token):
    response = redis_down_app.test_client().get("/api/health", headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 200
    report = response.json
    assert report["status"] == "down"
    assert report["redis"]["ok"] is False and report["redis"]["error"] == "ConnectionError"
    assert report["database"]["ok"] is True
    assert report["scheduler"] is None and report["workers"] is None and report["queue"] is None
    assert report["problems"][0].startswith("Redis is down")
    assert report["mailboxes"]["total"] == 0  # what the database knows is still reported


# --- the status strip ----------------------------------------------------------------


def strip_of(page: str) -> str:
    start = page.index('<section id="health-strip"')
    return page[start:page.index("</section>", start)]


def test_strip_on_the_workspace_is_quiet_when_all_is_well(client, admin, healthy):
    login(client, "admin@portal.test")
    strip = strip_of(client.get("/admin/modules/imap").get_data(as_text=True))
    assert 'class="health-strip health-ok"' in strip
    assert "All systems normal" in strip and "1 worker" in strip and "Queue 0" in strip
    assert 'hx-trigger="every 15s"' in strip
    assert "health-problems" not in strip


def test_strip_turns_red_and_names_the_problem(client, admin, app_ctx):
    login(client, "admin@portal.test")
    maintenance.begin()
    strip = strip_of(client.get("/admin/modules/imap").get_data(as_text=True))
    assert 'class="health-strip health-degraded"' in strip
    assert "Needs attention" in strip
    assert "No worker is running" in strip and "A restart is pending" in strip


def test_strip_refreshes_a_bounded_number_of_times(client, admin, healthy):
    login(client, "admin@portal.test")
    partial = client.get("/admin/health/strip?left=2", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-get="/admin/health/strip?left=1"' in partial
    last = client.get("/admin/health/strip?left=1", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in last and ">Refresh</a>" in last
    assert client.get("/admin/health/strip?left=abc").status_code == 200


def test_strip_partial_stops_polling_for_a_signed_out_or_plain_user(client, plain_user):
    assert client.get("/admin/health/strip").status_code == 286
    login(client, "agent@portal.test")
    response = client.get("/admin/health/strip")
    assert response.status_code == 286 and response.get_data() == b""


def test_workspace_with_redis_down_shows_the_strip_not_an_error(app, client, admin, redis_down_app):
    login(client, "admin@portal.test")
    down_client = redis_down_app.test_client()
    down_client.set_cookie("session", client.get_cookie("session").value)
    response = down_client.get("/admin/modules/imap")
    assert response.status_code == 200
    strip = strip_of(response.get_data(as_text=True))
    assert 'class="health-strip health-down"' in strip
    assert "Service down" in strip and "Redis down" in strip
    assert "Redis is down" in strip
