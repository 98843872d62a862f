"""The filter preview in Chromium: the button in the mailbox form posts the form's current
(unsaved) filter and shows what a sync would do with the newest mail."""
from playwright.sync_api import expect

from portal.extensions import db
from tests.browser.conftest import sign_in
from tests.integration.imap_helpers import create_mailbox
from tests.support.mail import make_email


def test_preview_shows_the_table_for_the_unsaved_filter(page, live_server, admin, app_ctx, imap_account, shot):
    mailbox = create_mailbox(imap_account, name="Support desk")
    imap_account.append(make_email(subject="Printer on floor 3 is offline"))
    imap_account.append(make_email(subject="Our May newsletter", sender="News <news@vendor.io>",
                                   headers={"List-Unsubscribe": "<mailto:unsub@vendor.io>"}))
    imap_account.append(make_email(subject="x" * 180, sender="Monitoring <alerts@" + "very-long-subdomain." * 4 + "example.net>"))
    before = imap_account.flags()
    sign_in(page, live_server)
    page.goto(f"{live_server}/admin/modules/imap/{mailbox.id}/edit")
    page.fill("#filter_query", '{"none": [{"field": "headers.list-unsubscribe", "present": true, "description": "no newsletters"}]}')
    page.get_by_role("button", name="Preview on recent mail").click()

    table = page.locator("#filter-preview table")
    expect(table).to_be_visible()
    newsletter = table.locator("tr", has_text="Our May newsletter")
    expect(newsletter).to_contain_text("skipped filter")
    expect(newsletter).to_contain_text('none[0] matched: {"field": "headers.list-unsubscribe", "present": true}')
    expect(table.locator("tr", has_text="Printer on floor 3 is offline")).to_contain_text("imported")
    expect(page.locator("#filter-preview")).to_contain_text("Nothing was changed")
    shot("filter-preview")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing pushed off screen
    page.set_viewport_size({"width": 1280, "height": 900})

    assert imap_account.flags() == before
    db.session.expire_all()
    assert mailbox.filter_query is None  # previewing saved nothing


def test_new_mailbox_says_save_first(page, live_server, admin, app_ctx):
    sign_in(page, live_server)
    page.goto(f"{live_server}/admin/modules/imap/new")
    button = page.get_by_role("button", name="Preview on recent mail")
    expect(button).to_be_disabled()
    expect(page.locator("#preview-save-first")).to_contain_text("Save first")
