"""The mailbox page says what 'Existing mail' left out, at desktop and phone widths."""
from datetime import timedelta

from tests.browser.conftest import sign_in
from tests.integration.imap_helpers import create_mailbox, sync
from tests.integration.test_import_scope import SINCE, TODAY, append_dated
from tests.support.mail import make_email


def test_the_mailbox_page_says_how_many_older_messages_were_left_out(page, live_server, admin, app_ctx, imap_account, shot):
    for n in range(12):
        append_dated(imap_account, make_email(subject=f"Old {n}"), TODAY - timedelta(days=90 + n))
    append_dated(imap_account, make_email(subject="Recent"), TODAY - timedelta(days=1))
    mailbox = create_mailbox(imap_account, name="Support desk (since)", import_existing="since", import_since=SINCE)
    assert sync(mailbox)["counts"] == {"imported": 1}
    sign_in(page, live_server)
    page.goto(f"{live_server}/admin/modules/imap/{mailbox.id}")
    line = page.locator("dd", has_text="left out by 'Existing mail'")
    assert line.inner_text() == f"imported since {SINCE.isoformat()} · 12 older messages left out by 'Existing mail'"
    line.scroll_into_view_if_needed()
    shot("mailbox-existing-mail")
