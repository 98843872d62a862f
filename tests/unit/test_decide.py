"""The decision core (pure): every outcome, from a parsed email, the mailbox's rules and the
batch's lookups, with no database and no server."""
import pytest

from portal.imap.association import Association, Directory, TicketParties
from portal.imap.decide import (
    Decision,
    DeliveredElsewhere,
    Incoming,
    Lookups,
    MailboxRules,
    NewTicket,
    decide,
    decide_batch,
    dedupe_key,
)
from portal.imap.parsing import parse_message
from tests.support.mail import make_email

ACME, HOUSE = 1, 9
STAFF_PAT, USER_SAM = 5, 3
# Stored tickets named by [#id]: 42 belongs to Acme (requester pat), 44 to a bare address.
ACME_TICKET = TicketParties(ACME, "pat@acme.com", None, STAFF_PAT)
MAIL_TICKET = TicketParties(None, "Jo@Example.org", None, None)


def rules(**overrides) -> MailboxRules:
    values = dict(account_id=7, account_name="Support", company_id=HOUSE, folder="INBOX", filter_query=None, sync_known_only=False)
    return MailboxRules(**{**values, **overrides})


def directory() -> Directory:
    known = Directory({"acme.com": ACME})
    known.add("pat@acme.com", [(STAFF_PAT, ACME)], None)
    known.add("sam@portal.test", [], USER_SAM)
    return known


def incoming(uid=1, flags=(), **email) -> Incoming:
    raw = make_email(**email)
    return Incoming(uid, len(raw), tuple(flags), parse_message(raw))


def lookups(**overrides) -> Lookups:
    return Lookups(directory(), **overrides)


SUBJECT_HAS_VPN = {"field": "subject", "contains": "vpn"}

# (case, message, rules, lookups, outcome, reason fragment)
OUTCOMES = [
    ("filter does not match", dict(subject="Printer"), dict(filter_query=SUBJECT_HAS_VPN), {}, "skipped_filter", "filter_query"),
    ("filter matches", dict(subject="VPN down"), dict(filter_query=SUBJECT_HAS_VPN), {}, "imported", None),
    ("out of office", dict(headers={"Auto-Submitted": "auto-replied"}), {}, {}, "skipped_auto_reply", "Auto-reply: Auto-Submitted: auto-replied"),
    ("x-autoreply", dict(headers={"X-Autoreply": "yes"}), {}, {}, "skipped_auto_reply", "Auto-reply: X-Autoreply: yes"),
    ("x-autorespond", dict(headers={"X-Autorespond": "vacation"}), {}, {}, "skipped_auto_reply", "Auto-reply: X-Autorespond: vacation"),
    ("precedence auto_reply", dict(headers={"Precedence": "auto_reply"}), {}, {}, "skipped_auto_reply", "Auto-reply: Precedence: auto_reply"),
    ("out of office, mailbox imports them", dict(headers={"Auto-Submitted": "auto-replied"}), dict(skip_auto_replies=False), {}, "imported", None),
    ("delivery status notification", dict(headers={"Content-Type": "multipart/report; report-type=delivery-status; boundary=x"}), {}, {},
     "skipped_bounce", "Bounce: Content-Type: multipart/report; report-type=delivery-status"),
    ("null return-path", dict(headers={"Return-Path": "<>"}), {}, {}, "skipped_bounce", "Bounce: Return-Path: <>"),
    ("bounce, mailbox imports them", dict(headers={"Return-Path": "<>"}), dict(skip_bounces=False), {}, "imported", None),
    ("out of office with a null return-path, mailbox imports them", dict(headers={"Return-Path": "<>", "X-Autoreply": "yes"}),
     dict(skip_auto_replies=False), {}, "imported", None),
    ("monitoring alert", dict(headers={"Auto-Submitted": "auto-generated"}), {}, {}, "imported", None),
    ("bulk precedence", dict(headers={"Precedence": "bulk"}), {}, {}, "imported", None),
    ("list precedence", dict(headers={"Precedence": "list"}), {}, {}, "imported", None),
    ("junk precedence", dict(headers={"Precedence": "junk"}), {}, {}, "imported", None),
    ("mailer-daemon that is no bounce", dict(sender="MAILER-DAEMON@mx.example"), {}, {}, "imported", None),
    ("postmaster", dict(sender="postmaster@example.com"), {}, {}, "imported", None),
    ("unknown sender, known only", dict(sender="x@elsewhere.org"), dict(sync_known_only=True), {}, "skipped_unknown_sender", "x@elsewhere.org"),
    ("staff sender, known only", dict(sender="Pat <PAT@acme.com>"), dict(sync_known_only=True), {}, "imported", None),
    ("portal user, known only", dict(sender="sam@portal.test"), dict(sync_known_only=True), {}, "imported", None),
    ("known Message-ID", dict(message_id="<m1@x>"), {}, dict(delivered={"mid:m1@x": 42}), "duplicate", "Message-ID <m1@x>"),
    ("reply by In-Reply-To", dict(headers={"In-Reply-To": "<orig@x>"}), {}, dict(threads={"orig@x": 42}), "threaded", None),
    ("reply by References", dict(headers={"References": "<a@x> <b@x>"}), {}, dict(threads={"a@x": 41}), "threaded", None),
    ("[#id] of a stored ticket", dict(subject="Re: [#42] printer", sender="pat@acme.com"), {}, dict(tagged={42: ACME_TICKET}),
     "threaded", "Subject names ticket #42"),
    ("#id of a stored ticket", dict(subject="AW: printer #42", sender="pat@acme.com"), {}, dict(tagged={42: ACME_TICKET}),
     "threaded", "Subject names ticket #42"),
    ("Ticket id of a stored ticket", dict(subject="Ticket 42: printer", sender="pat@acme.com"), {}, dict(tagged={42: ACME_TICKET}),
     "threaded", "Subject names ticket #42"),
    ("same subject as the sender's open ticket", dict(subject="RE: Fwd: Printer  Broken", sender="Pat <PAT@acme.com>"), {},
     dict(recent={("pat@acme.com", "printer broken"): 42}), "threaded", "Same subject as the sender's open ticket"),
    ("same subject, another sender", dict(subject="Re: Printer broken", sender="mallory@evil.example"), {},
     dict(recent={("pat@acme.com", "printer broken"): 42}), "imported", None),
    ("[#id] of no ticket", dict(subject="Re: [#43] printer", sender="pat@acme.com"), {}, dict(tagged={42: ACME_TICKET}), "imported", None),
    ("Message-ID from another mailbox", dict(message_id="<m1@x>"), {}, dict(delivered_elsewhere={"mid:m1@x": DeliveredElsewhere(42, "Sales")}),
     "duplicate", "Already imported from mailbox Sales (Message-ID <m1@x>)"),
    ("reply to an unknown message", dict(headers={"In-Reply-To": "<nobody@x>"}), {}, {}, "imported", None),
]


@pytest.mark.parametrize("case, email, rule_values, known, outcome, reason", OUTCOMES, ids=[c[0] for c in OUTCOMES])
def test_each_outcome(case, email, rule_values, known, outcome, reason):
    decision = decide(incoming(**email), rules(**rule_values), lookups(**known))
    assert decision.outcome == outcome
    if reason is None:
        assert decision.reason is None
    else:
        assert reason in decision.reason


def test_the_rules_apply_in_order_filter_loop_guard_known_sender_dedupe_threading():
    message = dict(subject="Out of office", sender="x@elsewhere.org", message_id="<m1@x>",
                   headers={"Auto-Submitted": "auto-replied", "In-Reply-To": "<orig@x>"})
    known = dict(delivered={"mid:m1@x": 42}, threads={"orig@x": 42})
    steps = [
        (dict(filter_query=SUBJECT_HAS_VPN, sync_known_only=True), "skipped_filter"),
        (dict(sync_known_only=True), "skipped_auto_reply"),
    ]
    for rule_values, outcome in steps:
        assert decide(incoming(**message), rules(**rule_values), lookups(**known)).outcome == outcome
    no_guard = dict(message, headers={"In-Reply-To": "<orig@x>"})
    assert decide(incoming(**no_guard), rules(sync_known_only=True), lookups(**known)).outcome == "skipped_unknown_sender"
    assert decide(incoming(**no_guard), rules(), lookups(**known)).outcome == "duplicate"
    assert decide(incoming(**dict(no_guard, message_id="<m2@x>")), rules(), lookups(**known)).outcome == "threaded"


# (sender, the ticket [#42] names, threads?)
SUBJECT_TAGS = [
    ("Pat <PAT@acme.com>", ACME_TICKET, True),  # the requester (address and staff contact)
    ("other@acme.com", TicketParties(ACME, None, None, 77), True),  # a staff contact of its company
    ("sam@portal.test", TicketParties(HOUSE, None, USER_SAM, None), True),  # the requester, a portal user
    ("jo@EXAMPLE.org", MAIL_TICKET, True),  # the requester's address, any case
    ("sam@portal.test", ACME_TICKET, False),  # a portal user, not the requester
    ("pat@acme.com", TicketParties(HOUSE, "x@house.test", None, None), False),  # staff of another company
    ("mallory@evil.example", ACME_TICKET, False),
    ("mallory@evil.example", TicketParties(None, None, None, None), False),
]


@pytest.mark.parametrize("sender, parties, threads", SUBJECT_TAGS)
def test_only_the_requester_or_the_company_s_contacts_thread_by_subject_tag(sender, parties, threads):
    known = directory()
    known.add("other@acme.com", [(77, ACME)], None)
    message = incoming(subject="Re: [#42] pay here: https://evil.example/pay", sender=sender)
    decision = decide(message, rules(), Lookups(known, tagged={42: parties}))
    if threads:
        assert (decision.outcome, decision.target, decision.notes) == ("threaded", 42, [])
    else:
        assert decision.outcome == "imported" and isinstance(decision.target, NewTicket)
        [note] = decision.notes
        assert note.startswith("Subject mentions ticket #42; ")


def test_a_referenced_message_id_threads_for_any_sender():
    message = incoming(subject="Re: [#42] hello", sender="mallory@evil.example", headers={"In-Reply-To": "<orig@x>"})
    decision = decide(message, rules(), lookups(threads={"orig@x": 42}, tagged={42: ACME_TICKET}))
    assert (decision.outcome, decision.target, decision.notes) == ("threaded", 42, [])


def test_only_message_ids_are_duplicates_across_mailboxes():
    same_id = incoming(message_id="<m1@x>")
    elsewhere = {"mid:m1@x": DeliveredElsewhere(42, "Sales")}
    decision = decide(same_id, rules(), lookups(delivered_elsewhere=elsewhere))
    assert (decision.outcome, decision.target) == ("duplicate", 42)
    no_id = incoming(message_id=None)
    content = {dedupe_key(no_id.email): DeliveredElsewhere(42, "Sales")}
    assert decide(no_id, rules(), lookups(delivered_elsewhere=content)).outcome == "imported"
    # this mailbox's own delivery is named as such, and wins
    both = decide(same_id, rules(), lookups(delivered={"mid:m1@x": 41}, delivered_elsewhere=elsewhere))
    assert (both.target, both.reason) == (41, "Already imported from this mailbox (Message-ID <m1@x>)")


def test_a_regex_timeout_fails_the_message_with_a_human_reason_and_the_batch_goes_on():
    hostile = incoming(1, to=", ".join(f"{'a' * 3000}{n}@x.example" for n in range(20)))
    exclusion = {"none": [{"field": "to", "matches": "(a+)+$"}]}  # a timeout must not let it through
    decisions = decide_batch([hostile, incoming(2)], rules(filter_query=exclusion), lookups())
    assert [(d.outcome, d.reason) for d in decisions] == [
        ("failed", "Filter took too long on this message (regex time budget exceeded)"), ("imported", None)]


def test_a_reference_to_the_newest_known_message_wins():
    message = incoming(headers={"References": "<old@x> <new@x>"})
    assert decide(message, rules(), lookups(threads={"old@x": 1, "new@x": 2})).target == 2


def test_a_filter_sees_the_flags_size_and_mailbox():
    unread_only = {"field": "is_unread", "equals": True}
    assert decide(incoming(flags=("\\Seen",)), rules(filter_query=unread_only), lookups()).outcome == "skipped_filter"
    assert decide(incoming(flags=()), rules(filter_query=unread_only), lookups()).outcome == "imported"


# (sender, mailbox company, expected association)
ASSOCIATIONS = [
    ("Pat <PAT@Acme.com>", HOUSE, Association(ACME, "staff", STAFF_PAT, "pat@acme.com")),
    ("new@acme.com", HOUSE, Association(ACME, "email", None, "new@acme.com")),
    ("sam@portal.test", HOUSE, Association(HOUSE, "user", USER_SAM, "sam@portal.test")),
    ("x@elsewhere.org", HOUSE, Association(HOUSE, "email", None, "x@elsewhere.org")),
    ("x@elsewhere.org", None, Association(None, "email", None, "x@elsewhere.org")),
]


@pytest.mark.parametrize("sender, company_id, expected", ASSOCIATIONS)
def test_a_new_ticket_carries_its_company_and_requester(sender, company_id, expected):
    decision = decide(incoming(sender=sender), rules(company_id=company_id), lookups())
    assert decision.outcome == "imported"
    assert isinstance(decision.target, NewTicket) and decision.new_ticket is decision.target
    assert decision.association == expected


def test_a_batch_sees_its_own_deliveries():
    first = incoming(1, message_id="<first@x>", subject="Printer")
    again = incoming(2, message_id="<first@x>", subject="Printer")
    reply = incoming(3, message_id="<reply@x>", headers={"In-Reply-To": "<first@x>"})
    no_id_a = incoming(4, message_id=None, subject="Same bytes")
    decisions = decide_batch([first, again, reply, no_id_a, Incoming(5, no_id_a.size, (), no_id_a.email)], rules(), lookups())
    assert [d.outcome for d in decisions] == ["imported", "duplicate", "threaded", "imported", "duplicate"]
    ticket = decisions[0].target
    assert decisions[1].target is ticket and decisions[2].target is ticket
    assert "identical content" in decisions[4].reason


def test_a_message_that_cannot_be_decided_fails_alone():
    broken = Incoming(1, 10, (), None, ValueError("unparseable"))
    fine = incoming(2)
    decisions = decide_batch([broken, fine], rules(), lookups())
    assert [(d.outcome, d.reason) for d in decisions] == [("failed", "ValueError: unparseable"), ("imported", None)]
    assert decisions[0].email is None and decisions[0].size == 10


def test_skips_and_duplicates_are_not_remembered_as_deliveries():
    known = lookups()
    skipped = incoming(1, message_id="<auto@x>", headers={"Auto-Submitted": "auto-replied"})
    assert decide_batch([skipped], rules(), known)[0].outcome == "skipped_auto_reply"
    assert known.delivered == {} and known.threads == {}


def test_dedupe_key_is_the_message_id_or_the_content_hash():
    with_id = incoming(message_id="<abc@x>").email
    without = incoming(message_id=None).email
    assert dedupe_key(with_id) == "mid:abc@x"
    assert dedupe_key(without) == "sha256:" + without.raw_sha256


def test_decision_flags():
    ticket = NewTicket()
    assert Decision(1, "imported", target=ticket).new_ticket is ticket
    assert Decision(1, "threaded", target=ticket).new_ticket is None
    assert Decision(1, "threaded", target=3).adds_message and not Decision(1, "duplicate", target=3).adds_message


def test_a_bounce_is_skipped_only_when_the_out_of_office_rule_does_not_take_it_first():
    both = dict(headers={"Auto-Submitted": "auto-replied", "Return-Path": "<>"})
    assert decide(incoming(**both), rules(), lookups()).outcome == "skipped_auto_reply"
    dsn = dict(headers={"Auto-Submitted": "auto-replied", "Content-Type": "multipart/report; report-type=delivery-status; boundary=x"})
    assert decide(incoming(**dsn), rules(skip_auto_replies=False), lookups()).outcome == "skipped_bounce"


def test_a_batch_threads_the_same_subject_onto_the_ticket_it_just_made():
    """An alert that repeats (same sender, same subject) lands on one ticket; another sender's
    mail with that subject opens its own."""
    first = incoming(1, subject="Disk full on srv1", sender="zabbix@monitor.acme.com")
    again = incoming(2, subject="RE: disk full on SRV1", sender="Zabbix <zabbix@monitor.acme.com>")
    other = incoming(3, subject="Disk full on srv1", sender="pat@acme.com")
    decisions = decide_batch([first, again, other], rules(), lookups())
    assert [d.outcome for d in decisions] == ["imported", "threaded", "imported"]
    assert decisions[1].target is decisions[0].target and decisions[2].target is not decisions[0].target


def test_a_subject_that_is_all_prefixes_matches_nothing():
    message = incoming(subject="Re: RE:", sender="pat@acme.com")
    assert decide(message, rules(), lookups(recent={("pat@acme.com", ""): 42})).outcome == "imported"


PURE_MODULES = ["decide", "association", "subjects", "replies", "filters", "filter_regex", "filter_context", "parsing", "cron_words", "fields", "schemas", "oauth_providers"]
PURE_PORTAL_MODULES = ("validation",)  # framework-free modules of portal/ the pure ones may use
IO_OR_FRAMEWORK = ("flask", "flask_sqlalchemy", "sqlalchemy", "redis", "rq", "imaplib", "imap_tools", "socket", "requests")


def _imports(module_path):
    import ast

    tree = ast.parse(module_path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is None:  # from . import x
            yield from ((alias.name, node.level) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield (node.module, node.level)


@pytest.mark.parametrize("name", PURE_MODULES)
def test_pure_modules_import_no_framework_database_or_network(name):
    """The decision core and what it builds on stay pure, however deep their imports go."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "portal" / "imap"
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        seen.add(current)
        for module, level in _imports(package / f"{current}.py"):
            assert module.split(".")[0] not in IO_OR_FRAMEWORK, f"{current}.py imports {module}"
            outside = level == 2 and module in PURE_PORTAL_MODULES
            assert level in (0, 1) or outside, f"{current}.py reaches outside portal.imap ({'.' * level}{module})"
            if level == 1 and module not in seen:
                todo.append(module)
