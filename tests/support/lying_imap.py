"""A hostile IMAP server on 127.0.0.1 for one mailbox of one message: it answers enough of
IMAP4rev1 for a sync (CAPABILITY, LOGIN, SELECT/EXAMINE, UID SEARCH, UID FETCH, UID STORE,
LOGOUT) and lies where a client must not trust it.

Modes:
  honest        a 100-byte message, declared as 100 bytes
  big_literal   declares RFC822.SIZE 100, then announces and streams a literal of
                ``literal_bytes`` (60 MB by default)
  many_literals a UID SEARCH finds ``messages`` messages, each declared as 100 bytes and sent
                as a ``literal_bytes`` literal (each below the literal cap, together far above)
  long_line     answers SELECT with one line of ``line_bytes`` that never ends
  long_search   answers UID SEARCH with one line of ``line_bytes`` that never ends
"""
from __future__ import annotations

import socket
import threading

from tests.support.loopback_server import LoopbackServer

MESSAGE = (
    b"From: Jane <jane@example.com>\r\nTo: support@example.com\r\nSubject: honest\r\n"
    b"Message-ID: <honest@example.com>\r\n\r\nHello.\r\n"
)
_CHUNK = b"A" * 65536


class LyingImapServer(LoopbackServer):
    def __init__(self, mode: str = "big_literal", *, literal_bytes: int = 60 * 1024 * 1024,
                 line_bytes: int = 60 * 1024 * 1024, messages: int = 200):
        self.mode = mode
        self.literal_bytes = literal_bytes
        self.line_bytes = line_bytes
        self.messages = messages if mode == "many_literals" else 1
        self.sent = 0  # bytes of lies sent before the client hung up
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] lying server ready\r\n")
                buffer = b""
                while not self.stopping:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\r\n" in buffer:
                        line, buffer = buffer.split(b"\r\n", 1)
                        if not self._answer(conn, line):
                            return
            except OSError:  # the client hung up on us: what it should do
                return

    def _answer(self, conn: socket.socket, line: bytes) -> bool:
        tag, _, rest = line.partition(b" ")
        command = rest.upper()
        send = conn.sendall
        if command.startswith(b"CAPABILITY"):
            send(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
        elif command.startswith(b"LOGIN"):
            send(tag + b" OK logged in\r\n")
        elif command.startswith((b"SELECT", b"EXAMINE")):
            if self.mode == "long_line":
                send(b"* OK [ALERT] ")
                self._stream(conn, self.line_bytes, b"x")
                return False
            send(b"* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                 % (self.messages, self.messages + 1) + tag + b" OK [READ-WRITE] selected\r\n")
        elif command.startswith(b"UID SEARCH"):
            if self.mode == "long_search":
                send(b"* SEARCH")
                self._stream(conn, self.line_bytes, b" 1")
                return False
            uids = b" ".join(b"%d" % uid for uid in range(1, self.messages + 1))
            send(b"* SEARCH " + uids + b"\r\n" + tag + b" OK done\r\n")
        elif command.startswith(b"UID FETCH"):
            return self._fetch(conn, tag, command)
        elif command.startswith(b"UID STORE"):
            send(tag + b" OK stored\r\n")
        elif command.startswith(b"LOGOUT"):
            send(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
            return False
        else:
            send(tag + b" BAD unknown command\r\n")
        return True

    def _fetch(self, conn: socket.socket, tag: bytes, command: bytes) -> bool:
        uids = _uids(command.split(b" ")[2])
        if b"BODY" not in command:
            for uid in uids:
                conn.sendall(b"* %d FETCH (UID %d FLAGS () RFC822.SIZE 100)\r\n" % (uid, uid))
            conn.sendall(tag + b" OK done\r\n")
            return True
        for uid in uids:
            if self.mode == "honest":
                conn.sendall(b"* %d FETCH (UID %d FLAGS () RFC822.SIZE %d BODY[] {%d}\r\n"
                             % (uid, uid, len(MESSAGE), len(MESSAGE)) + MESSAGE + b")\r\n")
                continue
            conn.sendall(b"* %d FETCH (UID %d FLAGS () RFC822.SIZE 100 BODY[] {%d}\r\n"
                         % (uid, uid, self.literal_bytes))
            self._stream(conn, self.literal_bytes, _CHUNK)
            conn.sendall(b")\r\n")
        conn.sendall(tag + b" OK done\r\n")
        return True

    def _stream(self, conn: socket.socket, total: int, unit: bytes) -> None:
        piece = unit * max(1, 65536 // len(unit))
        left = total
        while left > 0 and not self.stopping:
            part = piece[:left]
            conn.sendall(part)
            self.sent += len(part)
            left -= len(part)

    # ------------------------------------------------------------- lifetime


def _uids(uid_set: bytes) -> list[int]:
    uids: list[int] = []
    for part in uid_set.split(b","):
        low, _, high = part.partition(b":")
        if high == b"*":
            high = low
        uids += range(int(low), int(high or low) + 1)
    return uids

