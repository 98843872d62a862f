"""Malformed and oversized requests get a 4xx answer, never a 500, and big bodies are not read."""
import io
import re

import pytest

from tests.conftest import login

MAILBOX = {"name": "Support", "host": "imap.example.com", "username": "support@example.com", "password": "Sup3r-Secret"}


class CountingZeros(io.RawIOBase):
    """A request body of `size` zero bytes that remembers how much of it was read."""

    def __init__(self, size: int):
        self.size, self.read_bytes = size, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"\0" * n
        self.read_bytes += n
        return n


def test_a_50_mb_login_post_is_refused_unread(client, app):
    body = CountingZeros(50 * 1024 * 1024)
    response = client.post("/login", environ_overrides={
        "wsgi.input": body, "CONTENT_LENGTH": str(body.size), "CONTENT_TYPE": "application/x-www-form-urlencoded",
    })
    assert response.status_code == 413
    assert "larger than the limit" in response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    assert body.read_bytes <= app.config["MAX_CONTENT_LENGTH"]


def test_a_body_over_the_limit_is_a_json_413_on_the_api(api, app):
    too_big = b'{"name": "' + b"x" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    response = api.post("/api/companies", data=too_big, content_type="application/json")
    assert response.status_code == 413
    assert "larger than the limit" in response.json["error"]


def test_deeply_nested_json_is_a_422(api):
    mailbox_id = api.post("/api/imap/accounts", json=MAILBOX).json["id"]
    nested = "[" * 100_000 + "]" * 100_000
    routes = [("post", "/api/companies"), ("post", "/api/imap/accounts"), ("put", f"/api/imap/accounts/{mailbox_id}"),
              ("post", f"/api/imap/accounts/{mailbox_id}/clone"), ("post", "/api/users")]
    for method, path in routes:
        response = getattr(api, method)(path, data=nested, content_type="application/json")
        assert response.status_code == 422, (path, response.status_code)
        assert response.json["error"] == "Invalid JSON body"


def _concrete(rule) -> str:
    """The rule's URL with every variable part set to 1."""
    return re.sub(r"<[^>]+>", "1", rule.rule)


HOSTILE_QUERIES = [
    "page=1e23", "page=-5", "page=99999999999999999999999", "per_page=1e23", "per_page=0",
    "account_id=2", "account_id=x&id=3&message_id=abc",
    "outcome=bogus", "outcome=%00", "q=%00%ff",
    "company_id=1e5", "mailbox_id=-1", "requester_email=%00", "status=%ff", "next=//evil.example",
    "schedule_cron=*%20*", "page=1&page=2",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_no_get_route_answers_500_to_hostile_query_arguments(app, client, api, query):
    api.post("/api/imap/accounts", json=MAILBOX)
    api.post("/api/companies", json={"name": "Acme", "email_domains": ["acme.test"]})
    login(client, "admin@portal.test")
    failures = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        path = f"{_concrete(rule)}?{query}"
        response = api.get(path) if rule.rule.startswith("/api/") else client.get(path, headers={"HX-Request": "true"})
        if response.status_code >= 500:
            failures.append(f"{path}: {response.status_code}")
        response = client.get(path)  # the same page without htmx
        if response.status_code >= 500:
            failures.append(f"{path} (no htmx): {response.status_code}")
    assert not failures, failures


def test_api_paging_and_unknown_arguments(api):
    mailbox = f"/api/imap/accounts/{api.post('/api/imap/accounts', json=MAILBOX).json['id']}"
    unknown = api.get(f"{mailbox}/messages?account_id=2")
    assert unknown.status_code == 422 and unknown.json["errors"] == {"account_id": ["Unknown query parameter"]}
    assert api.get(f"{mailbox}/messages?outcome=imported&page=2&per_page=5").status_code == 200
    assert api.get(f"{mailbox}/messages?page=1e23").status_code == 422
    assert api.get("/api/companies?page=1e23").status_code == 422
    assert api.get(f"{mailbox}/sync-runs?per_page=1e23").status_code == 422
