"""The status strip at the top of the IMAP workspace in Chromium: quiet with a scheduler and a real
worker, red with the problems listed when a mailbox fails and a restart is pending, and refreshed
by htmx without a reload."""
from playwright.sync_api import expect

from portal.extensions import get_redis
from portal.health import beat_scheduler
from portal.imap import maintenance
from tests.browser.conftest import sign_in
from tests.integration.imap_helpers import create_mailbox, sync


def test_strip_is_quiet_then_turns_red(page, live_server, admin, app_ctx, imap_account, worker, shot):
    from tests.support import processes
    from rq import Worker

    beat_scheduler(get_redis(), 5.0)
    create_mailbox(imap_account, name="Support desk")
    assert processes.wait_for(lambda: len(Worker.all(connection=get_redis())) == 1, timeout=20)
    sign_in(page, live_server)
    page.goto(f"{live_server}/admin/modules/imap")
    strip = page.locator("#health-strip")
    expect(strip).to_have_class("health-strip health-ok")
    expect(strip).to_contain_text("All systems normal")
    expect(strip).to_contain_text("1 worker")
    shot("imap-health-ok")

    broken = create_mailbox(imap_account, name="Old server", password_encrypted=None)
    sync(broken)
    maintenance.begin()
    page.goto(f"{live_server}/admin/modules/imap")
    expect(strip).to_have_class("health-strip health-degraded")
    expect(strip.locator(".health-problems li")).to_have_count(2)
    expect(strip).to_contain_text("1 mailbox failed at the last sync.")
    shot("imap-health-degraded")

    # The strip refreshes itself: the restart ends and, without a reload, one problem is left.
    maintenance.end()
    page.wait_for_timeout(16_000)  # one refresh (every 15 s)
    expect(strip.locator(".health-problems li")).to_have_count(1)
    expect(strip).not_to_contain_text("A restart is pending")
