"""Turn raw RFC 822 bytes into an :class:`InboundEmail`.

Pure functions only: no Flask, no IO, no database.  ``parse_message`` never
raises; whatever cannot be read cleanly is decoded best-effort and noted in
``InboundEmail.defects``.

Speed matters (this runs on every imported mail).  The stdlib ``email``
parser walks bodies line by line in Python and costs ~0.3 ms for a 15 KB
mail even with ``compat32``, so MIME structure is split here with
``bytes.find`` and transfer encodings are decoded with ``binascii``.  The
stdlib is still used for the fiddly parts: ``getaddresses`` (when the fast
path declines) and ``parsedate_to_datetime``.

This is a hand-written replacement of the stdlib parser, kept for speed and
held against it: tests/unit/test_parsing_reference.py compares both over the
test corpora and lists the intended differences.  A message the fast path
fails on (an exception while reading its structure) is read again by the
stdlib parser, within size and nesting bounds, with the same rules and
post-processing (``_stdlib_parts``).
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.policy
import hashlib
import html as html_lib
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache
from urllib.parse import unquote, unquote_to_bytes

import nh3

__all__ = [
    "EmailAddress",
    "InboundAttachment",
    "InboundEmail",
    "decode_bytes",
    "decode_header_value",
    "html_to_text",
    "normalize_message_id",
    "parse_message",
    "safe_filename",
    "sanitize_html",
]

_MAX_DEPTH = 40  # MIME nesting limit; deeper parts are left out (defects, left_out)
_MAX_PARTS = 1000  # MIME parts per message; the rest are left out (defects, left_out)


# --------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailAddress:
    name: str  # display name, RFC 2047 decoded
    address: str  # addr-spec as written, stripped; "" if none

    @property
    def domain(self) -> str:
        if "@" not in self.address:
            return ""
        return self.address.rpartition("@")[2].strip().lower()


@dataclass
class InboundAttachment:
    filename: str  # made safe by safe_filename
    content_type: str  # lower-case "type/subtype"
    payload: bytes  # transfer encoding undone
    content_id: str | None  # without angle brackets
    # Shown inside the HTML body: an image its <img src="cid:..."> names. Every other part,
    # Content-Disposition: inline or not (Apple Mail and iPhone photos and PDFs, any part of a
    # text-only message), is listed with the ticket's files.
    is_inline: bool = False


@dataclass
class InboundEmail:
    message_id: str | None  # bare id (no <>), None if missing or blank
    in_reply_to: list[str]  # bare ids
    references: list[str]  # bare ids, in order, without repeats
    subject: str  # decoded, folding collapsed, "" if none
    from_: EmailAddress | None  # first From address
    from_addresses: list[EmailAddress]
    from_raw: str  # decoded From header value
    to: list[EmailAddress]
    cc: list[EmailAddress]
    bcc: list[EmailAddress]
    reply_to: list[EmailAddress]
    sender: list[EmailAddress]
    date: datetime | None  # timezone-aware UTC
    text: str  # text/plain body, or derived from the HTML when there is none
    html: str  # sanitised HTML, "" if none
    headers: dict[str, list[str]]  # lower-case name -> decoded values, in order
    attachments: list[InboundAttachment]
    size: int  # len(raw)
    raw_sha256: str  # hex
    defects: list[str] = field(default_factory=list)  # parse problems, for the audit
    left_out: list[str] = field(default_factory=list)  # what the ticket will not hold, said on it
    content_type: str = "text/plain"  # the message's own Content-Type, lower-case "type/subtype"
    report_type: str | None = None  # its report-type parameter (multipart/report), lower case

    @property
    def is_delivery_report(self) -> bool:
        """A delivery status notification (RFC 3464): what a bounce is made of."""
        return self.content_type == "multipart/report" and self.report_type == "delivery-status"


def _note(defects: list[str] | None, message: str) -> None:
    if defects is not None and message not in defects:
        defects.append(message)


# --------------------------------------------------------------------------
# Charsets
# --------------------------------------------------------------------------

_LATIN1_FALLBACK = "myportal.latin1fallback"


def _latin1_fallback(err: UnicodeDecodeError) -> tuple[str, int]:
    # The 5 bytes windows-1252 leaves undefined map to the same code point,
    # as in latin-1: no byte is ever lost.
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

# Mislabelled UTF-8 is common under these labels, and valid multi-byte UTF-8
# practically never arises from real latin-1 text: so UTF-8 is tried first.
_LATIN_FAMILY = frozenset({"ascii", "iso8859-1", "cp1252"})

# Codecs that are no character sets, or that would interpret backslashes.
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
    except (LookupError, ValueError, TypeError):
        return None
    try:
        b"\0\0\0\0".decode(name)
    except LookupError:  # bytes-to-bytes codecs: base64, zlib, rot13, ...
        return None
    except Exception:  # a text codec that dislikes this sample: fine
        pass
    if any(bad in name for bad in _FORBIDDEN_CODECS):
        return None
    return name


def _decode_cp1252(data: bytes) -> str:
    return data.decode("cp1252", _LATIN1_FALLBACK)


def _mostly_decodes(data: bytes, codec: str) -> str | None:
    """``data`` decoded with replacement characters if only a few bytes are
    bad (e.g. a truncated multi-byte sequence), else None."""
    try:
        text = data.decode(codec, "replace")
    except Exception:
        return None
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore")) - bad
    return text if non_ascii >= 4 * bad else None


def decode_bytes(data: bytes, charset: str | None, defects: list[str] | None = None) -> str:
    """Decode text in its declared charset, with a fallback that never fails.

    Declared charset (strict) -> UTF-8 (strict) -> declared charset or UTF-8
    if only a few bytes are bad -> windows-1252 (lossless).  Unknown, missing,
    us-ascii, latin-1 and windows-1252 labels go UTF-8 -> windows-1252.
    """
    if not data:
        return ""
    codec = _codec_for(charset)
    if codec is None and charset and charset.strip().lower() != "us-ascii":
        _note(defects, f"unknown charset {charset!r}")
    if codec is None or codec in _LATIN_FAMILY:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return _decode_cp1252(data)
    try:
        return data.decode(codec)
    except Exception:  # UnicodeDecodeError, or odd errors of odd codecs
        _note(defects, f"text is not valid {charset}")
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


_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean_str(value: str) -> str:
    """Drop NUL and lone surrogates: PostgreSQL text cannot store them."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("", value)
    return value


def _header_text(data: bytes) -> str:
    """Raw header bytes to str: ASCII, else UTF-8, else windows-1252."""
    if data.isascii():
        return data.decode("ascii")
    return decode_bytes(data, None)


# --------------------------------------------------------------------------
# Header values
# --------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _unfold(value: str) -> str:
    """Join folded lines; the folding whitespace becomes one space."""
    if "\n" in value or "\r" in value:
        lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        value = " ".join(line.strip(" \t") for line in lines)
    return value.strip()


def _decode_b(text: str) -> bytes | None:
    """Base64 of an encoded word; stray characters are skipped and missing
    padding repaired (as the stdlib does); None when no decoding is possible."""
    data = _B64_JUNK.sub(b"", text.encode("ascii", "ignore"))
    if len(data) % 4 == 1:  # one character too many or too few: no way to tell which
        return None
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


_KEPT_AS_WRITTEN = "undecodable encoded word kept as written"


def _decode_word(match: re.Match, defects: list[str] | None) -> tuple[str, bytes] | None:
    """(charset, bytes) of an encoded word; None if it cannot be decoded."""
    charset, kind, text = match.groups()
    charset = charset.partition("*")[0]  # RFC 2231 language suffix
    if _codec_for(charset) is None:
        _note(defects, f"encoded word in unknown charset {charset[:40]!r} kept as written")
        return None
    if kind in "bB":
        data = _decode_b(text)
        if data is None:
            _note(defects, "invalid base64 in encoded word; kept as written")
        return None if data is None else (charset, data)
    return charset, binascii.a2b_qp(text.encode("utf-8"), header=True)


def decode_header_value(value: str | None, defects: list[str] | None = None) -> str:
    """Unfold a header value and decode RFC 2047 encoded-words, best effort.

    An encoded word that cannot be decoded (unknown charset, broken base64,
    bytes its charset cannot read) stays as written, never as mojibake."""
    if not value:
        return ""
    value = _unfold(value)
    if "=?" not in value:
        return _clean_str(value)
    out: list[str] = []
    run: list[tuple[str, bytes, str]] = []  # adjacent decodable words: charset, bytes, as written
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        word = _decode_word(match, defects)
        if run and word is not None and not between.strip():
            run.append((*word, between + match.group()))  # whitespace between words is dropped
        else:
            out.append(_decode_run(run, defects))
            out.append(between)
            run = []
            if word is None:
                out.append(match.group())
            else:
                run.append((*word, match.group()))
        pos = match.end()
    out.append(_decode_run(run, defects))
    out.append(value[pos:])
    return _clean_str("".join(out))


def _decode_run(run: list[tuple[str, bytes, str]], defects: list[str] | None) -> str:
    # Same-charset words are joined before decoding because senders split
    # multi-byte characters across words.
    out: list[str] = []
    i = 0
    while i < len(run):
        first = i
        charset, data, _ = run[i]
        i += 1
        while i < len(run) and run[i][0].lower() == charset.lower():
            data += run[i][1]
            i += 1
        text = _decode_word_bytes(data, charset, defects)
        out.append(_decode_one_by_one(run[first:i], defects) if text is None else text)
    return "".join(out)


def _decode_one_by_one(words: list[tuple[str, bytes, str]], defects: list[str] | None) -> str:
    """Words of one charset that do not decode together: each on its own; a bad
    one is kept as written, with the whitespace around it."""
    _note(defects, _KEPT_AS_WRITTEN)
    out: list[str] = []
    after_bad = False
    for charset, data, written in words:
        text = _decode_word_bytes(data, charset, defects)
        if text is None:
            out.append(written)
        else:
            out.append(written[: len(written) - len(written.lstrip())] + text if after_bad else text)
        after_bad = text is None
    return "".join(out)


def _decode_word_bytes(data: bytes, charset: str, defects: list[str] | None) -> str | None:
    """Encoded-word bytes in their charset (mislabelled UTF-8 accepted); None
    when neither reads them.  Latin-family labels never fail (see decode_bytes)."""
    codec = _codec_for(charset)
    if codec in _LATIN_FAMILY:
        return decode_bytes(data, charset, defects)
    try:
        return data.decode(codec)
    except Exception:  # UnicodeDecodeError, or odd errors of odd codecs
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


_MSGID = re.compile(r"<([^<>]*)>")
_WS = re.compile(r"\s+")


def normalize_message_id(value: str | None) -> str | None:
    """``' <abc@host> '`` -> ``'abc@host'``; None when missing or blank."""
    if not value:
        return None
    match = _MSGID.search(value)
    bare = match.group(1) if match else value.strip().strip("<>")
    bare = _WS.sub("", bare)  # folding may have split a long id
    return bare or None


def _message_ids(value: str) -> list[str]:
    ids = _MSGID.findall(value) or value.replace(",", " ").split()
    unique: dict[str, None] = {}
    for raw in ids:
        bare = normalize_message_id(raw)
        if bare:
            unique.setdefault(bare)
    return list(unique)


# One address of a simple list: `addr`, `Name <addr>` or `"Name" <addr>`.
# Anything else (comments, groups, odd quoting) goes to email.utils.getaddresses.
# Possessive quantifiers (*+) keep long whitespace runs from backtracking.
_SIMPLE_ADDRESS = re.compile(
    r"""[\s,]*+(?:
        (?:"(?P<quoted>(?:[^"\\]|\\.)*+)"\s*+|(?P<name>[^",<>()\\:;@\[\]]*+))
        <(?P<angle>[^<>",()\\:;\s]*+)>
      | (?P<bare>[^\s",<>()\\:;@\[\]]++@[^\s",<>()\\:;@\[\]]++)
    )\s*+(?:,|\Z)""",
    re.X,
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_ANGLE_ADDR = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def _split_simple_addresses(value: str) -> list[tuple[str, str]] | None:
    pairs, pos, end = [], 0, len(value.rstrip(", \t"))
    while pos < end:
        match = _SIMPLE_ADDRESS.match(value, pos)
        if not match:
            return None
        quoted, name, angle, bare = match.group("quoted", "name", "angle", "bare")
        if quoted is not None:
            pairs.append((_QUOTED_PAIR.sub(r"\1", quoted), angle))
        elif bare is None:
            pairs.append((" ".join(name.split()), angle))
        else:
            pairs.append(("", bare))
        pos = match.end()
    return pairs


def _address_pairs(value: str, defects: list[str]) -> list[tuple[str, str]]:
    pairs = _split_simple_addresses(value)
    if pairs is not None:
        return pairs
    try:
        pairs = getaddresses([value])
    except Exception:
        _note(defects, "unparsable address header")
        return [("", a) for a in _ANGLE_ADDR.findall(value)]
    fixed = []
    for name, address in pairs:
        if "<" in address:  # e.g. an unterminated quoted display name
            match = _ANGLE_ADDR.search(address)
            address = match.group(1) if match else address
        fixed.append((name, address))
    return fixed


def _parse_addresses(values: list[str], defects: list[str]) -> list[EmailAddress]:
    """Parse address headers (raw: RFC 2047 words are decoded after parsing)."""
    result = []
    for value in values:
        value = _unfold(value)
        pairs = _address_pairs(value, defects)
        if any("=?" in address for _, address in pairs):
            # "name <addr>" inside one encoded word: decode first, then parse
            pairs = _address_pairs(decode_header_value(value, defects), defects)
        for name, address in pairs:
            name, address = decode_header_value(name, defects), _clean_str(address.strip())
            if name or address:
                result.append(EmailAddress(name, address))
    return result


def _parse_date(value: str | None, defects: list[str]) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(_unfold(value))
    except Exception:  # ValueError, TypeError, OverflowError, IndexError...
        _note(defects, "unparsable Date header")
        return None
    if parsed.tzinfo is None:  # "-0000" means UTC, origin unknown
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

_TABLE_ATTRS = {
    "width", "height", "bgcolor", "valign", "nowrap", "border", "cellpadding", "cellspacing",
}  # fmt: skip


def _allowed_attributes() -> dict[str, set[str]]:
    attributes = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
    # No id/class/name: they could clobber or restyle the portal's own page.
    attributes["*"] = {"title", "dir", "lang", "align", "style"}
    attributes["a"] = attributes.get("a", set()) | {"href", "hreflang"}
    attributes["img"] = attributes.get("img", set()) | {"src", "alt", "width", "height", "border"}
    attributes["font"] = {"color", "face", "size"}
    for tag in ("table", "tr", "td", "th", "tbody", "thead", "tfoot", "col", "colgroup"):
        attributes[tag] = attributes.get(tag, set()) | _TABLE_ATTRS
    return attributes


_CLEANER = nh3.Cleaner(
    tags=set(nh3.ALLOWED_TAGS) | {"font", "tfoot", "big", "section"},
    clean_content_tags={
        "script", "style", "title", "template", "noscript",
        "iframe", "object", "embed", "applet", "svg", "math", "xml",
    },
    attributes=_allowed_attributes(),
    url_schemes={"http", "https", "mailto", "tel", "cid"},
    # Relative URLs would resolve against the portal itself (GET-CSRF, fake links).
    url_relative="deny",
    filter_style_properties=_STYLE_PROPERTIES,
    link_rel="noopener noreferrer",
    strip_comments=True,
)  # fmt: skip


# nh3 output is normalised (lower-case tag and attribute names, values in
# double quotes with '"' escaped), so dropping one attribute by regex is safe.
_IMG_BAD_SRC = re.compile(r'(<img\b(?:[^>"]|"[^"]*")*?)\s+src="(?!\s*(?i:https?|cid):)[^"]*"')


def sanitize_html(html: str) -> str:
    """nh3-sanitised HTML: formatting, tables, links and http(s)/cid: images."""
    if not html or not html.strip():
        return ""
    clean = _CLEANER.clean(html)
    # url_schemes is shared by links and images, and mailto:/tel: suit links
    # only.  (A regex pass is ~10x cheaper than nh3's attribute_filter, a
    # Python callback per attribute.)
    if "<img" in clean:
        clean = _IMG_BAD_SRC.sub(r"\1", clean)
    return clean


_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_HTML_DROP_TAGS = ("<script", "<style", "<head", "<title", "<template", "<noscript", "<xml")
# [^<>] rather than [^>]: keeps hostile input ("<a<a<a...") linear.  Quoted
# attribute values may hold '<' and '>' (nh3 does not escape them there).
_HTML_DROP = re.compile(
    r"<(script|style|head|title|template|noscript|xml)\b[^<>]*>.*?(?:</\1\s*>|\Z)", re.I | re.S
)
_HTML_TAG = re.compile(
    r"""<(/?)([a-zA-Z][a-zA-Z0-9]*)(?:[^<>"']|"[^"]*"|'[^']*')*>|<[!?][^<>]*>"""
)
# \x02 marks a paragraph break and \x01 a line break; runs of marks are
# merged so nested blocks (</li></ul></div>) do not pile up blank lines.
_TAG_BREAKS = {
    **dict.fromkeys(("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table",
                     "ul", "ol", "dl", "hr"), "\x02"),
    **dict.fromkeys(("div", "li", "tr", "dt", "dd", "section", "article", "header", "footer",
                     "address", "center", "caption", "form"), "\x01"),
    "br": "\n",
}  # fmt: skip
_BREAK_RUN = re.compile(r"[\x01\x02][\x01\x02 ]*")


def _tag_to_text(match: re.Match) -> str:
    name = match.group(2)
    if name is None:  # <!DOCTYPE>, <?xml?>
        return ""
    name = name.lower()
    if name in ("td", "th"):
        return " " if match.group(1) else ""  # cells of a row: "a b"
    return _TAG_BREAKS.get(name, "")


def _break(match: re.Match) -> str:
    return "\n\n" if "\x02" in match.group() else "\n"


def html_to_text(html: str) -> str:
    """Readable plain text from HTML: tags stripped, script/style dropped,
    line breaks for br/p/div/li/tr..., entities unescaped."""
    if not html:
        return ""
    text = html
    if "<!--" in text:
        text = _HTML_COMMENT.sub("", text)
    lowered = text.lower()
    if any(tag in lowered for tag in _HTML_DROP_TAGS):
        text = _HTML_DROP.sub("", text)
    return _text_from_clean_html(text)


def _text_from_clean_html(html: str) -> str:
    """html_to_text for HTML without comments, scripts or styles (nh3 output)."""
    text = html.replace("\x01", "").replace("\x02", "")  # our break marks, below
    text = " ".join(text.split())  # source whitespace collapses, as in a browser
    text = _HTML_TAG.sub(_tag_to_text, text)
    text = _BREAK_RUN.sub(_break, text)
    text = html_lib.unescape(text).replace("\xa0", " ")
    text = "\n".join(line.strip(" ") for line in text.split("\n"))
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


# nh3 output is normalised (lower-case attribute names, values in double quotes), and only
# <img> keeps a src attribute: these are the images the HTML shows.
_CID_SRC = re.compile(r'\ssrc="(?i:cid):([^"]{1,500})"')


def _cid_references(clean_html: str) -> set[str]:
    """The Content-IDs the sanitised HTML shows as images."""
    return {unquote(ref).strip("<> ") for ref in _CID_SRC.findall(clean_html)}


# --------------------------------------------------------------------------
# Filenames
# --------------------------------------------------------------------------

_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(10)}
    | {f"LPT{i}" for i in range(10)}
)
_PATH_SEPARATORS = re.compile(r"[/\\]")
_FILENAME_INVALID = re.compile(r'[<>:"|?*]')
_DOTS = re.compile(r"\.{2,}")
_MAX_FILENAME = 200


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A filename that is safe to store and offer for download.

    No directory parts (/ or \\), no "..", no control or format characters,
    no leading dots, no Windows reserved names, at most 200 characters
    keeping the extension, never empty (``fallback``, itself made safe).
    """
    return _sanitize_name(name or "") or _sanitize_name(fallback or "") or "attachment"


def _sanitize_name(name: str) -> str:
    # Cf includes bidi overrides ("invoice\u202efdp.exe" shows as "...exe.pdf").
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = unicodedata.normalize("NFC", name)  # macOS sends decomposed umlauts
    name = _PATH_SEPARATORS.split(name)[-1]
    name = _FILENAME_INVALID.sub("_", name)
    name = _DOTS.sub(".", " ".join(name.split()))
    name = name.lstrip(". ").rstrip(". ")
    if not name:
        return ""
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        name = "_" + name
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name) <= _MAX_FILENAME:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 20:
        return name[:_MAX_FILENAME].rstrip(". ")
    return f"{stem[: _MAX_FILENAME - len(ext) - 1].rstrip('. ')}.{ext}"


@lru_cache(maxsize=128)
def _extension_for(content_type: str) -> str:
    if content_type in ("message/rfc822", "message/global"):
        return ".eml"
    return mimetypes.guess_extension(content_type, strict=False) or ""


# --------------------------------------------------------------------------
# MIME entities
# --------------------------------------------------------------------------


# Bodies are never sliced out of the message: an entity is the range
# ``data[start:end]`` of the one raw bytes object, searched with find()/regex
# pos+endpos and decoded through a memoryview.  A 25 MB attachment thus costs
# its decoded payload and nothing more (a bytes slice per MIME level would
# copy it several times).
#
# Invariant the regex searches rely on ('^' with re.M only matches at a pos
# that follows b"\n" or is 0): every entity and body range starts at 0, right
# after a b"\n", or at the end of its (then empty) range.


class _Entity:
    """A message or body part: headers plus the still-encoded body, which is
    ``data[start:end]`` (a range, not a copy)."""

    __slots__ = ("headers", "data", "start", "end", "ctype", "params", "disposition", "disp_params")

    def __init__(
        self,
        data: bytes,
        defects: list[str],
        default_type: str = "text/plain",
        start: int = 0,
        end: int | None = None,
    ):
        if end is None:
            end = len(data)
        self.data, self.end = data, end
        self.headers, self.start = _split_head(data, start, end, defects)
        self.ctype, self.params = _content_type(self.get("content-type"), default_type, defects)
        disposition = self.get("content-disposition")
        if disposition:
            main, _, rest = _unfold(disposition).partition(";")
            self.disposition = main.strip().lower() or None
            self.disp_params = _parse_params(rest, defects)
        else:
            self.disposition, self.disp_params = None, {}

    def get(self, name: str) -> str | None:
        """First value of a header (raw: folded, RFC 2047 words not decoded)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def filename(self) -> str:
        name = self.disp_params.get("filename") or self.params.get("name") or ""
        return decode_header_value(name)  # many mailers put RFC 2047 words here

    @property
    def content_id(self) -> str | None:
        value = self.get("content-id")
        if not value:
            return None
        return _unfold(value).strip("<> \t") or None

    def is_blank(self) -> bool:
        """True if the body is empty or all whitespace (``not body.strip()``)."""
        return _is_blank(self.data, self.start, self.end)

    def payload(self, defects: list[str]) -> bytes:
        """The body with its Content-Transfer-Encoding undone."""
        cte = (self.get("content-transfer-encoding") or "").strip().lower()
        data, start, end = self.data, self.start, self.end
        if cte == "base64":
            return _decode_base64(data, start, end, defects)
        if cte == "quoted-printable":
            return binascii.a2b_qp(memoryview(data)[start:end])
        if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
            return _decode_uu(data, start, end, defects)
        return data[start:end]  # (the object itself, not a copy, if that is all of it)


# bytes.strip() and bytes.isspace() whitespace
_BLANK = re.compile(rb"[ \t\n\r\x0b\x0c]*+")
_BLANK_LINE_REST = re.compile(rb"[ \t\r]*+")


def _is_blank(data: bytes, start: int, end: int) -> bool:
    """``not data[start:end].strip()`` without the copy; reads only up to the
    first non-whitespace byte."""
    return _BLANK.match(data, start, end).end() == end


def _find_head_end(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of the header block, start of the body) in ``data[start:end]``."""
    if data.startswith(b"\n", start, end):
        return start, start + 1
    if data.startswith(b"\r\n", start, end):
        return start, start + 2
    crlf = data.find(b"\n\r\n", start, end)
    lf = data.find(b"\n\n", start, crlf + 2 if crlf >= 0 else end)
    if lf >= 0:
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return end, end


# One header field with its continuation lines; the name is printable ASCII
# without ':' (obsolete whitespace before the colon is tolerated).
_HEADER_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)\n?")


def _split_head(
    data: bytes, start: int, end: int, defects: list[str]
) -> tuple[list[tuple[str, str]], int]:
    """Header (lower-case name, raw value) pairs of ``data[start:end]`` and
    where the body starts (it runs to ``end``)."""
    head_end, body_start = _find_head_end(data, start, end)
    headers: list[tuple[str, str]] = []
    match_field = _HEADER_FIELD.match
    pos = start
    while pos < head_end:
        field = match_field(data, pos, head_end)
        if field:
            name = field.group(1).decode("ascii").lower()
            headers.append((name, _header_text(field.group(2)).strip()))
            pos = field.end()
            continue
        line_end = data.find(b"\n", pos, head_end)
        line_end = head_end if line_end < 0 else line_end + 1
        if data.startswith((b" ", b"\t"), pos, line_end):
            _note(defects, "header continuation line without a header")
        elif not _is_blank(data, pos, line_end):  # not a header: the body starts here
            _note(defects, "missing header/body separator")
            return headers, pos
        pos = line_end
    return headers, body_start


def _content_type(
    value: str | None, default: str, defects: list[str]
) -> tuple[str, dict[str, str]]:
    if not value:
        return default, {}
    main, _, rest = _unfold(value).partition(";")
    ctype = main.strip().lower()
    if ctype.count("/") != 1 or " " in ctype or ctype.startswith("/") or ctype.endswith("/"):
        _note(defects, f"invalid Content-Type {main.strip()[:50]!r}")
        ctype = default
    return ctype, _parse_params(rest, defects)


# Anchored after ';' so that junk without '=' cannot make findall quadratic.
_PARAM = re.compile(r"""(?:^|(?<=;))\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)""")


def _unquote(value: str) -> str:
    value = value.strip()
    if value[:1] == '"':
        value = value[1:-1] if len(value) > 1 and value.endswith('"') else value[1:]
        return value.replace("\\\\", "\\").replace('\\"', '"')  # as email.utils.unquote
    return value


def _parse_params(text: str, defects: list[str]) -> dict[str, str]:
    """MIME parameters (lower-case names); RFC 2231 values decoded."""
    if not text.strip():
        return {}
    params: dict[str, str] = {}
    extended: list[tuple[str, str]] = []
    for name, value in _PARAM.findall(text):
        name = name.lower()
        if "*" in name:
            extended.append((name, value))
        else:
            params.setdefault(name, _unquote(value))
    if extended:
        params.update(_rfc2231(extended, defects))
    return params


def _rfc2231(items: list[tuple[str, str]], defects: list[str]) -> dict[str, str]:
    """``name*=utf-8''%E2%82%AC.pdf`` and ``name*0*=...; name*1=...``."""
    pieces: dict[str, list[tuple[int, str, bool]]] = {}
    for name, value in items:
        base, _, section = name.partition("*")
        number = section.rstrip("*")
        index = int(number) if number.isdigit() else 0
        pieces.setdefault(base, []).append((index, _unquote(value), name.endswith("*")))
    decoded = {}
    for base, parts in pieces.items():
        parts.sort(key=lambda part: part[0])  # stable: the first of a repeated section wins
        parts = [part for i, part in enumerate(parts) if i == 0 or part[0] != parts[i - 1][0]]
        charset, data = None, bytearray()
        for i, (_, value, encoded) in enumerate(parts):
            if encoded:
                if i == 0 and value.count("'") >= 2:
                    charset, _, value = value.split("'", 2)
                data += unquote_to_bytes(value)
            else:
                data += value.encode("utf-8")
        decoded[base] = decode_bytes(bytes(data), charset or None, defects)
    return decoded


# Bytes that are no base64 alphabet characters (what _B64_JUNK matches).
_B64_JUNK_BYTES = bytes(b for b in range(256) if _B64_JUNK.fullmatch(bytes((b,))))
_B64_CHAR = re.compile(rb"[A-Za-z0-9+/]")
_CHUNK = 1 << 20  # bounds the temporary copies of the invalid-base64 path


def _decode_base64(data: bytes, start: int, end: int, defects: list[str]) -> bytes:
    """Decode ``data[start:end]``.  Allocates only the result (a2b_base64
    reads the memoryview in place and skips line breaks itself)."""
    try:
        return binascii.a2b_base64(memoryview(data)[start:end])
    except binascii.Error:
        pass
    _note(defects, "invalid base64 body")
    # Best effort: the alphabet characters before the first '=', the last one
    # dropped if it dangles, padded.  a2b_base64 skips non-alphabet bytes, so
    # only the incomplete last quad needs to be picked out and decoded apart.
    stop = data.find(b"=", start, end)
    if stop < 0:
        stop = end
    count = 0  # alphabet characters
    for pos in range(start, stop, _CHUNK):
        count += len(data[pos : min(pos + _CHUNK, stop)].translate(None, _B64_JUNK_BYTES))
    dangling = count % 4
    cut, tail = stop, b""
    if dangling:  # find the last `dangling` alphabet characters
        window = 64
        while True:
            lo = max(start, stop - window)
            positions = [m.start() for m in _B64_CHAR.finditer(data, lo, stop)]
            if len(positions) >= dangling or lo == start:
                break
            window *= 4
        cut = positions[-dangling]
        if dangling > 1:  # 1: truncated, the character is dropped
            tail = bytes(data[p] for p in positions[-dangling:])
    decoded = binascii.a2b_base64(memoryview(data)[start:cut])
    if tail:
        decoded += binascii.a2b_base64(tail + b"=" * (-len(tail) % 4))
    return decoded


# One line as bytes.splitlines() sees it: content, then \r\n, \r or \n (or the end).
_LINE = re.compile(rb"([^\r\n]*)(?:\r\n|[\r\n])|([^\r\n]+)")


def _decode_uu(data: bytes, start: int, end: int, defects: list[str]) -> bytes:
    out = bytearray()
    started = False
    for match in _LINE.finditer(data, start, end):
        line = match[1] if match[2] is None else match[2]
        if not started:
            started = line.startswith(b"begin ")
            continue
        if line.strip() in (b"end", b"`"):
            break
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            _note(defects, "invalid uuencoded body")
    return bytes(out)


def _split_multipart(
    data: bytes, start: int, end: int, boundary: str, defects: list[str]
) -> list[tuple[int, int]] | None:
    """(start, end) ranges of the body parts of ``data[start:end]`` between
    ``--boundary`` delimiter lines; None if none found."""
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    find = data.find
    parts: list[tuple[int, int]] = []
    part_start = None  # where the current part's content begins
    i = find(delimiter, start, end)
    while i >= 0:
        after = i + len(delimiter)
        if i > start and data[i - 1] != 0x0A:  # not at the start of a line
            i = find(delimiter, after, end)
            continue
        closing = data.startswith(b"--", after, end)
        eol = find(b"\n", after, end)
        line_end = eol if eol >= 0 else end
        if _BLANK_LINE_REST.match(data, after + 2 * closing, line_end).end() == line_end:
            if part_start is not None:
                # (i - 2 >= start here: a part only starts after a delimiter)
                part_end = i - 2 if data[i - 2 : i] == b"\r\n" else i - 1
                parts.append((part_start, max(part_end, part_start)))
            if closing:
                return parts
            part_start = eol + 1 if eol >= 0 else end
        i = find(delimiter, after, end)
    if part_start is None:
        return None
    _note(defects, "multipart without closing boundary (truncated?)")
    parts.append((part_start, end))
    return parts


# --------------------------------------------------------------------------
# Walking the MIME tree
# --------------------------------------------------------------------------


@dataclass
class _Tally:
    """What one walk of a message's MIME tree met and left out (shared by its _Parts)."""

    parts: int = 0
    dropped: int = 0  # parts beyond _MAX_PARTS (counted where cut, without their children)
    too_deep: bool = False

    def within_limit(self, children: list) -> list:
        """The children that still fit under _MAX_PARTS; the rest are counted as dropped."""
        room = max(0, _MAX_PARTS - self.parts)
        if len(children) > room:
            self.dropped += len(children) - room
            return children[:room]
        return children

    def left_out(self) -> list[str]:
        notes = []
        if self.too_deep:
            notes.append(f"MIME parts nested deeper than {_MAX_DEPTH} levels were not imported")
        if self.dropped:
            notes.append(f"{self.dropped:,} more MIME parts were not imported (limit {_MAX_PARTS:,})")
        return notes


@dataclass
class _Parts:
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[InboundAttachment] = field(default_factory=list)
    tally: _Tally = field(default_factory=_Tally)


_BODY_TYPES = ("text/plain", "text/html")
_TOO_DEEP = "MIME nesting too deep; inner parts dropped"
_TOO_MANY_PARTS = f"more than {_MAX_PARTS} MIME parts; the rest left out"
_MESSAGE_TYPES = ("message/rfc822", "message/global")


def _walk(entity: _Entity, acc: _Parts, defects: list[str], depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        _note(defects, _TOO_DEEP)
        acc.tally.too_deep = True
        return
    acc.tally.parts += 1
    ctype = entity.ctype
    if ctype.startswith("multipart/"):
        _walk_multipart(entity, acc, defects, depth)
    elif ctype in _BODY_TYPES and entity.disposition != "attachment" and not entity.filename:
        (acc.texts if ctype == "text/plain" else acc.htmls).append(_decode_text(entity, defects))
    else:
        acc.attachments.append(_attachment(entity, defects))


def _walk_multipart(entity: _Entity, acc: _Parts, defects: list[str], depth: int) -> None:
    if entity.is_blank():
        return
    data, start, end = entity.data, entity.start, entity.end
    boundary = entity.params.get("boundary")
    parts = _split_multipart(data, start, end, boundary, defects) if boundary else None
    if parts is None:
        parts = _guess_parts(entity, defects)
    if parts is None:
        _note(defects, f"{entity.ctype} body kept as text")
        acc.texts.append(_decode_text(entity, defects))
        return
    if len(parts) > _MAX_PARTS - acc.tally.parts:
        _note(defects, _TOO_MANY_PARTS)
        parts = acc.tally.within_limit(parts)
    default = "message/rfc822" if entity.ctype == "multipart/digest" else "text/plain"
    children = (_Entity(data, defects, default, part_start, part_end) for part_start, part_end in parts)
    if entity.ctype == "multipart/alternative":
        _walk_alternative(children, acc, defects, depth)
    else:
        for child in children:
            _walk(child, acc, defects, depth + 1)


def _walk_alternative(children, acc: _Parts, defects: list[str], depth: int, walk=_walk) -> None:
    # Alternatives come in increasing order of preference: keep the last text
    # and the last html; attachments (images of a multipart/related) from all.
    texts: list[str] = []
    htmls: list[str] = []
    for child in children:
        sub = _Parts(tally=acc.tally)
        walk(child, sub, defects, depth + 1)
        texts = sub.texts or texts
        htmls = sub.htmls or htmls
        acc.attachments += sub.attachments
    acc.texts += texts
    acc.htmls += htmls


_BOUNDARY_LINE = re.compile(rb"^--([^\s]{1,200}?)[ \t]*\r?$", re.M)


def _guess_parts(entity: _Entity, defects: list[str]) -> list[tuple[int, int]] | None:
    """Missing or wrong boundary parameter: try the first ``--xxx`` line."""
    match = _BOUNDARY_LINE.search(entity.data, entity.start, entity.end)
    if not match:
        _note(defects, f"{entity.ctype} without usable boundary")
        return None
    guess = _header_text(match.group(1))
    if guess.endswith("--"):
        guess = guess[:-2]
    _note(defects, f"{entity.ctype} boundary not found; guessed {guess[:70]!r}")
    return _split_multipart(entity.data, entity.start, entity.end, guess, defects)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _decode_text(entity: _Entity, defects: list[str]) -> str:
    return _text_of(entity.payload(defects), entity.params.get("charset"), entity.ctype, defects)


def _text_of(data: bytes, charset: str | None, ctype: str, defects: list[str]) -> str:
    """A text part's decoded payload as body text."""
    if charset is None and ctype == "text/html":
        match = _META_CHARSET.search(data, 0, 4096)
        charset = match.group(1).decode("ascii") if match else None
    text = decode_bytes(data, charset, defects)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    cleaned = _clean_str(text)
    if len(cleaned) != len(text):
        _note(defects, "NUL or invalid characters removed from body")
    return cleaned


def _attachment(entity: _Entity, defects: list[str]) -> InboundAttachment:
    payload = entity.payload(defects)
    return _make_attachment(entity.ctype, payload, entity.filename, entity.content_id)


def _make_attachment(
    ctype: str, payload: bytes, name: str, content_id: str | None
) -> InboundAttachment:
    if ctype in _MESSAGE_TYPES:
        subject = decode_header_value(_Entity(payload, []).get("subject"))
        name = f"{subject[:150]}.eml" if subject.strip() else "message.eml"
    return InboundAttachment(
        filename=safe_filename(name, "attachment" + _extension_for(ctype)),
        content_type=ctype,
        payload=payload,
        content_id=content_id,
    )


# --------------------------------------------------------------------------
# Fallback: the stdlib parser, for a message the fast parser failed on
# --------------------------------------------------------------------------

# The stdlib parser copies bodies per MIME level and recurses per nesting
# level (RecursionError near 1,000): it only gets messages it can take.
_FALLBACK_MAX_BYTES = 4 << 20
_FALLBACK_MAX_MULTIPARTS = 100
_MULTIPART_WORD = re.compile(rb"multipart/", re.I)


def _stdlib_parts(data: bytes, start: int, defects: list[str]) -> tuple[_Parts, list] | None:
    """Body parts and headers of ``data[start:]`` read by ``email`` (compat32),
    with the same selection rules and post-processing as the fast path;
    None if the message is outside the fallback's bounds or it fails too."""
    if len(data) - start > _FALLBACK_MAX_BYTES:
        _note(defects, "stdlib fallback skipped: message too large")
        return None
    if len(_MULTIPART_WORD.findall(data, start)) > _FALLBACK_MAX_MULTIPARTS:
        _note(defects, "stdlib fallback skipped: too many multiparts")
        return None
    try:
        message = email.message_from_bytes(data[start:], policy=email.policy.compat32)
        acc = _Parts()
        _stdlib_walk(message, acc, defects, 0)
        headers = _Entity(_stdlib_head(message), defects).headers
    except Exception as exc:  # (RecursionError included)
        _note(defects, f"stdlib fallback failed: {type(exc).__name__}")
        return None
    _note(defects, "parsed by the stdlib email parser (fallback)")
    return acc, headers


def _stdlib_walk(part, acc: _Parts, defects: list[str], depth: int) -> None:
    """_walk's rules on a node of the stdlib's tree."""
    if depth > _MAX_DEPTH:
        _note(defects, _TOO_DEEP)
        acc.tally.too_deep = True
        return
    acc.tally.parts += 1
    ctype = part.get_content_type()
    if ctype.startswith("multipart/"):
        _stdlib_walk_multipart(part, acc, defects, depth)
        return
    # Parameters are read by the fast path's own code from the part's header
    # block (compat32's parameter parser raises on some malformed RFC 2231).
    head = _Entity(_stdlib_head(part), defects)
    disposition, name = head.disposition, head.filename
    if part.is_multipart():  # message/rfc822 and other parsed message/* parts
        payload = b"".join(child.as_bytes() for child in part.get_payload())
    else:
        payload = part.get_payload(decode=True) or b""
    if ctype in _BODY_TYPES and disposition != "attachment" and not name:
        (acc.texts if ctype == "text/plain" else acc.htmls).append(
            _text_of(payload, head.params.get("charset"), ctype, defects)
        )
    else:
        acc.attachments.append(_make_attachment(ctype, payload, name, head.content_id))


def _stdlib_walk_multipart(part, acc: _Parts, defects: list[str], depth: int) -> None:
    if not part.is_multipart():  # the stdlib found no parts
        if not _stdlib_guessed(part, acc, defects, depth):
            text = _text_of(part.get_payload(decode=True) or b"", None, "text/plain", defects)
            if text.strip():
                _note(defects, f"{part.get_content_type()} body kept as text")
                acc.texts.append(text)
        return
    children = part.get_payload()
    if len(children) > _MAX_PARTS - acc.tally.parts:
        _note(defects, _TOO_MANY_PARTS)
        children = acc.tally.within_limit(children)
    if part.get_content_type() == "multipart/alternative":
        _walk_alternative(children, acc, defects, depth, walk=_stdlib_walk)
    else:
        for child in children:
            _stdlib_walk(child, acc, defects, depth + 1)


def _stdlib_head(part) -> bytes:
    """A stdlib node's header block as raw bytes, blank line included."""
    lines = [f"{name}: {value}\n" for name, value in part.raw_items()]
    return "".join(lines).encode("utf-8", "surrogateescape") + b"\n"


def _stdlib_guessed(part, acc: _Parts, defects: list[str], depth: int) -> bool:
    """A multipart the stdlib could not split, read with the first ``--xxx``
    line as its boundary (as _guess_parts does); False if there is none."""
    body = part.get_payload(decode=True) or b""
    match = _BOUNDARY_LINE.search(body)
    if not match:
        return False
    guess = match.group(1).removesuffix(b"--")
    _note(defects, f"{part.get_content_type()} boundary not found; guessed {_header_text(guess)[:70]!r}")
    quoted = guess.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    head = b'Content-Type: %s; boundary="%s"\n\n' % (part.get_content_type().encode(), quoted)
    reparsed = email.message_from_bytes(head + body, policy=email.policy.compat32)
    _stdlib_walk(reparsed, acc, defects, depth + 1)
    return True


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
_MBOX_FROM = re.compile(rb"From \S{1,300} [^\n]{0,100}\d\d:\d\d[^\n]{0,100}\n")


def parse_message(raw: bytes) -> InboundEmail:
    """Parse raw RFC 822 bytes.  Never raises; problems end up in ``defects``."""
    if isinstance(raw, str):  # tolerate callers handing over text
        raw = raw.encode("utf-8", "surrogateescape")
    raw = bytes(raw or b"")  # no copy when it is bytes already
    defects: list[str] = []
    if not raw or raw.isspace():  # (not raw.strip(), without copying the message)
        _note(defects, "empty message")
    data = raw
    if b"\n" not in raw and b"\r" in raw:  # old Mac line endings
        data = raw.replace(b"\r", b"\n")
    start = 0
    if _MBOX_FROM.match(data):  # envelope line of an mbox export
        start = data.find(b"\n") + 1
    acc = _Parts()
    headers: list[tuple[str, str]] = []
    try:
        entity = _Entity(data, defects, start=start)
        headers = entity.headers
        _walk(entity, acc, defects)
    except MemoryError:
        raise
    except Exception as exc:
        _note(defects, f"parse error: {type(exc).__name__}")
        acc, headers = _stdlib_parts(data, start, defects) or _salvage(data, start, acc, headers)
    return _build(raw, headers, acc, defects)


def _salvage(data: bytes, start: int, acc: _Parts, headers: list) -> tuple[_Parts, list]:
    """Last line of defence: whatever was read before the error."""
    if not (acc.texts or acc.htmls or acc.attachments):
        acc.texts.append(_clean_str(decode_bytes(data[start:], None)))
    return acc, headers


def _build(
    raw: bytes, raw_headers: list[tuple[str, str]], acc: _Parts, defects: list[str]
) -> InboundEmail:
    headers: dict[str, list[str]] = {}
    raw_values: dict[str, list[str]] = {}
    for name, value in raw_headers:
        raw_values.setdefault(name, []).append(value)
        headers.setdefault(name, []).append(decode_header_value(value, defects))

    def first(name: str) -> str | None:
        values = headers.get(name)
        return values[0] if values else None

    addresses = {
        attr: _parse_addresses(raw_values.get(name, []), defects)
        for name, attr in _ADDRESS_HEADERS.items()
    }
    html = sanitize_html("\n".join(acc.htmls))
    text = _join_texts(acc.texts)
    if (not text or text.isspace()) and html:
        text = _text_from_clean_html(html)
    if html and any(a.content_id for a in acc.attachments):
        shown = _cid_references(html)
        for attachment in acc.attachments:
            if attachment.content_id in shown and attachment.content_type.startswith("image/"):
                attachment.is_inline = True
    content_type, params = _content_type((raw_values.get("content-type") or [None])[0], "text/plain", [])
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
        left_out=acc.tally.left_out(),
        content_type=content_type,
        report_type=(params.get("report-type") or "").strip().lower()[:100] or None,
        **addresses,
    )


def _join_texts(texts: list[str]) -> str:
    """Inline text parts of a multipart/mixed, one after the other."""
    parts = [t for t in texts if t.strip()]
    if len(parts) <= 1:
        return parts[0] if parts else (texts[0] if texts else "")
    return "\n".join(t.rstrip("\n") for t in parts) + "\n"
