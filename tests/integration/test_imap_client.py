"""portal.imap.client against a real Dovecot (tests/support/dovecot.py); no fakes.

The only non-Dovecot peers are plain sockets that model a dead port and a
server that never greets.  The error translation table is checked on its own
at the end: most of its rows (a TLS error mid-command, a server that drops
the line during login) cannot be provoked from a healthy Dovecot.
"""
from __future__ import annotations

import datetime
import imaplib
import os
import random
import re
import signal
import socket
import ssl
import threading
import time
import tracemalloc

import pytest
from imap_tools.errors import MailboxLoginError

from portal.imap import client as imap_client
from portal.imap.client import (
    ConnectionSettings,
    FetchedMessage,
    ImapAuthError,
    ImapConnectError,
    ImapError,
    compress_uids,
    connect,
    test_connection,
)
from portal.imap.client_errors import translate, translated
from portal.imap.client_wire import interpret_fetch
from tests.support.dovecot import DovecotServer, ImapAccount, free_port, make_message, uid_set


def settings(account: ImapAccount, security: str = "none", *, verify: bool = True, ca: bool = True,
             password: str | None = None, username: str | None = None, timeout: float = 10.0,
             port: int | None = None, host: str | None = None) -> ConnectionSettings:
    if port is None:
        port = account.ssl_port if security == "ssl" else account.port
    return ConnectionSettings(
        host=host or account.host, port=port, security=security, verify_tls=verify,
        username=username or account.username,
        password=account.password if password is None else password,
        timeout=timeout, ca_file=account.ca_cert_path if ca else None)


def assert_secret_free(exc: BaseException, secret: str) -> None:
    chain = []
    e: BaseException | None = exc
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for err in chain:
        assert secret not in str(err)
        assert secret not in repr(err)


# ------------------------------------------------------------------ connect
@pytest.mark.parametrize("security", ["none", "ssl", "starttls"])
def test_connect_and_list_folders_each_security_mode(imap_account, security):
    with connect(settings(imap_account, security)) as session:
        assert "INBOX" in session.list_folders()
        if security != "none":
            assert session._client.sock.version() is not None  # really TLS
        else:
            assert not hasattr(session._client.sock, "version")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_verification_without_ca_fails_clearly(imap_account, security):
    s = settings(imap_account, security, ca=False)
    with pytest.raises(ImapConnectError) as info:
        connect(s)
    assert not isinstance(info.value, ImapAuthError)
    msg = str(info.value)
    assert msg.startswith(f"TLS certificate verification failed for {s.host}:{s.port}: ")
    assert "certificate" in msg.split(": ", 1)[1]
    assert_secret_free(info.value, imap_account.password)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_verification_off_succeeds_without_ca(imap_account, security):
    with connect(settings(imap_account, security, verify=False, ca=False)) as session:
        assert "INBOX" in session.list_folders()


def test_tls_hostname_is_checked(imap_account):
    # the certificate names 127.0.0.1 and localhost, not 127.0.0.1's other spellings
    s = settings(imap_account, "ssl")
    s.host = "127.1"  # same address, name not in the certificate
    with pytest.raises(ImapConnectError, match="TLS certificate verification failed"):
        connect(s)
    s.verify_tls = False
    with connect(s) as session:
        assert session.list_folders()


def test_ssl_to_a_plaintext_port_is_a_tls_error(imap_account):
    with pytest.raises(ImapConnectError, match=r"^TLS error with 127\.0\.0\.1:\d+"):
        connect(settings(imap_account, "ssl", port=imap_account.port))


def test_starttls_without_server_support_fails_instead_of_falling_back(dovecot_server_no_tls):
    server = dovecot_server_no_tls
    user, password = server.new_user()
    account = ImapAccount(server, user, password)
    s = settings(account, "starttls", ca=False)
    with pytest.raises(ImapConnectError) as info:
        connect(s)
    assert "does not offer STARTTLS" in str(info.value)
    assert "refusing" in str(info.value)
    assert_secret_free(info.value, password)
    # the credentials never went over the wire: no login attempt for that user
    assert f"user=<{user}>" not in server.log_path.read_text()
    # plaintext is still possible when explicitly chosen
    with connect(settings(account, "none")) as session:
        assert "INBOX" in session.list_folders()


@pytest.mark.parametrize("security", ["none", "ssl", "starttls"])
def test_wrong_password_is_auth_error_without_password(imap_account, security):
    wrong = imap_account.password + "-Wrong\"\\pw"
    with pytest.raises(ImapAuthError) as info:
        connect(settings(imap_account, security, password=wrong))
    msg = str(info.value)
    assert msg.startswith(f"Login failed for user {imap_account.username}: ")
    assert "AUTHENTICATIONFAILED" in msg
    assert_secret_free(info.value, wrong)
    assert_secret_free(info.value, imap_account.password)


def test_unknown_user_is_auth_error(imap_account):
    with pytest.raises(ImapAuthError, match="Login failed for user nobody-here"):
        connect(settings(imap_account, username="nobody-here"))


@pytest.mark.parametrize("password", ['with "quotes" and \\ backslash', "pässwörd-ünïcode"])
def test_passwords_needing_quoting_or_utf8_work(dovecot_server, password):
    user, _ = dovecot_server.new_user(password=password)
    account = ImapAccount(dovecot_server, user, password)
    with connect(settings(account)) as session:
        assert "INBOX" in session.list_folders()
    with pytest.raises(ImapAuthError) as info:
        connect(settings(account, password=password + "x"))
    assert_secret_free(info.value, password + "x")


def test_password_with_line_break_cannot_inject_commands(imap_account):
    evil = imap_account.password + '"\r\nX1 CREATE Injected\r\nX2 LOGIN a b'
    with pytest.raises(ImapAuthError) as info:
        connect(settings(imap_account, password=evil))
    assert "AUTHENTICATIONFAILED" in str(info.value)
    assert_secret_free(info.value, evil)
    assert "Injected" not in imap_account.list_folders()


def connect_error_within(seconds: float, port: int, security: str = "none",
                         timeout: float = 5) -> ImapConnectError:
    """The error connecting to a loopback peer that is not Dovecot, which must come in time."""
    s = ConnectionSettings(host="127.0.0.1", port=port, security=security, verify_tls=True,
                           username="u", password="secret-pw", timeout=timeout)
    started = time.monotonic()
    with pytest.raises(ImapConnectError) as info:
        connect(s)
    assert time.monotonic() - started < seconds
    return info.value


def test_unreachable_port_fails_fast():
    port = free_port()
    err = connect_error_within(2, port)
    assert str(err) == f"Could not connect to 127.0.0.1:{port}: Connection refused"
    assert not isinstance(err, ImapAuthError)


@pytest.fixture
def silent_server():
    """Accepts connections and never says anything."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def run():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.parametrize("security", ["none", "ssl", "starttls"])
def test_server_that_never_greets_times_out(silent_server, security):
    err = connect_error_within(3, silent_server, security, timeout=0.5)
    assert str(err) == f"Timed out after 0.5s talking to 127.0.0.1:{silent_server}"


def test_timeout_applies_to_later_reads(dovecot_server, imap_account):
    imap_account.append(make_message(1))
    with connect(settings(imap_account, timeout=0.5)) as session:
        (pid,) = dovecot_server.session_pids(imap_account.username)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ImapConnectError, match=r"^Timed out after 0\.5s talking to 127\.0\.0\.1:\d+$"):
                session.select("INBOX", readonly=True)
            assert time.monotonic() - started < 3
        finally:
            os.kill(pid, signal.SIGCONT)
        # the session is unusable now, and says so
        with pytest.raises(ImapConnectError, match="closed"):
            session.select("INBOX", readonly=True)


def test_invalid_settings_are_connect_errors():
    base = dict(host="127.0.0.1", port=143, security="none", verify_tls=True, username="u", password="p")
    with pytest.raises(ImapConnectError, match="Unknown security mode 'tls'"):
        connect(ConnectionSettings(**{**base, "security": "tls"}))
    with pytest.raises(ImapConnectError, match="Invalid port"):
        connect(ConnectionSettings(**{**base, "port": 0}))
    with pytest.raises(ImapConnectError, match="No IMAP host"):
        connect(ConnectionSettings(**{**base, "host": " "}))


def test_settings_repr_hides_password():
    s = ConnectionSettings(host="h", port=1, security="none", verify_tls=True, username="u",
                           password="hunter2-secret")
    assert "hunter2-secret" not in repr(s)


def test_test_connection_returns_folders(imap_account):
    imap_account.create_folder("Support")
    assert {"INBOX", "Support"} <= set(test_connection(settings(imap_account, "starttls")))


# ------------------------------------------------------------ folders/select
def test_list_folders_decodes_names(imap_account):
    for name in ("Support", "Customer Mail", "Archive.2024", "Überweisungen & Co", 'Quote"d'):
        imap_account.create_folder(name)
    with connect(settings(imap_account)) as session:
        folders = session.list_folders()
    assert {"INBOX", "Support", "Customer Mail", "Archive.2024",
            "Überweisungen & Co", 'Quote"d'} <= set(folders)
    assert "Archive" not in folders  # a parent that only exists as hierarchy (\Noselect/\NonExistent)


def test_select_returns_state_and_missing_folder_is_clear(imap_account):
    uids = [imap_account.append(make_message(n)) for n in range(3)]
    with connect(settings(imap_account)) as session:
        state = session.select("INBOX", readonly=False)
        assert state.exists == 3
        assert state.uidnext == max(uids) + 1
        assert state.uidvalidity > 0
        again = session.select("INBOX", readonly=True)
        assert again.uidvalidity == state.uidvalidity
        with pytest.raises(ImapError) as info:
            session.select("Nope", readonly=True)
        assert str(info.value) == "Folder 'Nope' does not exist"
        assert not isinstance(info.value, ImapConnectError)
        with pytest.raises(ImapError, match="No folder selected"):
            session.search_uids(unseen_only=True)
        # still usable after the error
        assert session.select("INBOX", readonly=True).exists == 3


def test_folder_with_non_ascii_name_can_be_selected(imap_account):
    uid = imap_account.append(make_message(1), folder="Überweisungen")
    with connect(settings(imap_account)) as session:
        state = session.select("Überweisungen", readonly=True)
        assert state.exists == 1
        assert session.search_uids(unseen_only=False) == [uid]


def test_uidvalidity_changes_when_folder_is_recreated(imap_account):
    imap_account.append(make_message(1), folder="Temp")
    with connect(settings(imap_account)) as session:
        first = session.select("Temp", readonly=True).uidvalidity
    imap_account.delete_folder("Temp")
    imap_account.append(make_message(2), folder="Temp")
    with connect(settings(imap_account)) as session:
        assert session.select("Temp", readonly=True).uidvalidity != first


# -------------------------------------------------------------------- search
def test_search_unseen_and_above_uid(imap_account):
    uids = [imap_account.append(make_message(n), flags=("\\Seen",) if n in (1, 3) else ())
            for n in range(5)]
    unseen = [u for i, u in enumerate(uids) if i not in (1, 3)]
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        assert session.search_uids(unseen_only=True) == unseen
        assert session.search_uids(unseen_only=False) == uids
        assert session.search_uids(unseen_only=False, above_uid=uids[1]) == uids[2:]
        assert session.search_uids(unseen_only=True, above_uid=uids[1]) == [uids[2], uids[4]]
        # the N:* pitfall: "UID 6:*" matches the last message even if its UID is 5
        assert session.search_uids(unseen_only=False, above_uid=uids[-1]) == []
        assert session.search_uids(unseen_only=True, above_uid=uids[-1]) == []
        assert session.search_uids(unseen_only=False, above_uid=uids[-1] + 100) == []


def _append_on(account: ImapAccount, raw: bytes, when: datetime.datetime, flags: str | None = None) -> int:
    c = account.connect()
    try:
        typ, data = c.append("INBOX", flags, imaplib.Time2Internaldate(when), raw)
        assert typ == "OK"
        return int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    finally:
        c.logout()


def test_search_by_internaldate_and_below_a_uid_and_fetch_internaldates(imap_account):
    utc = datetime.timezone.utc
    days = [datetime.datetime(2024, 1, 10, 8, 0, tzinfo=utc), datetime.datetime(2024, 3, 1, 23, 30, tzinfo=utc),
            datetime.datetime(2024, 3, 2, 0, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))]
    uids = [_append_on(imap_account, make_message(n), when, "\\Seen" if n == 0 else None) for n, when in enumerate(days)]
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        march = datetime.date(2024, 3, 1)
        assert session.search_uids(unseen_only=False, since=march) == uids[1:]
        assert session.search_uids(unseen_only=False, before=march) == uids[:1]
        assert session.search_uids(unseen_only=True, before=march) == []
        assert session.search_uids(unseen_only=False, above_uid=uids[1], since=march) == uids[2:]
        assert session.search_uids(unseen_only=False, below_uid=uids[2]) == uids[:2]
        assert session.search_uids(unseen_only=False, below_uid=1) == []
        dates = session.fetch_items(uids, "(UID INTERNALDATE)")
        assert [dates[u].internaldate for u in uids] == [datetime.datetime(2024, 1, 10, 8, 0), datetime.datetime(2024, 3, 1, 23, 30),
                                                       datetime.datetime(2024, 3, 1, 22, 30)]


def test_fetch_items_reads_the_structure_and_single_sections(imap_account):
    from email.message import EmailMessage

    from portal.imap import bodystructure

    mail = EmailMessage()
    mail["Subject"] = "Parts"
    mail.set_content("the text\n")
    mail.add_alternative("<p>the html</p>", subtype="html")
    mail.add_attachment(b"\x00" * 5000, maintype="application", subtype="octet-stream", filename="z.bin")
    uid = imap_account.append(mail.as_bytes().replace(b"\n", b"\r\n"))
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        root = bodystructure.parse(session.fetch_items([uid], "(UID BODYSTRUCTURE)")[uid].structure)
        assert [(p.section, p.type, p.subtype) for p in root.leaves()] == [
            ("1.1", "text", "plain"), ("1.2", "text", "html"), ("2", "application", "octet-stream")]
        assert root.leaves()[2].filename == "z.bin"
        got = session.fetch_items([uid], "(UID BODY.PEEK[1.2.MIME] BODY.PEEK[1.2])")[uid].sections
        assert b"text/html" in got["1.2.MIME"] and got["1.2"].strip() == b"<p>the html</p>"
        assert session.fetch_items([uid + 100], "(UID BODYSTRUCTURE)") == {}  # gone: simply not there
        # a literal above the cap given for this command is not read: the connection is dropped
        with pytest.raises(imap_client.ImapResponseTooLarge):
            session.fetch_items([uid], "(UID BODY.PEEK[2])", max_literal_bytes=1000)
    assert "\\Seen" not in imap_account.flags()[uid]


def test_search_in_empty_folder(imap_account):
    imap_account.create_folder("Empty")
    with connect(settings(imap_account)) as session:
        assert session.select("Empty", readonly=True).exists == 0
        assert session.search_uids(unseen_only=False) == []
        assert session.search_uids(unseen_only=True, above_uid=10) == []
        assert list(session.fetch_messages([])) == []
        assert session.fetch_info([]) == []


def test_search_retries_without_charset_on_badcharset(imap_account, monkeypatch):
    uids = [imap_account.append(make_message(n)) for n in range(2)]
    monkeypatch.setattr(imap_client, "SEARCH_CHARSET", "X-NO-SUCH-CHARSET")
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        sent = []
        real_uid = session._client.uid

        def spy(command, *args):
            typ, data = real_uid(command, *args)
            sent.append((args, typ, data))
            return typ, data

        session._client.uid = spy
        assert session.search_uids(unseen_only=True) == uids
    assert sent[0][0][:2] == ("CHARSET", "X-NO-SUCH-CHARSET") and sent[0][1] == "NO"
    assert b"BADCHARSET" in sent[0][2][0]
    assert sent[1][0] == ("UNSEEN",) and sent[1][1] == "OK"


# --------------------------------------------------------------------- fetch
def _varied_messages(count: int) -> list[bytes]:
    raws = []
    for n in range(count):
        if n % 97 == 0:
            body = (f"line {n} " * 4000).encode() + b"\r\n"  # ~30 KB
        elif n % 13 == 0:
            body = "Grüße, ünïcödé 8bit body ✓\r\n".encode() + bytes(range(32, 127)) + b"\r\n"
        else:
            body = f"short body {n}\r\n".encode()
        raws.append(make_message(n, subject=f"Ticket #{n} {{literal-looking}} (parens) \"q\"", body=body))
    return raws


def test_fetch_1200_messages_in_chunks_exact_bytes_and_order(imap_account):
    raws = _varied_messages(1200)
    uids = imap_account.append_many(raws)
    by_uid = dict(zip(uids, raws))
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        found = session.search_uids(unseen_only=True)
        assert found == sorted(uids)
        commands = []
        real_uid = session._client.uid

        def spy(command, *args):
            commands.append((command, args))
            return real_uid(command, *args)

        session._client.uid = spy
        fetched = list(session.fetch_messages(found, chunk=500))
        assert session.last_missing == []
    assert [m.uid for m in fetched] == sorted(uids)
    for m in fetched:
        assert isinstance(m, FetchedMessage)
        assert m.raw == by_uid[m.uid]
        assert m.size == len(by_uid[m.uid])
        assert "\\Seen" not in m.flags
    fetch_cmds = [args for cmd, args in commands if cmd == "FETCH"]
    assert len(fetch_cmds) == 3  # 500 + 500 + 200
    assert fetch_cmds[0] == (compress_uids(sorted(uids)[:500]), "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
    assert fetch_cmds[0][0].count(":") == 1 and "," not in fetch_cmds[0][0]  # compressed, e.g. 1:500


def test_fetch_info_chunks_sizes_flags_and_gaps(imap_account):
    raws = _varied_messages(250)
    uids = imap_account.append_many(raws)
    imap_account.store_flags(uids[::5], ["\\Flagged", "$Customer"])
    gone = uids[10:20] + [uids[100]]
    imap_account.expunge(gone)
    wanted = [u for u in uids if u not in gone]
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        infos = session.fetch_info(list(reversed(wanted)) + wanted[:3], chunk=100)
        assert session.last_missing == []
        assert [i.uid for i in infos] == wanted
        size_of = dict(zip(uids, (len(r) for r in raws)))
        for info in infos:
            assert info.size == size_of[info.uid]
            expected = {"\\Flagged", "$Customer"} if (uids.index(info.uid) % 5 == 0) else set()
            assert set(info.flags) - {"\\Recent"} == expected
        # UIDs that do not exist are reported, not invented
        infos = session.fetch_info([uids[0], uids[10], uids[-1] + 50])
        assert [i.uid for i in infos] == [uids[0]]
        assert session.last_missing == [uids[10], uids[-1] + 50]


def test_fetch_with_size_budget_splits_chunks(imap_account):
    raws = [make_message(n, body=b"x" * 20_000 + b"\r\n") for n in range(10)]
    uids = imap_account.append_many(raws)
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        sizes = {i.uid: i.size for i in session.fetch_info(uids)}
        calls = []
        real_uid = session._client.uid
        session._client.uid = lambda cmd, *a: (calls.append(a[0]), real_uid(cmd, *a))[1]
        got = list(session.fetch_messages(uids, chunk=200, sizes=sizes, max_chunk_bytes=50_000))
    assert [m.raw for m in got] == raws
    assert len(calls) == 5  # two ~20 KB messages per command


@pytest.mark.parametrize("security", ["none", "ssl"])
def test_big_literal_is_held_once_not_copied(imap_account, security):
    # The worker's memory budget allows a 25 MB mail to exist once: the
    # bytes object imaplib reads the literal into must be FetchedMessage.raw
    # itself (no join of the response pieces, no slice of the literal).
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n"
    big = make_message(1, body=line * (6_000_000 // len(line)))
    raws = [make_message(0), big, make_message(2)]
    uids = imap_account.append_many(raws)
    with connect(settings(imap_account, security)) as session:
        session.select("INBOX", readonly=True)
        literals = []
        real_read = session._client.read

        def spy(size):
            data = real_read(size)
            literals.append(data)
            return data

        session._client.read = spy
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            fetched = list(session.fetch_messages(uids))
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    assert [m.raw for m in fetched] == raws
    assert any(fetched[1].raw is literal for literal in literals)
    assert peak < 1.2 * len(big), f"peak {peak:,} B for a {len(big):,} B message"


def test_fetch_response_parser_keeps_the_literal_object():
    # Both the fast path and the general tokenizer hand the literal on as is.
    literal = b"Subject: x\r\n\r\n" + b"y" * 100_000
    n = str(len(literal)).encode()
    fast = interpret_fetch(
        [(b"1 (UID 7 FLAGS (\\Seen) RFC822.SIZE " + n + b" BODY[] {" + n + b"}", literal), b")"])
    general = interpret_fetch(
        [(b"1 (FLAGS (\\Seen) UID 7 BODY[] {" + n + b"}", literal), b" RFC822.SIZE " + n + b")"])
    for item in (fast, general):
        assert (item.uid, item.flags, item.size) == (7, ("\\Seen",), len(literal))
        assert item.body is literal


def test_message_expunged_between_search_and_fetch(imap_account):
    uids = imap_account.append_many([make_message(n) for n in range(10)])
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        found = session.search_uids(unseen_only=True)
        assert found == uids
        imap_account.expunge([uids[3], uids[7]])  # another connection
        got = list(session.fetch_messages(found, chunk=4))
        assert [m.uid for m in got] == [u for u in uids if u not in (uids[3], uids[7])]
        assert session.last_missing == [uids[3], uids[7]]
        infos = session.fetch_info(found)
        assert [i.uid for i in infos] == [m.uid for m in got]
        assert session.last_missing == [uids[3], uids[7]]
        # marking a vanished message seen is not an error
        session.select("INBOX", readonly=False)
        session.mark_seen(found)
    flags = imap_account.flags()
    assert set(flags) == {m.uid for m in got}
    assert all("\\Seen" in f for f in flags.values())


def test_flag_changes_during_fetch_are_merged(imap_account):
    uids = imap_account.append_many([make_message(n) for n in range(5)])
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        imap_account.store_flags([uids[2]], ["\\Flagged"])  # unsolicited FETCH for this session
        imap_account.expunge([uids[4]])
        got = {m.uid: m for m in session.fetch_messages(uids)}
        assert sorted(got) == uids[:4]
        assert "\\Flagged" in got[uids[2]].flags
        assert session.last_missing == [uids[4]]


def test_mark_seen_sets_seen_in_chunks(imap_account):
    uids = imap_account.append_many([make_message(n) for n in range(30)])
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=False)
        calls = []
        real_uid = session._client.uid
        session._client.uid = lambda cmd, *a: (calls.append((cmd, a)), real_uid(cmd, *a))[1]
        session.mark_seen(uids[:25], chunk=10)
        assert [c[0] for c in calls] == ["STORE"] * 3
        assert calls[0][1][1:] == ("+FLAGS.SILENT", "(\\Seen)")
        session._client.uid = real_uid
        assert session.search_uids(unseen_only=True) == uids[25:]
    flags = imap_account.flags()
    assert all("\\Seen" in flags[u] for u in uids[:25])
    assert not any("\\Seen" in flags[u] for u in uids[25:])


@pytest.mark.parametrize("readonly", [True, False])
def test_fetching_bodies_does_not_set_seen(imap_account, readonly):
    uids = imap_account.append_many([make_message(n) for n in range(5)])
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=readonly)
        assert len(list(session.fetch_messages(uids))) == 5
        assert session.search_uids(unseen_only=True) == uids
    assert all("\\Seen" not in f for f in imap_account.flags().values())


def test_mark_seen_on_readonly_folder_is_refused(imap_account):
    uid = imap_account.append(make_message(1))
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        with pytest.raises(ImapError, match="read-only"):
            session.mark_seen([uid])
    assert imap_account.flags() == {uid: set()}


def test_fetch_and_flags_in_other_folder(imap_account):
    uids = imap_account.append_many([make_message(n) for n in range(3)], folder="Support",
                                    flags=("\\Answered",))
    with connect(settings(imap_account, "ssl")) as session:
        session.select("Support", readonly=False)
        got = list(session.fetch_messages(uids))
        assert [set(m.flags) - {"\\Recent"} for m in got] == [{"\\Answered"}] * 3
        session.mark_seen(uids[:1])
    assert imap_account.flags("Support") == {uids[0]: {"\\Answered", "\\Seen"},
                                             uids[1]: {"\\Answered"}, uids[2]: {"\\Answered"}}


# ------------------------------------------------------ session lifecycle
def test_context_manager_closes_after_error(imap_account):
    with pytest.raises(RuntimeError):
        with connect(settings(imap_account)) as session:
            session.select("INBOX", readonly=True)
            raise RuntimeError("boom")
    assert session._closed
    assert session._client.sock._closed
    with pytest.raises(ImapConnectError, match="closed"):
        session.list_folders()


def test_server_crash_mid_session_and_restart():
    server = DovecotServer(tls=False)
    try:
        server.start()
        user, password = server.new_user()
        account = ImapAccount(server, user, password)
        uids = account.append_many([make_message(n) for n in range(3)])
        port = server.port
        with connect(settings(account, timeout=5)) as session:
            session.select("INBOX", readonly=True)
            pids = server.pids()
            server.kill()
            assert not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"
                           for p in pids)
            started = time.monotonic()
            with pytest.raises(ImapConnectError) as info:
                list(session.fetch_messages(uids))
            assert time.monotonic() - started < 3
            assert "127.0.0.1" in str(info.value)
        server.start()  # same port, same data
        assert server.port == port
        with connect(settings(account)) as session:
            session.select("INBOX", readonly=True)
            assert session.search_uids(unseen_only=False) == uids
        server.restart()
        assert account.flags() == {u: set() for u in uids}
    finally:
        server.cleanup()
    assert not server.pids()
    assert not server.root.exists()


# --------------------------------------------------------------- support kit
def test_support_new_users_can_log_in_immediately(dovecot_server):
    for _ in range(15):
        user, password = dovecot_server.new_user()
        with dovecot_server.session(user, password) as c:
            assert c.state == "AUTH"


def test_support_fill_maildir_assigns_uids_and_flags(imap_account):
    first = imap_account.append(make_message(0))
    raws = [make_message(n) for n in range(1, 301)]
    uids = imap_account.fill_maildir(raws[:200])
    uids += imap_account.fill_maildir(raws[200:], flags=("\\Seen",))
    assert uids == list(range(first + 1, first + 301))
    flags = imap_account.flags()
    assert sum("\\Seen" in f for f in flags.values()) == 100
    with connect(settings(imap_account)) as session:
        session.select("INBOX", readonly=True)
        assert [m.raw for m in session.fetch_messages(uids)] == raws
        assert session.search_uids(unseen_only=True) == [first] + uids[:200]


@pytest.fixture(scope="module")
def tls_required_server():
    server = DovecotServer(tls=True, require_tls=True)
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_server_requiring_tls_refuses_plaintext_login(tls_required_server):
    user, password = tls_required_server.new_user()
    account = ImapAccount(tls_required_server, user, password)
    with pytest.raises(ImapAuthError) as info:
        connect(settings(account, "none"))
    assert_secret_free(info.value, password)
    for security in ("starttls", "ssl"):
        with connect(settings(account, security)) as session:
            assert "INBOX" in session.list_folders()
    assert account.append(make_message(1)) == 1  # helpers use STARTTLS here


def test_compress_uids_agrees_with_the_support_kit():
    # The kit's uid_set is written apart from the client's; each checks the other.
    rng = random.Random(8)
    for _ in range(2000):
        uids = [rng.randint(1, 60) for _ in range(rng.randint(1, 40))]
        assert compress_uids(uids) == uid_set(uids)
    assert compress_uids([8, 1, 2, 3, 5, 7, 3]) == "1:3,5,7:8"
    with pytest.raises(ValueError):
        compress_uids([])


# ---------------------------------------- error translation (no server needed)
TRANSLATED_AS = ConnectionSettings(host="h.example", port=993, security="ssl", verify_tls=True,
                                   username="u@x", password="pw-s3cret", timeout=7.5)


def _ssl_error(reason: str) -> ssl.SSLError:
    err = ssl.SSLError(1, "handshake failed pw-s3cret")
    err.reason = reason
    return err


@pytest.mark.parametrize("exc, op, connected, folder, expected", [
    (socket.timeout("timed out"), imap_client.FETCH, True, "INBOX",
     (ImapConnectError, "Timed out after 7.5s talking to h.example:993")),
    (ConnectionRefusedError(111, "Connection refused"), imap_client.CONNECT, False, None,
     (ImapConnectError, "Could not connect to h.example:993: Connection refused")),
    (ConnectionResetError(104, "Connection reset by peer"), imap_client.FETCH, True, "INBOX",
     (ImapConnectError, "Connection to h.example:993 lost while fetching messages: Connection reset by peer")),
    (_ssl_error("WRONG_VERSION_NUMBER"), imap_client.CONNECT, False, None,
     (ImapConnectError, "TLS error with h.example:993: WRONG_VERSION_NUMBER")),
    (imaplib.IMAP4.abort("EOF pw-s3cret"), imap_client.SEARCH, True, "INBOX",
     (ImapConnectError, "Connection to h.example:993 failed while searching: EOF ***")),
    (imaplib.IMAP4.error("BAD pw-s3cret"), imap_client.SEARCH, True, "INBOX",
     (ImapError, "Search failed in folder 'INBOX': BAD ***")),
    (imaplib.IMAP4.error("BAD pw-s3cret"), imap_client.LIST, True, None,
     (ImapError, "IMAP error from h.example:993 while listing folders: BAD ***")),
    (imaplib.IMAP4.error("BAD"), imap_client.MARK_SEEN, True, "Sup {port}",
     (ImapError, "Marking messages as seen in 'Sup {port}' failed: BAD")),
    (imaplib.IMAP4.readonly("Archive is not writable"), imap_client.SELECT, True, "Archive",
     (ImapError, "Folder 'Archive' can only be opened read-only")),
    (imaplib.IMAP4.readonly("status changed"), imap_client.FETCH, True, "Archive",
     (ImapConnectError, "Connection to h.example:993 failed while fetching messages: status changed")),
    (MailboxLoginError(("NO", [b"[AUTHENTICATIONFAILED] pw-s3cret"]), "OK"), imap_client.LOGIN, True, None,
     (ImapAuthError, "Login failed for user u@x: [AUTHENTICATIONFAILED] ***")),
    (MailboxLoginError(("NO", [None]), "OK"), imap_client.LOGIN, True, None,
     (ImapAuthError, "Login failed for user u@x: rejected")),
    (imaplib.IMAP4.error("AUTHENTICATE failed"), imap_client.LOGIN, True, None,
     (ImapAuthError, "Login failed for user u@x: AUTHENTICATE failed")),
    (imaplib.IMAP4.abort("EOF"), imap_client.LOGIN, True, None,
     (ImapConnectError, "Connection to h.example:993 closed during login: EOF")),
    (UnicodeEncodeError("ascii", "Ü", 0, 1, "ordinal"), imap_client.SELECT, True, "Ü",
     (ImapError, "Cannot encode a value for h.example:993 while opening folder 'Ü'")),
    (ValueError("odd pw-s3cret"), imap_client.SEARCH, True, "INBOX",
     (ImapError, "Unexpected error talking to h.example:993 while searching: ValueError: odd ***")),
])
def test_translation_table(exc, op, connected, folder, expected):
    err = translate(exc, op, TRANSLATED_AS, connected=connected, folder=folder)
    assert (type(err), str(err)) == expected


def test_translated_block_closes_only_on_connection_errors():
    lost: list[bool] = []
    with pytest.raises(ImapError) as info:
        with translated(imap_client.SEARCH, TRANSLATED_AS, connected=True, folder="INBOX",
                        on_connection_lost=lambda: lost.append(True)):
            raise imaplib.IMAP4.error("BAD")
    assert type(info.value) is ImapError and not lost
    with pytest.raises(ImapConnectError):
        with translated(imap_client.SEARCH, TRANSLATED_AS, connected=True, folder="INBOX",
                        on_connection_lost=lambda: lost.append(True)):
            raise imaplib.IMAP4.abort("EOF")
    assert lost == [True]
    already = ImapConnectError("already decided")
    with pytest.raises(ImapConnectError) as info:
        with translated(imap_client.SEARCH, TRANSLATED_AS, connected=True,
                        on_connection_lost=lambda: lost.append(True)):
            raise already
    assert info.value is already and lost == [True]
    with pytest.raises(KeyboardInterrupt):
        with translated(imap_client.SEARCH, TRANSLATED_AS, connected=True):
            raise KeyboardInterrupt
