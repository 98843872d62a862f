"""Platform JSON API: companies, staff, users, tickets, attachments."""
import pytest

from tests.conftest import Api

ROUTES = [
    ("get", "/api/companies"),
    ("post", "/api/companies"),
    ("get", "/api/companies/1"),
    ("put", "/api/companies/1"),
    ("delete", "/api/companies/1"),
    ("get", "/api/staff"),
    ("post", "/api/staff"),
    ("get", "/api/staff/1"),
    ("put", "/api/staff/1"),
    ("delete", "/api/staff/1"),
    ("get", "/api/users"),
    ("post", "/api/users"),
    ("get", "/api/users/1"),
    ("put", "/api/users/1"),
    ("delete", "/api/users/1"),
    ("get", "/api/tickets"),
    ("get", "/api/tickets/1"),
    ("get", "/api/attachments/1"),
]


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_a_super_admin(client, user_token, method, path):
    anonymous = getattr(client, method)(path, json={})
    assert anonymous.status_code == 401
    assert anonymous.json["error"] == "Authentication required"
    as_user = getattr(Api(client, user_token), method)(path, json={})
    assert as_user.status_code == 403


def test_company_crud(api):
    created = api.post("/api/companies", json={"name": "Acme", "email_domains": ["ACME.com", "@acme.co.uk"]})
    assert created.status_code == 201
    company = created.json
    assert company["email_domains"] == ["acme.co.uk", "acme.com"]
    assert api.get(f"/api/companies/{company['id']}").json == company
    assert [c["name"] for c in api.get("/api/companies").json["items"]] == ["Acme"]
    updated = api.put(f"/api/companies/{company['id']}", json={"email_domains": ["acme.com", "acme.org"]})
    assert updated.status_code == 200
    assert updated.json["email_domains"] == ["acme.com", "acme.org"]
    assert updated.json["name"] == "Acme"
    assert api.delete(f"/api/companies/{company['id']}").status_code == 204
    assert api.get(f"/api/companies/{company['id']}").status_code == 404


def test_company_validation_and_conflicts(api):
    bad = api.post("/api/companies", json={"name": "", "email_domains": ["not a domain"], "color": "red"})
    assert bad.status_code == 422
    assert bad.json["errors"] == {
        "name": ["This field is required"],
        "email_domains": ["Item 0: not a valid domain name"],
        "color": ["Unknown field"],
    }
    assert api.post("/api/companies", json=["x"]).status_code == 422
    assert api.post("/api/companies", data="{not json", content_type="application/json").status_code == 422
    api.post("/api/companies", json={"name": "Acme", "email_domains": ["acme.com"]})
    duplicate_name = api.post("/api/companies", json={"name": "acme"})
    assert duplicate_name.status_code == 409
    assert "already exists" in duplicate_name.json["error"]
    duplicate_domain = api.post("/api/companies", json={"name": "Other", "email_domains": ["Acme.com"]})
    assert duplicate_domain.status_code == 409
    assert duplicate_domain.json["errors"]["email_domains"]
    assert api.put("/api/companies/999", json={"name": "x"}).status_code == 404
    assert api.delete("/api/companies/999").status_code == 404


def test_staff_crud_and_rules(api):
    company = api.post("/api/companies", json={"name": "Acme"}).json
    other = api.post("/api/companies", json={"name": "Other"}).json
    created = api.post("/api/staff", json={"company_id": company["id"], "email": "Jo@Acme.com", "name": "Jo"})
    assert created.status_code == 201
    assert created.json["email"] == "jo@acme.com"
    clash = api.post("/api/staff", json={"company_id": company["id"], "email": "JO@acme.com"})
    assert clash.status_code == 409
    assert api.post("/api/staff", json={"company_id": other["id"], "email": "jo@acme.com"}).status_code == 201
    assert len(api.get(f"/api/staff?company_id={company['id']}").json["items"]) == 1
    assert len(api.get("/api/staff").json["items"]) == 2
    missing_company = api.post("/api/staff", json={"company_id": 999, "email": "x@y.com"})
    assert missing_company.status_code == 422
    assert missing_company.json["errors"]["company_id"] == ["Company 999 does not exist"]
    assert api.post("/api/staff", json={"company_id": company["id"], "email": "nope"}).status_code == 422
    staff_id = created.json["id"]
    assert api.put(f"/api/staff/{staff_id}", json={"name": "Joanna"}).json["name"] == "Joanna"
    assert api.delete(f"/api/staff/{staff_id}").status_code == 204
    assert api.get(f"/api/staff/{staff_id}").status_code == 404


def test_user_crud_password_is_write_only(api):
    created = api.post("/api/users", json={"email": "New@Portal.test", "name": "New", "password": "s3cret-pass"})
    assert created.status_code == 201
    assert "password" not in created.json and "password_hash" not in created.json
    assert created.json["email"] == "new@portal.test"
    assert created.json["is_super_admin"] is False
    assert api.post("/api/users", json={"email": "new@portal.test", "password": "another-pass"}).status_code == 409
    short = api.post("/api/users", json={"email": "x@portal.test", "password": "short"})
    assert short.status_code == 422 and "password" in short.json["errors"]
    user_id = created.json["id"]
    updated = api.put(f"/api/users/{user_id}", json={"is_super_admin": True, "password": "changed-pass"})
    assert updated.json["is_super_admin"] is True
    assert "s3cret-pass" not in str(api.get("/api/users").json)
    assert api.put(f"/api/users/{user_id}", json={"is_active": "yes"}).status_code == 422
    assert api.delete(f"/api/users/{user_id}").status_code == 204


def _ticket_with_attachment(app_ctx):
    from portal import storage
    from portal.extensions import db
    from portal.models import Attachment, Company, Ticket, TicketMessage

    company = Company(name="Acme")
    ticket = Ticket(subject="Printer", company=company, requester_email="pat@acme.com", source="email", source_mailbox_id=7)
    message = TicketMessage(ticket=ticket, author_email="pat@acme.com", body_text="It jams", body_html="<p>It jams</p>", message_id="m1@acme.com")
    content = b"%PDF-1.4 fake"
    sha = storage.store(app_ctx.config["ATTACHMENT_DIR"], content)
    message.attachments.append(Attachment(filename="scan.pdf", content_type="application/pdf", size=len(content), sha256=sha))
    db.session.add_all([company, ticket])
    db.session.commit()
    return ticket, message


def test_tickets_list_filters_and_detail(api, app_ctx):
    ticket, message = _ticket_with_attachment(app_ctx)
    listing = api.get("/api/tickets").json
    assert listing["total"] == 1 and listing["items"][0]["id"] == ticket.id
    assert api.get("/api/tickets?mailbox_id=7").json["total"] == 1
    assert api.get("/api/tickets?mailbox_id=8").json["total"] == 0
    assert api.get(f"/api/tickets?company_id={ticket.company_id}").json["total"] == 1
    assert api.get("/api/tickets?requester_email=PAT@acme.com").json["total"] == 1
    assert api.get("/api/tickets?requester_email=other@acme.com").json["total"] == 0
    assert api.get("/api/tickets?page=0").status_code == 422
    assert api.get("/api/tickets?per_page=1000").status_code == 422
    detail = api.get(f"/api/tickets/{ticket.id}").json
    assert detail["requester"] == {"type": "email", "id": None, "email": "pat@acme.com"}
    assert detail["source"] == "email" and detail["source_mailbox_id"] == 7
    assert detail["messages"][0]["body_text"] == "It jams"
    assert detail["messages"][0]["attachments"] == [
        {"id": message.attachments[0].id, "filename": "scan.pdf", "content_type": "application/pdf", "size": 13}
    ]
    download = api.get(f"/api/attachments/{message.attachments[0].id}")
    assert download.status_code == 200
    assert download.data == b"%PDF-1.4 fake"
    assert "attachment" in download.headers["Content-Disposition"]
    assert api.get("/api/tickets/999").status_code == 404


def test_pagination(api):
    for i in range(5):
        api.post("/api/companies", json={"name": f"C{i}"})
    page = api.get("/api/companies?page=2&per_page=2").json
    assert page["total"] == 5 and [c["name"] for c in page["items"]] == ["C2", "C3"]


@pytest.mark.parametrize(
    "module,foreign",
    [("portal.platform.api", "portal.imap"), ("portal.platform.pages", "portal.imap"), ("portal.http", "portal.imap"),
     ("portal.imap.api", "portal.platform"), ("portal.imap.views", "portal.platform"), ("portal.http", "portal.platform")],
)
def test_blueprints_share_portal_http_and_not_each_other(module, foreign):
    """imap and platform meet only in the app factory; their shared helpers live in portal/http.py."""
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('{foreign}')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
