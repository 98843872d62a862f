"""Differential test: portal.imap.parsing (hand-written, kept for speed) against
the stdlib ``email`` parser (``policy.default``) over every message of the
test corpora.

Subject, From/To/Cc, text, HTML and attachment names and bytes must be equal,
except for the differences listed in ``ALLOWED_DIFFERENCES`` (mirrored in
docs/architecture.md).  Each one names the field and the input it applies to;
the comparison applies it only there, and a listed difference that no corpus
message needs fails the test (so the list cannot grow stale or blanket).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import html as html_lib
import mimetypes
import re
import sys
from collections import Counter
from pathlib import Path
from email.utils import getaddresses
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.imap import parsing
from portal.imap.parsing import (
    InboundEmail,
    decode_bytes,
    decode_header_value,
    html_to_text,
    parse_message,
    safe_filename,
    sanitize_html,
)
from tests.support.reference_parser import (
    ReferenceAttachment,
    ReferenceEmail,
    TextPart,
    message_blocks,
    raw_header_values,
    reference_parse,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from corpus import support_corpus  # noqa: E402

CPYTHON_SAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "cpython_email").glob("msg_*.txt"))

# field -> (which input, why ours is the intended behaviour)
ALLOWED_DIFFERENCES = {
    "html-sanitised": (
        "html, every message",
        "HTML is shown in the portal: ours is nh3-sanitised, so it is compared with "
        "sanitize_html(stdlib HTML)",
    ),
    "html-only-text": (
        "text, messages with HTML and no (or a blank) text/plain body",
        "ours derives readable text from the sanitised HTML: compared with "
        "html_to_text(sanitize_html(stdlib HTML))",
    ),
    "filename-safe": (
        "attachment names, every attachment",
        "names are made safe to store and download (no paths, controls, reserved names): "
        "compared with safe_filename(stdlib name, 'attachment' + extension of the type)",
    ),
    "message-attachment-name": (
        "attachment names, message/rfc822 parts",
        "an attached message is named after its subject (\"<subject>.eml\"); the stdlib has "
        "no name for it",
    ),
    "message-attachment-bytes": (
        "attachment bytes, message/rfc822 parts",
        "ours keeps the attached message's own bytes; the stdlib keeps a parsed message: "
        "our bytes, parsed by the stdlib, must give the same subject, addresses, bodies "
        "and attachments",
    ),
    "newlines": (
        "text and HTML, every body",
        "line endings become \\n, a leading BOM is dropped, NUL and lone surrogates are "
        "removed (PostgreSQL text cannot store them)",
    ),
    "charset-fallback": (
        "text and HTML, bodies the declared charset cannot decode (or with an unknown "
        "charset, or undeclared 8-bit bytes)",
        "the stdlib replaces bad bytes with U+FFFD; ours tries UTF-8, then windows-1252 "
        "(lossless), via decode_bytes",
    ),
    "charset-utf8-first": (
        "text and HTML labelled us-ascii, iso-8859-1 or windows-1252 whose bytes are valid UTF-8",
        "mislabelled UTF-8 is common under these labels, and valid multi-byte UTF-8 "
        "practically never arises from latin-1 text",
    ),
    "charset-superset": (
        "text and HTML labelled gb2312/gbk, shift_jis, euc-kr, tis-620, big5",
        "read as the superset encoding senders really use (cp936/gb18030, cp932, cp949, "
        "cp874, big5hkscs), as browsers do",
    ),
    "html-meta-charset": (
        "HTML parts without a MIME charset",
        "the charset of a <meta charset> tag in the first 4 KB is used, as browsers do",
    ),
    "boundary-guessed": (
        "text, HTML and attachments of a multipart whose boundary parameter is missing or "
        "matches no line",
        "the stdlib reads the whole body as one text; ours splits it at the first \"--xxx\" "
        "line (noted in defects): compared with the stdlib's parse under that boundary",
    ),
    "message-part-bytes": (
        "attachment bytes of message/* parts other than rfc822 (delivery-status, "
        "external-body)",
        "the stdlib keeps parsed header blocks; ours keeps the bytes: parsed by the stdlib "
        "they must give the same blocks",
    ),
    "address-comment-name": (
        "display names of addresses written \"addr (Name)\"",
        "the comment is the only name given, and email.utils.getaddresses reads it so; "
        "policy.default drops it",
    ),
    "address-stdlib-raises": (
        "From/To/Cc headers that policy.default's header parser raises on (IndexError "
        "inside email._header_value_parser, e.g. on 'From: <<<>>>,,,\"')",
        "the reference has no answer there: compared with email.utils.getaddresses, the "
        "stdlib's older address parser, which ours uses for everything but simple lists",
    ),
    "address-null": (
        "addresses written \"<>\" (the null sender)",
        "ours gives the empty address; policy.default renders its addr_spec as '<>'",
    ),
    "address-empty": (
        "address list entries with neither a name nor an addr-spec (e.g. 'To: @@@')",
        "nothing to show or reply to: ours drops them; policy.default keeps ('', '')",
    ),
    "header-lenient-decoding": (
        "subject, where policy.default leaves U+FFFD or an undecoded encoded word: raw 8-bit "
        "headers, encoded words in unknown charsets or with broken base64",
        "ours decodes them like bodies (UTF-8, else windows-1252; base64 padding repaired): "
        "compared with decode_header_value(raw header)",
    ),
    "header-empty-name": (
        "a header-block line that starts with ':' (a field without a name)",
        "not a header field: ours starts the body there (noted as a missing header/body "
        "separator); the stdlib takes it as a header with an empty name: compared with the "
        "stdlib's parse of the message with a blank line before that line",
    ),
    "subject-folding": (
        "subject, folded Subject headers",
        "the folding line break and the indentation after it become one space",
    ),
}

COVERED: Counter[str] = Counter()  # which allowed differences the corpora needed


# ---------------------------------------------------------------------------
# Expected values: the stdlib's, with the allowed differences applied
# ---------------------------------------------------------------------------

_LATIN_LABELS = {"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252"}
_SUPERSET_LABELS = {
    "gb2312", "gbk", "x-gbk", "shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji",
    "ks_c_5601-1987", "euc-kr", "tis-620", "iso-8859-11", "big5",
}  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _strict(data: bytes, charset: str | None) -> str | None:
    try:
        return data.decode(charset or "us-ascii")
    except (LookupError, UnicodeDecodeError, ValueError, TypeError):
        return None


def _expected_body(part: TextPart) -> str:
    charset = part.charset
    if charset is None and part.content_type == "text/html":
        match = _META_CHARSET.search(part.data, 0, 4096)
        if match:
            COVERED["html-meta-charset"] += 1
            charset = match.group(1).decode("ascii")
    label = (charset or "us-ascii").strip().strip("\"'").lower()
    text = _strict(part.data, charset)
    if text is None:
        COVERED["charset-fallback"] += 1
        text = decode_bytes(part.data, charset)
    elif label in _LATIN_LABELS and not part.data.isascii() and _strict(part.data, "utf-8") is not None:
        COVERED["charset-utf8-first"] += 1
        text = part.data.decode("utf-8")
    elif label in _SUPERSET_LABELS and not part.data.isascii():
        COVERED["charset-superset"] += 1
        text = decode_bytes(part.data, charset)
    return _normalise_newlines(text)


def _normalise_newlines(text: str) -> str:
    clean = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff").replace("\x00", "")
    clean = re.sub("[\ud800-\udfff]", "", clean)
    if clean != text:
        COVERED["newlines"] += 1
    return clean


def _joined_text(texts: list[str]) -> str:
    """Several inline text parts (multipart/mixed) one after the other."""
    parts = [t for t in texts if t.strip()]
    if len(parts) <= 1:
        return parts[0] if parts else (texts[0] if texts else "")
    return "\n".join(t.rstrip("\n") for t in parts) + "\n"


def _attachment_fallback(content_type: str) -> str:
    return "attachment" + (mimetypes.guess_extension(content_type, strict=False) or "")


# ---------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------


def differences(raw: bytes) -> list[str]:
    """What parse_message(raw) gets wrong against the reference."""
    ours = parse_message(raw)
    ref = reference_parse(_blank_line_before_nameless_field(raw))
    COVERED["boundary-guessed"] += len(ref.guessed_boundaries)
    found = []
    found += _compare_subject(raw, ours, ref)
    found += _compare_addresses(ours, ref)
    found += _compare_bodies(ours, ref)
    found += _compare_attachments(ours, ref)
    return found


def _blank_line_before_nameless_field(raw: bytes) -> bytes:
    match = re.match(rb"(?:[!-9;-~]+[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*)*(?=:)", raw)
    if match is None:
        return raw
    COVERED["header-empty-name"] += 1
    return raw[: match.end()] + b"\r\n" + raw[match.end() :]


_UNDECODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?]*\?=")


def _compare_subject(raw: bytes, ours: InboundEmail, ref: ReferenceEmail) -> list[str]:
    expected = ref.subject
    if "\ufffd" in expected or _UNDECODED_WORD.search(expected):
        COVERED["header-lenient-decoding"] += 1
        value = raw_header_values(ref.message, "subject")[0]  # undecodable bytes as surrogates
        expected = decode_header_value(decode_bytes(value.encode("ascii", "surrogateescape"), None))
    if ours.subject != expected and re.search(rb"(?im)^subject:[^\n]*\n[ \t]", raw):
        COVERED["subject-folding"] += 1
        return [] if _collapse(ours.subject) == _collapse(expected) else [f"subject {ours.subject!r} != {expected!r}"]
    return [] if ours.subject == expected else [f"subject {ours.subject!r} != {expected!r}"]


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _compare_addresses(ours: InboundEmail, ref: ReferenceEmail) -> list[str]:
    found = []
    for name, values in (("from", ours.from_addresses), ("to", ours.to), ("cc", ours.cc)):
        got = [(a.name, a.address) for a in values]
        expected = ref.addresses[name]
        if expected is None:
            COVERED["address-stdlib-raises"] += 1
            expected = _getaddresses(raw_header_values(ref.message, name))
        expected = [_comment_name(pair, ours.headers.get(name, [])) for pair in expected]
        expected = [_null_address(pair) for pair in expected]
        if ("", "") in expected:
            COVERED["address-empty"] += 1
            expected = [pair for pair in expected if pair != ("", "")]
        if got != expected:
            found.append(f"{name} {got!r} != {expected!r}")
    return found


def _getaddresses(values: list[str]) -> list[tuple[str, str]]:
    pairs = getaddresses([" ".join(value.split()) for value in values])
    return [(decode_header_value(name), address) for name, address in pairs if name or address]


def _null_address(pair: tuple[str, str]) -> tuple[str, str]:
    if pair[1] == "<>":
        COVERED["address-null"] += 1
        return pair[0], ""
    return pair


def _comment_name(pair: tuple[str, str], values: list[str]) -> tuple[str, str]:
    name, address = pair
    if name or not address:
        return pair
    for value in values:
        match = re.search(re.escape(address) + r"\s*\(([^()]*)\)", value)
        if match and match.group(1).strip():
            COVERED["address-comment-name"] += 1
            return " ".join(match.group(1).split()), address
    return pair


def _compare_bodies(ours: InboundEmail, ref: ReferenceEmail) -> list[str]:
    found = []
    html = sanitize_html("\n".join(_expected_body(p) for p in ref.htmls))
    COVERED["html-sanitised"] += bool(html)
    if ours.html != html:
        found.append(f"html {ours.html[:200]!r} != {html[:200]!r}")
    text = _joined_text([_expected_body(p) for p in ref.texts])
    if (not text or text.isspace()) and html:
        COVERED["html-only-text"] += 1
        text = html_to_text(html)
    if ours.text != text:
        found.append(f"text {ours.text[:200]!r} != {text[:200]!r}")
    return found


def _compare_attachments(ours: InboundEmail, ref: ReferenceEmail) -> list[str]:
    if len(ours.attachments) != len(ref.attachments):
        got = [a.filename for a in ours.attachments]
        return [f"attachments {got!r} != {[a.name or a.content_type for a in ref.attachments]!r}"]
    found = []
    for got, expected in zip(ours.attachments, ref.attachments):
        if expected.message is not None:
            found += _compare_attached_message(got.filename, got.payload, expected.message)
            continue
        if expected.blocks is not None:
            found += _compare_message_part(got.payload, expected)
            continue
        name = safe_filename(expected.name, _attachment_fallback(expected.content_type))
        COVERED["filename-safe"] += 1
        if got.filename != name:
            found.append(f"attachment name {got.filename!r} != {name!r}")
        if got.payload != expected.payload:
            found.append(f"attachment {name!r} bytes differ ({len(got.payload)} != {len(expected.payload)})")
    return found


def _compare_message_part(payload: bytes, expected: ReferenceAttachment) -> list[str]:
    COVERED["message-part-bytes"] += 1
    reparsed = email.message_from_bytes(
        b"Content-Type: %s\r\n\r\n" % expected.content_type.encode() + payload, policy=email.policy.default
    )
    blocks = [message_blocks(block) for block in reparsed.get_payload()] if reparsed.is_multipart() else None
    return [] if blocks == expected.blocks else [f"{expected.content_type} part differs"]


def _compare_attached_message(filename: str, payload: bytes, expected: ReferenceEmail) -> list[str]:
    COVERED["message-attachment-name"] += 1
    COVERED["message-attachment-bytes"] += 1
    found = []
    name = safe_filename(f"{expected.subject[:150]}.eml" if expected.subject.strip() else "message.eml")
    if filename != name:
        found.append(f"attached message name {filename!r} != {name!r}")
    reparsed = reference_parse(payload)
    for attr in ("subject", "addresses", "texts", "htmls"):
        if getattr(reparsed, attr) != getattr(expected, attr):
            found.append(f"attached message {attr} differs")
    if [(a.name, a.payload) for a in reparsed.attachments] != [(a.name, a.payload) for a in expected.attachments]:
        found.append("attached message attachments differ")
    return found


# ---------------------------------------------------------------------------
# Generated messages: structurally valid MIME trees
# ---------------------------------------------------------------------------

# No '-' (boundary lines), '=' and '?' (encoded-word syntax in raw headers) or controls.
_TEXT_ALPHABET = "abcdefgxyz ABCXYZ 0123456789.,;:!()'/\\äöüßÄÖÜéèçñ€“”–…ЖжЯя日本語のテキスト🙂"
_CHARSETS = ("utf-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "iso-2022-jp", "gb2312", "us-ascii")
_ENCODINGS = ("7bit", "8bit", "quoted-printable", "base64")
_ATTACHMENT_TYPES = ("application/pdf", "image/png", "application/octet-stream", "text/csv", "text/plain")


def _encodable(text: str, charset: str) -> str:
    return text.encode(charset, "ignore").decode(charset)


def _transfer_encode(data: bytes, cte: str) -> bytes:
    if cte == "base64":
        return base64.encodebytes(data)
    if cte == "quoted-printable":
        return binascii.b2a_qp(data)
    return data


@st.composite
def _texts(draw, min_size=0) -> str:
    lines = draw(st.lists(st.text(_TEXT_ALPHABET, max_size=60), min_size=min_size, max_size=5))
    return "\n".join(lines)


@st.composite
def _encoded_word(draw, text: str) -> str:
    charset = draw(st.sampled_from(("utf-8", "iso-8859-1", "koi8-r")))
    text = _encodable(text, charset)
    data = text.encode(charset)
    if draw(st.booleans()):
        return f"=?{charset}?b?{base64.b64encode(data).decode()}?="
    quoted = binascii.b2a_qp(data, header=True).replace(b"=\n", b"").replace(b"?", b"=3F")
    return f"=?{charset}?q?{quoted.decode()}?="


@st.composite
def _header_text(draw) -> str:
    """A header value: plain ASCII, or RFC 2047 encoded words."""
    text = draw(st.text(_TEXT_ALPHABET, max_size=40)).strip()
    if text.isascii() and draw(st.booleans()):
        return " ".join(text.split())
    words = [draw(_encoded_word(word)) for word in text.split()]
    return " ".join(word for word in words if "??" not in word)


@st.composite
def _addresses(draw) -> str:
    local = st.text("abcxyz0123._+", min_size=1, max_size=10).filter(
        lambda s: not (s.startswith(".") or s.endswith(".") or ".." in s)
    )
    out = []
    for _ in range(draw(st.integers(1, 3))):
        address = f"{draw(local)}@{draw(st.sampled_from(('example.com', 'xn--mller-kva.de', 'mail.example.org')))}"
        form = draw(st.sampled_from(("bare", "angle", "name", "quoted", "encoded")))
        name = " ".join(draw(st.text("abcdefXYZ ", max_size=12)).split())
        if form == "bare" or (not name and form != "angle"):
            out.append(address)
        elif form == "angle":
            out.append(f"<{address}>")
        elif form == "name":
            out.append(f"{name} <{address}>")
        elif form == "quoted":
            out.append(f'"{name}, Jr." <{address}>')
        else:
            out.append(f"{draw(_encoded_word(name + ' Müller'))} <{address}>")
    return ", ".join(out)


@st.composite
def _body_part(draw) -> bytes:
    ctype = draw(st.sampled_from(("text/plain", "text/html")))
    charset = draw(st.sampled_from(_CHARSETS))
    cte = draw(st.sampled_from(_ENCODINGS))
    text = _encodable(draw(_texts(min_size=1)), charset)
    if charset in ("us-ascii", "iso-2022-jp") or cte == "7bit":
        text = _encodable(text, "ascii") if charset != "iso-2022-jp" else text
        if cte == "8bit" and charset != "iso-2022-jp":
            cte = "7bit"
    if ctype == "text/html":
        text = "".join(f"<p>{html_lib.escape(line)}</p>\n" for line in text.split("\n"))
    data = text.replace("\n", "\r\n").encode(charset)
    if cte in ("7bit", "8bit") and not data.isascii() and charset == "iso-2022-jp":
        cte = "7bit"
    head = f"Content-Type: {ctype}; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n"
    return head.encode() + b"\r\n" + _transfer_encode(data, cte)


@st.composite
def _filename_params(draw) -> str:
    stem = draw(st.text("abcXYZ019 _.äöü€日本", min_size=1, max_size=20))
    name = f"{stem}.{draw(st.sampled_from(('pdf', 'png', 'txt', 'tar.gz')))}"
    form = draw(st.sampled_from(("plain", "rfc2231", "rfc2231-split", "rfc2047", "name-only")))
    if form == "plain" or (form != "name-only" and name.isascii() and form == "rfc2047"):
        return f'; filename="{_encodable(name, "ascii") or "x.bin"}"'
    if form == "name-only":
        return ""
    if form == "rfc2047":
        return f'; filename="{draw(_encoded_word(name))}"'
    encoded = quote(name.encode("utf-8"), safe="")
    if form == "rfc2231":
        return f"; filename*=utf-8''{encoded}"
    middle = len(encoded) // 2
    while "%" in encoded[middle - 2 : middle]:
        middle += 1
    return f"; filename*0*=utf-8''{encoded[:middle]}; filename*1*={encoded[middle:] or '%41'}"


@st.composite
def _attachment_part(draw) -> bytes:
    ctype = draw(st.sampled_from(_ATTACHMENT_TYPES))
    payload = draw(st.binary(max_size=300))
    params = draw(_filename_params())
    name = "" if params else f'; name="{draw(st.sampled_from(("scan.pdf", "a b.png", "x")))}"'
    disposition = draw(st.sampled_from(("attachment", "inline")))
    if not params and ctype.startswith("text/"):
        disposition = "attachment"
    head = (
        f"Content-Type: {ctype}{name}\r\nContent-Disposition: {disposition}{params}\r\n"
        "Content-Transfer-Encoding: base64\r\n"
    )
    return head.encode() + b"\r\n" + base64.encodebytes(payload)


_boundaries = iter(range(10**9))


@st.composite
def _multipart(draw, children) -> bytes:
    subtype = draw(st.sampled_from(("mixed", "alternative", "related")))
    boundary = f"=_{next(_boundaries)}.{draw(st.sampled_from(('b', 'x y', 'Part_7')))}"
    parts = draw(st.lists(children, min_size=1, max_size=3))
    preamble = draw(st.sampled_from((b"", b"This is a multi-part message in MIME format.\r\n")))
    body = preamble + b"".join(b"--%s\r\n%s\r\n" % (boundary.encode(), part) for part in parts)
    body += b"--%s--\r\n" % boundary.encode()
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode() + body


@st.composite
def mime_messages(draw) -> bytes:
    tree = st.recursive(
        st.one_of(_body_part(), _attachment_part()), lambda children: _multipart(children), max_leaves=6
    )
    headers = [
        f"From: {draw(_addresses())}",
        f"To: {draw(_addresses())}",
        f"Subject: {draw(_header_text())}",
        "MIME-Version: 1.0",
    ]
    if draw(st.booleans()):
        headers.append(f"Cc: {draw(_addresses())}")
    raw = "\r\n".join(headers).encode() + b"\r\n" + draw(tree)
    if draw(st.booleans()):  # as some stores hand them out
        raw = raw.replace(b"\r\n", b"\n")
    return raw


# ---------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------


def _parametrized(test_function) -> list[tuple]:
    """The argument tuples of a test's @pytest.mark.parametrize."""
    rows = []
    for mark in getattr(test_function, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = mark.args[0]
        single = isinstance(names, str) and "," not in names
        rows += [(row,) if single else tuple(getattr(row, "values", row)) for row in mark.args[1]]
    return rows


def hostile_messages() -> list[tuple[str, bytes]]:
    """The malformed and edge-case messages of test_parsing.py, built by that
    module's own helpers."""
    from tests.unit import test_parsing as tp

    builders = {
        "test_malformed_inputs_do_not_raise": lambda raw: raw,
        "test_subject_decoding": lambda raw, _: tp.msg(b"Subject: " + raw, body=b"x"),
        "test_body_decoded_in_declared_charset": lambda ctype, cte, body, _: tp.text_mail(body, ctype, cte),
        "test_charset_fallback": lambda ctype, body, *_: tp.text_mail(body, ctype),
        "test_date_is_utc": lambda raw, _: tp.msg(b"Date: " + raw, body=b"x"),
    }
    messages = [
        (f"{name}[{i}]", build(*row))
        for name, build in builders.items()
        for i, row in enumerate(_parametrized(getattr(tp, name)))
    ]
    alternative = tp.ALTERNATIVE
    truncated = alternative[: alternative.index(b"--alt-1\r\nContent-Type: text/html") + 60]
    messages += [("ALTERNATIVE", alternative), ("ALTERNATIVE truncated", truncated)]
    messages.append(("big attachment, 4 levels", tp._big_attachment_mail(bytes(range(256)) * 64, 4)))
    messages.append(("FRAGMENTS joined", b"".join(tp.FRAGMENTS)))
    return messages


def bench_messages() -> list[tuple[str, bytes]]:
    mails = support_corpus(300, seed=7, big_attachment=False)
    return [(f"bench[{i}]", mail.raw) for i, mail in enumerate(mails)]


def cpython_messages() -> list[tuple[str, bytes]]:
    return [(path.name, path.read_bytes()) for path in CPYTHON_SAMPLES]


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def _differences_or_error(raw: bytes) -> list[str]:
    try:
        return differences(raw)
    except Exception as exc:  # one message's crash must not hide the others' results
        return [f"comparison raised {exc!r}"]


def _nested(levels: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    for i in range(levels):
        inner = b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n%s\r\n--b%d--\r\n" % (i, i, inner, i)
    return b"Subject: nested\r\n" + inner


def example_messages() -> list[tuple[str, bytes]]:
    """Cases the other corpora lack, and regressions found by this test."""
    meta_html = "<html><head><meta charset=\"koi8-r\"></head><p>Привет</p></html>".encode("koi8-r")
    return [
        ("html charset from <meta>", b"Content-Type: text/html\r\n\r\n" + meta_html),
        ("nested 30 levels", _nested(30)),
        ("nested 100 levels (past the depth limit)", _nested(100)),
        # regression: a repeated RFC 2231 section 0 was joined into the name
        (
            "RFC 2231 section given twice",
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
            b"filename*0=\"a\"; filename*=\"b\"; filename*1=\"c.pdf\"\r\n\r\nx",
        ),
    ]


CORPORA = {
    "cpython": cpython_messages,
    "bench": bench_messages,
    "hostile": hostile_messages,
    "examples": example_messages,
}


@pytest.fixture(scope="module")
def compared() -> dict[str, tuple[dict[str, list[str]], Counter]]:
    """corpus -> (message -> differences found, allowed differences used)."""
    results = {}
    for corpus, messages in CORPORA.items():
        COVERED.clear()
        failures = {name: found for name, raw in messages() if (found := _differences_or_error(raw))}
        results[corpus] = failures, Counter(COVERED)
    return results


def test_cpython_email_samples_are_all_there():
    assert len(CPYTHON_SAMPLES) == 47, "tests/data/cpython_email/ is incomplete"


@pytest.mark.parametrize("corpus", CORPORA)
def test_same_as_stdlib(compared, corpus):
    failures, _ = compared[corpus]
    assert not failures, "\n".join(f"{name}: {found}" for name, found in failures.items())


def test_every_allowed_difference_is_needed(compared):
    # An entry that no corpus message needs is stale, or broader than the input it names.
    used = set().union(*(covered for _, covered in compared.values()))
    unused = sorted(set(ALLOWED_DIFFERENCES) - used)
    assert not unused, f"allowed differences no corpus message needs: {unused}"


@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mime_messages())
def test_same_as_stdlib_on_generated_messages(raw):
    assert differences(raw) == []


# ---------------------------------------------------------------------------
# The stdlib fallback
# ---------------------------------------------------------------------------


@pytest.fixture
def fast_walk_fails(monkeypatch):
    """Every message takes the fallback, as one the fast parser fails on would."""

    def fail(*args, **kwargs):
        raise RuntimeError("fast parser failed")

    monkeypatch.setattr(parsing, "_walk", fail)


# Not "hostile": on two junk inputs there (an empty boundary parameter, a header
# line without a name) the fallback reads the structure as the stdlib does.
@pytest.mark.parametrize("corpus", ["cpython", "bench", "examples"])
def test_fallback_gives_the_same_as_the_reference(fast_walk_fails, corpus):
    failures = {}
    for name, raw in CORPORA[corpus]():
        email = parse_message(raw)
        assert "parse error: RuntimeError" in email.defects
        assert "parsed by the stdlib email parser (fallback)" in email.defects
        if found := differences(raw):
            failures[name] = found
    assert not failures, "\n".join(f"{name}: {found}" for name, found in failures.items())


def test_fallback_on_hostile_messages_never_raises(fast_walk_fails):
    for name, raw in hostile_messages():
        email = parse_message(raw)
        assert "parse error: RuntimeError" in email.defects, name
        assert "\x00" not in email.text


def test_fallback_is_bounded_by_size(fast_walk_fails):
    raw = b"Subject: big\r\nContent-Type: text/plain\r\n\r\n" + b"x" * (parsing._FALLBACK_MAX_BYTES + 1)
    email = parse_message(raw)
    assert "stdlib fallback skipped: message too large" in email.defects
    assert email.text.endswith("x" * (parsing._FALLBACK_MAX_BYTES + 1))  # salvaged as text


def test_fallback_is_bounded_by_nesting(fast_walk_fails):
    # 1,000 levels would make the stdlib parser hit the recursion limit
    email = parse_message(_nested(1_000))
    assert "stdlib fallback skipped: too many multiparts" in email.defects
    within = parse_message(_nested(100))
    assert "MIME nesting too deep; inner parts dropped" in within.defects
    assert "parsed by the stdlib email parser (fallback)" in within.defects


def test_normal_mail_does_not_take_the_fallback():
    for name, raw in bench_messages()[:50]:
        assert not any("fallback" in defect for defect in parse_message(raw).defects), name
