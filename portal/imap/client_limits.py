"""Reads with a ceiling, whatever the IMAP server declares: per literal (a message), per
response line, and per command. imaplib reads a literal with ``read(N)`` for the N the server
announces and lines with ``readline``; both are capped here before anything is buffered."""
from __future__ import annotations

import imaplib
import ssl

from imap_tools import MailBox, MailBoxUnencrypted

from .client_errors import ImapConnectError
from .client_tls import StrictStartTlsMailBox, ssl_context

#: what the portal imports at most (the default of IMAP_MAX_MESSAGE_BYTES)
DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
#: longest response line read; a longer one ends the connection (imaplib's own cap is 20 MB)
MAX_LINE_BYTES = 1024 * 1024
#: longest line while a UID SEARCH answers: one line holds every UID (about 1.2 million)
MAX_SEARCH_LINE_BYTES = 8 * 1024 * 1024
#: everything one command may read besides its message literals (status lines,
#: untagged responses, folder lists)
COMMAND_BYTES = 8 * 1024 * 1024


def literal_limit_for(max_message_bytes: int) -> int:
    """Largest literal read for a mailbox whose messages may be ``max_message_bytes``:
    that plus slack for servers whose RFC822.SIZE is a little off."""
    return max_message_bytes + max_message_bytes // 4 + 64 * 1024


class ImapResponseTooLarge(ImapConnectError):
    """The server sent more than the client reads (a literal or line above its cap,
    or a command's answer above its budget); the connection is dropped unread."""


class BoundedReads:
    """imaplib client whose reads have a ceiling, whatever the server declares.

    imaplib reads a literal with ``read(N)`` for the N the server announces and
    lines with ``readline``; both are capped here, and every command gets a byte
    budget for all it reads (reset in ``_command``).  Exceeding any of them raises
    :class:`ImapResponseTooLarge` before the bytes are read: nothing is buffered."""

    host: str
    port: int

    def _set_limits(self, max_literal_bytes: int) -> None:
        self.max_literal_bytes = max_literal_bytes
        self.max_line_bytes = MAX_LINE_BYTES
        self.next_command_budget: int | None = None  # set just before a big FETCH
        self._budget = COMMAND_BYTES + max_literal_bytes  # the greeting and CAPABILITY

    def _command(self, name, *args):
        self._budget = self.next_command_budget or COMMAND_BYTES + self.max_literal_bytes
        self.next_command_budget = None
        return super()._command(name, *args)

    def _too_large(self, what: str) -> ImapResponseTooLarge:
        return ImapResponseTooLarge(f"Server {self.host}:{self.port} sent {what}; connection closed unread")

    def read(self, size: int) -> bytes:
        if size > self.max_literal_bytes:
            raise self._too_large(f"a literal of {size:,} bytes (this mailbox reads at most "
                                  f"{self.max_literal_bytes:,}: IMAP_MAX_MESSAGE_BYTES and slack)")
        self._spend(size)
        return super().read(size)

    def readline(self) -> bytes:
        line = self.file.readline(self.max_line_bytes + 1)
        if len(line) > self.max_line_bytes:
            raise self._too_large(f"a response line longer than {self.max_line_bytes:,} bytes")
        self._spend(len(line))
        return line

    def _spend(self, size: int) -> None:
        self._budget -= size
        if self._budget < 0:
            raise self._too_large("more data for one command than the messages it asked for can hold")


class BoundedIMAP4(BoundedReads, imaplib.IMAP4):
    def __init__(self, host: str, port: int, timeout: float, max_literal_bytes: int) -> None:
        self._set_limits(max_literal_bytes)
        super().__init__(host, port, timeout)


class BoundedIMAP4_SSL(BoundedReads, imaplib.IMAP4_SSL):
    def __init__(self, host: str, port: int, timeout: float, max_literal_bytes: int,
                 context: ssl.SSLContext) -> None:
        self._set_limits(max_literal_bytes)
        super().__init__(host, port, ssl_context=context, timeout=timeout)


class BoundedMailBox(MailBox):
    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext,
                 max_literal_bytes: int) -> None:
        self._max_literal_bytes = max_literal_bytes
        super().__init__(host, port, timeout=timeout, ssl_context=context)

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        return BoundedIMAP4_SSL(self._host, self._port, self._timeout, self._max_literal_bytes,
                                 self._ssl_context)


class BoundedMailBoxUnencrypted(MailBoxUnencrypted):
    def __init__(self, host: str, port: int, timeout: float, max_literal_bytes: int) -> None:
        self._max_literal_bytes = max_literal_bytes
        super().__init__(host, port, timeout=timeout)

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        return BoundedIMAP4(self._host, self._port, self._timeout, self._max_literal_bytes)


def open_mailbox(security: str, host: str, port: int, timeout: float, max_literal: int, *,
                 verify_tls: bool, ca_file: str | None):
    """The imap-tools mailbox for a security mode ('ssl', 'starttls', 'none'), its reads capped."""
    if security == "none":
        return BoundedMailBoxUnencrypted(host, port, timeout, max_literal)
    context = ssl_context(verify=verify_tls, ca_file=ca_file)
    if security == "ssl":
        return BoundedMailBox(host, port, timeout, context, max_literal)
    return StrictStartTlsMailBox(host, port, context, lambda: BoundedIMAP4(host, port, timeout, max_literal))
