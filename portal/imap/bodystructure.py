"""A message too large to download whole, read by its parts (pure: no sockets, no Flask).

`parse` turns a BODYSTRUCTURE (the nested lists the FETCH tokenizer hands over) into a tree
of `Part`s, with a budget on depth, part count and parameter count, since the server may be
hostile. `plan` decides which leaves to download: every text part (text/plain, text/html that
the parser would take as body text) and the attachments that still fit under the limit,
smallest first; the rest stays on the server. `assemble` builds, from the downloaded
sections, a MIME message with the same tree (multipart subtypes, part order, each part's own
MIME header and still-encoded body) that `parsing.parse_message` reads like any other, so the
Content-Transfer-Encoding the BODYSTRUCTURE names is undone by the one parser.
See docs/architecture.md, "Mail above IMAP_MAX_MESSAGE_BYTES".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from .parsing import decode_header_value, safe_filename

MAX_DEPTH = 40  # nesting of multiparts (parsing.py reads as deep)
MAX_PARTS = 500  # parts in one structure
MAX_PARAMS = 64  # parameters of one part
MAX_SIZE = 1 << 40  # a part size above this is not a size
NAME_CHARS = 200  # of a left-out part's name, in the note

TEXT_SUBTYPES = ("plain", "html")
#: header fields of the message that describe its (replaced) body, not the message
BODY_FIELDS = (b"content-type", b"content-transfer-encoding", b"content-disposition", b"content-length")


class BodyStructureError(ValueError):
    """A BODYSTRUCTURE that does not parse, or is beyond the budget."""


class TextTooLarge(ValueError):
    """The message's header and text parts alone are over the limit."""

    def __init__(self, text_bytes: int):
        super().__init__(f"its text alone is {text_bytes:,} bytes")
        self.text_bytes = text_bytes


@dataclass
class Part:
    section: str  # IMAP part number ("1", "2.1"); "" for a top-level multipart
    type: str  # lower-case
    subtype: str  # lower-case
    params: dict[str, str] = field(default_factory=dict)  # lower-case names
    encoding: str = "7bit"  # lower-case Content-Transfer-Encoding
    size: int = 0  # octets of the body in its transfer encoding
    disposition: str | None = None  # lower-case
    disp_params: dict[str, str] = field(default_factory=dict)
    children: list[Part] = field(default_factory=list)

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    @property
    def filename(self) -> str:
        """The part's name as the parser would see it (RFC 2231 and 2047 undone), or ""."""
        for params, key in ((self.disp_params, "filename"), (self.params, "name")):
            name = _param_value(params, key)
            if name:
                return decode_header_value(name)
        return ""

    @property
    def is_text(self) -> bool:
        """Body text to the parser: text/plain or text/html, not an attachment, no name."""
        return (self.type == "text" and self.subtype in TEXT_SUBTYPES
                and self.disposition != "attachment" and not self.filename)

    def leaves(self) -> list[Part]:
        if not self.is_multipart:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    def decoded_size(self) -> tuple[int, bool]:
        """The size once decoded, and whether it is exact (base64 is estimated from lines
        of 76 characters; quoted-printable is taken as it is)."""
        if self.encoding == "base64":
            return self.size * 3 // 4 * 76 // 78, False
        return self.size, self.encoding in ("7bit", "8bit", "binary")


# ------------------------------------------------------------------- parsing
def parse(tree) -> Part:
    """The BODYSTRUCTURE value (a list) -> its Part tree. Raises BodyStructureError."""
    if not isinstance(tree, list):
        raise BodyStructureError("BODYSTRUCTURE is not a list")
    counter = [0]
    return _parse(tree, "", 0, counter)


def _parse(node: list, section: str, depth: int, counter: list[int]) -> Part:
    counter[0] += 1
    if counter[0] > MAX_PARTS:
        raise BodyStructureError(f"more than {MAX_PARTS} parts")
    if depth > MAX_DEPTH:
        raise BodyStructureError(f"nested deeper than {MAX_DEPTH} levels")
    if node and isinstance(node[0], list):
        return _multipart(node, section, depth, counter)
    return _single(node, section or "1")


def _multipart(node: list, section: str, depth: int, counter: list[int]) -> Part:
    children = []
    index = 0
    while index < len(node) and isinstance(node[index], list):
        number = f"{section}.{index + 1}" if section else str(index + 1)
        children.append(_parse(node[index], number, depth + 1, counter))
        index += 1
    if index >= len(node):
        raise BodyStructureError("multipart without subtype")
    ext = node[index + 1:]
    disposition, disp_params = _disposition(ext[1] if len(ext) > 1 else None)
    return Part(section, "multipart", _word(node[index]), _params(ext[0] if ext else None), "7bit", 0,
                disposition, disp_params, children)


def _single(node: list, section: str) -> Part:
    if len(node) < 7:
        raise BodyStructureError("body part with fewer than 7 fields")
    kind, subtype = _word(node[0]), _word(node[1])
    size = _number(node[6])
    if kind == "text":
        ext_at = 8  # + lines
    elif kind == "message" and len(node) > 9 and isinstance(node[7], list):
        ext_at = 10  # + envelope, body, lines
    else:
        ext_at = 7
    # extension data: md5, disposition, language, location
    disposition, disp_params = _disposition(node[ext_at + 1] if len(node) > ext_at + 1 else None)
    encoding = _word(node[5]) if node[5] is not None else "7bit"
    return Part(section, kind, subtype, _params(node[2]), encoding, size, disposition, disp_params)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    raise BodyStructureError("a list where a string belongs")


def _word(value) -> str:
    word = _text(value).strip().lower()
    if not word or len(word) > 200:
        raise BodyStructureError("missing or overlong type, subtype or encoding")
    return word


def _number(value) -> int:
    text = _text(value)
    if not text.isdigit() or int(text) > MAX_SIZE:
        raise BodyStructureError(f"size {text[:20]!r} is not a number of octets")
    return int(text)


def _params(value) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, list) or len(value) % 2:
        raise BodyStructureError("parameter list is not name/value pairs")
    if len(value) > 2 * MAX_PARAMS:
        raise BodyStructureError(f"more than {MAX_PARAMS} parameters")
    return {_text(value[i]).strip().lower(): _text(value[i + 1]) for i in range(0, len(value), 2)}


def _disposition(value) -> tuple[str | None, dict[str, str]]:
    if not isinstance(value, list) or not value:
        return None, {}  # NIL, or a server that puts something else there
    return _text(value[0]).strip().lower() or None, _params(value[1] if len(value) > 1 else None)


_CONTINUATION = re.compile(r"\*(\d{1,3})(\*?)\Z")


def _param_value(params: dict[str, str], key: str) -> str:
    """A parameter as given, or joined and decoded from its RFC 2231 pieces (key*, key*0*, ...)."""
    if params.get(key):
        return params[key]
    if key + "*" in params:
        return _rfc2231(params[key + "*"], True)
    pieces = []
    for name, value in params.items():
        if name.startswith(key + "*") and (m := _CONTINUATION.match(name[len(key):])):
            pieces.append((int(m.group(1)), value, bool(m.group(2))))
    if not pieces:
        return ""
    pieces.sort()
    charset, data = "utf-8", b""
    for index, (_, value, encoded) in enumerate(pieces):
        if not encoded:
            data += value.encode("utf-8")
            continue
        if index == 0 and value.count("'") >= 2:
            charset, _, rest = value.partition("'")
            value = rest.partition("'")[2]
        data += unquote_to_bytes(value)
    return _decoded(data, charset)


def _rfc2231(value: str, encoded: bool) -> str:
    if not encoded or value.count("'") < 2:
        return value
    charset, _, rest = value.partition("'")
    return _decoded(unquote_to_bytes(rest.partition("'")[2]), charset)


def _decoded(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


# ------------------------------------------------------------------- planning
@dataclass
class Plan:
    root: Part
    fetch: list[Part]  # leaves to download, in structure order
    left: list[Part]  # leaves left on the server, in structure order
    text_bytes: int  # header, MIME overhead and text parts: what the message needs at least

    def notes(self) -> list[str]:
        """What the ticket says about the parts left on the server."""
        return [f"Left on the mail server (over IMAP_MAX_MESSAGE_BYTES): {describe(p)}" for p in self.left]

    def reason(self, message_size: int, limit: int) -> str:
        left = ", ".join(describe(p) for p in self.left)
        return (f"Message is {message_size:,} bytes, over the limit (IMAP_MAX_MESSAGE_BYTES) of {limit:,}: "
                f"imported its text and the attachments that fit; left on the server: {left}")


def plan(root: Part, message_size: int, limit: int) -> Plan:
    """Which leaves to download so that the message stays under ``limit``: all text parts
    (raises TextTooLarge when they, the header and the MIME overhead are over it), then
    attachments smallest first while they fit. A single-part message has only its header
    downloaded unless its one part is text (then it is over the limit: TextTooLarge)."""
    leaves = root.leaves()
    overhead = max(0, message_size - sum(leaf.size for leaf in leaves))  # headers and boundaries
    if not root.is_multipart:
        if root.is_text:
            raise TextTooLarge(message_size)
        return Plan(root, [], [root], overhead)
    text_bytes = overhead + sum(leaf.size for leaf in leaves if leaf.is_text)
    if text_bytes > limit:
        raise TextTooLarge(text_bytes)
    room = limit - text_bytes
    kept = set()
    for leaf in sorted((leaf for leaf in leaves if not leaf.is_text), key=lambda leaf: leaf.size):
        if leaf.size <= room:
            kept.add(leaf.section)
            room -= leaf.size
    fetch = [leaf for leaf in leaves if leaf.is_text or leaf.section in kept]
    left = [leaf for leaf in leaves if not leaf.is_text and leaf.section not in kept]
    return Plan(root, fetch, left, text_bytes)


def describe(part: Part) -> str:
    """'report.zip (about 30.0 MB, application/zip)' for a note."""
    name = safe_filename(part.filename[:NAME_CHARS]) if part.filename else ""
    size, exact = part.decoded_size()
    amount = _human(size)
    what = f"{amount if exact else 'about ' + amount}, {part.type}/{part.subtype}"
    return f"{name} ({what})" if name else f"unnamed part {part.section} ({what})"


def _human(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


# ------------------------------------------------------------------- assembly
def header_without_body_fields(header: bytes) -> bytes:
    """The message header minus the fields that describe its body (Content-Type,
    -Transfer-Encoding, -Disposition; folded lines included), ending in one CRLF."""
    kept, keep = [], True
    for line in header.splitlines(keepends=True):
        if not line.strip():
            break  # the blank line ending the header
        if line[:1] not in (b" ", b"\t"):
            name = line.split(b":", 1)[0].strip().lower()
            keep = name not in BODY_FIELDS
        if keep:
            kept.append(line.rstrip(b"\r\n") + b"\r\n")
    return b"".join(kept)


def _head(header: bytes) -> bytes:
    """A part's MIME header, ending in exactly one blank line."""
    return header.rstrip(b"\r\n") + b"\r\n\r\n" if header.strip() else b"\r\n"


def assemble(result: Plan, header: bytes, sections: dict[str, tuple[bytes, bytes]]) -> bytes:
    """The message to parse: the header without its body fields, then the planned parts in
    their tree. ``sections`` maps each downloaded leaf's number to (its MIME header, its
    body, still encoded). Boundaries are derived from the content (the same message
    assembles to the same bytes: the content hash used for dedupe holds)."""
    pieces = [header_without_body_fields(header)]
    root = result.root
    if not root.is_multipart or not any(leaf.section in sections for leaf in root.leaves()):
        pieces.append(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
        return b"".join(pieces)
    _entity(root, sections, pieces, content_header=False)
    return b"".join(pieces)


def _entity(part: Part, sections: dict[str, tuple[bytes, bytes]], pieces: list, content_header: bool = True) -> None:
    if not part.is_multipart:
        mime, body = sections[part.section]
        pieces += [_head(mime), body]
        return
    children = [child for child in part.children if any(leaf.section in sections for leaf in child.leaves())]
    boundary = _boundary(part, sections)
    pieces.append(f'Content-Type: multipart/{part.subtype}; boundary="{boundary}"\r\n\r\n'.encode("ascii", "replace"))
    marker = b"--" + boundary.encode()
    for child in children:
        pieces += [marker, b"\r\n"]
        _entity(child, sections, pieces)
        pieces.append(b"\r\n")
    pieces += [marker, b"--\r\n"]


def _boundary(part: Part, sections: dict[str, tuple[bytes, bytes]]) -> str:
    """A boundary no downloaded byte of this subtree contains, the same every time."""
    contents = [piece for leaf in part.leaves() if leaf.section in sections for piece in sections[leaf.section]]
    label = part.section.replace(".", "-") or "top"
    for attempt in range(1000):
        boundary = f"=_left-on-server_{label}_{attempt}"
        marker = b"--" + boundary.encode()
        if not any(marker in piece for piece in contents):
            return boundary
    raise BodyStructureError("no boundary free of the content")  # 1000 planted boundaries
