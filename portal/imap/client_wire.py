"""What goes over the wire, without the wire: UID sets and batches, and the
parsers for FETCH, SEARCH and LIST responses as imaplib hands them over.

Pure: no sockets.  The FETCH parser is on the hot path (every message passes
through it); its fast paths look only at the short text around a literal,
never at a message body, and hand the literal on without copying it.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Iterator, Mapping

from imap_tools.imap_utf7 import utf7_decode

log = logging.getLogger(__name__)


# What the session hands back.
@dataclass
class FolderState:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass
class FetchedMessage:
    uid: int
    flags: tuple[str, ...]
    size: int  # RFC822.SIZE as the server reports it (len(raw) if it sent none)
    raw: bytes = field(repr=False)


def folder_state(untagged: Mapping, data: list) -> FolderState | None:
    """SELECT's answer (untagged responses, and the EXISTS count in ``data``) ->
    FolderState; None when the server sent no UIDVALIDITY."""
    def last_number(key: str) -> int | None:
        try:
            return int(untagged[key][-1])
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    uidvalidity = last_number("UIDVALIDITY")
    if uidvalidity is None:
        return None
    try:
        exists = int(data[-1])
    except (IndexError, TypeError, ValueError):
        exists = 0
    return FolderState(uidvalidity=uidvalidity, uidnext=last_number("UIDNEXT"), exists=exists)


@dataclass
class MessageInfo:
    uid: int
    flags: tuple[str, ...]
    size: int  # RFC822.SIZE, the real size


# ------------------------------------------------------------------ UID sets
def compress_uids(uids: Iterable[int]) -> str:
    """Sorted, de-duplicated UID set: [1,2,3,5,7,8] -> '1:3,5,7:8'."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def clean_uids(uids: Iterable[int]) -> list[int]:
    result = set()
    for uid in uids:
        value = int(uid)
        if value <= 0:
            raise ValueError(f"invalid UID {uid!r}")
        result.add(value)
    return sorted(result)


def chunks(items: list, size: int) -> Iterator[list]:
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    for i in range(0, len(items), size):
        yield items[i:i + size]


def body_batches(ordered: list[int], chunk: int, sizes: Mapping[int, int] | None,
                 max_chunk_bytes: int) -> Iterator[list[int]]:
    """UIDs in batches of at most ``chunk``, and (when sizes are known) at most
    ``max_chunk_bytes``; a message larger than that travels alone."""
    if chunk < 1:
        raise ValueError("chunk size must be >= 1")
    if not sizes:
        yield from chunks(ordered, chunk)
        return
    batch: list[int] = []
    total = 0
    for uid in ordered:
        size = int(sizes.get(uid, 0))
        if batch and (len(batch) >= chunk or total + size > max_chunk_bytes):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


# -------------------------------------------------------------------- FETCH
class FetchResponseError(ValueError):
    """A FETCH response that does not parse."""


_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\Z")
_TOKEN = re.compile(
    rb"[ \t]*(?:"
    rb"(?P<open>\()"
    rb"|(?P<close>\))"
    rb'|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    rb"|(?P<atom>[^\s()\"{\[\]]+(?:\[[^\]]*\](?:<[0-9.]+>)?)?)"
    rb")")
_QUOTED_ESCAPE = re.compile(rb"\\(.)")
_OPEN, _CLOSE = object(), object()

# Fast paths for the usual shape (Dovecot answers in the order asked); anything
# else goes through the general tokenizer.
_FAST_BODY = re.compile(
    rb"\d+ \(UID (\d+) FLAGS \(([^()\"{}]*)\) RFC822\.SIZE (\d+) BODY\[\] \{(\d+)\}\Z")
_FAST_INFO = re.compile(
    rb"\d+ \(UID (\d+) FLAGS \(([^()\"{}]*)\) RFC822\.SIZE (\d+)\)\Z")


def _tokenize(segment: bytes, literal: bytes | None, out: list) -> None:
    """Tokens of one text segment; a segment that came with a literal ends in {N}."""
    if literal is not None:
        m = _LITERAL_AT_END.search(segment)
        if not m:
            raise FetchResponseError("literal without {N} marker")
        if int(m.group(1)) != len(literal):
            raise FetchResponseError(f"literal announced {m.group(1).decode()} bytes, got {len(literal)}")
        segment = segment[:m.start()]
    pos, end = 0, len(segment)
    while pos < end:
        m = _TOKEN.match(segment, pos)
        if not m or m.end() == pos:
            if segment[pos:].strip() == b"":
                break
            raise FetchResponseError(f"cannot parse {segment[pos:pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "open":
            out.append(_OPEN)
        elif kind == "close":
            out.append(_CLOSE)
        elif kind == "quoted":
            out.append(_QUOTED_ESCAPE.sub(rb"\1", m.group("quoted")))
        else:
            atom = m.group("atom").decode("ascii", "replace")
            out.append(None if atom.upper() == "NIL" else atom)
    if literal is not None:
        out.append(literal)


def _build(tokens: list) -> list:
    root: list = []
    stack = [root]
    for tok in tokens:
        if tok is _OPEN:
            new: list = []
            stack[-1].append(new)
            stack.append(new)
        elif tok is _CLOSE:
            if len(stack) == 1:
                raise FetchResponseError("unbalanced ')'")
            stack.pop()
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise FetchResponseError("unbalanced '('")
    return root


@dataclass
class FetchItem:
    uid: int | None = None
    flags: tuple[str, ...] | None = None
    size: int | None = None
    body: bytes | None = None
    has_body: bool = False
    structure: list | None = None  # BODYSTRUCTURE, as nested lists (bodystructure.parse reads it)
    internaldate: datetime | None = None  # naive UTC
    sections: dict[str, bytes | None] = field(default_factory=dict)  # BODY[<section>] by section_key


def interpret_fetch(pieces: list) -> FetchItem:
    """One FETCH response (imaplib pieces: (text, literal) tuples, then the
    closing text) -> FetchItem.  Raises ValueError (FetchResponseError, or a
    number that is not one)."""
    if len(pieces) == 2 and isinstance(pieces[0], tuple) and pieces[1] == b")":
        head, literal = pieces[0]
        m = _FAST_BODY.match(head)
        if m and int(m.group(4)) == len(literal):
            return FetchItem(int(m.group(1)), tuple(m.group(2).decode("ascii", "replace").split()),
                             int(m.group(3)), literal, True)
    elif len(pieces) == 1 and isinstance(pieces[0], bytes):
        m = _FAST_INFO.match(pieces[0])
        if m:
            return FetchItem(int(m.group(1)), tuple(m.group(2).decode("ascii", "replace").split()),
                             int(m.group(3)))
    tokens: list = []
    for piece in pieces:
        if isinstance(piece, tuple):
            _tokenize(piece[0], piece[1], tokens)
        else:
            _tokenize(piece, None, tokens)
    tree = _build(tokens)
    if len(tree) < 2 or not isinstance(tree[0], str) or not tree[0].isdigit() or not isinstance(tree[1], list):
        raise FetchResponseError("not a FETCH response")
    atts = tree[1]
    if len(atts) % 2:
        raise FetchResponseError("odd number of items in FETCH response")
    item = FetchItem()
    for i in range(0, len(atts), 2):
        name, value = atts[i], atts[i + 1]
        if not isinstance(name, str):
            raise FetchResponseError("FETCH item name is not an atom")
        key = name.upper()
        if key == "UID":
            item.uid = int(value)
        elif key == "FLAGS":
            if not isinstance(value, list):
                raise FetchResponseError("FLAGS is not a list")
            item.flags = tuple(str(f) for f in value if f is not None)
        elif key == "RFC822.SIZE":
            item.size = int(value)
        elif key in ("BODY[]", "RFC822", "BINARY[]"):
            item.has_body = True
            if isinstance(value, str):  # an atom where a string belongs
                raise FetchResponseError("BODY[] is not a string")
            item.body = value  # None for NIL
        elif key == "BODYSTRUCTURE":
            if not isinstance(value, list):
                raise FetchResponseError("BODYSTRUCTURE is not a list")
            item.structure = value
        elif key == "INTERNALDATE":
            item.internaldate = parse_internaldate(value)
        elif key.startswith("BODY[") and key.endswith("]"):
            if isinstance(value, (str, list)):
                raise FetchResponseError(f"{name} is not a string")
            item.sections[section_key(key[5:-1])] = value
    return item


def section_key(section: str) -> str:
    """A body section as asked (BODY.PEEK[1.mime]) and as answered (BODY[1.MIME]): one key."""
    return " ".join(section.upper().split())


_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m.upper(): n for n, m in enumerate(_MONTH_NAMES, start=1)}
_INTERNALDATE = re.compile(r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z")


def parse_internaldate(value) -> datetime:
    """'17-Jul-1996 02:44:25 -0700' -> naive UTC. Raises FetchResponseError."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    m = _INTERNALDATE.match(text)
    month = _MONTHS.get(m.group(2).upper()) if m else None
    if month is None:
        raise FetchResponseError(f"INTERNALDATE {text[:40]!r} is not a date")
    day, year, hour, minute, second = (int(m.group(i)) for i in (1, 3, 4, 5, 6))
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9))) * (-1 if m.group(7) == "-" else 1)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        raise FetchResponseError(f"INTERNALDATE {text[:40]!r} is not a date") from None
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def split_fetch_responses(data: list) -> Iterator[list]:
    """imaplib's FETCH data -> one list of pieces per FETCH response.

    imaplib stores a response with literals as (text-up-to-{N}, literal)
    tuples, one per literal, followed by the text after the last literal;
    a response without literal is a single bytes item."""
    current: list | None = None
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            if current is None:
                current = [item]
            else:
                current.append(item)
        else:
            if current is None:
                yield [item]
            else:
                current.append(item)
                yield current
                current = None
    if current is not None:
        yield current


def collect_fetch_items(data: list, wanted: set[int], need_body: bool) -> dict[int, FetchItem]:
    """The complete answers for the ``wanted`` UIDs in one UID FETCH's data.

    Unsolicited responses are ignored, flag changes reported apart from the
    data are merged, and a BODY[] NIL (Dovecot's answer for a message another
    session expunged) counts as gone.  Raises ValueError on a response that
    does not parse."""
    found: dict[int, FetchItem] = {}
    flag_updates: dict[int, tuple[str, ...]] = {}
    vanished: set[int] = set()
    for pieces in split_fetch_responses(data):
        item = interpret_fetch(pieces)
        uid = item.uid
        if uid is None or uid not in wanted:
            log.debug("ignoring unsolicited FETCH response (uid=%s)", uid)
            continue
        if need_body and item.has_body and item.body is None:
            vanished.add(uid)
            continue
        complete = item.has_body if need_body else (item.flags is not None and item.size is not None)
        if not complete:
            if item.flags is not None:
                flag_updates[uid] = item.flags  # unsolicited flag change
            continue
        if uid in found:
            continue
        if item.flags is None:
            item.flags = flag_updates.get(uid, ())
        found[uid] = item
        flag_updates.pop(uid, None)
    for uid, flags in flag_updates.items():  # a change reported after the data
        if uid in found:
            found[uid].flags = flags
    for uid in vanished:
        found.pop(uid, None)
    return found


def merge_fetch_items(data: list, wanted: set[int]) -> dict[int, FetchItem]:
    """Every answer for the ``wanted`` UIDs in one UID FETCH's data, merged per UID (a server
    may split one message's items over several responses); others are ignored. Raises
    ValueError on a response that does not parse."""
    found: dict[int, FetchItem] = {}
    for pieces in split_fetch_responses(data):
        item = interpret_fetch(pieces)
        if item.uid is None or item.uid not in wanted:
            continue
        have = found.setdefault(item.uid, FetchItem(uid=item.uid))
        for name in ("flags", "size", "structure", "internaldate"):
            if getattr(item, name) is not None:
                setattr(have, name, getattr(item, name))
        have.sections.update(item.sections)
    return found


# ---------------------------------------------------------------- SEARCH, LIST
def search_criteria(*, unseen_only: bool, above_uid: int = 0, below_uid: int | None = None,
                    since: date | None = None, before: date | None = None) -> list[str] | None:
    """UID SEARCH criteria, all of which must hold: UNSEEN, UIDs above ``above_uid`` or below
    ``below_uid``, INTERNALDATE on or after ``since`` or before ``before``. None when no UID
    can match (below_uid 1)."""
    criteria: list[str] = ["UNSEEN"] if unseen_only else []
    if above_uid > 0:
        criteria += ["UID", f"{above_uid + 1}:*"]
    if below_uid is not None:
        if below_uid <= 1:
            return None
        criteria += ["UID", f"1:{below_uid - 1}"]
    if since is not None:
        criteria += ["SINCE", imap_date(since)]
    if before is not None:
        criteria += ["BEFORE", imap_date(before)]
    return criteria or ["ALL"]


def imap_date(day: date) -> str:
    """date(2024, 1, 5) -> '5-Jan-2024' (English month names, whatever the locale)."""
    return f"{day.day}-{_MONTH_NAMES[day.month - 1]}-{day.year:04d}"


def parse_search(data: list) -> set[int]:
    """UIDs named in UID SEARCH response data."""
    uids: set[int] = set()
    for line in data:
        if not line:
            continue
        if isinstance(line, tuple):
            line = line[0]
        for word in line.split():
            if word.isdigit():
                uids.add(int(word))
    return uids


_LIST_RE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) ?(?P<name>.*)\Z', re.S)


def selectable_folders(data: list) -> list[str]:
    """LIST response data -> selectable folder names (decoded), in server order."""
    names: list[str] = []
    for item in data:
        parsed = parse_list_item(item)
        if parsed is None:
            continue
        flags, name = parsed
        if "\\noselect" in flags or "\\nonexistent" in flags:
            continue
        if name not in names:
            names.append(name)
    return names


def parse_list_item(item) -> tuple[set[str], str] | None:
    """One LIST response -> (lower-case flags, decoded folder name), or None."""
    if not item:
        return None
    if isinstance(item, tuple):  # name sent as a literal
        head, literal = item[0], item[1]
        m = _LIST_RE.match(_LITERAL_AT_END.sub(b"", head).rstrip())
        if not m:
            return None
        raw_name = literal
    else:
        m = _LIST_RE.match(item)
        if not m:
            return None
        raw_name = m.group("name").strip()
        if raw_name.startswith(b'"') and raw_name.endswith(b'"') and len(raw_name) >= 2:
            raw_name = _QUOTED_ESCAPE.sub(rb"\1", raw_name[1:-1])
    flags = {f.lower() for f in m.group("flags").decode("ascii", "replace").split()}
    try:
        name = utf7_decode(raw_name)
    except Exception:
        name = raw_name.decode("utf-8", "replace")
    return flags, name
