"""The only code that talks IMAP (imap-tools / imaplib underneath).

Pure IO: no Flask, no database.  Everything that can go wrong surfaces as
:class:`ImapError` (or a subclass) with a short, human message that never
contains the password or the OAuth2 access token (see ``client_errors``).

imap-tools 1.16 is used to open the connection (``MailBox`` for implicit
TLS, ``MailBoxUnencrypted``, and a strict STARTTLS variant) and to log in.
FETCH/STORE/SEARCH go through the underlying imaplib client
(``mailbox.client.uid(...)``) because imap-tools' ``fetch`` hides errors:
``fetch(bulk=N)`` stops silently at the first empty chunk, ``N:*`` returns
the last message even when its UID is below N, and ``msg.size`` is the size
of what was fetched rather than RFC822.SIZE.  UID sets are batched here
(``client_wire``).

An :class:`ImapSession` is not thread-safe; use one per thread.
"""
from __future__ import annotations

import imaplib
import logging
import socket
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from typing import Iterator, Mapping

from imap_tools.mailbox import BaseMailBox
from imap_tools.utils import encode_folder

from .client_errors import (
    CONNECT,
    FETCH,
    LIST,
    LOGIN,
    MARK_SEEN,
    OAUTH2_LOGIN,
    SEARCH,
    SELECT,
    ImapAuthError,
    ImapConnectError,
    ImapError,
    ImapTokenRejected,
    Operation,
    redact,
    refusal,
    response_text,
    settings_secrets,
    translated,
)
from .client_limits import (
    COMMAND_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_LINE_BYTES,
    MAX_SEARCH_LINE_BYTES,
    BoundedReads,
    ImapResponseTooLarge,
    literal_limit_for,
    open_mailbox,
)
from .client_wire import (
    FetchedMessage,
    FetchItem,
    FolderState,
    MessageInfo,
    body_batches,
    chunks,
    clean_uids,
    collect_fetch_items,
    compress_uids,
    folder_state,
    merge_fetch_items,
    parse_search,
    search_criteria,
    selectable_folders,
)
from .client_xoauth2 import authenticate_xoauth2, check_credentials
from .fields import SECURITY_MODES

log = logging.getLogger(__name__)

#: charset named in UID SEARCH; retried without CHARSET if the server rejects it
SEARCH_CHARSET = "US-ASCII"
#: by default fetch_messages also caps a chunk at this many bytes when sizes are known
DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024
#: how ConnectionSettings sign in: LOGIN (or AUTHENTICATE PLAIN), or AUTHENTICATE XOAUTH2
AUTH_METHODS = ("password", "oauth2")

__all__ = [
    "ImapError", "ImapConnectError", "ImapAuthError", "ImapTokenRejected", "ImapResponseTooLarge",
    "literal_limit_for", "ConnectionSettings", "FolderState", "FetchedMessage", "MessageInfo",
    "ImapSession", "connect", "test_connection", "compress_uids",
]



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
    #: largest literal (a message) read from the server, whatever size it declared
    max_literal_bytes: int = literal_limit_for(DEFAULT_MAX_MESSAGE_BYTES)
    #: 'password' (LOGIN with ``password``) or 'oauth2' (AUTHENTICATE XOAUTH2 with ``access_token``)
    auth_method: str = "password"
    access_token: str = field(default="", repr=False)


# ------------------------------------------------------------ the connection
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
        self._declared_sizes: dict[int, int] = {}  # RFC822.SIZE from fetch_info: the FETCH budget
        self._closed = False
        #: seconds spent waiting on the server: connect, login, every command, LOGOUT
        self.wire_seconds = 0.0

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
        started = time.perf_counter()
        try:
            if logout:
                self._client.logout()
        except Exception:  # already broken: just drop it
            pass
        finally:
            self._shutdown()
            self.wire_seconds += time.perf_counter() - started

    def abort(self) -> None:
        """Shut the socket down from another thread (a deadline, a lost lock): whatever waits
        on it fails at once. The owning thread still closes the session."""
        sock = getattr(self._client, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(self._client.capabilities)

    @property
    def imap_client(self) -> imaplib.IMAP4:
        """The imaplib client underneath, for commands written elsewhere (client_idle: IDLE)."""
        self._ensure_open()
        return self._client

    # failures ---------------------------------------------------------------
    @contextmanager
    def _failing(self, op: Operation, folder: str | None = None) -> Iterator[None]:
        """Translate what the block raises (a lost connection closes the session); the block's
        time counts as waiting on the server."""
        started = time.perf_counter()
        try:
            with translated(op, self._settings, connected=True,
                            folder=self.folder if folder is None else folder,
                            on_connection_lost=self._closed_broken):
                yield
        finally:
            self.wire_seconds += time.perf_counter() - started

    def _refused(self, op: Operation, data, folder: str | None = None) -> ImapError:
        return refusal(op, self._settings, response_text(data),
                       folder=self.folder if folder is None else folder)

    def _closed_broken(self) -> None:
        if not self._closed:
            self._closed = True
            self._shutdown()

    def _shutdown(self) -> None:
        with suppress(Exception):
            self._client.shutdown()

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
        if s.auth_method == "oauth2":
            self._login_xoauth2()
            return
        if "LOGINDISABLED" in self._client.capabilities:
            raise ImapAuthError(
                f"Login failed for user {s.username}: {self._where} only accepts logins over TLS "
                "(LOGINDISABLED); use security 'ssl' or 'starttls'")
        creds = s.username + s.password
        if "\0" in creds:
            raise ImapAuthError(f"Login failed for user {s.username!r}: "
                                "the user name or password contains a NUL character")
        with self._failing(LOGIN):
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

    def _login_xoauth2(self) -> None:
        with self._failing(OAUTH2_LOGIN):
            authenticate_xoauth2(self._client, self._settings)

    # commands ---------------------------------------------------------------
    def list_folders(self) -> list[str]:
        """Selectable folder names (decoded), in server order."""
        self._ensure_open()
        with self._failing(LIST):
            typ, data = self._client._simple_command("LIST", '""', '"*"')
            if typ != "OK":
                raise ImapError(redact(f"Could not list folders on {self._where}: {response_text(data)}",
                                       *settings_secrets(self._settings)))
            typ, data = self._client._untagged_response(typ, data, "LIST")
        return selectable_folders(data)

    def select(self, folder: str, readonly: bool) -> FolderState:
        """SELECT (or EXAMINE when readonly) a folder."""
        self._ensure_open()
        self.folder = None
        with self._failing(SELECT, folder):
            typ, data = self._client.select(encode_folder(folder), readonly)
        if typ != "OK":
            low = response_text(data).lower()
            if "nonexistent" in low or "exist" in low or "not found" in low or "unknown mailbox" in low:
                raise ImapError(f"Folder '{folder}' does not exist")
            raise self._refused(SELECT, data, folder)
        state = folder_state(self._client.untagged_responses, data)
        if state is None:
            raise ImapError(f"Server {self._where} sent no UIDVALIDITY for folder '{folder}'")
        self.folder = folder
        self.readonly = readonly
        return state

    def search_uids(self, *, unseen_only: bool, above_uid: int = 0, below_uid: int | None = None,
                    since: date | None = None, before: date | None = None) -> list[int]:
        """Sorted UIDs matching all that is given: UNSEEN, above ``above_uid`` / below
        ``below_uid``, INTERNALDATE on or after ``since`` / before ``before``."""
        self._ensure_selected()
        above_uid = max(0, int(above_uid))
        criteria = search_criteria(unseen_only=unseen_only, above_uid=above_uid, below_uid=below_uid,
                                   since=since, before=before)
        if criteria is None:
            return []
        with self._failing(SEARCH), self._long_lines(MAX_SEARCH_LINE_BYTES):
            try:
                typ, data = self._client.uid("SEARCH", "CHARSET", SEARCH_CHARSET, *criteria)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:  # BAD: some servers reject CHARSET
                log.debug("UID SEARCH with CHARSET failed (%s); retrying without", exc)
                typ, data = "BAD", [str(exc).encode()]
            if typ != "OK":
                log.debug("UID SEARCH with CHARSET answered %s %s; retrying without", typ, response_text(data))
                typ, data = self._client.uid("SEARCH", *criteria)
        if typ != "OK":
            raise self._refused(SEARCH, data)
        # "N:*" also matches the last message when no UID >= N exists
        return sorted(u for u in parse_search(data) if above_uid < u < (below_uid or 1 << 63))

    @contextmanager
    def _long_lines(self, max_line_bytes: int) -> Iterator[None]:
        """Lines up to ``max_line_bytes`` (and a budget to match) for the commands inside."""
        client = self._client
        if not isinstance(client, BoundedReads):
            yield
            return
        client.max_line_bytes = max_line_bytes
        client.next_command_budget = COMMAND_BYTES + 2 * max_line_bytes
        try:
            yield
        finally:
            client.max_line_bytes = MAX_LINE_BYTES

    def _body_budget(self, uids: list[int]) -> int:
        """What one UID FETCH of these bodies may read: twice the declared sizes (servers
        counting LF line ends) and 64 KiB each, at least one full literal."""
        limit = self._settings.max_literal_bytes
        expected = sum(2 * self._declared_sizes[uid] + 64 * 1024 if uid in self._declared_sizes else limit
                       for uid in uids)
        return COMMAND_BYTES + max(limit, expected)

    def _uid_fetch(self, uids: list[int], items: str, budget: int | None = None) -> tuple[list, bool]:
        """One UID FETCH; returns (imaplib data, expunges?).  expunges: the
        server reported expunged messages during the command (EXPUNGE
        responses, or [EXPUNGEISSUED] in OK/NO); their entries may be
        placeholders (BODY[] NIL, RFC822.SIZE 0)."""
        client = self._client
        ur = client.untagged_responses
        for key in ("FETCH", "EXPUNGE", "EXPUNGEISSUED", "VANISHED"):  # stale ones
            ur.pop(key, None)
        with self._failing(FETCH):
            if budget is not None and isinstance(client, BoundedReads):
                client.next_command_budget = budget
            typ, data = client.uid("FETCH", compress_uids(uids), items)
        popped = [ur.pop(key, None) for key in ("EXPUNGE", "EXPUNGEISSUED", "VANISHED")]
        expunges = any(p is not None for p in popped)
        if typ == "OK":
            return data, expunges
        # NO: the FETCH responses that did arrive are still in untagged_responses
        detail = response_text(data)
        fetched = ur.pop("FETCH", [])
        low = detail.lower()
        if expunges or "expunge" in low or "no longer exist" in low or "not exist" in low:
            return fetched, True
        raise self._refused(FETCH, data)

    def _collect(self, data: list, wanted: set[int], need_body: bool) -> dict[int, FetchItem]:
        try:
            return collect_fetch_items(data, wanted, need_body)
        except ValueError as exc:  # FetchResponseError, or a number that is not one
            raise ImapError(f"Unexpected FETCH response from {self._where}: {exc}") from None

    def fetch_info(self, uids: list[int], chunk: int = 1000) -> list[MessageInfo]:
        """UID, FLAGS and RFC822.SIZE of the given messages, in UID order.
        UIDs that no longer exist are left out and listed in ``last_missing``."""
        self._ensure_selected()
        ordered = clean_uids(uids)
        self.last_missing = []
        result: list[MessageInfo] = []
        for batch in chunks(ordered, chunk):
            wanted = set(batch)
            for _attempt in range(3):
                data, expunges = self._uid_fetch(batch, "(UID FLAGS RFC822.SIZE)")
                found = self._collect(data, wanted, need_body=False)
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
        self._declared_sizes = {info.uid: info.size for info in result}
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
        ordered = clean_uids(uids)
        self.last_missing = []
        return self._fetch_messages(ordered, chunk, sizes, max_chunk_bytes)

    def _fetch_messages(self, ordered: list[int], chunk: int, sizes: Mapping[int, int] | None,
                        max_chunk_bytes: int) -> Iterator[FetchedMessage]:
        for batch in body_batches(ordered, chunk, sizes, max_chunk_bytes):
            data, _ = self._uid_fetch(batch, "(UID FLAGS RFC822.SIZE BODY.PEEK[])", self._body_budget(batch))
            found = self._collect(data, set(batch), need_body=True)
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

    def fetch_items(self, uids: list[int], items: str, *, max_literal_bytes: int | None = None) -> dict[int, FetchItem]:
        """One UID FETCH of any items (BODYSTRUCTURE, INTERNALDATE, BODY.PEEK[<section>]) for
        a few messages, answers merged per UID; UIDs gone from the folder are left out. With
        ``max_literal_bytes`` no literal (and no more in all) above that is read: a server
        sending more is cut off unread, as for any literal over the cap."""
        self._ensure_selected()
        client, limit = self._client, self._settings.max_literal_bytes
        cap = min(max_literal_bytes or limit, limit)
        if isinstance(client, BoundedReads):
            client.max_literal_bytes = cap
        try:
            data, _ = self._uid_fetch(clean_uids(uids), items, COMMAND_BYTES + cap)
        finally:
            if isinstance(client, BoundedReads):
                client.max_literal_bytes = limit
        try:
            return merge_fetch_items(data, set(uids))
        except ValueError as exc:
            raise ImapError(f"Unexpected FETCH response from {self._where}: {exc}") from None

    def mark_seen(self, uids: list[int], chunk: int = 1000) -> None:
        """UID STORE +FLAGS.SILENT (\\Seen); UIDs that no longer exist are ignored."""
        self._ensure_selected()
        if self.readonly:
            raise ImapError(f"Cannot mark messages as seen: folder '{self.folder}' is open read-only")
        for batch in chunks(clean_uids(uids), chunk):
            with self._failing(MARK_SEEN):
                typ, data = self._client.uid("STORE", compress_uids(batch), "+FLAGS.SILENT", "(\\Seen)")
            if typ != "OK":
                if "expunge" in response_text(data).lower():
                    continue
                raise self._refused(MARK_SEEN, data)


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
    if settings.auth_method not in AUTH_METHODS:
        raise ImapConnectError(f"Unknown sign-in method {settings.auth_method!r} "
                               f"(expected one of {', '.join(AUTH_METHODS)})")
    if settings.auth_method == "oauth2":  # before anything is sent
        check_credentials(settings.username, settings.access_token)
    timeout = float(settings.timeout)
    max_literal = int(settings.max_literal_bytes)
    started = time.perf_counter()
    with translated(CONNECT, settings, connected=False):
        mailbox = open_mailbox(security, host, port, timeout, max_literal,
                               verify_tls=settings.verify_tls, ca_file=settings.ca_file)
    session = ImapSession(mailbox, settings)
    session.wire_seconds = time.perf_counter() - started
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
