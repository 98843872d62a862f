"""GET /metrics: off without METRICS_TOKEN, behind the token with it, and the numbers are what the
database says a real sync did (read by the Prometheus parser)."""
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from portal.extensions import IMAP_QUEUE, db, get_redis
from portal.imap.models import SyncRun
from tests.integration.imap_helpers import create_mailbox, sync
from tests.support.mail import make_email

TOKEN = "metrics-token-0123456789"


@pytest.fixture
def metrics_on(app):
    app.config["METRICS_TOKEN"] = TOKEN
    app.extensions.pop("portal_metrics", None)  # a fresh RunLedger, as in a new process
    yield
    app.config["METRICS_TOKEN"] = None
    app.extensions.pop("portal_metrics", None)


def scrape(client) -> dict:
    """{(name, frozenset(labels)): value} of every sample."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def test_metrics_are_off_without_a_token(client, app_ctx):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


def test_metrics_refuse_a_missing_or_wrong_token(client, app_ctx, metrics_on, admin_token):
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    # An API token of a super admin is not the metrics token.
    assert client.get("/metrics", headers={"Authorization": f"Bearer {admin_token}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401


def test_metrics_count_what_real_syncs_did(client, app, app_ctx, metrics_on, imap_account):
    mailbox = create_mailbox(imap_account, name="Support")
    imap_account.append(make_email(subject="Printer"))
    imap_account.append(make_email(subject="Scanner"))
    imap_account.append(make_email(subject="Away", headers={"Auto-Submitted": "auto-replied"}))
    assert sync(mailbox)["status"] == "succeeded"
    ids = {"mailbox_id": str(mailbox.id), "mailbox": "Support"}

    first = scrape(client)
    assert value(first, "portal_imap_messages", outcome="imported", **ids) == 2
    assert value(first, "portal_imap_messages", outcome="skipped_auto_reply", **ids) == 1
    assert value(first, "portal_imap_sync_runs_total", status="succeeded") == 1
    assert value(first, "portal_imap_sync_runs_total", status="failed") == 0
    assert value(first, "portal_imap_sync_duration_seconds_count") == 1
    assert value(first, "portal_imap_sync_duration_seconds_bucket", le="+Inf") == 1
    assert 0 < value(first, "portal_imap_sync_duration_seconds_sum") < 30
    assert 0 <= value(first, "portal_imap_last_success_age_seconds", **ids) < 30
    assert value(first, "portal_imap_mailboxes", state="active") == 1
    assert value(first, "portal_imap_push_connections") == 0
    assert value(first, "portal_redis_up") == 1

    # More mail, a second sync, a failing mailbox and a queued run: counters only grow, and
    # finished runs already counted are not counted again.
    imap_account.append(make_email(subject="Monitor"))
    assert sync(mailbox)["status"] == "succeeded"
    broken = create_mailbox(imap_account, name="Broken", password_encrypted=None)
    assert sync(broken)["status"] == "failed"
    from portal.imap.tasks import enqueue_sync

    enqueue_sync(mailbox)
    second = scrape(client)
    assert value(second, "portal_imap_messages", outcome="imported", **ids) == 3
    assert value(second, "portal_imap_sync_runs_total", status="succeeded") == 2
    assert value(second, "portal_imap_sync_runs_total", status="failed") == 1
    assert value(second, "portal_imap_sync_runs_open", status="queued") == 1
    assert value(second, "portal_imap_sync_duration_seconds_count") == 3
    assert value(second, "portal_imap_queue_depth") == 1
    assert value(second, "portal_imap_mailboxes", state="failing") == 1
    # A mailbox that never succeeded has no age; the failing one is not reported as fresh.
    assert value(second, "portal_imap_last_success_age_seconds", mailbox_id=str(broken.id), mailbox="Broken") is None

    # Another process (a fresh ledger) reads the same numbers from the database.
    app.extensions.pop("portal_metrics")
    third = scrape(client)
    for name, labels in [("portal_imap_sync_runs_total", {"status": "succeeded"}),
                         ("portal_imap_sync_runs_total", {"status": "failed"}),
                         ("portal_imap_sync_duration_seconds_count", {}),
                         ("portal_imap_messages", {"outcome": "imported", **ids})]:
        assert value(third, name, **labels) == value(second, name, **labels), name


def test_last_success_age_comes_from_the_last_successful_run(client, app_ctx, metrics_on, imap_account):
    mailbox = create_mailbox(imap_account, name="Flaky")
    assert sync(mailbox)["status"] == "succeeded"
    # The last success was an hour ago; the sync after it failed (last_synced_at is that failure).
    for run in db.session.scalars(select(SyncRun)):
        run.started_at -= timedelta(hours=1)
        run.finished_at -= timedelta(hours=1)
    mailbox.password_encrypted = None
    db.session.commit()
    assert sync(mailbox)["status"] == "failed"
    age = value(scrape(client), "portal_imap_last_success_age_seconds", mailbox_id=str(mailbox.id), mailbox="Flaky")
    assert 3590 <= age <= 3700


def test_a_run_finishing_after_it_was_seen_open_is_counted_once(client, app_ctx, metrics_on, imap_account):
    mailbox = create_mailbox(imap_account, name="Slow")
    from portal.imap.tasks import enqueue_sync

    run = enqueue_sync(mailbox)  # queued: open
    open_scrape = scrape(client)
    assert value(open_scrape, "portal_imap_sync_runs_open", status="queued") == 1
    assert value(open_scrape, "portal_imap_sync_runs_total", status="succeeded") == 0
    get_redis().delete(f"rq:queue:{IMAP_QUEUE}")
    from portal.imap.tasks import sync_mailbox

    sync_mailbox(mailbox.id, trigger="manual", run_id=run.id, raise_errors=False)
    for _ in range(3):
        samples = scrape(client)
        assert value(samples, "portal_imap_sync_runs_total", status="succeeded") == 1
        assert value(samples, "portal_imap_sync_runs_open", status="queued") == 0
        assert value(samples, "portal_imap_sync_duration_seconds_count") == 1


def test_metrics_when_redis_is_down_still_answer(app, metrics_on, app_ctx):
    from tests.conftest import TEST_CONFIG
    from tests.integration.test_health import closed_port

    from portal import create_app

    down = create_app(dict(TEST_CONFIG, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", METRICS_TOKEN=TOKEN))
    samples = scrape(down.test_client())
    assert value(samples, "portal_redis_up") == 0
    assert value(samples, "portal_imap_queue_depth") is None
    assert value(samples, "portal_imap_sync_runs_total", status="succeeded") == 0
