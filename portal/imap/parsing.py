"""Turn raw RFC 822 bytes into an :class:`InboundEmail`.

Pure functions only: no Flask, no IO, no database.  ``parse_message`` never
raises; whatever cannot be read cleanly is decoded best-effort and noted in
``InboundEmail.defects``.

Speed matters (this runs on every imported mail), hence the stdlib parser with
the fast ``compat32`` policy and our own header decoding instead of
``email.policy.default``.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import html as html_lib
import io
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache
from urllib.parse import unquote

import nh3

__all__ = [
    "EmailAddress",
    "InboundAttachment",
    "InboundEmail",
    "decode_header_value",
    "html_to_text",
    "is_auto_generated",
    "normalize_message_id",
    "parse_message",
    "safe_filename",
    "sanitize_html",
]

_MAX_DEPTH = 40  # MIME nesting limit; deeper parts are dropped with a defect


# --------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailAddress:
    name: str
    address: str

    @property
    def domain(self) -> str:
        if "@" not in self.address:
            return ""
        return self.address.rpartition("@")[2].strip().lower()


@dataclass
class InboundAttachment:
    filename: str
    content_type: str
    payload: bytes
    content_id: str | None
    is_inline: bool


@dataclass
class InboundEmail:
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    subject: str
    from_: EmailAddress | None
    from_addresses: list[EmailAddress]
    from_raw: str
    to: list[EmailAddress]
    cc: list[EmailAddress]
    bcc: list[EmailAddress]
    reply_to: list[EmailAddress]
    sender: list[EmailAddress]
    date: datetime | None
    text: str
    html: str
    headers: dict[str, list[str]]
    attachments: list[InboundAttachment]
    size: int
    raw_sha256: str
    defects: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Charset handling
# --------------------------------------------------------------------------

_LATIN1_FALLBACK = "myportal.latin1fallback"


def _latin1_fallback(err: UnicodeDecodeError) -> tuple[str, int]:
    # The 5 bytes windows-1252 leaves undefined map to the same code point,
    # like latin-1 does: no byte is ever lost.
    return err.object[err.start : err.end].decode("latin-1"), err.end


codecs.register_error(_LATIN1_FALLBACK, _latin1_fallback)

# Labels whose real-world use is a superset encoding (as browsers do).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "big5": "big5hkscs",
    "unicode-1-1-utf-7": "utf-7",
}

# Mislabelled UTF-8 is common under these labels; valid multi-byte UTF-8 is
# practically never produced by real latin-1 text, so UTF-8 is tried first.
_LATIN_FAMILY = frozenset({"ascii", "latin_1", "cp1252"})

# Codecs that are not character sets (or that would interpret backslashes).
_FORBIDDEN_CODECS = ("escape", "undefined", "idna", "punycode")


@lru_cache(maxsize=256)
def _codec_for(charset: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None if unusable."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
        b"".decode(name)  # rejects bytes-to-bytes codecs (base64, zlib, rot13)
    except (LookupError, ValueError, TypeError):
        return None
    if any(bad in name for bad in _FORBIDDEN_CODECS):
        return None
    return name


def _decode_cp1252(data: bytes) -> str:
    return data.decode("cp1252", _LATIN1_FALLBACK)


def _mostly_decodes(data: bytes, codec: str) -> str | None:
    """``data`` decoded with replacement chars if only a few bytes are bad
    (e.g. a truncated multi-byte sequence), else None."""
    try:
        text = data.decode(codec, "replace")
    except (LookupError, ValueError):
        return None
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore")) - bad
    return text if non_ascii >= 4 * bad else None


def decode_bytes(data: bytes, charset: str | None, defects: list[str] | None = None) -> str:
    """Decode text in its declared charset with a fallback that never fails.

    Order: declared charset (strict) -> UTF-8 (strict) -> declared charset or
    UTF-8 if only a few bytes are bad -> windows-1252 (lossless).
    """
    if not data:
        return ""
    codec = _codec_for(charset)
    if codec is None and charset and charset.strip().lower() not in ("", "us-ascii"):
        _note(defects, f"unknown charset {charset!r}")
    if codec is None or codec in _LATIN_FAMILY:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return _decode_cp1252(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        _note(defects, f"text is not valid {charset}")
    except Exception:  # some codecs raise odd errors on odd input
        _note(defects, f"cannot decode as {charset}")
    if codec != "utf-8":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    for candidate in (codec, "utf-8"):
        text = _mostly_decodes(data, candidate)
        if text is not None:
            return text
    return _decode_cp1252(data)


def _note(defects: list[str] | None, message: str) -> None:
    if defects is not None and message not in defects:
        defects.append(message)


_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _clean_str(value: str) -> str:
    """Drop NUL and lone surrogates: neither can be stored in PostgreSQL text."""
    if value.isascii() and "\x00" not in value:
        return value
    return _BAD_CHARS.sub("", value)


def _fix_8bit(value: str) -> str:
    """Re-decode raw 8-bit header bytes (surrogate-escaped by the parser)."""
    if value.isascii():
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None)


class _Policy(type(compat32)):  # type: ignore[misc]
    """compat32 (fast), but raw 8-bit header values come back as clean ``str``
    instead of ``Header`` objects, so ``get_filename`` etc. see real text."""

    def header_fetch_parse(self, name, value):
        return _fix_8bit(value) if isinstance(value, str) else value


_POLICY = _Policy()
_GEN_POLICY = _POLICY.clone(max_line_length=0)  # re-serialise without refolding


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------

_FOLD = re.compile(r"[ \t]*[\r\n]+[ \t]*")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _unfold(value: str) -> str:
    if "\n" in value or "\r" in value:
        value = _FOLD.sub(" ", value)
    return value.strip()


def _decode_b(text: str, defects: list[str] | None) -> bytes:
    data = _B64_JUNK.sub(b"", text.encode("ascii", "ignore"))
    if len(data) % 4 == 1:  # cannot be valid: drop the dangling character
        _note(defects, "bad base64 in encoded word")
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _decode_word(match: re.Match, defects: list[str] | None) -> tuple[str, bytes]:
    charset, kind, text = match.groups()
    charset = charset.partition("*")[0]  # RFC 2231 language suffix
    if kind in "bB":
        return charset, _decode_b(text, defects)
    return charset, binascii.a2b_qp(text.encode("utf-8"), header=True)


def decode_header_value(value: str | None, defects: list[str] | None = None) -> str:
    """Unfold a header value and decode RFC 2047 encoded-words, best effort."""
    if not value:
        return ""
    value = _unfold(_fix_8bit(str(value)))
    if "=?" not in value:
        return _clean_str(value)
    out: list[str] = []
    run: list[tuple[str, bytes]] = []  # adjacent encoded words
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        if not run or between.strip():  # whitespace between words is dropped
            out.append(_decode_run(run, defects))
            out.append(between)
            run = []
        run.append(_decode_word(match, defects))
        pos = match.end()
    out.append(_decode_run(run, defects))
    out.append(value[pos:])
    return _clean_str("".join(out))


def _decode_run(run: list[tuple[str, bytes]], defects: list[str] | None) -> str:
    # Same-charset words are joined before decoding: senders split multi-byte
    # characters across words.
    out: list[str] = []
    i = 0
    while i < len(run):
        charset, data = run[i]
        i += 1
        while i < len(run) and run[i][0].lower() == charset.lower():
            data += run[i][1]
            i += 1
        out.append(decode_bytes(data, charset, defects))
    return "".join(out)


_MSGID = re.compile(r"<([^<>]*)>")
_WS = re.compile(r"\s+")


def normalize_message_id(value: str | None) -> str | None:
    """``' <abc@host> '`` -> ``'abc@host'``; None when missing or blank."""
    if not value:
        return None
    match = _MSGID.search(value)
    bare = match.group(1) if match else value.strip().strip("<>")
    bare = _WS.sub("", bare)  # folding may have split long ids
    return bare or None


def _message_ids(value: str) -> list[str]:
    ids = _MSGID.findall(value) or value.replace(",", " ").split()
    seen: dict[str, None] = {}
    for raw in ids:
        bare = normalize_message_id(raw)
        if bare:
            seen.setdefault(bare)
    return list(seen)


_ANGLE_ADDR = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def _parse_addresses(values: list[str], defects: list[str]) -> list[EmailAddress]:
    """Parse raw (still RFC 2047 encoded) address headers."""
    if not values:
        return []
    raw = [_unfold(v) for v in values]
    try:
        pairs = getaddresses(raw)
    except Exception:
        _note(defects, "unparsable address header")
        pairs = [("", m) for v in raw for m in _ANGLE_ADDR.findall(v)]
    result = []
    for name, address in pairs:
        address = address.strip()
        if "<" in address:  # e.g. an unterminated quoted display name
            match = _ANGLE_ADDR.search(address)
            address = match.group(1) if match else address
        if "=?" in address:  # whole "name <addr>" inside one encoded word
            return _parse_decoded_addresses(raw, defects)
        if name or address:
            result.append(EmailAddress(decode_header_value(name, defects), _clean_str(address)))
    return result


def _parse_decoded_addresses(raw: list[str], defects: list[str]) -> list[EmailAddress]:
    decoded = [decode_header_value(v, defects) for v in raw]
    try:
        pairs = getaddresses(decoded)
    except Exception:
        return []
    return [EmailAddress(n, a.strip()) for n, a in pairs if n or a]


def _parse_date(value: str | None, defects: list[str]) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(_unfold(value))
    except Exception:  # ValueError, TypeError, OverflowError, IndexError...
        _note(defects, "unparsable Date header")
        return None
    if parsed.tzinfo is None:  # "-0000": UTC, origin unknown
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        _note(defects, "Date header out of range")
        return None


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "font-variant", "text-align", "text-decoration", "text-indent",
    "text-transform", "line-height", "letter-spacing", "vertical-align", "white-space",
    "word-break", "word-wrap", "overflow-wrap", "direction",
    "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-collapse", "border-spacing",
    "border-radius", "padding", "padding-top", "padding-right", "padding-bottom",
    "padding-left", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "width", "height", "max-width", "min-width", "max-height", "min-height",
    "list-style-type", "table-layout",
}  # fmt: skip

_TABLE_ATTRS = {"width", "height", "bgcolor", "valign", "nowrap", "border", "cellpadding", "cellspacing"}


def _allowed_attributes() -> dict[str, set[str]]:
    attributes = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
    attributes["*"] = {"title", "dir", "lang", "align", "style"}
    attributes["a"] = attributes.get("a", set()) | {"href", "hreflang"}
    attributes["img"] = attributes.get("img", set()) | {"src", "alt", "width", "height", "border"}
    attributes["font"] = {"color", "face", "size"}
    for tag in ("table", "tr", "td", "th", "tbody", "thead", "tfoot", "col", "colgroup"):
        attributes[tag] = attributes.get(tag, set()) | _TABLE_ATTRS
    return attributes


_IMG_SCHEMES = ("http://", "https://", "cid:")


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    # url_schemes also admits mailto:/tel: (for links); images only http(s)/cid.
    if tag == "img" and attr == "src" and not value.strip().lower().startswith(_IMG_SCHEMES):
        return None
    return value


_CLEANER = nh3.Cleaner(
    tags=set(nh3.ALLOWED_TAGS) | {"font", "tfoot", "big", "section"},
    clean_content_tags={
        "script", "style", "title", "template", "noscript",
        "iframe", "object", "embed", "applet", "svg", "math", "xml",
    },
    attributes=_allowed_attributes(),
    attribute_filter=_attribute_filter,
    url_schemes={"http", "https", "mailto", "tel", "cid"},
    # Relative URLs would resolve against the portal itself (GET-CSRF, fake links).
    url_relative="deny",
    filter_style_properties=_STYLE_PROPERTIES,
    link_rel="noopener noreferrer",
    strip_comments=True,
)  # fmt: skip


def sanitize_html(html: str) -> str:
    """nh3-sanitised HTML: formatting, tables, links and http(s)/cid: images."""
    if not html or not html.strip():
        return ""
    return _CLEANER.clean(html)


_HTML_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f]")
_HTML_DROP = re.compile(
    r"<(script|style|head|title|template|noscript|xml)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.I | re.S
)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_HTML_WS = re.compile(r"[ \t\r\n\f]+")
_HTML_BR = re.compile(r"<br\b[^>]*>", re.I)
_HTML_PARA = re.compile(r"</?(?:p|h[1-6]|blockquote|pre|table|ul|ol|dl|hr)\b[^>]*>", re.I)
_HTML_LINE = re.compile(
    r"</?(?:div|li|tr|dt|dd|section|article|header|footer|address|center|caption|form)\b[^>]*>",
    re.I,
)
_HTML_CELL = re.compile(r"</t[dh]\s*>", re.I)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>|<![^>]*>|<\?[^>]*>")
_BREAK_RUN = re.compile(r" *[\x01\x02][\x01\x02 ]*")
_LINE_EDGES = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")


def _break(match: re.Match) -> str:
    return "\n\n" if "\x02" in match.group() else "\n"


def html_to_text(html: str) -> str:
    """Readable plain text from HTML: tags stripped, script/style dropped,
    line breaks for br/p/div/li/..., entities unescaped."""
    if not html:
        return ""
    text = _HTML_CONTROL.sub("", html)
    text = _HTML_COMMENT.sub("", text)
    text = _HTML_DROP.sub("", text)
    text = _HTML_WS.sub(" ", text)
    text = _HTML_BR.sub("\n", text)
    # \x01 = line break, \x02 = paragraph break; runs are merged below so
    # nested blocks (</li></ul></div>) do not pile up blank lines.
    text = _HTML_PARA.sub("\x02", text)
    text = _HTML_LINE.sub("\x01", text)
    text = _HTML_CELL.sub(" ", text)
    text = _HTML_TAG.sub("", text)
    text = _BREAK_RUN.sub(_break, text)
    text = html_lib.unescape(text).replace("\xa0", " ")
    text = _LINE_EDGES.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


_CID_REF = re.compile(r"""cid:([^\s"'<>)]+)""", re.I)


def _cid_references(html: str) -> set[str]:
    if "cid:" not in html and "CID:" not in html:
        return set()
    return {unquote(ref).strip("<>") for ref in _CID_REF.findall(html)}


# --------------------------------------------------------------------------
# Filenames
# --------------------------------------------------------------------------

_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(10)}
    | {f"LPT{i}" for i in range(10)}
)
_FILENAME_INVALID = re.compile(r'[<>:"|?*]')
_DOTS = re.compile(r"\.{2,}")
_MAX_FILENAME = 200


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A filename that is safe to store and offer for download.

    No directory parts (/ or \\), no "..", no control/format characters, no
    leading dots, no Windows reserved names, at most 200 chars keeping the
    extension, never empty (``fallback`` is used, itself made safe).
    """
    cleaned = _sanitize_name(name or "")
    if cleaned:
        return cleaned
    return _sanitize_name(fallback or "") or "attachment"


def _sanitize_name(name: str) -> str:
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = re.split(r"[/\\]", name)[-1]
    name = _FILENAME_INVALID.sub("_", name)
    name = _DOTS.sub(".", _WS.sub(" ", name))
    name = name.lstrip(". ").rstrip(". ")
    if not name:
        return ""
    stem = name.split(".", 1)[0].rstrip(" ")
    if stem.upper() in _WINDOWS_RESERVED:
        name = "_" + name
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name) <= _MAX_FILENAME:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 20:
        return name[:_MAX_FILENAME].rstrip(". ")
    keep = _MAX_FILENAME - len(ext) - 1
    return f"{stem[:keep].rstrip('. ')}.{ext}"


@lru_cache(maxsize=128)
def _extension_for(content_type: str) -> str:
    if content_type in ("message/rfc822", "message/global"):
        return ".eml"
    return mimetypes.guess_extension(content_type, strict=False) or ""


# --------------------------------------------------------------------------
# MIME walking
# --------------------------------------------------------------------------


@dataclass
class _Parts:
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[InboundAttachment] = field(default_factory=list)

    def extend(self, other: _Parts) -> None:
        self.texts += other.texts
        self.htmls += other.htmls
        self.attachments += other.attachments


_BODY_TYPES = ("text/plain", "text/html")


def _walk(part: Message, acc: _Parts, defects: list[str], depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        _note(defects, "MIME nesting too deep; inner parts dropped")
        return
    _collect_defects(part, defects)
    ctype = part.get_content_type()
    payload = part.get_payload()
    if isinstance(payload, list):
        if ctype.startswith("message/"):
            acc.attachments.append(_message_attachment(part, ctype, defects))
        elif ctype == "multipart/alternative":
            _walk_alternative(payload, acc, defects, depth)
        else:
            for sub in payload:
                _walk(sub, acc, defects, depth + 1)
    elif ctype.startswith("multipart/"):
        _walk_broken_multipart(part, acc, defects, depth)
    elif ctype in _BODY_TYPES and not _is_attachment(part):
        body = _decode_body(part, defects)
        (acc.texts if ctype == "text/plain" else acc.htmls).append(body)
    else:
        acc.attachments.append(_leaf_attachment(part, ctype, defects))


def _walk_alternative(children: list, acc: _Parts, defects: list[str], depth: int) -> None:
    # Alternatives are ordered by increasing preference: keep the last text and
    # the last html; attachments (e.g. images of a multipart/related) from all.
    text: list[str] = []
    htmls: list[str] = []
    for sub in children:
        sub_acc = _Parts()
        _walk(sub, sub_acc, defects, depth + 1)
        text = sub_acc.texts or text
        htmls = sub_acc.htmls or htmls
        acc.attachments += sub_acc.attachments
    acc.texts += text
    acc.htmls += htmls


_BOUNDARY_LINE = re.compile(r"^--([^\s]{1,200}?)[ \t]*$", re.M)


def _walk_broken_multipart(part: Message, acc: _Parts, defects: list[str], depth: int) -> None:
    """A multipart whose boundary is missing or never found: guess the
    boundary from the first ``--xxx`` line, else keep the body as text."""
    body = part.get_payload(decode=True) or b""
    text = body.decode("ascii", "surrogateescape")
    match = _BOUNDARY_LINE.search(text)
    if match and match.group(1) != part.get_boundary():
        _note(defects, "multipart boundary guessed")
        head = f"Content-Type: {part.get_content_type()}; boundary=\"{match.group(1)}\"\r\n\r\n"
        guessed = BytesParser(policy=_POLICY).parsebytes(head.encode("ascii", "replace") + body)
        if isinstance(guessed.get_payload(), list):
            _walk(guessed, acc, defects, depth + 1)
            return
    acc.texts.append(_normalize_newlines(decode_bytes(body, part.get_content_charset(), defects)))


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment" or bool(_raw_filename(part))


def _raw_filename(part: Message) -> str:
    try:
        name = part.get_filename()  # handles RFC 2231 (charset'lang'%XX, continuations)
    except Exception:
        return ""
    return decode_header_value(name) if name else ""


def _collect_defects(part: Message, defects: list[str]) -> None:
    for defect in part.defects:
        label = type(defect).__name__
        detail = _clean_str(str(defect)).strip()
        _note(defects, f"{label}: {detail[:200]}" if detail else label)


_NEWLINES = re.compile(r"\r\n?")


def _normalize_newlines(text: str) -> str:
    return _NEWLINES.sub("\n", text) if "\r" in text else text


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _decode_body(part: Message, defects: list[str]) -> str:
    data = _payload_bytes(part)
    charset = part.get_content_charset()
    if charset is None and part.get_content_subtype() == "html":
        match = _META_CHARSET.search(data[:4096])
        charset = match.group(1).decode("ascii") if match else None
    text = _normalize_newlines(decode_bytes(data, charset, defects))
    if text.startswith("\ufeff"):
        text = text[1:]
    cleaned = _clean_str(text)
    if len(cleaned) != len(text):
        _note(defects, "NUL characters removed from body")
    return cleaned


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # should not happen; keep the raw text rather than fail
        raw = part.get_payload()
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    return data or b""


def _content_id(part: Message) -> str | None:
    value = part.get("content-id")
    if not value:
        return None
    return _unfold(value).strip("<> \t") or None


def _leaf_attachment(part: Message, ctype: str, defects: list[str]) -> InboundAttachment:
    name = _raw_filename(part)
    payload = _payload_bytes(part)
    if ctype in ("message/rfc822", "message/global") and not name:
        name = _eml_name(_subject_of_bytes(payload))
    return InboundAttachment(
        filename=safe_filename(name, "attachment" + _extension_for(ctype)),
        content_type=ctype,
        payload=payload,
        content_id=_content_id(part),
        is_inline=part.get_content_disposition() == "inline",
    )


def _message_attachment(part: Message, ctype: str, defects: list[str]) -> InboundAttachment:
    """message/* parts, which compat32 has already parsed into sub-messages."""
    inner = part.get_payload()
    payload = b"".join(_serialize(m) for m in inner)
    if ctype in ("message/rfc822", "message/global") and len(inner) == 1:
        payload = _undo_transfer_encoding(part, inner[0], payload)
        name = _eml_name(decode_header_value(inner[0].get("subject"), defects))
    else:
        name = _raw_filename(part) or ctype.split("/")[1]
    return InboundAttachment(
        filename=safe_filename(name, "attachment" + _extension_for(ctype)),
        content_type=ctype,
        payload=payload,
        content_id=_content_id(part),
        is_inline=part.get_content_disposition() == "inline",
    )


def _undo_transfer_encoding(part: Message, inner: Message, payload: bytes) -> bytes:
    # RFC 2046 forbids base64/qp on message/rfc822, but some mailers do it; the
    # parser then sees a header-less "message" whose body is the encoded mail.
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte not in ("base64", "quoted-printable") or inner.keys():
        return payload
    carrier = Message()
    carrier["Content-Transfer-Encoding"] = cte
    carrier.set_payload(inner.get_payload())
    return _payload_bytes(carrier) or payload


def _eml_name(subject: str) -> str:
    return f"{subject[:150]}.eml" if subject.strip() else "message.eml"


def _serialize(message: Message) -> bytes:
    out = io.BytesIO()
    try:
        BytesGenerator(out, mangle_from_=False, policy=_GEN_POLICY).flatten(message)
    except Exception:
        return b""
    return out.getvalue()


_SUBJECT_LINE = re.compile(rb"^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def _subject_of_bytes(data: bytes) -> str:
    head = data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    match = _SUBJECT_LINE.search(head)
    if not match:
        return ""
    return decode_header_value(match.group(1).decode("ascii", "surrogateescape"))


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------

_ADDRESS_HEADERS = {
    "from": "from_addresses",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "reply-to": "reply_to",
    "sender": "sender",
}


def parse_message(raw: bytes) -> InboundEmail:
    """Parse raw RFC 822 bytes. Never raises; problems end up in ``defects``."""
    if isinstance(raw, str):  # tolerate callers handing us text
        raw = raw.encode("utf-8", "surrogateescape")
    raw = bytes(raw or b"")
    defects: list[str] = []
    try:
        message = BytesParser(policy=_POLICY).parsebytes(raw)
    except Exception as exc:  # e.g. RecursionError on absurd nesting
        _note(defects, f"unparsable message: {type(exc).__name__}")
        return _unparsed(raw, defects)
    if not raw.strip():
        _note(defects, "empty message")

    headers, raw_values = _read_headers(message, defects)
    acc = _Parts()
    try:
        _walk(message, acc, defects)
    except Exception as exc:  # last line of defence: keep what was read so far
        _note(defects, f"MIME structure error: {type(exc).__name__}")
    return _build(raw, headers, raw_values, acc, defects)


def _read_headers(message: Message, defects: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Decoded headers and the raw (8-bit fixed, still encoded) values."""
    headers: dict[str, list[str]] = {}
    raw_values: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = _clean_str(_fix_8bit(name)).strip().lower()
        fixed = _fix_8bit(value) if isinstance(value, str) else str(value)
        raw_values.setdefault(key, []).append(fixed)
        headers.setdefault(key, []).append(decode_header_value(fixed, defects))
    return headers, raw_values


def _build(
    raw: bytes,
    headers: dict[str, list[str]],
    raw_values: dict[str, list[str]],
    acc: _Parts,
    defects: list[str],
) -> InboundEmail:
    def first(name: str) -> str | None:
        values = headers.get(name)
        return values[0] if values else None

    addresses = {
        attr: _parse_addresses(raw_values.get(name, []), defects)
        for name, attr in _ADDRESS_HEADERS.items()
    }
    html_raw = "\n".join(acc.htmls)
    html = sanitize_html(html_raw)
    text = _join_texts(acc.texts)
    if not text.strip() and html:
        text = html_to_text(html)
    referenced = _cid_references(html_raw)
    for attachment in acc.attachments:
        if attachment.content_id and attachment.content_id in referenced:
            attachment.is_inline = True
    return InboundEmail(
        message_id=normalize_message_id(first("message-id")),
        in_reply_to=_message_ids(" ".join(headers.get("in-reply-to", []))),
        references=_message_ids(" ".join(headers.get("references", []))),
        subject=first("subject") or "",
        from_=(addresses["from_addresses"] or [None])[0],
        from_raw=first("from") or "",
        date=_parse_date(first("date"), defects),
        text=text,
        html=html,
        headers=headers,
        attachments=acc.attachments,
        size=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        defects=defects,
        **addresses,
    )


def _join_texts(texts: list[str]) -> str:
    if len(texts) == 1:
        return texts[0]
    parts = [t for t in texts if t.strip()]
    return "\n".join(t if t.endswith("\n") else t + "\n" for t in parts[:-1]) + (parts[-1] if parts else "")


def _unparsed(raw: bytes, defects: list[str]) -> InboundEmail:
    return InboundEmail(
        message_id=None, in_reply_to=[], references=[], subject="", from_=None,
        from_addresses=[], from_raw="", to=[], cc=[], bcc=[], reply_to=[], sender=[],
        date=None, text=_clean_str(_normalize_newlines(decode_bytes(raw, None))), html="",
        headers={}, attachments=[], size=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(), defects=defects,
    )  # fmt: skip


# --------------------------------------------------------------------------
# Loop guard
# --------------------------------------------------------------------------

_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


def is_auto_generated(email: InboundEmail) -> str | None:
    """Reason why ``email`` looks machine-sent (do not auto-reply), or None."""
    headers = email.headers
    for value in headers.get("auto-submitted", []):
        token = value.split(";", 1)[0].strip().lower()
        if token and token != "no":
            return f"Auto-Submitted: {value.strip()}"
    for value in headers.get("precedence", []):
        if value.strip().lower() in _BULK_PRECEDENCE:
            return f"Precedence: {value.strip()}"
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if name in headers:
            return f"{label}: {headers[name][0].strip()}"
    for value in headers.get("return-path", []):
        if value.replace(" ", "") in ("<>", ""):
            return "Return-Path: <>"
    for address in (*email.from_addresses, *email.sender):
        local = address.address.rpartition("@")[0] if "@" in address.address else address.address
        if local.strip().strip('"').lower() in _DAEMON_LOCAL_PARTS:
            return f"Sender: {address.address}"
    return None
