"""Every example in the filter guide (portal/templates/imap/filter_guide.md) is valid and does what its text says.

Recipes: each ```json block under "## Recipes" is followed by
``<!-- matches: ... -->`` and ``<!-- rejects: ... -->`` naming SAMPLES below.
Error messages: each ```json block under "## Error messages" is followed by
``- message`` lines giving exactly the errors parse_filter_text reports.
"""

import re
from types import SimpleNamespace

import pytest

from portal.imap.filter_guide import GUIDE_RESOURCE, guide_markdown
from portal.imap.filter_context import build_context
from portal.imap.filters import evaluate, parse_filter_text

GUIDE = guide_markdown()


def addr(address, name=""):
    return SimpleNamespace(name=name, address=address, domain=address.rpartition("@")[2].lower())


def sample(*, from_, subject, text="", html="", to=("support@example.com",), cc=(), reply_to=(),
           headers=None, attachments=(), flags=(), folder="INBOX", size=20_000,
           account=(7, "Acme support", 42)):
    sender = addr(*from_)
    email = SimpleNamespace(
        subject=subject, text=text, html=html, message_id=f"{abs(hash(subject))}@mail.test",
        from_=sender, from_addresses=[sender],
        from_raw=f'"{from_[1]}" <{from_[0]}>' if len(from_) > 1 else from_[0],
        to=[addr(a) for a in to], cc=[addr(a) for a in cc], bcc=[],
        reply_to=[addr(a) for a in reply_to], sender=[],
        headers={k: v if isinstance(v, list) else [v] for k, v in (headers or {}).items()},
        attachments=list(attachments),
    )
    account_id, account_name, company_id = account
    return build_context(email, account_id=account_id, account_name=account_name,
                         company_id=company_id, folder=folder, flags=list(flags), size=size)


SAMPLES = {
    "acme-reply": sample(
        from_=("jane.doe@acme.com", "Jane Doe"),
        subject="Re: [Ticket #48213] Printer on floor 3 is offline",
        text="The printer is still offline. Password reset did not help either.",
        cc=("it-lead@acme.com",), flags=["\\Seen"], size=18_000,
        headers={"in-reply-to": "<t48213@example.com>", "x-spam-score": "0.4",
                 "received": ["from mx.example.com by imap.example.com",
                              "from mx.acme.com by mx.example.com"]},
    ),
    "vip-urgent": sample(
        from_=("ceo@bigclient.com", "Maria Rossi"), subject="URGENT: invoice dispute",
        text="Please call me about the attached invoice.",
        to=("support@example.com", "sales@example.com"), cc=("procurement@acme.com",),
        attachments=["invoice.pdf"], size=2_400_000,
        headers={"x-priority": "1 (Highest)", "importance": "high",
                 "received": "from mail.bigclient.com by mx.example.com"},
    ),
    "newsletter": sample(
        from_=("news@mailer.vendor.io", "Vendor News"),
        subject="Our May newsletter: 5 tips for urgent printing",
        html="<p>Read our newsletter</p>", size=85_000,
        headers={"list-unsubscribe": "<mailto:unsub@mailer.vendor.io>",
                 "list-id": "Vendor News <news.vendor.io>", "precedence": "bulk"},
    ),
    "noreply-alert": sample(
        from_=("no-reply@github.com", "GitHub"), subject="[GitHub] A new public key was added",
        text="A new public key was added to your account.", to=("it@example.com",),
        flags=["\\Seen"], headers={"auto-submitted": "auto-generated"},
    ),
    "out-of-office": sample(
        from_=("bob.smith@eu.acme.com", "Bob Smith"), subject="Automatic reply: Printer on floor 3",
        text="I am out of the office until Monday.", headers={"auto-submitted": "auto-replied"},
    ),
    "big-screenshots": sample(
        from_=("tom@gmail.com",), subject="not urgent: screenshots of the error",
        text="See the attached screenshots.", attachments=["1.png", "2.png", "3.png"],
        size=31_000_000, folder="INBOX/Support", flags=["\\Flagged"],
        headers={"x-spam-score": "2.1"},
    ),
    "spam": sample(
        from_=("promo@cheap-deals.biz",), subject="WIN a FREE iPhone!!!",
        text="Click here to claim your prize.", size=9_000,
        headers={"x-spam-score": "8.7", "x-spam-flag": "YES",
                 "received": "from smtp.cheap-deals.biz by mx.example.com"},
    ),
    "webform": sample(
        from_=("forms@example.com", "Example Web Forms"), subject="Contact form: Cannot log in",
        html="<p>Customer cannot log in to the portal: the password reset link expired.</p>",
        reply_to=("customer@acme.com",), folder="INBOX/Forms", account=(8, "Web forms", 42),
        headers={"x-form-id": "contact-7"},
    ),
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
