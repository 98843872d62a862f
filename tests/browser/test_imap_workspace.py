"""The /admin/modules/imap workspace in real Chromium."""
import re

from playwright.sync_api import expect

from portal.extensions import db
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.integration.imap_helpers import create_mailbox
from tests.support.mail import make_email

IMAP = "/admin/modules/imap"


def fill_mailbox_form(page, imap_account, name="Support inbox"):
    page.fill("#name", name)
    page.fill("#host", imap_account.host)
    page.fill("#port", str(imap_account.port))
    page.select_option("#security", "none")
    page.check("#allow_plaintext")
    page.fill("#username", imap_account.username)
    page.fill("#password", imap_account.password)


def test_create_mailbox_with_inline_errors_then_success(page, live_server, admin, imap_account, shot):
    sign_in(page, live_server)
    page.goto(live_server + IMAP)
    page.click("text=New mailbox")
    fill_mailbox_form(page, imap_account)
    page.fill("#schedule_cron", "61 * * * *")
    expect(page.locator("#cron-preview")).to_contain_text("item value 61 out of range")
    page.fill("#filter_query", '{"all": [{"field": "subject", "startswith": "x"}]}')
    expect(page.locator("#filter-check")).to_contain_text("all[0]: unknown operator 'startswith'")
    page.click("button:has-text('Create mailbox')")
    expect(page.locator("#schedule_cron-error")).to_have_text("Invalid cron expression: item value 61 out of range [0, 59]")
    expect(page.locator("#filter-check")).to_contain_text("all[0]: unknown operator 'startswith'")
    expect(page.locator("#name")).to_have_value("Support inbox")  # nothing typed is lost
    expect(page.locator("#host")).to_have_value(imap_account.host)
    assert imap_account.password not in page.content()
    shot("mailbox-form-errors")
    page.fill("#password", imap_account.password)
    page.fill("#schedule_cron", "*/10 * * * *")
    expect(page.locator("#cron-preview")).to_contain_text("Every 10 minutes")
    expect(page.locator("#cron-preview")).to_contain_text("Next runs")
    page.fill("#filter_query", '{"field": "from.domain", "in": ["acme.com"]}')
    expect(page.locator("#filter-check")).to_contain_text("Filter is valid")
    page.click("button:has-text('Create mailbox')")
    expect(page.locator("h1")).to_contain_text("Support inbox")
    expect(page.locator(".toast")).to_contain_text("Mailbox 'Support inbox' created.")
    expect(page.locator("dl.facts")).to_contain_text("imap_sync:")
    assert imap_account.password not in page.content()


def test_test_connection_lists_folders_and_shows_errors(page, live_server, admin, imap_account, shot):
    imap_account.create_folder("Support")
    sign_in(page, live_server)
    page.goto(live_server + IMAP + "/new")
    fill_mailbox_form(page, imap_account)
    page.click("button:has-text('Test connection')")
    expect(page.locator("#test-result")).to_contain_text("Connected.")
    page.click(".folder-choice[data-folder='Support']")
    expect(page.locator("#folder")).to_have_value("Support")
    shot("test-connection")
    page.fill("#password", "wrong-password")
    page.click("button:has-text('Test connection')")
    expect(page.locator("#test-result")).to_contain_text("Connection failed: Login failed")
    assert "wrong-password" not in page.locator("#test-result").inner_text()


def test_sync_now_imports_and_the_row_shows_counts_then_audit(page, live_server, admin, app_ctx, imap_account, worker, shot):
    imap_account.append(make_email(subject="Printer on fire"))
    imap_account.append(make_email(subject="VPN down"))
    imap_account.append(make_email(subject="Away", headers={"Auto-Submitted": "auto-replied"}))
    mailbox = create_mailbox(imap_account, name="Helpdesk")
    sign_in(page, live_server)
    page.goto(live_server + IMAP)
    row = page.locator(f"#mailbox-{mailbox.id}")
    expect(row.locator(".last-sync")).to_contain_text("never")
    row.locator("button:has-text('Sync now')").click()
    expect(page.locator(".toast").last).to_contain_text("Sync of 'Helpdesk' queued")
    expect(row.locator(".last-sync")).to_contain_text("succeeded", timeout=20000)
    expect(row.locator(".counts")).to_contain_text("2 imported · 1 skipped · 0 failed", timeout=20000)
    shot("mailbox-list")
    row.locator("a:has-text('Helpdesk')").click()
    expect(page.locator("#runs")).to_contain_text("manual")
    expect(page.locator("#audit")).to_contain_text("Printer on fire")
    expect(page.locator("#audit")).to_contain_text("Auto-reply: Auto-Submitted: auto-replied")
    page.select_option("#audit select[name=outcome]", "skipped_auto_reply")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    expect(page.locator("#audit")).to_contain_text("Away")
    page.select_option("#audit select[name=outcome]", "imported")
    expect(page.locator("#audit tbody tr")).to_have_count(2)
    shot("mailbox-detail")
    page.locator("#audit a:has-text('Ticket #')").first.click()
    expect(page.locator("h1")).to_contain_text(re.compile("VPN down|Printer on fire"))


def test_failed_message_can_be_retried_from_the_audit(page, live_server, admin, app_ctx, imap_account):
    from portal.imap.models import ProcessedMessage

    mailbox = create_mailbox(imap_account, name="Retry box")
    uid = imap_account.append(make_email(subject="Was broken"))
    db.session.add(ProcessedMessage(account_id=mailbox.id, uid_validity=1, uid=uid, outcome="failed", reason="OSError: disk full", attempts=3, subject="Was broken"))
    db.session.commit()
    sign_in(page, live_server)
    page.goto(f"{live_server}{IMAP}/{mailbox.id}")
    expect(page.locator("#audit")).to_contain_text("OSError: disk full")
    expect(page.locator("#audit")).to_contain_text("no more automatic retries")
    page.click("#audit button:has-text('Retry')")
    expect(page.locator(".toast").last).to_contain_text("Retry of UID")
    expect(page.locator("#audit")).to_contain_text("0 attempt(s)")


def test_clone_edit_pause_resume_delete(page, live_server, admin, app_ctx, imap_account, shot):
    mailbox = create_mailbox(imap_account, name="Sales")
    sign_in(page, live_server)
    page.goto(live_server + IMAP)
    page.locator(f"#mailbox-{mailbox.id} button:has-text('Clone')").click()
    expect(page.locator("h1")).to_contain_text("Edit “Sales (copy)”")
    expect(page.locator(".toast")).to_contain_text("Cloned as 'Sales (copy)'")
    expect(page.locator("#host")).to_have_value(imap_account.host)
    expect(page.locator("#password")).to_have_value("")
    page.fill("#priority", "5")
    page.fill("#folder", "Archive")
    page.click("button:has-text('Save changes')")
    expect(page.locator(".toast")).to_contain_text("Mailbox 'Sales (copy)' saved.")
    expect(page.locator("dl.facts")).to_contain_text("Archive")
    page.goto(live_server + IMAP)
    rows = page.locator("#mailbox-rows tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Sales (copy)")  # priority 5 sorts before 100
    original = page.locator(f"#mailbox-{mailbox.id}")
    original.locator("button:has-text('Pause')").click()
    expect(original).to_contain_text("paused")
    expect(original.locator("button:has-text('Resume')")).to_be_visible()
    shot("mailbox-paused")
    original.locator("button:has-text('Resume')").click()
    expect(original.locator("button:has-text('Pause')")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    original.locator("button:has-text('Delete')").click()
    expect(page.locator(f"#mailbox-{mailbox.id}")).to_have_count(0)
    expect(page.locator(".toast").last).to_contain_text("Mailbox 'Sales' deleted")
    page.reload()
    expect(page.locator("#mailbox-rows tr")).to_have_count(1)


def test_search_filters_rows_as_you_type(page, live_server, admin, app_ctx, imap_account):
    create_mailbox(imap_account, name="Billing")
    create_mailbox(imap_account, name="Support")
    sign_in(page, live_server)
    page.goto(live_server + IMAP)
    expect(page.locator("#mailbox-rows tr")).to_have_count(2)
    page.fill("input[name=q]", "bill")
    expect(page.locator("#mailbox-rows tr")).to_have_count(1)
    expect(page.locator("#mailbox-rows")).to_contain_text("Billing")


def test_restart_banner_and_filter_guide(page, live_server, admin, app_ctx, shot):
    from portal.imap import maintenance

    maintenance.begin("upgrade")
    sign_in(page, live_server)
    page.goto(live_server + IMAP)
    expect(page.locator("#restart-banner")).to_contain_text("synchronisation is paused")
    maintenance.end()
    page.goto(live_server + IMAP + "/filter-guide")
    expect(page.locator("article")).to_contain_text("Recipes")
    shot("filter-guide")


def test_non_admin_gets_403(page, live_server, app_ctx):
    make_user("agent@portal.test")
    sign_in(page, live_server, "agent@portal.test")
    response = page.goto(live_server + IMAP)
    assert response.status == 403
    expect(page.locator("h1")).to_contain_text("403")
