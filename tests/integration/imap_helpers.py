"""Mailbox rows pointing at the test Dovecot, and small helpers to run syncs."""
from sqlalchemy import func, select

from portal import crypto
from portal.extensions import db
from portal.imap.models import ImapAccount, ProcessedMessage
from portal.models import Ticket
from tests.support.loopback_server import LoopbackServer


def create_mailbox(imap_account, **fields) -> ImapAccount:
    values = dict(
        name=f"Box {imap_account.username}",
        host=imap_account.host,
        port=imap_account.port,
        security="none",
        allow_plaintext=True,  # the test Dovecot listens without TLS on loopback
        verify_tls=True,
        username=imap_account.username,
        password_encrypted=crypto.encrypt(imap_account.password),
        folder="INBOX",
    )
    values.update(fields)
    account = ImapAccount(**values)
    db.session.add(account)
    db.session.commit()
    return account


def sync(account) -> dict:
    from portal.imap.tasks import sync_mailbox

    result = sync_mailbox(account.id, trigger="manual", raise_errors=False)
    db.session.expire_all()
    return result


def outcomes(account) -> dict[int, str]:
    rows = db.session.execute(
        select(ProcessedMessage.uid, ProcessedMessage.outcome).where(ProcessedMessage.account_id == account.id)
    )
    return dict(rows.all())


def ticket_count() -> int:
    return db.session.scalar(select(func.count(Ticket.id)))


def tickets() -> list[Ticket]:
    return list(db.session.scalars(select(Ticket).order_by(Ticket.id)))


class RecordingServer(LoopbackServer):
    """A pretend IMAP server on 127.0.0.1 that records every connection and every byte it is
    sent, and refuses every command: the attacker's server a stolen secret would go to."""

    def __init__(self, greeting: bytes = b"* OK ready\r\n"):
        self.greeting = greeting
        self.connections = 0
        self.received = bytearray()
        super().__init__()

    def handle(self, conn):
        self.connections += 1
        with conn:
            conn.settimeout(2)
            try:
                conn.sendall(self.greeting)
                buffer = b""
                while not self.stopping:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    self.received += chunk
                    buffer += chunk
                    while b"\r\n" in buffer:
                        line, buffer = buffer.split(b"\r\n", 1)
                        tag, _, command = line.partition(b" ")
                        if command.upper().startswith(b"CAPABILITY"):
                            conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                        else:
                            conn.sendall(tag + b" NO refused\r\n")
            except OSError:
                pass
