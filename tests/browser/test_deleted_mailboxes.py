"""Deleting a mailbox in Chromium: the htmx Delete asks first, the row moves under "Deleted
mailboxes", whose read-only history keeps the runs and the audit; a clone says it is not scheduled."""
from playwright.sync_api import expect

from portal.extensions import db
from tests.browser.conftest import sign_in
from tests.integration.imap_helpers import create_mailbox, sync
from tests.support.mail import make_email


def test_delete_asks_then_keeps_the_history_under_deleted_mailboxes(page, live_server, admin, app_ctx, imap_account, shot):
    imap_account.append(make_email(subject="Backup failed on SRV-01"))
    mailbox = create_mailbox(imap_account, name="Alerts desk")
    create_mailbox(imap_account, name="Support desk")
    sync(mailbox)
    sign_in(page, live_server)
    page.goto(f"{live_server}/admin/modules/imap")
    row = page.locator(f"#mailbox-{mailbox.id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_be_visible()  # dismissed: nothing happened
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    expect(page.locator(".toast")).to_contain_text("deleted; its sync history and audit are kept")
    deleted = page.locator("#deleted-mailboxes")
    expect(deleted).to_be_visible()
    deleted.locator("summary").click()
    shot("imap-deleted-mailboxes")
    deleted.get_by_role("link", name="Alerts desk").click()
    expect(page.locator("h1")).to_contain_text("Alerts desk")
    expect(page.locator("body")).to_contain_text("Backup failed on SRV-01")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    shot("imap-deleted-history")


def test_the_confirm_page_and_an_unsaved_clone(page, live_server, admin, app_ctx, imap_account, shot):
    from portal.imap import accounts

    source = create_mailbox(imap_account, name="Support desk")
    copy = accounts.clone_account(source, {})
    sign_in(page, live_server)
    page.goto(f"{live_server}/admin/modules/imap")
    expect(page.locator(f"#mailbox-{copy.id}")).to_contain_text("Clone: not scheduled until saved")
    shot("imap-unsaved-clone")
    page.goto(f"{live_server}/admin/modules/imap/{source.id}/delete")
    shot("imap-confirm-delete")
    page.get_by_role("button", name="Delete mailbox").click()
    expect(page.locator("body")).to_contain_text("Mailbox 'Support desk' deleted")
    db.session.expire_all()
    assert db.session.get(type(source), source.id).deleted_at is not None
