"""Platform pages: tickets list, ticket detail with sanitised HTML, companies."""
from tests.conftest import login


def _ticket(app_ctx, html):
    from portal import storage
    from portal.extensions import db
    from portal.models import Attachment, Company, CompanyDomain, Staff, Ticket, TicketMessage

    company = Company(name="Acme", domains=[CompanyDomain(domain="acme.com")])
    company.staff.append(Staff(email="pat@acme.com", name="Pat"))
    ticket = Ticket(subject="Screen broken", company=company, requester_email="pat@acme.com", source="email")
    message = TicketMessage(ticket=ticket, author_email="pat@acme.com", body_text="see image", body_html=html)
    png = b"\x89PNG\r\n\x1a\nfake"
    sha = storage.store(app_ctx.config["ATTACHMENT_DIR"], png)
    message.attachments.append(
        Attachment(filename="shot.png", content_type="image/png", size=len(png), sha256=sha, content_id="img1", is_inline=True)
    )
    message.attachments.append(Attachment(filename="log.txt", content_type="text/plain", size=3, sha256=storage.store(app_ctx.config["ATTACHMENT_DIR"], b"log")))
    db.session.add(ticket)
    db.session.commit()
    return ticket, message


def test_ticket_pages(client, admin, app_ctx):
    ticket, message = _ticket(app_ctx, '<p>Look: <img src="cid:img1"></p>')
    login(client, "admin@portal.test")
    listing = client.get("/tickets").get_data(as_text=True)
    assert "Screen broken" in listing and "pat@acme.com" in listing
    detail = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    inline = message.attachments[0]
    assert f'src="/tickets/attachments/{inline.id}/inline"' in detail
    assert "log.txt" in detail
    image = client.get(f"/tickets/attachments/{inline.id}/inline")
    assert image.status_code == 200 and image.mimetype == "image/png"
    text_file = message.attachments[1]
    assert client.get(f"/tickets/attachments/{text_file.id}/inline").status_code == 404
    assert client.get(f"/tickets/attachments/{text_file.id}").data == b"log"
    assert client.get("/tickets/9999").status_code == 404


def test_companies_page_lists_domains_and_staff(client, admin, app_ctx):
    _ticket(app_ctx, "")
    login(client, "admin@portal.test")
    page = client.get("/companies").get_data(as_text=True)
    assert "acme.com" in page and "pat@acme.com" in page


def test_long_text_in_the_processed_messages_table_is_clipped_with_a_tooltip(client, admin, app_ctx, imap_account):
    from tests.integration.imap_helpers import create_mailbox, sync
    from tests.support.mail import make_email

    token = "https://alerts.example/" + "q7" * 150  # one unbroken 323-char word
    sender = "x" * 80 + "@reports.example"
    imap_account.append(make_email(subject=token, sender=f"Robot <{sender}>"))
    mailbox = create_mailbox(imap_account, name="Support")
    sync(mailbox)
    login(client, "admin@portal.test")
    table = client.get(f"/admin/modules/imap/{mailbox.id}").get_data(as_text=True)
    assert f'<span class="clip" title="{token}">{token}</span>' in table
    assert f'<span class="clip" title="{sender}">{sender}</span>' in table
    listing = client.get("/tickets").get_data(as_text=True)  # the ticket it made: clipped, full text on hover
    assert f'title="{token}">{token}</a>' in listing and 'class="clip"' in listing
