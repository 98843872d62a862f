"""Reading a message by its parts (pure): the BODYSTRUCTURE parser and its budget, the plan of
what to download under the limit, the note's wording, and the assembled message the normal
parser reads; plus the FETCH pieces the partial download relies on (client_wire)."""
import time
from datetime import date, datetime

import pytest

from portal.imap import bodystructure as bs
from portal.imap.client_wire import (
    FetchResponseError,
    imap_date,
    interpret_fetch,
    merge_fetch_items,
    parse_internaldate,
    search_criteria,
    section_key,
)
from portal.imap.parsing import parse_message

TEXT = b'("text" "plain" ("charset" "utf-8") NIL NIL "8bit" %d 1 NIL NIL NIL NIL)'
HTML = b'("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" %d 1 NIL NIL NIL NIL)'
FILE = b'("application" "%s" ("name" "%s") NIL NIL "base64" %d NIL ("attachment" ("filename" "%s")) NIL NIL)'
IMAGE = b'("image" "png" NIL "<logo@x>" NIL "base64" %d NIL ("inline" NIL) NIL NIL)'
MESSAGE = (b'("message" "rfc822" NIL NIL NIL "7bit" %d ("Mon, 1 Jan 2024 00:00:00 +0000" "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
           b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)')


def multipart(subtype: str, *children: bytes) -> bytes:
    return b"(" + b"".join(children) + b' "%s" ("boundary" "=_x") NIL NIL NIL)' % subtype.encode()


def structure(body: bytes):
    """The BODYSTRUCTURE value as the FETCH tokenizer hands it over."""
    return interpret_fetch([b"1 (UID 7 BODYSTRUCTURE " + body + b")"]).structure


def file_part(subtype: str, name: str, size: int) -> bytes:
    return FILE % (subtype.encode(), name.encode(), size, name.encode())


ALERT_WITH_IMAGE = multipart("mixed", multipart("alternative", TEXT % 300, HTML % 900), file_part("zip", "disk.zip", 43_000_000),
                             file_part("pdf", "small.pdf", 20_000), IMAGE % 5000)


# ------------------------------------------------------------------ parse
def test_parse_reads_sections_types_encodings_and_names():
    root = bs.parse(structure(ALERT_WITH_IMAGE))
    assert (root.type, root.subtype, root.section) == ("multipart", "mixed", "")
    leaves = root.leaves()
    assert [leaf.section for leaf in leaves] == ["1.1", "1.2", "2", "3", "4"]
    assert [f"{leaf.type}/{leaf.subtype}" for leaf in leaves] == ["text/plain", "text/html", "application/zip", "application/pdf", "image/png"]
    assert [leaf.is_text for leaf in leaves] == [True, True, False, False, False]
    assert leaves[1].encoding == "quoted-printable" and leaves[2].size == 43_000_000
    assert leaves[2].filename == "disk.zip" and leaves[2].disposition == "attachment"
    assert leaves[4].disposition == "inline" and leaves[4].filename == ""


def test_a_single_part_message_is_part_1_and_message_rfc822_is_a_leaf():
    assert bs.parse(structure(TEXT % 10)).section == "1"
    root = bs.parse(structure(multipart("mixed", TEXT % 10, MESSAGE % 4000)))
    inner = root.leaves()[1]
    assert (inner.section, inner.type, inner.size, inner.is_text) == ("2", "message", 4000, False)


@pytest.mark.parametrize(
    "params,disposition,expected",
    [
        (b'("name" "plain.pdf")', b"NIL", "plain.pdf"),
        (b"NIL", b'("attachment" ("filename" "=?utf-8?q?R=C3=A9sum=C3=A9.pdf?="))', "Résumé.pdf"),
        (b"NIL", b"(\"attachment\" (\"filename*\" \"utf-8''na%C3%AFve%20plan.pdf\"))", "naïve plan.pdf"),
        (b"NIL", b"(\"attachment\" (\"filename*0*\" \"utf-8''Gr%C3%BC\" \"filename*1\" \"sse.txt\"))", "Grüsse.txt"),
        (b'("name" "from-type.bin")', b'("attachment" ("filename" "from-disposition.bin"))', "from-disposition.bin"),
        (b"NIL", b"NIL", ""),
    ],
)
def test_filenames_as_the_parser_would_read_them(params, disposition, expected):
    body = b'("application" "octet-stream" ' + params + b' NIL NIL "base64" 100 NIL ' + disposition + b" NIL NIL)"
    assert bs.parse(structure(body)).filename == expected


def test_a_named_text_part_is_an_attachment_like_the_parser_says():
    named = b'("text" "plain" ("charset" "utf-8" "name" "log.txt") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)'
    attached = b'("text" "html" NIL NIL NIL "7bit" 10 1 NIL ("attachment" NIL) NIL NIL)'
    assert not bs.parse(structure(named)).is_text and not bs.parse(structure(attached)).is_text


def nested(depth: int) -> bytes:
    body = TEXT % 1
    for _ in range(depth):
        body = multipart("mixed", body)
    return body


@pytest.mark.parametrize(
    "body,message",
    [
        (nested(bs.MAX_DEPTH + 1), "nested deeper"),
        (multipart("mixed", *[TEXT % 1] * bs.MAX_PARTS), "more than 500 parts"),
        (b'("text" "plain" ("charset") NIL NIL "7bit" 1 1)', "name/value pairs"),
        (b'("text" "plain" (' + b'"a" "b" ' * (bs.MAX_PARAMS + 1) + b') NIL NIL "7bit" 1 1)', "more than 64 parameters"),
        (b'("text" "plain" NIL NIL NIL "7bit" "12x" 1)', "is not a number"),
        (b'("text" "plain" NIL NIL NIL "7bit" 99999999999999 1)', "is not a number"),
        (b'("text" "plain" NIL)', "fewer than 7 fields"),
        (b'(("text" "plain" NIL NIL NIL "7bit" 1 1))', "without subtype"),
        (b'("text" ("plain") NIL NIL NIL "7bit" 1 1)', "a list where a string belongs"),
        (b'(NIL "plain" NIL NIL NIL "7bit" 1 1)', "missing or overlong"),
    ],
)
def test_hostile_structures_are_refused_with_a_reason(body, message):
    with pytest.raises(bs.BodyStructureError, match=message):
        bs.parse(structure(body))


def test_a_structure_nested_ten_thousand_deep_is_refused_quickly():
    body = b"(" * 10_000 + TEXT % 1 + b' "mixed")' * 10_000
    started = time.perf_counter()
    with pytest.raises(bs.BodyStructureError):
        bs.parse(structure(body))
    assert time.perf_counter() - started < 2  # a budget, not a benchmark: quadratic work would blow it


# ------------------------------------------------------------------ plan
@pytest.mark.parametrize(
    "body,size,limit,fetch,left",
    [
        # the case: text and the small files come, the 43 MB zip stays
        (ALERT_WITH_IMAGE, 43_040_000, 25 * 2**20, ["1.1", "1.2", "3", "4"], ["2"]),
        # smallest first: two small files fit, the bigger one of the three does not
        (multipart("mixed", TEXT % 100, file_part("a", "a.bin", 6000), file_part("b", "b.bin", 3000), file_part("c", "c.bin", 4000)),
         13_500, 8_000, ["1", "3", "4"], ["2"]),
        # nothing but the text fits
        (multipart("mixed", TEXT % 100, file_part("a", "a.bin", 60_000)), 61_000, 2_000, ["1"], ["2"]),
        # a single part that is a file: only the header comes
        (file_part("pdf", "scan.pdf", 90_000), 90_500, 20_000, [], ["1"]),
    ],
)
def test_plan_takes_the_text_and_what_fits(body, size, limit, fetch, left):
    result = bs.plan(bs.parse(structure(body)), size, limit)
    assert [p.section for p in result.fetch] == fetch
    assert [p.section for p in result.left] == left
    assert result.text_bytes + sum(p.size for p in result.fetch if not p.is_text) <= limit


@pytest.mark.parametrize(
    "body,size,limit,text_bytes",
    [
        (TEXT % 90_000, 90_400, 50_000, 90_400),  # one text part over the limit
        (multipart("mixed", TEXT % 60_000, file_part("a", "a.bin", 10)), 60_500, 50_000, 60_490),  # text + MIME overhead
        (multipart("alternative", TEXT % 30_000, HTML % 30_000), 60_300, 50_000, 60_300),
    ],
)
def test_text_over_the_limit_stays_too_large(body, size, limit, text_bytes):
    with pytest.raises(bs.TextTooLarge) as refused:
        bs.plan(bs.parse(structure(body)), size, limit)
    assert refused.value.text_bytes == text_bytes


@pytest.mark.parametrize(
    "part,expected",
    [
        (bs.Part("2", "application", "zip", {"name": "disk.zip"}, "base64", 41_943_040 + 1_103_764), "disk.zip (about 30.0 MB, application/zip)"),
        (bs.Part("3", "text", "csv", {}, "7bit", 2048, "attachment", {"filename": "a.csv"}), "a.csv (2.0 KB, text/csv)"),
        (bs.Part("4", "image", "png", {}, "quoted-printable", 10), "unnamed part 4 (about 10 bytes, image/png)"),
        (bs.Part("5", "application", "x", {"name": "../../etc/passwd\u202eexe.pdf"}, "binary", 1), "passwdexe.pdf (1 bytes, application/x)"),
    ],
)
def test_describe_names_the_part_and_its_size(part, expected):
    assert bs.describe(part) == expected


def test_plan_notes_and_reason_name_every_left_part():
    result = bs.plan(bs.parse(structure(ALERT_WITH_IMAGE)), 43_040_000, 25 * 2**20)
    assert result.notes() == ["Left on the mail server (over IMAP_MAX_MESSAGE_BYTES): disk.zip (about 30.0 MB, application/zip)"]
    reason = result.reason(43_040_000, 25 * 2**20)
    assert reason.startswith("Message is 43,040,000 bytes, over the limit (IMAP_MAX_MESSAGE_BYTES) of 26,214,400")
    assert reason.endswith("left on the server: disk.zip (about 30.0 MB, application/zip)")


# ------------------------------------------------------------------ assemble
HEADER = (b"From: Zabbix <zabbix@acme.com>\r\nTo: support@helpdesk.test\r\nSubject: Disk full on SRV-01\r\n"
          b"Message-ID: <alert-1@acme.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n"
          b'\tboundary="=_original"\r\nContent-Transfer-Encoding: 7bit\r\nX-Zabbix: yes\r\n\r\n')


def sections_for_alert(text=b"Disk is 99% full.\r\n"):
    return {
        "1.1": (b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n', text),
        "1.2": (b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
                b'<p>Disk is 99% <b>full</b>=2E<img src=3D"cid:logo@x"></p>'),
        "3": (b'Content-Type: application/pdf; name="small.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
              b'Content-Disposition: attachment; filename="small.pdf"\r\n\r\n', b"JVBERi0xLjQK\r\n"),
        "4": (b"Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n"
              b"Content-Disposition: inline\r\n\r\n", b"iVBORw0K\r\n"),
    }


def test_the_assembled_message_parses_like_the_original_minus_what_stayed():
    result = bs.plan(bs.parse(structure(ALERT_WITH_IMAGE)), 43_040_000, 25 * 2**20)
    raw = bs.assemble(result, HEADER, sections_for_alert())
    email = parse_message(raw)
    assert email.subject == "Disk full on SRV-01" and email.message_id == "alert-1@acme.com"
    assert email.headers["x-zabbix"] == ["yes"]
    assert email.text.strip() == "Disk is 99% full."  # the alternative's text, not both texts joined
    assert "<b>full</b>." in email.html  # quoted-printable undone by the parser
    assert [(a.filename, a.payload) for a in email.attachments] == [("small.pdf", b"%PDF-1.4\n"), ("attachment.png", b"\x89PNG\r\n")]
    assert email.attachments[1].content_id == "logo@x" and email.attachments[1].is_inline
    assert email.defects == []
    assert raw.count(b"multipart/mixed") == 1 and b"=_original" not in raw
    assert bs.assemble(result, HEADER, sections_for_alert()) == raw  # same message, same bytes, same content hash


def test_a_boundary_found_in_the_content_is_not_used():
    planted = b"--=_left-on-server_top_0\r\n--=_left-on-server_1_0\r\n"
    result = bs.plan(bs.parse(structure(ALERT_WITH_IMAGE)), 43_040_000, 25 * 2**20)
    email = parse_message(bs.assemble(result, HEADER, sections_for_alert(text=planted)))
    assert email.text.replace("\n", "\r\n") == planted.decode() and len(email.attachments) == 2


def test_with_nothing_downloadable_the_header_alone_is_a_message():
    result = bs.plan(bs.parse(structure(file_part("pdf", "scan.pdf", 90_000))), 90_500, 20_000)
    header = (b"From: scanner@acme.com\r\nSubject: Scan\r\nContent-Type: application/pdf;\r\n name=scan.pdf\r\n"
              b"Content-Disposition: attachment;\r\n filename=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    email = parse_message(bs.assemble(result, header, {}))
    assert email.subject == "Scan" and email.text == "" and email.attachments == [] and email.defects == []


@pytest.mark.parametrize(
    "header,kept",
    [
        (b"Subject: a\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nX-A: 1\r\n\r\n", b"Subject: a\r\nX-A: 1\r\n"),
        (b"CONTENT-TRANSFER-ENCODING: base64\nX-B:\n\tfolded\n", b"X-B:\r\n\tfolded\r\n"),
        (b"Subject: no blank line", b"Subject: no blank line\r\n"),
    ],
)
def test_the_header_loses_only_the_fields_about_its_body(header, kept):
    assert bs.header_without_body_fields(header) == kept


def test_bodystructure_is_pure():
    from tests.unit.test_decide import test_pure_modules_import_no_framework_database_or_network as check_pure

    check_pure("bodystructure")


# ------------------------------------------------------------------ client_wire
@pytest.mark.parametrize(
    "value,expected",
    [
        (b"17-Jul-1996 02:44:25 -0700", datetime(1996, 7, 17, 9, 44, 25)),
        (b" 1-Jan-2024 00:30:00 +0100", datetime(2023, 12, 31, 23, 30)),
        ("05-dec-2026 12:00:00 +0000", datetime(2026, 12, 5, 12, 0)),
    ],
)
def test_internaldate_becomes_naive_utc(value, expected):
    assert parse_internaldate(value) == expected


@pytest.mark.parametrize("value", [b"yesterday", b"31-Feb-2024 00:00:00 +0000", b"1-Foo-2024 00:00:00 +0000", b"1-Jan-2024 00:00:00"])
def test_a_bad_internaldate_is_a_fetch_response_error(value):
    with pytest.raises(FetchResponseError):
        parse_internaldate(value)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"unseen_only": False}, ["ALL"]),
        ({"unseen_only": True, "above_uid": 41}, ["UNSEEN", "UID", "42:*"]),
        ({"unseen_only": False, "since": date(2026, 3, 5)}, ["SINCE", "5-Mar-2026"]),
        ({"unseen_only": True, "before": date(2025, 12, 31)}, ["UNSEEN", "BEFORE", "31-Dec-2025"]),
        ({"unseen_only": False, "below_uid": 10}, ["UID", "1:9"]),
        ({"unseen_only": True, "below_uid": 1}, None),
        ({"unseen_only": False, "above_uid": 5, "since": date(2026, 1, 1)}, ["UID", "6:*", "SINCE", "1-Jan-2026"]),
    ],
)
def test_search_criteria(kwargs, expected):
    assert search_criteria(**kwargs) == expected


def test_imap_dates_use_english_months_whatever_the_locale():
    assert [imap_date(date(2026, m, 1)).split("-")[1] for m in (1, 6, 12)] == ["Jan", "Jun", "Dec"]


def test_sections_and_dates_come_back_under_the_key_they_were_asked_by():
    data = [
        (b"3 (UID 9 BODY[2.MIME] {5}", b"MIME\n"),
        (b" BODY[2] {4}", b"BODY"),
        b" INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")",
        b'4 (UID 9 FLAGS (\\Seen) BODY[HEADER] "Subject: x")',
        b"5 (UID 10 BODY[1] NIL)",
    ]
    found = merge_fetch_items(data, {9})
    assert set(found) == {9}
    item = found[9]
    assert item.sections == {section_key("2.mime"): b"MIME\n", "2": b"BODY", "HEADER": b"Subject: x"}
    assert item.flags == ("\\Seen",) and item.internaldate == datetime(1996, 7, 17, 9, 44, 25)
    assert merge_fetch_items(data, {10})[10].sections == {"1": None}


@pytest.mark.parametrize("response", [b"1 (UID 1 BODYSTRUCTURE NIL)", b"1 (UID 1 BODY[1] (\"a\"))", b"1 (UID 1 BODY[1] atom)"])
def test_malformed_structures_and_sections_are_fetch_errors(response):
    with pytest.raises(FetchResponseError):
        interpret_fetch([response])
