"""A reply's new text and the history it quotes (pure).

The split is found by mail-parser-reply (headers such as "On ... wrote:", "Am ... schrieb:",
Outlook's "From: / Sent:" block, "----- Original Message -----", in several languages).
Its patterns backtrack on hostile input (a long line of "On On On ..." costs minutes), so it
reads only a bounded sketch of the text: the first WINDOW_CHARS characters, each line cut to
LINE_CHARS (seen here: under 0.25 s for the worst input we know of, a few ms for real mail).
A quote header further down, or on a longer line, is not found and the text stays whole.
The split is made on the original lines, so the text keeps its own indentation.
"""
from __future__ import annotations

from functools import lru_cache

from mailparser_reply import EmailReplyParser

WINDOW_CHARS = 8 * 1024
LINE_CHARS = 120
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da")
# Words every quote header of LANGUAGES carries (or a quoted line's ">"): the parser only reads
# the sketch up to a few lines past the first of them, so a long reply costs what its top costs.
# The word also names the language whose patterns the parser needs (English ones always come along):
# one language's patterns cost a third of all eight's.
HEADER_HINTS = {
    "wrote": "en", "from:": "en", "sent:": "en", "original": "en", "schrieb": "de", "von:": "de",
    "crit": "fr", "escribi": "es", "scritto": "it", "schreef": "nl", "van:": "nl", "skrev": "sv",
    "från:": "sv", "fra:": "da", "de:": None, "-----": None, "_____": None,
}
AFTER_HINT_LINES = 12


@lru_cache(maxsize=len(LANGUAGES) + 1)
def _parser(language: str | None = None) -> EmailReplyParser:
    """One language's parser, or every language's (None) when the hint does not tell."""
    return EmailReplyParser(languages=[language] if language else list(LANGUAGES))


def _hint(line: str) -> tuple[bool, str | None]:
    """Whether `line` could start a quote, and the language it tells."""
    if line.startswith(">"):
        return True, None
    lowered = line.lower()
    for word, language in HEADER_HINTS.items():
        if word in lowered:
            return True, language
    return False, None


def split_reply(text: str | None) -> tuple[str, str]:
    """(what the sender wrote, the quoted history). Without a recognised quote header, or
    when nothing stands above it, the text is all new and the history empty."""
    text = text or ""
    lines = text.replace("\r\n", "\n").split("\n")
    sketch, used = [], 0
    for line in lines:
        short = line.strip()[:LINE_CHARS]
        used += len(short) + 1
        if used > WINDOW_CHARS:
            break
        sketch.append(short)
    hint, language = next(((i, found[1]) for i, line in enumerate(sketch) if (found := _hint(line))[0]),
                          (None, None))
    if hint is None:  # nothing that could start a quote: all new
        return text, ""
    sketch = sketch[: hint + AFTER_HINT_LINES]
    replies = _parser(language).read("\n".join(sketch)).replies
    if len(replies) < 2 or replies[0].headers:  # no history, or nothing written above it
        return text, ""
    first = replies[1].headers.strip().split("\n", 1)[0].strip()
    start = next((i for i in range(1, len(sketch)) if first and sketch[i].startswith(first)), None)
    if start is None:
        return text, ""
    new = "\n".join(lines[:start]).rstrip()
    if not new.strip():
        return text, ""
    return new, "\n".join(lines[start:]).strip("\n")
