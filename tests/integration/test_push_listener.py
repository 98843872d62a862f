"""IMAP IDLE push end to end: real Dovecot, real Redis, `python worker.py` and `python listener.py`
as processes. New mail becomes a ticket with no manual or cron sync; a killed listener's mailbox
is taken over; a burst is one sync; a server without IDLE leaves the mailbox on cron."""
import signal
import socket
import subprocess
import threading
import time

import pytest
from sqlalchemy import func, select

from portal.extensions import db, get_redis
from portal.imap import credentials
from portal.imap.client_idle import IdleUnsupported, Idler
from portal.imap.models import SyncRun
from portal.imap.push import (
    LISTENING, OFF, RECONNECTING, UNSUPPORTED, WAITING_FOR_SIGN_IN, lease_key, listeners, push_states,
)
from tests.integration.imap_helpers import create_mailbox, ticket_count, tickets
from tests.integration.test_oauth_mailboxes import authorization_code_mailbox, connect
from tests.integration.test_oauth_mailboxes import signed_in  # noqa: F401  (a fixture)
from tests.support import processes
from tests.support.loopback_server import LoopbackServer
from tests.support.mail import make_email

FAST = {"IMAP_PUSH_LEASE_SECONDS": 3, "IMAP_PUSH_QUIET_SECONDS": 0.5, "IMAP_PUSH_MAX_WAIT_SECONDS": 3}


@pytest.fixture
def start_process(app):
    started = []

    def start(*args, **env):
        proc = processes.start(app, *args, env={**FAST, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            processes.stop(proc)


def metrics_value(client, app, name):
    from prometheus_client.parser import text_string_to_metric_families

    app.config["METRICS_TOKEN"] = "metrics-token-0123456789"
    try:
        text = client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"}).get_data(as_text=True)
    finally:
        app.config["METRICS_TOKEN"] = None
        app.extensions.pop("portal_metrics", None)
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def api_session_page(client, app, account_id):
    from tests.conftest import login, make_user

    make_user("push-admin@example.com", super_admin=True)
    login(client, "push-admin@example.com")
    return client.get(f"/admin/modules/imap/{account_id}").get_data(as_text=True)


def _state(account_id):
    return push_states([account_id])[account_id]


def _runs(account_id):
    return list(db.session.scalars(select(SyncRun).where(SyncRun.account_id == account_id).order_by(SyncRun.id)))


def _all_finished(account_id):
    return all(run.status not in ("queued", "running", "deferred") for run in _runs(account_id))


def _output(*procs):
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    return "\n".join(proc.communicate(timeout=15)[0].decode(errors="replace")[-3000:] for proc in procs)


def _listening(account_id, start_process):
    worker = start_process("worker.py")
    listener = start_process("listener.py", "--name", "listener-a")
    assert processes.wait_for(lambda: _state(account_id)["state"] == LISTENING, timeout=20), _output(worker, listener)
    # the catch-up sync each new connection queues
    assert processes.wait_for(lambda: _runs(account_id) and _all_finished(account_id), timeout=20), _output(worker, listener)
    return worker, listener


def test_new_mail_becomes_a_ticket_without_any_sync_being_asked_for(app, api, client, app_ctx, imap_account, start_process):
    mailbox = create_mailbox(imap_account, push_enabled=True, schedule_cron="0 0 1 1 *")
    worker, listener = _listening(mailbox.id, start_process)
    assert _state(mailbox.id)["listener"] == "listener-a"
    assert processes.wait_for(lambda: [b["listening"] for b in listeners(get_redis())] == [1], timeout=5)
    report = api.get("/api/health").json["listeners"]
    assert report["alive"] == 1 and report["listeners"][0]["name"] == "listener-a"
    assert report["listeners"][0]["listening"] == 1 and report["listeners"][0]["heartbeat_age_seconds"] < 5
    assert metrics_value(client, app, "portal_imap_push_connections") == 1
    page = api_session_page(client, app, mailbox.id)
    assert "listening" in page and "listener-a" in page
    shown = api.get(f"/api/imap/accounts/{mailbox.id}").json
    assert (shown["push_enabled"], shown["push_state"], shown["push_listener"]) == (True, "listening", "listener-a")
    imap_account.append(make_email(subject="Pushed"))
    assert processes.wait_for(lambda: ticket_count() == 1, timeout=10), _output(worker, listener)
    assert [t.subject for t in tickets()] == ["Pushed"]
    assert {run.trigger for run in _runs(mailbox.id)} == {"scheduled"}
    # a clean stop hands the mailbox back: no lease, state off, no heartbeat
    processes.stop(listener)
    assert get_redis().get(lease_key(mailbox.id)) is None
    assert _state(mailbox.id)["state"] == OFF and listeners(get_redis()) == []


def test_a_burst_of_mail_is_one_or_two_syncs(app_ctx, imap_account, start_process):
    mailbox = create_mailbox(imap_account, push_enabled=True, schedule_cron="0 0 1 1 *")
    worker, listener = _listening(mailbox.id, start_process)
    before = len(_runs(mailbox.id))
    imap_account.append_many([make_email(subject=f"Burst {n}") for n in range(20)])
    assert processes.wait_for(lambda: ticket_count() == 20, timeout=20), _output(worker, listener)
    time.sleep(2)  # anything else the burst would queue
    db.session.expire_all()
    assert 1 <= len(_runs(mailbox.id)) - before <= 2
    assert ticket_count() == 20


def test_a_killed_listener_s_mailbox_is_taken_over(app_ctx, imap_account, start_process):
    mailbox = create_mailbox(imap_account, push_enabled=True, schedule_cron="0 0 1 1 *")
    worker = start_process("worker.py")
    first = start_process("listener.py", "--name", "listener-a")
    second = start_process("listener.py", "--name", "listener-b")
    assert processes.wait_for(lambda: _state(mailbox.id)["state"] == LISTENING, timeout=20), _output(worker, first, second)
    holder = get_redis().get(lease_key(mailbox.id)).decode()
    assert _state(mailbox.id)["listener"] == holder
    killed, survivor = (first, "listener-b") if holder == "listener-a" else (second, "listener-a")
    assert processes.wait_for(lambda: _runs(mailbox.id) and _all_finished(mailbox.id), timeout=20)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    imap_account.append(make_email(subject="After the kill"))
    assert processes.wait_for(lambda: ticket_count() == 1, timeout=70), _output(worker, first, second)
    state = _state(mailbox.id)
    assert state["state"] == LISTENING and state["listener"] == survivor
    assert get_redis().get(lease_key(mailbox.id)).decode() == survivor


class NoIdleServer(LoopbackServer):
    """Answers CAPABILITY without IDLE and accepts any LOGIN: tests our fallback, not a server."""

    def handle(self, conn):
        threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] no idle here\r\n")
                buffer = b""
                while not self.stopping:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\r\n" in buffer:
                        line, buffer = buffer.split(b"\r\n", 1)
                        tag, _, command = line.partition(b" ")
                        command = command.upper()
                        if command.startswith(b"CAPABILITY"):
                            conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                        elif command.startswith(b"LOGOUT"):
                            conn.sendall(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                            return
                        else:
                            conn.sendall(tag + b" OK done\r\n")
            except OSError:
                return


def test_a_server_without_idle_is_unsupported_and_stays_on_cron(app_ctx, start_process):
    with NoIdleServer() as server:
        mailbox = create_mailbox(type("Fake", (), {"host": server.host, "port": server.port,
                                                   "username": "user", "password": "secret"})(),
                                 push_enabled=True)
        listener = start_process("listener.py", "--name", "listener-a")
        assert processes.wait_for(lambda: _state(mailbox.id)["state"] == UNSUPPORTED, timeout=20), _output(listener)
        assert "IDLE" in _state(mailbox.id)["detail"]
        assert _runs(mailbox.id) == []  # nothing queued by push; the cron job stays
        assert mailbox.scheduled_task_id


def test_idle_reports_new_mail_and_is_reissued(app_ctx, imap_account):
    mailbox = create_mailbox(imap_account)
    with credentials.sign_in(mailbox) as session:
        state = session.select("INBOX", readonly=True)
        idler = Idler(session, state.exists)
        idler.start()
        assert not idler.wait(0.3).new_mail  # quiet server: the wait just times out
        imap_account.append(make_email(subject="Wakes the idler"))
        started = time.monotonic()
        event = idler.wait(10)
        assert event.new_mail and event.exists == 1 and time.monotonic() - started < 10
        idler.done()
        idler.start()  # re-issued on the same connection
        stopping = threading.Event()
        threading.Timer(0.3, stopping.set).start()
        assert not idler.wait(30, stopping.is_set).new_mail  # a stop request ends the wait
        idler.done()
        assert session.search_uids(unseen_only=False) == [1]  # the connection still works


def test_idle_needs_the_capability(app_ctx):
    with NoIdleServer() as server:
        mailbox = create_mailbox(type("Fake", (), {"host": server.host, "port": server.port,
                                                   "username": "user", "password": "secret"})())
        with credentials.sign_in(mailbox) as session, pytest.raises(IdleUnsupported):
            Idler(session)


def test_a_dropped_connection_is_reconnected(app_ctx, imap_account, start_process):
    import os

    mailbox = create_mailbox(imap_account, push_enabled=True, schedule_cron="0 0 1 1 *")
    worker, listener = _listening(mailbox.id, start_process)
    server = imap_account.server
    pids = server.session_pids(imap_account.username)
    assert pids, "the listener's IMAP session is not to be seen"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert processes.wait_for(lambda: _state(mailbox.id)["state"] != LISTENING, timeout=10), _output(worker, listener)
    assert processes.wait_for(lambda: _state(mailbox.id)["state"] == LISTENING, timeout=20), _output(worker, listener)
    assert processes.wait_for(lambda: _all_finished(mailbox.id), timeout=20)
    imap_account.append(make_email(subject="After the drop"))
    assert processes.wait_for(lambda: ticket_count() == 1, timeout=10), _output(worker, listener)


def test_a_pending_restart_pauses_the_listener(app, app_ctx, imap_account, start_process):
    from portal.imap import maintenance

    mailbox = create_mailbox(imap_account, push_enabled=True, schedule_cron="0 0 1 1 *")
    worker, listener = _listening(mailbox.id, start_process)
    maintenance.begin("upgrade")
    assert processes.wait_for(lambda: _state(mailbox.id)["detail"] == "Restart pending", timeout=10), _output(worker, listener)
    assert processes.wait_for(lambda: not server_sessions(imap_account), timeout=10)  # hung up
    maintenance.end()
    assert processes.wait_for(lambda: _state(mailbox.id)["state"] == LISTENING, timeout=10), _output(worker, listener)
    assert processes.wait_for(lambda: _all_finished(mailbox.id), timeout=20)
    imap_account.append(make_email(subject="After the restart"))
    assert processes.wait_for(lambda: ticket_count() == 1, timeout=10), _output(worker, listener)


def server_sessions(imap_account) -> bool:
    return bool(imap_account.server.session_pids(imap_account.username))


def test_health_says_when_push_mailboxes_have_no_listener(api, app_ctx, imap_account):
    create_mailbox(imap_account, push_enabled=True)
    report = api.get("/api/health").json
    assert report["mailboxes"]["push"] == 1 and report["listeners"] == {"alive": 0, "listeners": []}
    assert "No push listener is running: 1 push mailbox syncs on its schedule only (start listener.py)." in report["problems"]


def test_a_sign_in_only_a_person_can_fix_waits_for_the_reconnect(signed_in, oauth_server, oauth_imap_account,
                                                                  start_process):
    mailbox, _ = authorization_code_mailbox(signed_in, oauth_server, oauth_imap_account, push_enabled=True,
                                            schedule_cron="0 0 1 1 *")
    worker = start_process("worker.py")
    listener = start_process("listener.py", "--name", "listener-a", IMAP_PUSH_BACKOFF_MAX_SECONDS=1)
    assert processes.wait_for(lambda: WAITING_FOR_SIGN_IN in (_state(mailbox["id"])["detail"] or ""),
                              timeout=20), _output(worker, listener)
    waiting = _state(mailbox["id"])
    assert waiting["state"] == RECONNECTING and waiting["detail"].startswith("Connect the mailbox first")
    # several heartbeats later (a retry on a timer would come every second): not tried again
    beat = listeners(get_redis())[0]["at"]
    assert processes.wait_for(lambda: listeners(get_redis())[0]["at"] >= beat + 3, timeout=20)
    assert _state(mailbox["id"]) == waiting
    assert _runs(mailbox["id"]) == []

    assert "Connected to the provider" in connect(signed_in, mailbox["id"])  # a person acts
    assert processes.wait_for(lambda: _state(mailbox["id"])["state"] == LISTENING, timeout=20), _output(worker, listener)
    assert processes.wait_for(lambda: _runs(mailbox["id"]) and _all_finished(mailbox["id"]), timeout=20)
    oauth_imap_account.append(make_email(subject="After the reconnect"))
    assert processes.wait_for(lambda: ticket_count() == 1, timeout=10), _output(worker, listener)


def test_a_connection_catches_up_only_on_mail_that_came_while_nobody_listened(app_ctx, imap_account, start_process):
    mailbox = create_mailbox(imap_account, push_enabled=True, schedule_cron="0 0 1 1 *")
    worker, listener = _listening(mailbox.id, start_process)  # never synced: the first connection syncs
    processes.stop(listener)
    imap_account.append(make_email(subject="While nobody listened"))
    listener = start_process("listener.py", "--name", "listener-b")
    assert processes.wait_for(lambda: ticket_count() == 1, timeout=20), _output(worker, listener)
    assert processes.wait_for(lambda: _all_finished(mailbox.id), timeout=20)
    runs = len(_runs(mailbox.id))
    processes.stop(listener)

    listener = start_process("listener.py", "--name", "listener-c")  # nothing new since: no sync
    assert processes.wait_for(lambda: _state(mailbox.id)["listener"] == "listener-c"
                              and _state(mailbox.id)["state"] == LISTENING, timeout=20), _output(worker, listener)
    beat = listeners(get_redis())[0]["at"]
    assert processes.wait_for(lambda: listeners(get_redis())[0]["at"] >= beat + 2, timeout=20)
    assert len(_runs(mailbox.id)) == runs
    imap_account.append(make_email(subject="Pushed after the restart"))
    assert processes.wait_for(lambda: ticket_count() == 2, timeout=10), _output(worker, listener)
