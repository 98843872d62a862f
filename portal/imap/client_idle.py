"""IMAP IDLE (RFC 2177) on a logged-in ImapSession with a folder selected.

Python 3.11's imaplib has no IDLE, so the command is written and its answers read here, on the
session's own imaplib client and its bounded reads (client_limits): ``IDLE``, the ``+``
continuation, untagged responses while idling, then ``DONE`` and the tagged answer.

Waiting never blocks the socket read itself: a line is read only once bytes are there (the
buffered reader peeked without blocking, the SSL layer's pending bytes, or select on the
socket), so a quiet server costs nothing and a read timeout never breaks imaplib's file object.
``wait`` returns after ``timeout`` seconds or as soon as the server reported new mail (EXISTS
above the count known, or RECENT above zero) or ``stop`` says so. Servers drop an IDLE after 30
minutes (RFC 2177 asks clients to re-issue within 29): the caller ends and re-issues it (push.py)
more often than IDLE_REISSUE_SECONDS.

Pure IO: no Flask, no database. Failures raise ImapError / ImapConnectError with a short text.
"""
from __future__ import annotations

import re
import select
import ssl
import time
from dataclasses import dataclass
from typing import Callable

from .client import ImapSession
from .client_errors import ImapConnectError, ImapError

#: RFC 2177: a client re-issues IDLE at least every 29 minutes
IDLE_REISSUE_SECONDS = 29 * 60
#: how long a stop request may wait at most (the wait wakes this often to look)
POLL_SECONDS = 1.0

_UNTAGGED = re.compile(rb"^\* (\d+) (EXISTS|RECENT|EXPUNGE)\b", re.IGNORECASE)


class IdleUnsupported(ImapError):
    """The server does not announce IDLE: the mailbox stays on its cron schedule."""


@dataclass
class IdleEvent:
    new_mail: bool = False
    exists: int | None = None
    bye: bool = False


def supports_idle(session: ImapSession) -> bool:
    return "IDLE" in {c.upper() for c in session.capabilities}


class Idler:
    """IDLE on one session. ``start`` sends IDLE, ``wait`` reads what the server says, ``done``
    ends the IDLE (DONE, tagged OK). ``exists`` is the folder's message count as last known."""

    def __init__(self, session: ImapSession, exists: int = 0):
        if not supports_idle(session):
            raise IdleUnsupported(f"Server {session._where} does not support IDLE")
        self.session = session
        self.client = session.imap_client
        self.exists = exists
        self.tag: bytes | None = None

    # -------------------------------------------------------------- commands
    def start(self) -> None:
        client = self.client
        self._fresh_budget()
        self.tag = client._new_tag()
        self._send(self.tag + b" IDLE\r\n")
        while True:  # untagged responses may come before the continuation
            line = self._readline(client.sock.gettimeout() or 30.0)
            if line.startswith(b"+"):
                return
            if line.startswith(self.tag + b" "):
                self.tag = None
                raise ImapError(f"Server {self.session._where} refused IDLE: {_text(line)}")
            self._note(line, IdleEvent())

    def done(self) -> IdleEvent:
        """End the IDLE; returns what the server reported before its tagged answer."""
        event = IdleEvent()
        if self.tag is None:
            return event
        tag, self.tag = self.tag, None
        self._send(b"DONE\r\n")
        deadline = time.monotonic() + (self.client.sock.gettimeout() or 30.0)
        while True:
            line = self._readline(max(0.1, deadline - time.monotonic()))
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].upper().startswith(b"OK"):
                    raise ImapError(f"Server {self.session._where} ended IDLE with: {_text(line)}")
                return event
            self._note(line, event)

    def wait(self, timeout: float, stop: Callable[[], bool] = lambda: False) -> IdleEvent:
        """Read untagged responses for up to ``timeout`` seconds; returns early on new mail,
        on BYE, or when ``stop()`` is true."""
        event = IdleEvent()
        deadline = time.monotonic() + timeout
        while not stop():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not self._ready(min(left, POLL_SECONDS)):
                continue
            self._note(self._readline(self.client.sock.gettimeout() or 30.0), event)
            if event.new_mail or event.bye:
                break
        return event

    # -------------------------------------------------------------- reading
    def _note(self, line: bytes, event: IdleEvent) -> None:
        if line.upper().startswith(b"* BYE"):
            event.bye = True
            return
        match = _UNTAGGED.match(line)
        if match is None:
            return
        number, kind = int(match.group(1)), match.group(2).upper()
        if kind == b"EXISTS":
            if number > self.exists:
                event.new_mail = True
            self.exists = number
            event.exists = number
        elif kind == b"RECENT":
            if number > 0:
                event.new_mail = True
        elif kind == b"EXPUNGE":
            self.exists = max(0, self.exists - 1)

    def _ready(self, timeout: float) -> bool:
        """Bytes to read, within ``timeout``: already buffered, pending in SSL, or on the socket."""
        if self._buffered():
            return True
        sock = self.client.sock
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError) as exc:  # closed under us (abort)
            raise ImapConnectError(f"Connection to {self.session._where} lost while idling") from exc
        return bool(readable) and self._buffered(eof_counts=True)

    def _buffered(self, eof_counts: bool = False) -> bool:
        sock = self.client.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            data = self.client.file.peek(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError as exc:
            raise ImapConnectError(f"Connection to {self.session._where} lost while idling") from exc
        finally:
            sock.settimeout(timeout)
        if data == b"" and eof_counts:  # readable but nothing: the server closed the connection
            raise ImapConnectError(f"Connection to {self.session._where} closed by the server while idling")
        return bool(data)

    def _readline(self, timeout: float) -> bytes:
        sock = self.client.sock
        old = sock.gettimeout()
        sock.settimeout(timeout)
        try:
            line = self.client.readline()
        except (OSError, EOFError) as exc:
            self.session.close(logout=False)
            raise ImapConnectError(f"Connection to {self.session._where} lost while idling") from exc
        finally:
            if not self.session._closed:
                sock.settimeout(old)
        if not line:
            self.session.close(logout=False)
            raise ImapConnectError(f"Connection to {self.session._where} closed by the server while idling")
        self._spent(len(line))
        return line.rstrip(b"\r\n")

    def _send(self, data: bytes) -> None:
        try:
            self.client.send(data)
        except OSError as exc:
            self.session.close(logout=False)
            raise ImapConnectError(f"Connection to {self.session._where} lost while idling") from exc

    def _fresh_budget(self) -> None:
        """An IDLE may last 29 minutes: give it the budget of one command, renewed per IDLE."""
        if hasattr(self.client, "_budget"):
            self.client._budget = 1 << 30

    def _spent(self, size: int) -> None:
        if hasattr(self.client, "_budget") and self.client._budget < (1 << 20):
            self.client._budget = 1 << 30  # lines while idling are small; never run dry in a long IDLE


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")[:200]
