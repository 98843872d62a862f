"""The detail page's last-30-days chart and a running sync's "N / M", in Chromium at 1280 and 390 px."""
import os
import random
from datetime import timedelta

from playwright.sync_api import expect

from portal.extensions import db
from portal.imap import runs
from portal.imap.models import ProcessedMessage, SyncRun
from portal.models import utcnow
from tests.browser.conftest import ARTIFACTS, sign_in
from tests.integration.imap_helpers import create_mailbox


def _seed_month(account_id: int) -> None:
    rnd = random.Random(12)
    today = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    uid = 1
    rows = []
    for back in range(29, -1, -1):
        if back % 7 in (2, 3):  # a quiet weekend: empty days
            continue
        for outcome, n in (("imported", rnd.randint(5, 60)), ("threaded", rnd.randint(0, 15)),
                           ("skipped_filter", rnd.randint(0, 20)), ("duplicate", rnd.randint(0, 3)),
                           ("failed", 1 if back in (4, 11) else 0)):
            for _ in range(n):
                rows.append(ProcessedMessage(account_id=account_id, uid_validity=1, uid=uid, outcome=outcome,
                                             created_at=today - timedelta(days=back)))
                uid += 1
    db.session.add_all(rows)
    db.session.commit()


def test_chart_and_progress_read_well_on_desktop_and_phone(page, live_server, admin, app_ctx, imap_account, shot):
    mailbox = create_mailbox(imap_account, name="Support desk")
    _seed_month(mailbox.id)
    run = SyncRun(account_id=mailbox.id, trigger="manual", status="running", counts={}, started_at=utcnow())
    db.session.add(run)
    db.session.commit()
    runs.record_candidates(run.id, 2000)
    runs.record_counts(run.id, {"imported": 400, "skipped_filter": 12})

    sign_in(page, live_server)
    page.goto(f"{live_server}/admin/modules/imap/{mailbox.id}")
    chart = page.locator("svg#history-chart")
    expect(chart).to_be_visible()
    expect(page.locator(".history-legend")).to_contain_text("Imported")
    expect(page.locator("#runs")).to_contain_text("412 / 2,000")
    box = chart.bounding_box()
    assert box["height"] == 140 and box["width"] > 1000
    os.makedirs(ARTIFACTS, exist_ok=True)
    chart.locator("xpath=ancestor::section").screenshot(path=os.path.join(ARTIFACTS, "imap-history-chart-card-1280.png"))
    shot("imap-history-chart")

    page.set_viewport_size({"width": 390, "height": 844})
    box = chart.bounding_box()
    assert 250 < box["width"] <= 390 and box["height"] == 110  # fits the phone, no sideways scroll
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    chart.locator("xpath=ancestor::section").screenshot(path=os.path.join(ARTIFACTS, "imap-history-chart-card-390.png"))

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/admin/modules/imap")
    expect(page.locator(f"#mailbox-{mailbox.id} .last-sync")).to_contain_text("412 / 2,000")
    runs.record_counts(run.id, {"imported": 900, "skipped_filter": 12})  # the next batch: the row follows
    expect(page.locator(f"#mailbox-{mailbox.id} .last-sync")).to_contain_text("912 / 2,000")
    shot("imap-running-progress")
    runs.finish(run.id, mailbox.id, "succeeded", None, {"imported": 1988, "skipped_filter": 12})
