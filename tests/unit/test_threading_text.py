"""What a subject says about threading, and where a reply's quoted history starts (pure)."""
import time

import pytest

from portal.imap.replies import split_reply
from portal.imap.subjects import base_subject, mentioned_ticket

# (subject, the ticket it mentions)
MENTIONS = [
    ("Re: [#123] printer", 123),
    ("printer [#7]", 7),
    ("Ticket 123 printer", 123),
    ("AW: ticket #45: still broken", 45),
    ("TICKET  NR. 9", 9),
    ("#88 is back", 88),
    ("Re: still broken (#12)", 12),
    ("[#5] and #6", 5),  # the portal's own tag wins
    ("Ticket 3 and #4", 3),
    ("printer broken", None),
    ("C# question", None),
    ("&#39;quoted&#39;", None),  # an HTML entity is no mention
    ("issue#12", None),
    ("Ticket: 12", None),
    ("", None),
    (None, None),
    ("[#1234567890123]", None),  # too many digits for a ticket id
]


@pytest.mark.parametrize("subject, ticket", MENTIONS)
def test_the_ticket_a_subject_mentions(subject, ticket):
    assert mentioned_ticket(subject) == ticket


# (subject, its base subject)
BASE_SUBJECTS = [
    ("Printer broken", "printer broken"),
    ("Re: Printer broken", "printer broken"),
    ("RE: re:Fwd:  AW: Printer   broken ", "printer broken"),
    ("Fw: SV: RV: WG: TR: VS: Antwort: x", "x"),
    ("Re[2]: x", "x"),
    ("Re(3): x", "x"),
    ("Fwd : x", "x"),
    ("Return of the printer", "return of the printer"),
    ("Revenue: Q3", "revenue: q3"),
    ("Re: ", ""),
    ("", ""),
    (None, ""),
    ("STRASSE", "strasse"),
    ("Straße", "strasse"),  # case-folded, not only lower-cased
]


@pytest.mark.parametrize("subject, base", BASE_SUBJECTS)
def test_the_base_subject_drops_reply_and_forward_prefixes(subject, base):
    assert base_subject(subject) == base


def test_hostile_subjects_cost_little():
    started = time.perf_counter()
    for subject in ("Re:" * 100_000, "ticket " * 100_000 + "#" * 100_000, "[#" * 100_000, " " * 100_000 + "x"):
        mentioned_ticket(subject)
        base_subject(subject)
    assert time.perf_counter() - started < 0.5
    assert base_subject("Re: " * 100 + "x").startswith("re:")  # at most 20 prefixes are stripped


# (body, the new text, the quoted history)
REPLIES = [
    ("Thanks, that works.\n\nOn Mon, 3 Nov 2025 at 10:00, Ann <ann@example.com> wrote:\n> Try restarting.\n",
     "Thanks, that works.", "On Mon, 3 Nov 2025 at 10:00, Ann <ann@example.com> wrote:\n> Try restarting."),
    ("Danke!\n    eingerückt bleibt\n\nVon: Ann <a@x.de>\nGesendet: Montag\nAn: b@x.de\nBetreff: AW: x\n\nalt\n",
     "Danke!\n    eingerückt bleibt", "Von: Ann <a@x.de>\nGesendet: Montag\nAn: b@x.de\nBetreff: AW: x\n\nalt"),
    ("New\r\n\r\n-----Original Message-----\r\nFrom: x\r\nSent: y\r\n\r\nold",
     "New", "-----Original Message-----\nFrom: x\nSent: y\n\nold"),
    ("Merci\n\nLe lun. 3 nov. 2025 à 10:00, Ann <a@x.fr> a écrit :\n> vieux\n",
     "Merci", "Le lun. 3 nov. 2025 à 10:00, Ann <a@x.fr> a écrit :\n> vieux"),
    # nothing above the history (a bottom post): all of it stays visible
    ("On Mon, Ann wrote:\n> q\n\nmy answer", "On Mon, Ann wrote:\n> q\n\nmy answer", ""),
    ("Just text\nno quotes", "Just text\nno quotes", ""),
    ("", "", ""),
    (None, "", ""),
]


@pytest.mark.parametrize("body, new, quoted", REPLIES)
def test_a_reply_is_split_into_new_text_and_quoted_history(body, new, quoted):
    assert split_reply(body) == (new, quoted)


def test_a_quote_header_past_the_window_leaves_the_text_whole():
    body = "x" * 100 + "\n" + "line\n" * 3000 + "On Mon, Ann <a@x> wrote:\n> old\n"
    assert split_reply(body) == (body, "")


@pytest.mark.parametrize("line", ["On ", "On On\t", "Op ", "Am ", "> ", "From: ", "- ", "Le "])
def test_hostile_bodies_are_read_within_the_budget(line):
    """The library's patterns backtrack; the bounded sketch keeps one message under a second."""
    long_lines = "\n".join([line * 2000] * 40)
    short_lines = "\n".join([line.strip()] * 20_000)
    for body in (long_lines, short_lines, line * 100_000):
        started = time.perf_counter()
        split_reply(body)
        assert time.perf_counter() - started < 1.0
