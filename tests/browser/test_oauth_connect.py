"""Connecting a mailbox with OAuth2 (authorization code flow) in real Chromium: the form, the
provider round trip through the local Authlib server, syncing over XOAUTH2 with a real worker,
a revoked sign-in that asks for a reconnect, and a denied authorization."""
import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from portal import crypto
from portal.extensions import db
from portal.imap.models import ImapAccount, SyncRun
from portal.models import Ticket
from tests.browser.conftest import sign_in
from tests.support.dovecot import make_message

IMAP = "/admin/modules/imap"
CALLBACK = IMAP + "/oauth/callback"
SIGN_IN_EXPIRED = "Sign-in expired or revoked: reconnect the mailbox"


def register_client(oauth_server, live_server):
    return oauth_server.register_client(redirect_uris=[live_server + CALLBACK])


def oauth_mailbox(account, oauth_server, client, name="OAuth box") -> ImapAccount:
    """A not yet connected OAuth2 mailbox (custom provider = the test server) on the OAuth2 Dovecot."""
    mailbox = ImapAccount(
        name=name, host=account.host, port=account.port, security="none", allow_plaintext=True,
        verify_tls=True, username=account.username, folder="INBOX", auth_method="oauth2",
        oauth_provider="custom", oauth_flow="authorization_code", oauth_client_id=client.client_id,
        oauth_client_secret_encrypted=crypto.encrypt(client.client_secret),
        oauth_authorize_url=oauth_server.authorize_url, oauth_token_url=oauth_server.token_url,
    )
    db.session.add(mailbox)
    db.session.commit()
    return mailbox


def fresh(mailbox_id) -> ImapAccount:
    db.session.expire_all()
    return db.session.get(ImapAccount, mailbox_id)


def ticket_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Ticket.id)))


def last_run(mailbox_id) -> SyncRun:
    db.session.expire_all()
    return db.session.scalar(select(SyncRun).where(SyncRun.account_id == mailbox_id).order_by(SyncRun.id.desc()))


def test_create_connect_and_sync_an_oauth_mailbox(page, live_server, admin, app_ctx, oauth_server,
                                                 oauth_imap_account, worker, shot):
    client = register_client(oauth_server, live_server)
    oauth_server.default_user = oauth_imap_account.username  # the product sends no login_hint
    sign_in(page, live_server)
    page.goto(live_server + IMAP + "/new")

    expect(page.locator("#oauth-settings")).to_be_hidden()
    expect(page.locator("#password")).to_be_visible()
    page.select_option("#auth_method", "oauth2")
    expect(page.locator("#oauth-settings")).to_be_visible()
    expect(page.locator("#password")).to_be_hidden()

    page.fill("#name", "Entra inbox")
    page.fill("#host", oauth_imap_account.host)
    page.fill("#port", str(oauth_imap_account.port))
    page.select_option("#security", "none")
    page.check("#allow_plaintext")
    page.fill("#username", oauth_imap_account.username)
    page.select_option("#oauth_provider", "custom")
    page.select_option("#oauth_flow", "authorization_code")
    page.fill("#oauth_client_id", client.client_id)
    page.fill("#oauth_client_secret", client.client_secret)
    page.fill("#oauth_authorize_url", oauth_server.authorize_url)
    page.fill("#oauth_token_url", oauth_server.token_url)
    expect(page.locator("#redirect-uri")).to_have_text(live_server + CALLBACK)
    shot("oauth-form")
    page.click("button:has-text('Create mailbox')")

    expect(page.locator(".toast")).to_contain_text("Mailbox 'Entra inbox' created.")
    expect(page.locator("h1")).to_contain_text("Entra inbox")
    status = page.locator("dd.oauth-status")
    expect(status).to_contain_text("Not connected")
    connect = page.locator("button:has-text('Connect with the provider')")
    expect(connect).to_be_visible()
    assert client.client_secret not in page.content()
    mailbox_id = int(re.search(r"/imap/(\d+)", page.url).group(1))
    shot("oauth-detail-not-connected")

    connect.click()  # -> the test server's /authorize -> back to the callback -> the mailbox page
    expect(page.locator(".toast")).to_contain_text("Connected to the provider")
    expect(status).to_contain_text("Connected")
    expect(status).not_to_contain_text("Not connected")
    expect(page.locator("button:has-text('Reconnect with the provider')")).to_be_visible()
    assert page.url.rstrip("/") == f"{live_server}{IMAP}/{mailbox_id}"
    assert oauth_server.token_requests == ["authorization_code"]
    assert fresh(mailbox_id).oauth_status == "connected"
    shot("oauth-detail-connected")

    oauth_imap_account.append(make_message(subject="Mail read over XOAUTH2"))
    page.click("button:has-text('Sync now')")  # the detail page's plain form: back to the list
    row = page.locator(f"#mailbox-{mailbox_id}")
    expect(page.locator(".toast").last).to_contain_text("Sync of 'Entra inbox' queued")
    expect(row.locator(".last-sync")).to_contain_text("succeeded", timeout=20000)
    expect(row.locator(".counts")).to_contain_text("1 imported", timeout=5000)
    expect(row).not_to_contain_text("Not connected")
    expect(row.locator("button:has-text('Connect')")).to_have_count(0)  # neither Connect nor Reconnect
    assert last_run(mailbox_id).status == "succeeded"
    assert ticket_count() == 1
    page.goto(live_server + "/tickets")
    expect(page.locator("body")).to_contain_text("Mail read over XOAUTH2")


def test_revoked_sign_in_needs_reauthorization_then_reconnects(page, live_server, admin, app_ctx, oauth_server,
                                                              oauth_imap_account, worker, shot):
    client = register_client(oauth_server, live_server)
    oauth_server.default_user = oauth_imap_account.username
    # Shorter than the product's 5 minute refresh margin: every sync refreshes the token first.
    oauth_server.access_token_lifetime = 60
    mailbox = oauth_mailbox(oauth_imap_account, oauth_server, client, name="Revoked box")
    sign_in(page, live_server)
    page.goto(live_server + IMAP)
    row = page.locator(f"#mailbox-{mailbox.id}")
    expect(row).to_contain_text("Not connected")
    row.locator("button:has-text('Connect')").click()  # hx-post -> HX-Redirect to the provider
    expect(page.locator(".toast")).to_contain_text("Connected to the provider")
    expect(page.locator("dd.oauth-status")).to_contain_text("Connected")

    for token in [t for t, item in oauth_server.refresh_tokens.items() if item.client_id == client.client_id]:
        oauth_server.revoke_refresh_token(token)
    page.click("button:has-text('Sync now')")
    row = page.locator(f"#mailbox-{mailbox.id}")
    # The run's badge, not the counts' "0 failed" (there while the run is still queued).
    expect(row.locator(".last-sync .badge.failed")).to_be_visible(timeout=20000)
    expect(row.locator(".last-sync")).to_contain_text(SIGN_IN_EXPIRED)
    expect(row).to_contain_text("Needs reauthorization")
    expect(row.locator("button:has-text('Reconnect')")).to_be_visible()
    run = last_run(mailbox.id)
    assert (run.status, run.error) == ("failed", SIGN_IN_EXPIRED)
    assert fresh(mailbox.id).oauth_status == "needs_reauthorization"
    assert "refresh_token" in oauth_server.token_requests
    shot("oauth-list-needs-reauthorization")

    row.locator("a:has-text('Revoked box')").click()
    status = page.locator("dd.oauth-status")
    expect(status).to_contain_text("Needs reauthorization")
    expect(status).to_contain_text("Sign-in expired or revoked: press Reconnect with the provider.")
    reconnect = page.locator("button:has-text('Reconnect with the provider')")
    expect(reconnect).to_be_visible()
    shot("oauth-detail-needs-reauthorization")

    reconnect.click()
    expect(page.locator(".toast")).to_contain_text("Connected to the provider")
    expect(status).to_contain_text("Connected")
    expect(status).not_to_contain_text("Needs reauthorization")
    assert fresh(mailbox.id).oauth_status == "connected"
    page.goto(live_server + IMAP)
    expect(page.locator(f"#mailbox-{mailbox.id}")).not_to_contain_text("Needs reauthorization")
    expect(page.locator(f"#mailbox-{mailbox.id} button:has-text('Reconnect')")).to_have_count(0)


def test_denied_authorization_changes_nothing(page, live_server, admin, app_ctx, oauth_server, oauth_imap_account,
                                              shot):
    client = register_client(oauth_server, live_server)
    oauth_server.default_user = oauth_imap_account.username
    oauth_server.deny_authorization = True
    mailbox = oauth_mailbox(oauth_imap_account, oauth_server, client, name="Denied box")
    sign_in(page, live_server)
    page.goto(f"{live_server}{IMAP}/{mailbox.id}")
    page.click("button:has-text('Connect with the provider')")
    expect(page.locator(".toast.error")).to_contain_text("The provider did not grant access (access_denied")
    expect(page.locator(".toast.error")).to_contain_text("Nothing was changed.")
    assert page.url.rstrip("/") == f"{live_server}{IMAP}/{mailbox.id}"
    expect(page.locator("dd.oauth-status")).to_contain_text("Not connected")
    expect(page.locator("button:has-text('Connect with the provider')")).to_be_visible()
    assert oauth_server.token_requests == []
    account = fresh(mailbox.id)
    assert (account.oauth_status, account.oauth_access_token_encrypted) == ("not_connected", None)
    shot("oauth-detail-denied")
