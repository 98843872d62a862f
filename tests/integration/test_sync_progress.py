"""Progress you can see: a run's candidates and `progress` (API, mailbox row, sync history),
and the detail page's last-30-days chart from the mailbox's audit rows."""
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.imap import history, importer, runs
from portal.imap.models import ProcessedMessage, SyncRun
from portal.models import utcnow
from tests.conftest import login
from tests.integration.imap_helpers import create_mailbox, sync
from tests.support.mail import make_email

IMAP = "/admin/modules/imap"
SVG = "{http://www.w3.org/2000/svg}"


def test_a_sync_of_several_batches_records_candidates_and_ends_with_done_equal_total(
        app_ctx, api, imap_account, monkeypatch):
    monkeypatch.setattr(importer, "BATCH_MESSAGES", 4)
    mailbox = create_mailbox(imap_account)
    imap_account.append_many([make_email(subject=f"Issue {n}") for n in range(10)])
    seen = []  # (done, total) as the run's row says after each batch's commit
    real = runs.record_counts

    def spy(run_id, counts):
        real(run_id, counts)
        run = db.session.get(SyncRun, run_id)
        seen.append((sum(run.counts.values()), run.candidates))

    monkeypatch.setattr(runs, "record_counts", spy)
    result = sync(mailbox)
    assert result["status"] == "succeeded" and result["progress"] == {"done": 10, "total": 10}
    assert seen == [(4, 10), (8, 10), (10, 10)]  # per batch, the total known from the start
    listed = api.get(f"/api/imap/accounts/{mailbox.id}/sync-runs").get_json()["items"][0]
    assert listed["progress"] == {"done": 10, "total": 10}
    one = api.get(f"/api/imap/accounts/{mailbox.id}/sync-runs/{listed['id']}").get_json()
    assert one["progress"] == {"done": 10, "total": 10}

    nothing_new = sync(mailbox)  # nothing to decide: total 0, not unknown
    assert nothing_new["progress"] == {"done": 0, "total": 0}


def test_a_queued_run_has_no_total_yet(app_ctx, api, imap_account):
    mailbox = create_mailbox(imap_account)
    queued = api.post(f"/api/imap/accounts/{mailbox.id}/sync").get_json()
    run = api.get(f"/api/imap/accounts/{mailbox.id}/sync-runs/{queued['sync_run_id']}").get_json()
    assert run["status"] == "queued" and run["progress"] == {"done": 0, "total": None}


@pytest.fixture
def running(app_ctx, imap_account):
    """A run in flight: 412 of 2,000 decided so far."""
    mailbox = create_mailbox(imap_account)
    run = SyncRun(account_id=mailbox.id, trigger="manual", status="running", counts={}, started_at=utcnow())
    db.session.add(run)
    db.session.commit()
    runs.record_candidates(run.id, 2000)
    runs.record_counts(run.id, {"imported": 400, "duplicate": 10, "failed": 2})
    return mailbox, run


def test_a_running_run_shows_n_of_m_in_its_row_its_history_and_the_api(client, admin, api, running):
    mailbox, run = running
    login(client, "admin@portal.test")
    row = client.get(f"{IMAP}/{mailbox.id}/row", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in row and "412 / 2,000" in row
    assert '<progress max="2000" value="412"' in row
    history_part = client.get(f"{IMAP}/{mailbox.id}/runs", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "412 / 2,000" in history_part and 'hx-trigger="every 1s"' in history_part
    page = client.get(f"{IMAP}/{mailbox.id}").get_data(as_text=True)
    assert "412 / 2,000" in page
    assert "412 / 2,000" in client.get(IMAP).get_data(as_text=True)  # the mailbox list
    assert api.get(f"/api/imap/accounts/{mailbox.id}/sync-runs/{run.id}").get_json()["progress"] == {"done": 412, "total": 2000}

    runs.record_counts(run.id, {"imported": 1990, "duplicate": 10})  # the next batch
    assert "2,000 / 2,000" in client.get(f"{IMAP}/{mailbox.id}/row").get_data(as_text=True)
    runs.finish(run.id, mailbox.id, "succeeded", None, {"imported": 1990, "duplicate": 10})
    row = client.get(f"{IMAP}/{mailbox.id}/row").get_data(as_text=True)
    assert " / 2,000" not in row and "every 1s" not in row  # a finished run shows its counts, not progress


def _audit(account_id, day: datetime, outcome: str, n: int, start_uid: int) -> None:
    db.session.add_all(ProcessedMessage(account_id=account_id, uid_validity=1, uid=start_uid + i, outcome=outcome,
                                        created_at=day + timedelta(minutes=i)) for i in range(n))
    db.session.commit()


def test_detail_page_chart_has_the_right_bars_per_day(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    other = create_mailbox(imap_account, name="Other")
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    two_days_ago = today - timedelta(days=2)
    _audit(mailbox.id, today + timedelta(hours=1), "imported", 6, 1)
    _audit(mailbox.id, today + timedelta(hours=2), "threaded", 2, 100)
    _audit(mailbox.id, today, "skipped_filter", 3, 200)
    _audit(mailbox.id, today, "duplicate", 1, 300)
    _audit(mailbox.id, today, "skipped_too_large", 4, 400)
    _audit(mailbox.id, two_days_ago, "failed", 2, 500)
    _audit(mailbox.id, two_days_ago, "imported", 2, 600)
    _audit(mailbox.id, today - timedelta(days=30), "imported", 50, 700)  # outside the window
    _audit(other.id, today, "imported", 99, 1)  # another mailbox

    rows = sorted(history.daily_counts(mailbox.id, today.date()))
    assert rows == [(two_days_ago.date(), 2, 0, 2), (today.date(), 8, 8, 0)]

    login(client, "admin@portal.test")
    page = client.get(f"{IMAP}/{mailbox.id}").get_data(as_text=True)
    svg = ET.fromstring(re.search(r"<svg id=\"history-chart\".*?</svg>", page, re.S).group(0))
    heights = {(r.get("data-day"), r.get("class").split()[1]): float(r.get("height"))
               for r in svg.iter(f"{SVG}rect") if "bar" in r.get("class").split()}
    assert heights == {
        (today.date().isoformat(), "imported"): 50.0, (today.date().isoformat(), "skipped"): 50.0,
        (two_days_ago.date().isoformat(), "imported"): 12.5, (two_days_ago.date().isoformat(), "failed"): 12.5,
    }
    assert len(list(svg.iter(f"{SVG}g"))) == 30
    assert "Imported <strong>10</strong>" in page and "Skipped <strong>8</strong>" in page and "Failed <strong>2</strong>" in page


def test_a_mailbox_without_mail_shows_an_empty_chart(client, admin, app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    login(client, "admin@portal.test")
    page = client.get(f"{IMAP}/{mailbox.id}").get_data(as_text=True)
    assert 'id="history-chart"' in page and "No mail in the last 30 days" in page
    assert 'class="bar' not in page
