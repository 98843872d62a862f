"""The only code that talks IMAP (imap-tools / imaplib underneath).

Pure IO: no Flask, no database.  Everything that can go wrong surfaces as
:class:`ImapError` (or a subclass) with a short, human message that never
contains the password.

imap-tools 1.16 is used to open the connection (``MailBox`` for implicit
TLS, ``MailBoxUnencrypted``, and a strict STARTTLS variant) and to log in.
FETCH/STORE/SEARCH go through the underlying imaplib client
(``mailbox.client.uid(...)``) because imap-tools' ``fetch`` hides errors:
``fetch(bulk=N)`` stops silently at the first empty chunk, ``N:*`` returns
the last message even when its UID is below N, and ``msg.size`` is the size
of what was fetched rather than RFC822.SIZE.  UID sets are batched here.

An :class:`ImapSession` is not thread-safe; use one per thread.
"""
from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

from imap_tools import MailBox, MailBoxUnencrypted
from imap_tools.errors import ImapToolsError, MailboxLoginError, UnexpectedCommandStatusError
from imap_tools.imap_utf7 import utf7_decode
from imap_tools.mailbox import BaseMailBox, _create_imap4_client
from imap_tools.utils import encode_folder

log = logging.getLogger(__name__)

SECURITY_MODES = ("ssl", "starttls", "none")
#: charset named in UID SEARCH; retried without CHARSET if the server rejects it
SEARCH_CHARSET = "US-ASCII"
#: by default fetch_messages also caps a chunk at this many bytes when sizes are known
DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024

__all__ = [
    "ImapError", "ImapConnectError", "ImapAuthError",
    "ConnectionSettings", "FolderState", "FetchedMessage", "MessageInfo",
    "ImapSession", "connect", "test_connection", "compress_uids",
]


# --------------------------------------------------------------------- errors
class ImapError(Exception):
    """Any IMAP failure.  The message is short, human and never contains the password."""


class ImapConnectError(ImapError):
    """Server unreachable, timeout, TLS failure, lost connection, or login failure."""


class ImapAuthError(ImapConnectError):
    """The server rejected the credentials (or cannot accept them safely)."""


# ---------------------------------------------------------------- data types
@dataclass
class ConnectionSettings:
    host: str
    port: int
    security: str  # 'ssl' | 'starttls' | 'none'
    verify_tls: bool
    username: str
    password: str = field(repr=False)
    timeout: float = 30.0
    ca_file: str | None = None  # extra CA bundle, trusted in addition to the system CAs


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


@dataclass
class MessageInfo:
    uid: int
    flags: tuple[str, ...]
    size: int  # RFC822.SIZE, the real size


# ------------------------------------------------------------------- helpers
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


def _clean_uids(uids: Iterable[int]) -> list[int]:
    result = set()
    for uid in uids:
        value = int(uid)
        if value <= 0:
            raise ValueError(f"invalid UID {uid!r}")
        result.add(value)
    return sorted(result)


def _chunks(items: list, size: int) -> Iterator[list]:
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _text(data) -> str:
    """Server response data (list of bytes/tuples) -> one line of text."""
    if isinstance(data, (bytes, bytearray)):
        data = [data]
    parts = []
    for item in data or ():
        if isinstance(item, tuple):
            item = item[0]
        if isinstance(item, (bytes, bytearray)):
            parts.append(bytes(item).decode("utf-8", "replace"))
        elif item is not None:
            parts.append(str(item))
    return " ".join(p.strip() for p in parts if p).strip()


def _describe_oserror(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# ------------------------------------------------------ FETCH response parsing
class _ParseError(ValueError):
    pass


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
# else goes through the general tokenizer.  They only look at the short text
# before/after a literal, never at a message body.
_FAST_BODY = re.compile(
    rb"\d+ \(UID (\d+) FLAGS \(([^()\"{}]*)\) RFC822\.SIZE (\d+) BODY\[\] \{(\d+)\}\Z")
_FAST_INFO = re.compile(
    rb"\d+ \(UID (\d+) FLAGS \(([^()\"{}]*)\) RFC822\.SIZE (\d+)\)\Z")


def _tokenize(segment: bytes, literal: bytes | None, out: list) -> None:
    """Tokens of one text segment; a segment that came with a literal ends in {N}."""
    if literal is not None:
        m = _LITERAL_AT_END.search(segment)
        if not m:
            raise _ParseError("literal without {N} marker")
        if int(m.group(1)) != len(literal):
            raise _ParseError(f"literal announced {m.group(1).decode()} bytes, got {len(literal)}")
        segment = segment[:m.start()]
    pos, end = 0, len(segment)
    while pos < end:
        m = _TOKEN.match(segment, pos)
        if not m or m.end() == pos:
            if segment[pos:].strip() == b"":
                break
            raise _ParseError(f"cannot parse {segment[pos:pos + 40]!r}")
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
                raise _ParseError("unbalanced ')'")
            stack.pop()
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise _ParseError("unbalanced '('")
    return root


@dataclass
class _FetchItem:
    uid: int | None = None
    flags: tuple[str, ...] | None = None
    size: int | None = None
    body: bytes | None = None
    has_body: bool = False


def _interpret(pieces: list) -> _FetchItem:
    """One FETCH response (imaplib pieces: (text, literal) tuples, then the
    closing text) -> _FetchItem."""
    # fast paths
    if len(pieces) == 2 and isinstance(pieces[0], tuple) and pieces[1] == b")":
        head, literal = pieces[0]
        m = _FAST_BODY.match(head)
        if m and int(m.group(4)) == len(literal):
            return _FetchItem(int(m.group(1)), tuple(m.group(2).decode("ascii", "replace").split()),
                              int(m.group(3)), literal, True)
    elif len(pieces) == 1 and isinstance(pieces[0], bytes):
        m = _FAST_INFO.match(pieces[0])
        if m:
            return _FetchItem(int(m.group(1)), tuple(m.group(2).decode("ascii", "replace").split()),
                              int(m.group(3)))
    tokens: list = []
    for piece in pieces:
        if isinstance(piece, tuple):
            _tokenize(piece[0], piece[1], tokens)
        else:
            _tokenize(piece, None, tokens)
    tree = _build(tokens)
    if len(tree) < 2 or not isinstance(tree[0], str) or not tree[0].isdigit() or not isinstance(tree[1], list):
        raise _ParseError("not a FETCH response")
    atts = tree[1]
    if len(atts) % 2:
        raise _ParseError("odd number of items in FETCH response")
    item = _FetchItem()
    for i in range(0, len(atts), 2):
        name, value = atts[i], atts[i + 1]
        if not isinstance(name, str):
            raise _ParseError("FETCH item name is not an atom")
        key = name.upper()
        if key == "UID":
            item.uid = int(value)
        elif key == "FLAGS":
            if not isinstance(value, list):
                raise _ParseError("FLAGS is not a list")
            item.flags = tuple(str(f) for f in value if f is not None)
        elif key == "RFC822.SIZE":
            item.size = int(value)
        elif key in ("BODY[]", "RFC822", "BINARY[]"):
            item.has_body = True
            if isinstance(value, str):  # an atom where a string belongs
                raise _ParseError("BODY[] is not a string")
            item.body = value  # None for NIL
    return item


def _split_fetch_responses(data: list) -> Iterator[list]:
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


# ------------------------------------------------------------ the connection
class _MailBoxStartTlsStrict(BaseMailBox):
    """Plain connection upgraded with STARTTLS; refuses servers that do not
    offer it (never falls back to plaintext) and closes the socket on failure."""

    def __init__(self, host: str, port: int, timeout: float, ssl_context: ssl.SSLContext) -> None:
        self._host, self._port, self._timeout, self._ssl_context = host, port, timeout, ssl_context
        super().__init__()

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        client = _create_imap4_client(self._host, self._port, self._timeout)
        try:
            if "STARTTLS" not in client.capabilities:
                raise ImapConnectError(
                    f"Server {self._host}:{self._port} does not offer STARTTLS; "
                    "refusing to continue without encryption")
            typ, data = client.starttls(self._ssl_context)
            if typ != "OK":
                raise ImapConnectError(f"STARTTLS failed on {self._host}:{self._port}: {_text(data)}")
        except BaseException:
            try:
                client.shutdown()
            except Exception:
                pass
            raise
        return client


def _ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.ca_file:
        try:
            ctx.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ImapConnectError(f"Cannot load CA file {settings.ca_file}: {_describe_oserror(exc)}") from None
    if not settings.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ImapSession:
    """A logged-in IMAP connection.  Use as a context manager; it logs out and
    closes the socket on exit, also after errors."""

    def __init__(self, mailbox: BaseMailBox, settings: ConnectionSettings) -> None:
        self._mailbox = mailbox
        self._client: imaplib.IMAP4 = mailbox.client
        self._settings = settings
        self._where = f"{settings.host}:{settings.port}"
        self.folder: str | None = None
        self.readonly: bool = False
        self.last_missing: list[int] = []
        self._closed = False

    # context manager ------------------------------------------------------
    def __enter__(self) -> "ImapSession":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(logout=exc_type is None or not isinstance(exc, ImapConnectError))

    def close(self, logout: bool = True) -> None:
        """LOGOUT (unless the connection is known to be broken) and close the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            if logout:
                self._client.logout()
        except Exception:  # already broken: just drop it
            pass
        finally:
            try:
                self._client.shutdown()
            except Exception:
                pass

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(self._client.capabilities)

    # error translation ----------------------------------------------------
    def _redact(self, message: str) -> str:
        return _redact(message, self._settings.password)

    def _fail(self, exc: BaseException, action: str) -> ImapError:
        """Map a low-level exception to an ImapError (to be raised by the caller)."""
        err = _translate(exc, self._settings, action, connected=True)
        if isinstance(err, ImapConnectError):
            self._closed_broken()
        return err

    def _closed_broken(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._client.shutdown()
            except Exception:
                pass

    def _ensure_open(self) -> None:
        if self._closed:
            raise ImapConnectError(f"Connection to {self._where} is closed")

    def _ensure_selected(self) -> None:
        self._ensure_open()
        if self.folder is None:
            raise ImapError("No folder selected")

    # login ----------------------------------------------------------------
    def _login(self) -> None:
        s = self._settings
        if "LOGINDISABLED" in self._client.capabilities:
            raise ImapAuthError(
                f"Login failed for user {s.username}: {self._where} only accepts logins over TLS "
                "(LOGINDISABLED); use security 'ssl' or 'starttls'")
        creds = s.username + s.password
        if "\0" in creds:
            raise ImapAuthError(f"Login failed for user {s.username!r}: "
                                "the user name or password contains a NUL character")
        try:
            # LOGIN takes quoted ASCII strings; anything else (non-ASCII, CR/LF,
            # which could end the command line early) goes base64-encoded
            # through AUTHENTICATE PLAIN
            if creds.isascii() and "\r" not in creds and "\n" not in creds:
                self._mailbox.login(s.username, s.password, initial_folder=None)
            elif "AUTH=PLAIN" in self._client.capabilities:
                self._mailbox.login_utf8(s.username, s.password, initial_folder=None)
            else:
                raise ImapAuthError(
                    f"Login failed for user {s.username}: the server offers no way to send "
                    "non-ASCII user names or passwords or ones with line breaks (AUTH=PLAIN)")
        except ImapError:
            raise
        except MailboxLoginError as exc:
            detail = _text(exc.command_result[1]) or "rejected"
            raise ImapAuthError(self._redact(f"Login failed for user {s.username}: {detail}")) from None
        except imaplib.IMAP4.abort as exc:
            raise ImapConnectError(self._redact(
                f"Connection to {self._where} closed during login: {exc}")) from None
        except imaplib.IMAP4.error as exc:
            # imaplib raises on BAD / failed AUTHENTICATE
            raise ImapAuthError(self._redact(f"Login failed for user {s.username}: {exc}")) from None
        except BaseException as exc:
            raise self._fail(exc, "logging in") from None

    # commands ---------------------------------------------------------------
    def list_folders(self) -> list[str]:
        """Selectable folder names (decoded), in server order."""
        self._ensure_open()
        try:
            typ, data = self._client._simple_command("LIST", '""', '"*"')
            if typ != "OK":
                raise ImapError(self._redact(f"Could not list folders on {self._where}: {_text(data)}"))
            typ, data = self._client._untagged_response(typ, data, "LIST")
        except ImapError:
            raise
        except BaseException as exc:
            raise self._fail(exc, "listing folders") from None
        names: list[str] = []
        for item in data:
            parsed = _parse_list_item(item)
            if parsed is None:
                continue
            flags, name = parsed
            if "\\noselect" in flags or "\\nonexistent" in flags:
                continue
            if name not in names:
                names.append(name)
        return names

    def select(self, folder: str, readonly: bool) -> FolderState:
        """SELECT (or EXAMINE when readonly) a folder."""
        self._ensure_open()
        self.folder = None
        try:
            typ, data = self._client.select(encode_folder(folder), readonly)
        except imaplib.IMAP4.readonly:
            raise ImapError(f"Folder '{folder}' can only be opened read-only") from None
        except imaplib.IMAP4.abort as exc:
            raise self._fail(exc, f"opening folder '{folder}'") from None
        except imaplib.IMAP4.error as exc:
            raise ImapError(self._redact(f"Could not open folder '{folder}': {exc}")) from None
        except BaseException as exc:
            raise self._fail(exc, f"opening folder '{folder}'") from None
        if typ != "OK":
            detail = _text(data)
            low = detail.lower()
            if "nonexistent" in low or "exist" in low or "not found" in low or "unknown mailbox" in low:
                raise ImapError(f"Folder '{folder}' does not exist")
            raise ImapError(self._redact(f"Could not open folder '{folder}': {detail}"))
        ur = self._client.untagged_responses
        try:
            uidvalidity = int(ur["UIDVALIDITY"][-1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise ImapError(f"Server {self._where} sent no UIDVALIDITY for folder '{folder}'") from None
        try:
            uidnext: int | None = int(ur["UIDNEXT"][-1])
        except (KeyError, IndexError, TypeError, ValueError):
            uidnext = None
        try:
            exists = int(data[-1])
        except (IndexError, TypeError, ValueError):
            exists = 0
        self.folder = folder
        self.readonly = readonly
        return FolderState(uidvalidity=uidvalidity, uidnext=uidnext, exists=exists)

    def search_uids(self, *, unseen_only: bool, above_uid: int = 0) -> list[int]:
        """Sorted UIDs: UNSEEN ones, and/or those above ``above_uid``."""
        self._ensure_selected()
        above_uid = max(0, int(above_uid))
        criteria: list[str] = []
        if unseen_only:
            criteria.append("UNSEEN")
        if above_uid:
            criteria += ["UID", f"{above_uid + 1}:*"]
        if not criteria:
            criteria.append("ALL")
        try:
            try:
                typ, data = self._client.uid("SEARCH", "CHARSET", SEARCH_CHARSET, *criteria)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:  # BAD: some servers reject CHARSET
                log.debug("UID SEARCH with CHARSET failed (%s); retrying without", exc)
                typ, data = "BAD", [str(exc).encode()]
            if typ != "OK":
                log.debug("UID SEARCH with CHARSET answered %s %s; retrying without", typ, _text(data))
                typ, data = self._client.uid("SEARCH", *criteria)
        except imaplib.IMAP4.abort as exc:
            raise self._fail(exc, "searching") from None
        except imaplib.IMAP4.error as exc:
            raise ImapError(self._redact(f"Search failed in folder '{self.folder}': {exc}")) from None
        except BaseException as exc:
            raise self._fail(exc, "searching") from None
        if typ != "OK":
            raise ImapError(self._redact(f"Search failed in folder '{self.folder}': {_text(data)}"))
        uids: set[int] = set()
        for line in data:
            if not line:
                continue
            if isinstance(line, tuple):
                line = line[0]
            for word in line.split():
                if word.isdigit():
                    uids.add(int(word))
        # "N:*" also matches the last message when no UID >= N exists
        return sorted(u for u in uids if u > above_uid)

    def _uid_fetch(self, uids: list[int], items: str) -> tuple[list, bool]:
        """One UID FETCH; returns (imaplib data, expunges?).  expunges: the
        server reported expunged messages during the command (EXPUNGE
        responses, or [EXPUNGEISSUED] in OK/NO); their entries may be
        placeholders (BODY[] NIL, RFC822.SIZE 0)."""
        client = self._client
        ur = client.untagged_responses
        for key in ("FETCH", "EXPUNGE", "EXPUNGEISSUED", "VANISHED"):  # stale ones
            ur.pop(key, None)
        try:
            typ, data = client.uid("FETCH", compress_uids(uids), items)
        except imaplib.IMAP4.abort as exc:
            raise self._fail(exc, "fetching messages") from None
        except imaplib.IMAP4.error as exc:
            raise ImapError(self._redact(f"Fetching messages from '{self.folder}' failed: {exc}")) from None
        except BaseException as exc:
            raise self._fail(exc, "fetching messages") from None
        popped = [ur.pop(key, None) for key in ("EXPUNGE", "EXPUNGEISSUED", "VANISHED")]
        expunges = any(p is not None for p in popped)
        if typ == "OK":
            return data, expunges
        # NO: the FETCH responses that did arrive are still in untagged_responses
        detail = _text(data)
        fetched = ur.pop("FETCH", [])
        low = detail.lower()
        if expunges or "expunge" in low or "no longer exist" in low or "not exist" in low:
            return fetched, True
        raise ImapError(self._redact(f"Fetching messages from '{self.folder}' failed: {detail}"))

    def _parse(self, data: list, wanted: set[int], need_body: bool) -> dict[int, _FetchItem]:
        found: dict[int, _FetchItem] = {}
        flag_updates: dict[int, tuple[str, ...]] = {}
        vanished: set[int] = set()
        for pieces in _split_fetch_responses(data):
            try:
                item = _interpret(pieces)
            except (_ParseError, ValueError) as exc:
                raise ImapError(f"Unexpected FETCH response from {self._where}: {exc}") from None
            uid = item.uid
            if uid is None or uid not in wanted:
                log.debug("ignoring unsolicited FETCH response (uid=%s)", uid)
                continue
            if need_body and item.has_body and item.body is None:
                # BODY[] NIL: Dovecot's answer for a message expunged by
                # another session that this session still had in its view
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

    def fetch_info(self, uids: list[int], chunk: int = 1000) -> list[MessageInfo]:
        """UID, FLAGS and RFC822.SIZE of the given messages, in UID order.
        UIDs that no longer exist are left out and listed in ``last_missing``."""
        self._ensure_selected()
        ordered = _clean_uids(uids)
        self.last_missing = []
        result: list[MessageInfo] = []
        for batch in _chunks(ordered, chunk):
            wanted = set(batch)
            for _attempt in range(3):
                data, expunges = self._uid_fetch(batch, "(UID FLAGS RFC822.SIZE)")
                found = self._parse(data, wanted, need_body=False)
                # Messages expunged by another session are still answered
                # (Dovecot: with \Deleted, sometimes RFC822.SIZE 0) before
                # the EXPUNGE reaches us; once delivered, asking again gives
                # the true state.
                if not expunges:
                    break
            for uid in batch:
                item = found.get(uid)
                if item is None:
                    self.last_missing.append(uid)
                else:
                    result.append(MessageInfo(uid=uid, flags=item.flags or (), size=item.size or 0))
        return result

    def fetch_messages(self, uids: list[int], chunk: int = 200, *,
                       sizes: Mapping[int, int] | None = None,
                       max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> Iterator[FetchedMessage]:
        """Yield full messages (BODY.PEEK[], so \\Seen is not set) in UID order,
        ``chunk`` per UID FETCH.  UIDs that did not come back (expunged) are
        not yielded; ``last_missing`` lists them (complete once the iterator
        is exhausted).  With ``sizes`` (uid -> RFC822.SIZE, e.g. from
        fetch_info) a chunk also stays under ``max_chunk_bytes``."""
        self._ensure_selected()
        ordered = _clean_uids(uids)
        self.last_missing = []
        return self._fetch_messages(ordered, chunk, sizes, max_chunk_bytes)

    def _fetch_messages(self, ordered: list[int], chunk: int, sizes: Mapping[int, int] | None,
                        max_chunk_bytes: int) -> Iterator[FetchedMessage]:
        for batch in self._body_batches(ordered, chunk, sizes, max_chunk_bytes):
            data, _ = self._uid_fetch(batch, "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
            found = self._parse(data, set(batch), need_body=True)
            del data
            missing = [uid for uid in batch if uid not in found]
            self.last_missing.extend(missing)
            for uid in batch:
                item = found.pop(uid, None)
                if item is None:
                    continue
                raw = item.body or b""
                yield FetchedMessage(uid=uid, flags=item.flags or (),
                                     size=item.size if item.size is not None else len(raw), raw=raw)

    @staticmethod
    def _body_batches(ordered: list[int], chunk: int, sizes: Mapping[int, int] | None,
                      max_chunk_bytes: int) -> Iterator[list[int]]:
        if chunk < 1:
            raise ValueError("chunk size must be >= 1")
        if not sizes:
            yield from _chunks(ordered, chunk)
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

    def mark_seen(self, uids: list[int], chunk: int = 1000) -> None:
        """UID STORE +FLAGS.SILENT (\\Seen); UIDs that no longer exist are ignored."""
        self._ensure_selected()
        if self.readonly:
            raise ImapError(f"Cannot mark messages as seen: folder '{self.folder}' is open read-only")
        for batch in _chunks(_clean_uids(uids), chunk):
            try:
                typ, data = self._client.uid("STORE", compress_uids(batch), "+FLAGS.SILENT", "(\\Seen)")
            except imaplib.IMAP4.abort as exc:
                raise self._fail(exc, "marking messages as seen") from None
            except imaplib.IMAP4.error as exc:
                raise ImapError(self._redact(f"Marking messages as seen in '{self.folder}' failed: {exc}")) from None
            except BaseException as exc:
                raise self._fail(exc, "marking messages as seen") from None
            if typ != "OK":
                detail = _text(data)
                if "expunge" in detail.lower():
                    continue
                raise ImapError(self._redact(f"Marking messages as seen in '{self.folder}' failed: {detail}"))


_LIST_RE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) ?(?P<name>.*)\Z', re.S)


def _parse_list_item(item) -> tuple[set[str], str] | None:
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


def _redact(message: str, password: str | None) -> str:
    if password:
        for variant in {password, password.replace("\\", "\\\\").replace('"', '\\"')}:
            if variant:
                message = message.replace(variant, "***")
    return message


def _translate(exc: BaseException, settings: ConnectionSettings, action: str, *, connected: bool) -> ImapError:
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, ImapError):
        return exc
    if isinstance(exc, (socket.timeout, TimeoutError)):
        msg = f"Timed out after {settings.timeout:g}s talking to {where}"
        return ImapConnectError(_redact(msg, settings.password))
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return ImapConnectError(_redact(f"TLS certificate verification failed for {where}: {reason}",
                                        settings.password))
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        return ImapConnectError(_redact(f"TLS error with {where}: {reason}", settings.password))
    if isinstance(exc, OSError):
        if connected:
            return ImapConnectError(_redact(f"Connection to {where} lost while {action}: "
                                            f"{_describe_oserror(exc)}", settings.password))
        return ImapConnectError(_redact(f"Could not connect to {where}: {_describe_oserror(exc)}",
                                        settings.password))
    if isinstance(exc, imaplib.IMAP4.abort):
        return ImapConnectError(_redact(f"Connection to {where} failed while {action}: {exc}", settings.password))
    if isinstance(exc, (imaplib.IMAP4.error, ImapToolsError, UnexpectedCommandStatusError)):
        return ImapError(_redact(f"IMAP error from {where} while {action}: {exc}", settings.password))
    if isinstance(exc, UnicodeError):
        return ImapError(f"Cannot encode a value for {where} while {action}")
    if isinstance(exc, Exception):
        return ImapError(_redact(f"Unexpected error talking to {where} while {action}: "
                                 f"{type(exc).__name__}: {exc}", settings.password))
    raise exc  # KeyboardInterrupt and friends propagate unchanged


# ------------------------------------------------------------- entry points
def connect(settings: ConnectionSettings) -> ImapSession:
    """Open a connection and log in.  Raises ImapConnectError / ImapAuthError."""
    security = (settings.security or "").strip().lower()
    if security not in SECURITY_MODES:
        raise ImapConnectError(f"Unknown security mode {settings.security!r} "
                               f"(expected one of {', '.join(SECURITY_MODES)})")
    host = (settings.host or "").strip()
    if not host:
        raise ImapConnectError("No IMAP host configured")
    try:
        port = int(settings.port)
        if not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        raise ImapConnectError(f"Invalid port {settings.port!r}") from None
    if not settings.timeout or settings.timeout <= 0:
        raise ImapConnectError(f"Invalid timeout {settings.timeout!r}")
    timeout = float(settings.timeout)
    try:
        if security == "ssl":
            mailbox: BaseMailBox = MailBox(host, port, timeout=timeout, ssl_context=_ssl_context(settings))
        elif security == "starttls":
            mailbox = _MailBoxStartTlsStrict(host, port, timeout, _ssl_context(settings))
        else:
            mailbox = MailBoxUnencrypted(host, port, timeout=timeout)
    except ImapError:
        raise
    except BaseException as exc:
        raise _translate(exc, settings, "connecting", connected=False) from None
    session = ImapSession(mailbox, settings)
    try:
        session._login()
    except BaseException:
        session.close(logout=False)
        raise
    return session


def test_connection(settings: ConnectionSettings) -> list[str]:
    """Log in and return the folder names (for a "Test connection" button)."""
    with connect(settings) as session:
        return session.list_folders()


test_connection.__test__ = False  # not a pytest test when imported into test modules
