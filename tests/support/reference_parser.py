"""The reference for portal.imap.parsing: the stdlib ``email`` parser
(``policy.default``) plus the product's body-selection rules, written here
independently of parsing.py's own tree walk.

The rules (docs/architecture.md, "The MIME parser"):
- a text/plain or text/html leaf that is not ``Content-Disposition:
  attachment`` and has no filename is body text; every other leaf (and every
  message/rfc822 part) is an attachment;
- multipart/alternative keeps its last text and its last HTML (alternatives
  come in increasing order of preference); attachments come from all of them;
- other multiparts keep every text and HTML part, in order;
- a multipart without any part is read as text.

Only raw, unprocessed values come out of here; the differential test applies
the product's documented post-processing (sanitising, safe filenames, ...) to
them.  ``message/rfc822`` attachments are returned as their stdlib extraction,
since the stdlib keeps the parsed message, not its bytes.
"""

from __future__ import annotations

import email
import re
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

MAX_DEPTH = 40  # the product's MIME nesting limit


@dataclass
class ReferenceAttachment:
    name: str  # raw filename parameter (RFC 2231 joined), "" if none
    content_type: str
    payload: bytes | None  # transfer encoding undone; None for parsed message/* parts
    message: ReferenceEmail | None = None  # the attached message, for message/rfc822
    blocks: list | None = None  # header blocks of other message/* parts (delivery-status)


@dataclass
class TextPart:
    content_type: str  # text/plain or text/html
    data: bytes  # transfer encoding undone, still in its charset
    charset: str | None


@dataclass
class ReferenceEmail:
    subject: str
    addresses: dict[str, list[tuple[str, str]] | None]  # header -> (display name, addr-spec)
    texts: list[TextPart] = field(default_factory=list)
    htmls: list[TextPart] = field(default_factory=list)
    attachments: list[ReferenceAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)  # stdlib defect class names, all parts
    guessed_boundaries: list[str] = field(default_factory=list)  # multiparts split by guess
    message: EmailMessage | None = None  # the stdlib's parse (top level only)


ADDRESS_HEADERS = ("from", "to", "cc")


def reference_parse(raw: bytes) -> ReferenceEmail:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    result = _extract(message)
    result.message = message
    return result


def _extract(message: EmailMessage) -> ReferenceEmail:
    result = ReferenceEmail(
        subject=str(message.get("subject", "")),
        addresses={name: _addresses(message, name) for name in ADDRESS_HEADERS},
    )
    _walk(message, result, 0)
    for part in message.walk():
        result.defects += [type(d).__name__ for d in part.defects]
    return result


def _addresses(message: EmailMessage, name: str) -> list[tuple[str, str]] | None:
    """(display name, addr-spec) pairs; None when policy.default's header
    parser raises (it does on some malformed headers, e.g. 'From: <<<>>>,,,"')."""
    pairs = []
    try:
        for header in message.get_all(name, []):
            for address in header.addresses:
                pairs.append((address.display_name, address.addr_spec))
    except Exception:
        return None
    return pairs


def raw_header_values(message: EmailMessage, name: str) -> list[str]:
    return [value for key, value in message.raw_items() if key.lower() == name]


def _walk(part: EmailMessage, result: ReferenceEmail, depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    ctype = part.get_content_type()
    if part.is_multipart() and ctype.startswith("multipart/"):
        children = part.get_payload()
        if ctype == "multipart/alternative":
            _walk_alternative(children, result, depth)
        else:
            for child in children:
                _walk(child, result, depth + 1)
    elif ctype.startswith("multipart/"):
        _walk_unsplit_multipart(part, result, depth)
    elif ctype in ("message/rfc822", "message/global") and part.is_multipart():
        inner = part.get_payload(0)
        result.attachments.append(ReferenceAttachment("", ctype, None, _extract(inner)))
    elif part.is_multipart():  # message/delivery-status, message/external-body, ...
        blocks = [message_blocks(block) for block in part.get_payload()]
        result.attachments.append(ReferenceAttachment(part.get_filename() or "", ctype, None, blocks=blocks))
    elif ctype in ("text/plain", "text/html") and not _is_attachment(part):
        target = result.texts if ctype == "text/plain" else result.htmls
        target.append(TextPart(ctype, part.get_payload(decode=True), part.get_param("charset")))
    else:
        name = part.get_filename() or ""
        result.attachments.append(ReferenceAttachment(name, ctype, part.get_payload(decode=True)))


def _walk_alternative(children: list[EmailMessage], result: ReferenceEmail, depth: int) -> None:
    texts: list[TextPart] = []
    htmls: list[TextPart] = []
    for child in children:
        sub = ReferenceEmail("", {})
        _walk(child, sub, depth + 1)
        texts = sub.texts or texts
        htmls = sub.htmls or htmls
        result.attachments += sub.attachments
    result.texts += texts
    result.htmls += htmls


_BOUNDARY_LINE = re.compile(rb"^--([^\s]{1,200}?)[ \t]*\r?$", re.M)


def _walk_unsplit_multipart(part: EmailMessage, result: ReferenceEmail, depth: int) -> None:
    """A multipart the stdlib could not split (boundary parameter missing or
    wrong).  The product's rule: split at the first ``--xxx`` line; without
    one, the body is read as text."""
    body = part.get_payload(decode=True)
    match = _BOUNDARY_LINE.search(body)
    if match is None:
        if body.strip():
            result.texts.append(TextPart("text/plain", body, None))
        return
    boundary = match.group(1).removesuffix(b"--")
    result.guessed_boundaries.append(boundary.decode("utf-8", "replace"))
    head = b'Content-Type: %s; boundary="%s"\r\n\r\n' % (part.get_content_type().encode(), boundary)
    _walk(email.message_from_bytes(head + body, policy=email.policy.default), result, depth)


def message_blocks(block: EmailMessage) -> tuple:
    """A message/* part's header block (and body, if any), for comparison."""
    body = block.get_payload() if not block.is_multipart() else None
    return tuple((name.lower(), str(value)) for name, value in block.items()), body or None


def _is_attachment(part: EmailMessage) -> bool:
    return part.get_content_disposition() == "attachment" or bool(part.get_filename())
