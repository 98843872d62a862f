"""Every example in the filter guide (portal/templates/imap/filter_guide.md) is valid and does what its text says.

Recipes: each ```json block under "## Recipes" is followed by
``<!-- matches: ... -->`` and ``<!-- rejects: ... -->`` naming SAMPLES below: real messages
(raw bytes parsed by the importer's parser) in the mailbox context a sync gives them.
Error messages: each ```json block under "## Error messages" is followed by
``- message`` lines giving exactly the errors parse_filter_text reports.
"""

import base64
import re

import pytest

from portal.imap.filter_guide import GUIDE_RESOURCE, guide_markdown
from portal.imap.filter_context import build_context
from portal.imap.filters import evaluate, parse_filter_text
from portal.imap.parsing import parse_message

GUIDE = guide_markdown()
BACKUP_TABLE = "<table><tr><th>Job</th><th>Status</th></tr><tr><td>Nightly</td><td>Success</td></tr></table>"


def raw_message(*, from_, subject, text=None, html=None, to="support@example.com", cc=None, headers=None,
                attachments=(), message_id=None) -> bytes:
    """Raw RFC 822 bytes, the way a mail client writes them."""
    lines = [f"From: {from_}", f"To: {to}", f"Subject: {subject}", "Date: Fri, 20 Nov 2026 09:30:00 +0000",
             "MIME-Version: 1.0"]
    if cc:
        lines.append(f"Cc: {cc}")
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    for name, values in (headers or {}).items():
        lines += [f"{name}: {value}" for value in (values if isinstance(values, list) else [values])]
    parts = []
    if text is not None:
        parts.append(["Content-Type: text/plain; charset=utf-8", "", text])
    if html is not None:
        parts.append(["Content-Type: text/html; charset=utf-8", "", html])
    if len(parts) > 1:
        parts = [['Content-Type: multipart/alternative; boundary="alt"', "",
                  *[line for part in parts for line in ("--alt", *part)], "--alt--"]]
    for name, content_type, payload in attachments:
        parts.append([f'Content-Type: {content_type}; name="{name}"', "Content-Transfer-Encoding: base64",
                      f'Content-Disposition: attachment; filename="{name}"', "",
                      base64.encodebytes(payload).decode().rstrip("\n")])
    if len(parts) == 1:
        body = parts[0]
    else:
        lines.append('Content-Type: multipart/mixed; boundary="mix"')
        body = ["", *[line for part in parts for line in ("--mix", *part)], "--mix--"]
    return "\r\n".join(lines + body).encode() + b"\r\n"


def sample(raw: bytes, *, flags=(), folder="INBOX", account=(7, "Acme support", 42), size=None):
    """The context a sync builds for this message in this mailbox: parsed by the importer's parser."""
    email = parse_message(raw)
    account_id, account_name, company_id = account
    return build_context(email, account_id=account_id, account_name=account_name, company_id=company_id,
                         folder=folder, flags=list(flags), size=len(raw) if size is None else size)


SAMPLES = {
    "acme-reply": sample(raw_message(
        from_='"Jane Doe" <jane.doe@acme.com>', subject="Re: [Ticket #48213] Printer on floor 3 is offline",
        text="The printer is still offline. Password reset did not help either.\n-- \nJane Doe, ACME Corp",
        cc="it-lead@acme.com", message_id="<CAF48213.jane@mail.acme.com>",
        headers={"In-Reply-To": "<t48213@example.com>", "X-Spam-Score": "0.4",
                 "Received": ["from mx.example.com by imap.example.com", "from mx.acme.com by mx.example.com"]},
    ), flags=["\\Seen"]),
    "vip-urgent": sample(raw_message(
        from_="Maria Rossi <ceo@bigclient.com>", subject="URGENT: invoice dispute",
        text="Please call me about the attached invoice.", to="support@example.com, sales@example.com",
        cc="procurement@acme.com", attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.7 " * 2000)],
        headers={"X-Priority": "1 (Highest)", "Importance": "high",
                 "Received": "from mail.bigclient.com by mx.example.com"},
    )),
    "newsletter": sample(raw_message(
        from_="Vendor News <news@mailer.vendor.io>", subject="Our May newsletter: 5 tips for urgent printing",
        html="<p>Read our newsletter</p>",
        headers={"List-Unsubscribe": "<mailto:unsub@mailer.vendor.io>", "List-Id": "Vendor News <news.vendor.io>",
                 "Precedence": "bulk"},
    )),
    "noreply-alert": sample(raw_message(
        from_="GitHub <no-reply@github.com>", subject="[GitHub] A new public key was added",
        text="A new public key was added to your account.", to="it@example.com",
        headers={"Auto-Submitted": "auto-generated"},
    ), flags=["\\Seen"]),
    "out-of-office": sample(raw_message(
        from_="Bob Smith <bob.smith@eu.acme.com>", subject="Automatic reply: Printer on floor 3",
        text="I am out of the office until Monday.", headers={"Auto-Submitted": "auto-replied"},
    )),
    "big-screenshots": sample(raw_message(
        from_="tom@gmail.com", subject="not urgent: screenshots of the error", text="See the attached screenshots.",
        attachments=[(f"{n}.png", "image/png", b"\x89PNG" + bytes(range(256)) * 8200) for n in (1, 2, 3)],
        headers={"X-Spam-Score": "2.1"},
    ), folder="INBOX/Support", flags=["\\Flagged"]),
    "spam": sample(raw_message(
        from_="promo@cheap-deals.biz", subject="WIN a FREE iPhone!!!", text="Click here to claim your prize.",
        headers={"X-Spam-Score": "8.7", "X-Spam-Flag": "YES", "Received": "from smtp.cheap-deals.biz by mx.example.com"},
    )),
    "webform": sample(raw_message(
        from_="Example Web Forms <forms@example.com>", subject="Contact form: Cannot log in",
        html="<p>Customer cannot log in to the portal: the password reset link expired.</p>",
        headers={"Reply-To": "customer@acme.com", "X-Form-Id": "contact-7"},
    ), folder="INBOX/Forms", account=(8, "Web forms", 42)),
    # MyPortal's recipes
    "html-report": sample(raw_message(
        from_="Backup Reports <reports@example.com>", to="helpdesk@example.com",
        subject="[High Priority] Nightly backup report", message_id="<srv-20261120.4411@backup.example.com>",
        text="Nightly: Success", html=f"<html><body><h1>Backup report</h1>{BACKUP_TABLE}</body></html>",
    ), folder="Support"),
    "html-report-multiline": sample(raw_message(
        from_="Backup Reports <reports@example.com>", subject="Weekly backup report",
        html="<html><body>\n<table>\n<tr><td>Job status:</td>\n<td>Failed</td></tr>\n</table>\n</body></html>",
    ), folder="Support"),
    "vendor-ticket": sample(raw_message(
        from_="Vendor Support <support@vendor.com>", subject="Ticket #8812: VPN access for the new office",
        text="We need remote access for two engineers on Monday.",
    )),
    "vendor-webinar": sample(raw_message(
        from_="Vendor Events <events@vendor.com>", to="helpdesk@example.com",
        subject="Promotion: join our webinar on backups", html="<p>Register now</p>",
    )),
    "monitor-heartbeat": sample(raw_message(
        from_="Monitoring <alerts@example.net>", subject="Heartbeat: all checks passed", text="Everything is OK.",
        headers={"Auto-Submitted": "auto-generated"},
    )),
    "monitor-critical": sample(raw_message(
        from_="Zabbix <ops@monitoring.com>", subject="PROBLEM: disk full on db01",
        text="Trigger: disk full\nSeverity: CRITICAL\nHost: db01", headers={"Auto-Submitted": "auto-generated"},
    )),
    "status-outage": sample(raw_message(
        from_="Status Page <status@example.com>", to="helpdesk@example.com", cc="escalations@example.com",
        subject="Major outage: mail relay down", text="The mail relay is down since 09:10.",
        message_id="<status-77@example.com>",
    )),
    "team-b": sample(raw_message(
        from_="Team B <team-b@example.com>", subject="Laptop request for a new hire", text="Please order one.",
    ), folder="VIP"),
    "lab-request": sample(raw_message(
        from_="lab@example.org", subject="Access to the lab share", text="Please add me to the lab share.",
    )),
    "partner": sample(raw_message(
        from_="Partner Support <support@partner.com>", subject="Case 5521 escalated", text="See the case notes.",
    )),
    "client": sample(raw_message(from_="Lee Chan <lee@client.com>", subject="Printer toner", text="Out of toner.")),
    "client-via-form": sample(raw_message(
        from_="forms@example.com", subject="Contact form: toner", text="Sent from the website.",
        headers={"Reply-To": "Lee Chan <lee@client.com>"},
    )),
    "finance-invoice": sample(raw_message(
        from_="finance@example.com", subject="Invoice 2026-114", text="Attached is the invoice.",
    )),
    "finance-reply": sample(raw_message(
        from_="finance@example.com", subject="Re: Invoice 2026-114", text="Thanks, paid.",
    )),
}


def _section(title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", GUIDE, re.M | re.S)
    assert match, f"no '## {title}' section in {GUIDE_RESOURCE}"
    return match.group(1)


def _names(raw):
    return [n.strip() for n in raw.split(",") if n.strip()]


def _recipes():
    section = _section("Recipes")
    recipes = []
    for block in re.finditer(r"```json\n(.*?)```", section, re.S):
        title = re.findall(r"^### (.+)$", section[:block.start()], re.M)[-1]
        notes = re.match(r"\s*<!-- matches: (.*?) -->\s*<!-- rejects: (.*?) -->", section[block.end():])
        recipes.append((title, block.group(1), notes))
    return recipes


RECIPES = _recipes()


def test_doc_has_at_least_20_recipes():
    assert len(RECIPES) >= 20


@pytest.mark.parametrize("title,source,notes", RECIPES, ids=[r[0] for r in RECIPES])
def test_recipe(title, source, notes):
    assert notes, f"recipe {title!r}: json block must be followed by matches/rejects comments"
    obj, errors = parse_filter_text(source)
    assert errors == []
    matches, rejects = _names(notes.group(1)), _names(notes.group(2))
    assert matches and rejects, f"recipe {title!r} needs a matching and a rejected sample"
    for name in matches:
        assert evaluate(obj, SAMPLES[name]) is True, f"{title!r} should match {name}"
    for name in rejects:
        assert evaluate(obj, SAMPLES[name]) is False, f"{title!r} should reject {name}"


# MyPortal's recipes as its docs/imap-filters.md published them, by its numbers.
MYPORTAL = {
    1: ("Match a single sender domain", {"field": "from.domain", "equals": "example.com"}),
    9: ("Require HTML reports by checking for a table tag", {"field": "body", "matches": "<table[\\s>].*</table>"}),
    16: ('Skip messages that already have the "Seen" flag', {"field": "flags", "not_contains": "\\Seen"}),
    19: ("Require the Message-ID header to include a known prefix", {"field": "message_id", "starts_with": "<srv-"}),
    25: ("Allow invoices from finance while blocking duplicate threads", {"all": [
        {"field": "from.address", "equals": "finance@example.com"}, {"field": "subject", "not_contains": "Re:"}]}),
}


def test_recipes_are_numbered_and_myportals_keep_their_numbers():
    numbers = [int(title.split(".", 1)[0]) for title, _, _ in RECIPES]
    assert numbers == list(range(1, len(RECIPES) + 1))
    by_number = {number: (title.split(". ", 1)[1], source) for number, (title, source, _) in zip(numbers, RECIPES)}
    for number, (title, rule) in MYPORTAL.items():
        assert by_number[number][0] == title
        assert parse_filter_text(by_number[number][1]) == (rule, [])


def test_myportal_recipes_9_and_19_on_a_backup_report():
    report = SAMPLES["html-report"]
    assert report["message_id"] == "<srv-20261120.4411@backup.example.com>"
    assert report["body"].startswith("<h1>Backup report</h1><table>")  # the HTML, not the text part
    assert report["body_text"] == "Nightly: Success"
    assert evaluate(MYPORTAL[9][1], report) is True
    assert evaluate(MYPORTAL[19][1], report) is True


def _error_examples():
    section = _section("Error messages")
    examples = []
    for block in re.finditer(r"```json\n(.*?)```\n+((?:- [^\n]*\n?)+)", section, re.S):
        messages = [line[2:] for line in block.group(2).splitlines()]
        examples.append((block.group(1), messages))
    return examples


def test_error_examples_are_exact():
    examples = _error_examples()
    assert len(examples) == _section("Error messages").count("```json")
    assert len(examples) >= 10
    for source, messages in examples:
        assert parse_filter_text(source)[1] == messages, source


def test_other_doc_examples_are_valid():
    intro = GUIDE[:GUIDE.index("## Error messages")]
    blocks = re.findall(r"```json\n(.*?)```", intro, re.S)
    assert blocks
    for source in blocks:
        obj, errors = parse_filter_text(source)
        assert obj and errors == [], source
