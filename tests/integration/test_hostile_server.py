"""A hostile IMAP server: what the client reads is capped per literal, per line and per
command, whatever sizes the server declares; a lie ends the run with a clear error and the
worker's memory stays where it was."""
import tracemalloc

import pytest

from portal import crypto
from portal.extensions import db
from portal.imap.client import ConnectionSettings, ImapResponseTooLarge, connect
from portal.imap.models import ImapAccount
from tests.integration.imap_helpers import sync, ticket_count, tickets
from tests.support.lying_imap import LyingImapServer

MB = 1024 * 1024


def settings_for(server: LyingImapServer, **extra) -> ConnectionSettings:
    return ConnectionSettings(host=server.host, port=server.port, security="none", verify_tls=True,
                              username="u", password="p", timeout=10, **extra)


class PeakMemory:
    """Peak of Python allocations inside the block (tracemalloc)."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def fetch_everything(settings: ConnectionSettings) -> list:
    with connect(settings) as session:
        session.select("INBOX", readonly=True)
        infos = session.fetch_info(session.search_uids(unseen_only=False))
        return list(session.fetch_messages([i.uid for i in infos]))


def test_a_60_mb_literal_declared_as_100_bytes_is_refused_unread():
    with LyingImapServer("big_literal") as server, PeakMemory() as memory:
        with pytest.raises(ImapResponseTooLarge) as refused:
            fetch_everything(settings_for(server))
    assert f"sent a literal of {60 * MB:,} bytes" in str(refused.value)
    assert "IMAP_MAX_MESSAGE_BYTES" in str(refused.value)
    assert memory.peak < 40 * MB


def test_the_literal_cap_follows_the_mailbox_limit():
    with LyingImapServer("big_literal", literal_bytes=3 * MB) as server:
        with pytest.raises(ImapResponseTooLarge, match=f"at most {2 * MB:,}"):
            fetch_everything(settings_for(server, max_literal_bytes=2 * MB))
        assert len(fetch_everything(settings_for(server, max_literal_bytes=4 * MB))[0].raw) == 3 * MB


def test_many_literals_each_under_the_cap_cannot_add_up_past_the_command_budget():
    # 200 messages declared as 100 bytes, sent as 900 KB each: 180 MB if all were read
    with LyingImapServer("many_literals", literal_bytes=900 * 1024, messages=200) as server, PeakMemory() as memory:
        with pytest.raises(ImapResponseTooLarge, match="more data for one command"):
            fetch_everything(settings_for(server, max_literal_bytes=1 * MB))
    assert memory.peak < 40 * MB


@pytest.mark.parametrize(("mode", "cap"), [("long_line", 1 * MB), ("long_search", 8 * MB)])
def test_a_line_that_never_ends_is_refused(mode, cap):
    with LyingImapServer(mode) as server, PeakMemory() as memory:
        with pytest.raises(ImapResponseTooLarge, match=f"a response line longer than {cap:,} bytes"):
            fetch_everything(settings_for(server))
    assert memory.peak < 2 * cap + 8 * MB  # readline(limit) buffers up to about twice the limit


def test_an_honest_server_still_works_through_the_capped_client():
    with LyingImapServer("honest") as server:
        [message] = fetch_everything(settings_for(server))
    assert message.raw.endswith(b"Hello.\r\n") and message.size == len(message.raw)


def _mailbox_at(server: LyingImapServer) -> ImapAccount:
    account = ImapAccount(name="Lying box", host=server.host, port=server.port, security="none",
                          allow_plaintext=True, verify_tls=True, username="u",
                          password_encrypted=crypto.encrypt("p"), folder="INBOX")
    db.session.add(account)
    db.session.commit()
    return account


def test_a_sync_against_the_lying_server_fails_clearly_with_bounded_memory(app_ctx):
    with LyingImapServer("big_literal") as server:
        account = _mailbox_at(server)
        with PeakMemory() as memory:
            result = sync(account)
    assert result["status"] == "failed"
    assert f"literal of {60 * MB:,} bytes" in result["error"]
    assert ticket_count() == 0
    assert memory.peak < 40 * MB


def test_a_sync_against_an_honest_server_imports(app_ctx):
    with LyingImapServer("honest") as server:
        result = sync(_mailbox_at(server))
    assert result["status"] == "succeeded", result
    assert [t.subject for t in tickets()] == ["honest"]
