"""TLS for IMAP connections: the SSL context a mailbox asks for, and STARTTLS
that never falls back to plaintext."""
from __future__ import annotations

import imaplib
import ssl
from contextlib import suppress
from typing import Callable

from imap_tools.mailbox import BaseMailBox

from .client_errors import ImapConnectError, describe_oserror, response_text


def ssl_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """System CAs plus ``ca_file``; without ``verify`` neither chain nor host name is checked."""
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ImapConnectError(f"Cannot load CA file {ca_file}: {describe_oserror(exc)}") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class StrictStartTlsMailBox(BaseMailBox):
    """Plain connection upgraded with STARTTLS; refuses servers that do not
    offer it (never falls back to plaintext) and closes the socket on failure."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext,
                 plain_client: Callable[[], imaplib.IMAP4]) -> None:
        self._host, self._port, self._ssl_context = host, port, context
        self._plain_client = plain_client  # opens the plaintext connection to upgrade
        super().__init__()

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        client = self._plain_client()
        try:
            if "STARTTLS" not in client.capabilities:
                raise ImapConnectError(
                    f"Server {self._host}:{self._port} does not offer STARTTLS; "
                    "refusing to continue without encryption")
            typ, data = client.starttls(self._ssl_context)
            if typ != "OK":
                raise ImapConnectError(f"STARTTLS failed on {self._host}:{self._port}: {response_text(data)}")
        except BaseException:
            with suppress(Exception):
                client.shutdown()
            raise
        return client
