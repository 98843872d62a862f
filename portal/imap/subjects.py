"""What a subject line says about threading (pure): the ticket number it mentions, and the
subject itself without reply and forward prefixes.

Subjects are written by whoever sends the mail: every pattern here is linear, works on at
most SUBJECT_CHARS characters, and strips at most MAX_PREFIXES prefixes.
"""
from __future__ import annotations

import re

SUBJECT_CHARS = 1000  # the part of a subject that is read
MAX_PREFIXES = 20  # "Re: Re: AW: Fwd: ..." stripped at most this many times

# Most specific first: "[#123]" (the portal's own tag), "Ticket 123" / "Ticket #123", "#123".
_MENTIONS = (
    re.compile(r"\[#(\d{1,12})\]"),
    re.compile(r"\bticket[ \t]{0,3}(?:no\.?|nr\.?|number)?[ \t]{0,3}#?[ \t]?(\d{1,12})\b", re.IGNORECASE),
    re.compile(r"(?<![\w&#])#(\d{1,12})\b"),
)
# Re:, Fw:, Fwd:, AW: (de), WG: (de), SV: (sv, da, no), VS: (fi), RV: (es), TR: (fr), RE[2]:
_PREFIX = re.compile(r"[ \t]{0,20}(?:re|fwd?|aw|wg|sv|vs|rv|tr|antwort)[ \t]{0,3}(?:\[\d{1,4}\]|\(\d{1,4}\))?[ \t]{0,3}[:：]", re.IGNORECASE)


def mentioned_ticket(subject: str | None) -> int | None:
    """The ticket number a subject names: `[#123]`, `Ticket 123`, `Ticket #123` or `#123`."""
    text = (subject or "")[:SUBJECT_CHARS]
    for pattern in _MENTIONS:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def base_subject(subject: str | None) -> str:
    """The subject without its Re:/Fw:/Fwd:/AW:/SV:/RV: prefixes (repeated), with runs of
    whitespace collapsed, case-folded: two mails with the same base subject are one topic."""
    text = (subject or "")[:SUBJECT_CHARS]
    position = 0
    for _ in range(MAX_PREFIXES):
        match = _PREFIX.match(text, position)
        if match is None:
            break
        position = match.end()
    return " ".join(text[position:].split()).casefold()
