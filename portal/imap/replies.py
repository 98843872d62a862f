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


@lru_cache(maxsize=1)
def _parser() -> EmailReplyParser:
    return EmailReplyParser(languages=list(LANGUAGES))


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
    replies = _parser().read("\n".join(sketch)).replies
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
