"""OAuth2 mailboxes synced by real `python worker.py` processes: tokens from the local Authlib
server (tests/support/oauth_server.py) open the OAuth2 Dovecot, which checks them at the same
server. Nothing is mocked: refresh under the per-mailbox lock across processes, rotation, a
token endpoint that is down (retried) or that refuses (not retried), and no secret in what the
worker prints or what RQ keeps in Redis."""
import subprocess
import time
import zlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import select

from portal import crypto
from portal.extensions import db, get_redis
from portal.imap import oauth_access, oauth_connect
from portal.imap.models import ImapAccount, SyncRun
from portal.imap.oauth_providers import SIGN_IN_EXPIRED
from portal.models import utcnow
from tests.integration.imap_helpers import ticket_count, tickets
from tests.support import processes
from tests.support.dovecot import make_message

BASE_URL = "http://portal.test"
REDIRECT_URI = BASE_URL + oauth_connect.CALLBACK_PATH
FINAL = ("succeeded", "failed", "skipped", "partial", "deferred")


# ----------------------------------------------------------------------------- workers and secrets

@pytest.fixture
def workers(app, tmp_path):
    """start(n) starts n `python worker.py` processes; .output() is everything they printed."""
    started = []

    def start(count=1):
        for _ in range(count):
            path = tmp_path / f"worker-{len(started)}.log"
            log = open(path, "wb")
            proc = processes.start(app, "worker.py", stdout=log, stderr=subprocess.STDOUT)
            started.append((proc, log, path))

    def output():
        return "\n".join(path.read_text(errors="replace") for _, _, path in started)

    start.output = output
    yield start
    for proc, log, _ in started:
        processes.stop(proc)
        log.close()


@pytest.fixture
def secrets_of_test(oauth_server):
    """Every client secret registered and every token issued during the test (filled at the end)."""
    clients_before = set(oauth_server.clients)
    access_before, refresh_before = set(oauth_server.access_tokens), set(oauth_server.refresh_tokens)

    def collect():
        found = [c.client_secret for cid, c in oauth_server.clients.items()
                 if cid not in clients_before and c.client_secret]
        found += [t for t in oauth_server.access_tokens if t not in access_before]
        found += [t for t in oauth_server.refresh_tokens if t not in refresh_before]
        return found

    return collect


def _redis_dump() -> bytes:
    """Every value in the test Redis (job payloads decompressed)."""
    redis = get_redis()
    out = bytearray()
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        out += key + b"\n"
        if kind == b"string":
            values = [redis.get(key) or b""]
        elif kind == b"hash":
            values = [k + b"=" + v for k, v in redis.hgetall(key).items()]
        elif kind == b"list":
            values = redis.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(redis.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in redis.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            values = [repr(redis.xrange(key)).encode()]
        else:
            values = []
        for value in values:
            out += value + b"\n"
            try:
                out += zlib.decompress(value.split(b"=", 1)[-1]) + b"\n"
            except zlib.error:
                pass
    return bytes(out)


def assert_no_secrets(secrets_of_test, workers, job_ids=()):
    secrets = secrets_of_test()
    assert secrets, "the test issued no secret to look for"
    # rq logs the job's end after the run's own end is committed: wait for that line too
    def job_ended() -> bool:
        output = workers.output()
        return "Job OK" in output or "failed" in output.lower() or "Successfully completed" in output

    assert processes.wait_for(job_ended, timeout=20), workers.output()[-3000:]
    output = workers.output()
    assert "OAuth2 tokens stored" in output or "OAuth2 status" in output  # the job's log lines are in it
    dump = _redis_dump()
    assert b"imap_sync" in dump and (not job_ids or b"sync_mailbox" in dump)  # job payloads were read
    jobs = [Job.fetch(job_id, connection=get_redis()) for job_id in job_ids]
    described = "\n".join(repr((job.args, job.kwargs, job.meta, job.description, job.latest_result()))
                          for job in jobs)
    for secret in secrets:
        assert secret not in output, "a secret is in the worker's output"
        assert secret.encode() not in dump, "a secret is in Redis"
        assert secret not in described, "a secret is in an RQ job"
    rows = db.session.scalars(select(SyncRun)).all()
    accounts = db.session.scalars(select(ImapAccount)).all()
    said = repr([(r.error, r.counts) for r in rows] + [(a.oauth_error, a.oauth_account) for a in accounts])
    for secret in secrets:
        assert secret not in said, "a secret is in a run's error or a mailbox's OAuth2 error"


# ----------------------------------------------------------------------------- mailboxes

def _oauth_mailbox(box, oauth_server, *, flow, client, **fields) -> ImapAccount:
    account = ImapAccount(
        name=f"OAuth {box.username}", host=box.host, port=box.port, security="none", allow_plaintext=True,
        verify_tls=True, username=box.username, folder="INBOX", auth_method="oauth2", oauth_provider="custom",
        oauth_flow=flow, oauth_client_id=client.client_id,
        oauth_client_secret_encrypted=crypto.encrypt(client.client_secret) if client.client_secret else None,
        oauth_token_url=oauth_server.token_url, oauth_authorize_url=oauth_server.authorize_url,
        oauth_scope="imap offline_access", **fields)
    db.session.add(account)
    db.session.commit()
    return account


def client_credentials_mailbox(api, box, oauth_server):
    """Created over the API, like an admin would."""
    client = oauth_server.register_client(username=box.username, grant_types=("client_credentials",))
    response = api.post("/api/imap/accounts", json={
        "name": "App-only box", "host": box.host, "port": box.port, "security": "none", "allow_plaintext": True,
        "username": box.username, "auth_method": "oauth2", "oauth_provider": "custom",
        "oauth_flow": "client_credentials", "oauth_client_id": client.client_id,
        "oauth_client_secret": client.client_secret, "oauth_token_url": oauth_server.token_url,
        "oauth_scope": "imap",
    })
    assert response.status_code == 201, response.json
    return db.session.get(ImapAccount, response.json["id"]), client


def connected_mailbox(app, admin, box, oauth_server):
    """An authorization code mailbox connected through oauth_connect.start / the provider / finish."""
    client = oauth_server.register_client(redirect_uris=[REDIRECT_URI])
    account = _oauth_mailbox(box, oauth_server, flow="authorization_code", client=client)
    oauth_server.default_user = box.username  # who "signs in" at the provider
    with app.test_request_context("/", base_url=BASE_URL):
        url = oauth_connect.start(account, admin.id)
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    args = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    outcome = oauth_connect.finish(args, admin.id)
    assert outcome.ok, outcome.message
    db.session.expire_all()
    account = db.session.get(ImapAccount, account.id)
    assert account.oauth_status == "connected" and account.oauth_account is None
    return account, client


def queue_sync(api, account) -> dict:
    response = api.post(f"/api/imap/accounts/{account.id}/sync")
    assert response.status_code == 202, response.json
    return response.json


def wait_run(run_id, workers, timeout=30.0) -> SyncRun:
    assert processes.wait_for(lambda: db.session.get(SyncRun, run_id).status in FINAL, timeout=timeout), \
        workers.output()[-4000:]
    return db.session.get(SyncRun, run_id)


def stored(account, name: str) -> str:
    db.session.expire_all()
    value = getattr(db.session.get(ImapAccount, account.id), f"oauth_{name}_encrypted")
    return crypto.decrypt(value) if value else None


def expire_stored_token(account, *, on_server=None):
    """The stored access token expires now (and, when given the server, is dead there too)."""
    if on_server is not None:
        on_server.revoke_access_token(stored(account, "access_token"))
    db.session.get(ImapAccount, account.id).oauth_expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()


# ----------------------------------------------------------------------------- a. client credentials

def test_client_credentials_token_is_fetched_again_when_it_expires(
        api, app_ctx, oauth_server, oauth_imap_account, workers, secrets_of_test):
    oauth_server.access_token_lifetime = 5
    account, _ = client_credentials_mailbox(api, oauth_imap_account, oauth_server)
    assert account.oauth_status == "not_connected"
    workers(1)

    oauth_imap_account.append(make_message(1, subject="First through OAuth2"))
    first = queue_sync(api, account)
    run = wait_run(first["sync_run_id"], workers)
    assert (run.status, run.error, run.counts) == ("succeeded", None, {"imported": 1}), workers.output()[-3000:]
    assert oauth_server.token_requests == ["client_credentials"]
    first_token = stored(account, "access_token")
    assert oauth_server.introspect(first_token)["active"] is True

    # The first token dies at the provider: only a new one can open the mailbox now.
    deadline = time.monotonic() + 8
    while oauth_server.introspect(first_token)["active"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert oauth_server.introspect(first_token) == {"active": False}
    oauth_imap_account.append(make_message(2, subject="Second through OAuth2"))
    second = queue_sync(api, account)
    run = wait_run(second["sync_run_id"], workers)
    assert (run.status, run.error, run.counts) == ("succeeded", None, {"imported": 1}), workers.output()[-3000:]
    assert oauth_server.token_requests == ["client_credentials", "client_credentials"]
    assert stored(account, "access_token") != first_token
    assert stored(account, "refresh_token") is None
    account = db.session.get(ImapAccount, account.id)
    assert account.oauth_status == "connected" and account.oauth_error is None
    assert account.oauth_account is None
    assert [t.subject for t in tickets()] == ["First through OAuth2", "Second through OAuth2"]
    assert_no_secrets(secrets_of_test, workers, [first["job_id"], second["job_id"]])


# ----------------------------------------------------------------------------- b. one refresh for two workers

def test_two_workers_refresh_an_expiring_token_once(
        api, app, app_ctx, admin, oauth_server, oauth_imap_account, workers, secrets_of_test):
    oauth_server.access_token_lifetime = 60  # within the refresh margin: the next sync refreshes
    account, _ = connected_mailbox(app, admin, oauth_imap_account, oauth_server)
    first_refresh_token = stored(account, "refresh_token")
    assert oauth_server.token_requests == ["authorization_code"]
    oauth_server.token_requests.clear()
    oauth_server.access_token_lifetime = 3600  # what the refresh issues is fresh
    oauth_server.token_delay = 0.5  # the refresh takes a moment: the other worker arrives meanwhile

    oauth_imap_account.append(make_message(1, subject="Refreshed once"))
    queued = [queue_sync(api, account), queue_sync(api, account)]
    workers(2)
    runs = [wait_run(q["sync_run_id"], workers) for q in queued]

    assert oauth_server.token_requests == ["refresh_token"], workers.output()[-3000:]
    for run in runs:
        assert run.status == "succeeded" or (
            run.status == "skipped" and run.error.startswith("Already running")), (run.status, run.error)
    assert sorted(r.counts.get("imported", 0) for r in runs if r.status == "succeeded")[-1] == 1
    assert ticket_count() == 1
    rotated = stored(account, "refresh_token")
    assert rotated != first_refresh_token
    assert oauth_server.refresh_tokens[first_refresh_token].revoked  # the old one is dead at the provider
    assert not oauth_server.refresh_tokens[rotated].revoked
    assert oauth_server.introspect(stored(account, "access_token"))["active"] is True
    account = db.session.get(ImapAccount, account.id)
    assert account.oauth_status == "connected"
    assert account.oauth_expires_at > utcnow() + timedelta(minutes=50)
    assert_no_secrets(secrets_of_test, workers, [q["job_id"] for q in queued])


def test_token_lock_makes_another_process_wait_for_the_workers_refresh(
        api, app, app_ctx, admin, oauth_server, oauth_imap_account, workers, secrets_of_test):
    """The worker holds imap:oauth-lock:<id> while it refreshes; this process, asking for a
    token meanwhile, waits for it and takes the token the worker stored."""
    oauth_server.access_token_lifetime = 60
    account, _ = connected_mailbox(app, admin, oauth_imap_account, oauth_server)
    oauth_server.token_requests.clear()
    oauth_server.access_token_lifetime = 3600
    oauth_server.token_delay = 2.0
    workers(1)
    queued = queue_sync(api, account)
    assert processes.wait_for(lambda: oauth_server.token_requests == ["refresh_token"], timeout=20), \
        workers.output()[-3000:]
    assert get_redis().exists(oauth_access.token_lock_key(account.id))

    mine = db.session.get(ImapAccount, account.id)
    assert mine.oauth_expires_at < utcnow() + oauth_access.REFRESH_MARGIN  # still the old, expiring one
    token, new = oauth_access.access_token_for(mine)
    assert new is False  # found, not fetched
    assert oauth_server.token_requests == ["refresh_token"]
    assert token == stored(account, "access_token")
    assert oauth_server.introspect(token)["active"] is True
    run = wait_run(queued["sync_run_id"], workers)
    assert run.status == "succeeded", run.error
    assert_no_secrets(secrets_of_test, workers, [queued["job_id"]])


# ----------------------------------------------------------------------------- c. token endpoint down

def test_token_endpoint_503_fails_the_run_and_rq_retries_it(
        api, app_ctx, oauth_server, oauth_imap_account, workers, secrets_of_test):
    oauth_server.access_token_lifetime = 5  # every sync asks the token endpoint
    account, _ = client_credentials_mailbox(api, oauth_imap_account, oauth_server)
    workers(1)
    ok = queue_sync(api, account)
    assert wait_run(ok["sync_run_id"], workers).status == "succeeded"
    assert db.session.get(ImapAccount, account.id).oauth_status == "connected"

    oauth_server.token_failure_status = 503
    down = queue_sync(api, account)
    run = wait_run(down["sync_run_id"], workers)
    assert run.status == "failed"
    assert "token endpoint" in run.error and "503" in run.error, run.error
    assert oauth_server.token_requests == ["client_credentials", "client_credentials"]
    account = db.session.get(ImapAccount, account.id)
    assert account.oauth_status == "connected" and account.oauth_error is None  # nothing for a person to do

    redis = get_redis()
    scheduled = ScheduledJobRegistry("imap", connection=redis)
    assert processes.wait_for(lambda: down["job_id"] in scheduled.get_job_ids(), timeout=10), \
        workers.output()[-3000:]
    job = Job.fetch(down["job_id"], connection=redis)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 2
    assert down["job_id"] not in FailedJobRegistry("imap", connection=redis).get_job_ids()

    # The provider is back: the retry (brought forward, not waited for) succeeds as a run of its own.
    oauth_server.token_failure_status = None
    oauth_imap_account.append(make_message(1, subject="After the outage"))
    scheduled.remove(job)
    Queue("imap", connection=redis).enqueue_job(job)
    assert processes.wait_for(
        lambda: db.session.scalars(select(SyncRun).where(SyncRun.retry_of_id == run.id)).first() is not None,
        timeout=20), workers.output()[-3000:]
    retry = db.session.scalars(select(SyncRun).where(SyncRun.retry_of_id == run.id)).one()
    retry = wait_run(retry.id, workers)
    assert (retry.status, retry.counts) == ("succeeded", {"imported": 1}), retry.error
    assert oauth_server.token_requests[-1] == "client_credentials" and len(oauth_server.token_requests) == 3
    assert db.session.get(SyncRun, run.id).status == "failed"  # the failure stays in the history

    oauth_imap_account.append(make_message(2, subject="A new sync"))
    fresh = wait_run(queue_sync(api, account)["sync_run_id"], workers)
    assert (fresh.status, fresh.counts) == ("succeeded", {"imported": 1}), fresh.error
    assert [t.subject for t in tickets()] == ["After the outage", "A new sync"]
    assert_no_secrets(secrets_of_test, workers, [ok["job_id"], down["job_id"]])


# ----------------------------------------------------------------------------- d. refused: not retried

def test_revoked_refresh_token_needs_reauthorization_and_is_not_retried(
        api, app, app_ctx, admin, oauth_server, oauth_imap_account, workers, secrets_of_test):
    account, _ = connected_mailbox(app, admin, oauth_imap_account, oauth_server)
    oauth_server.revoke_refresh_token(stored(account, "refresh_token"))
    expire_stored_token(account, on_server=oauth_server)
    oauth_server.token_requests.clear()
    workers(1)

    queued = queue_sync(api, account)
    run = wait_run(queued["sync_run_id"], workers)
    assert (run.status, run.error) == ("failed", SIGN_IN_EXPIRED)
    account = db.session.get(ImapAccount, account.id)
    assert account.oauth_status == "needs_reauthorization"
    assert "invalid_grant" in account.oauth_error
    assert oauth_server.token_requests == ["refresh_token"]

    redis = get_redis()
    assert processes.wait_for(
        lambda: Job.fetch(queued["job_id"], connection=redis).get_status() == JobStatus.FINISHED, timeout=10)
    time.sleep(2.5)  # a retry would ask the provider again
    assert oauth_server.token_requests == ["refresh_token"]
    job = Job.fetch(queued["job_id"], connection=redis)
    assert job.get_status() == JobStatus.FINISHED and job.retries_left == 3
    assert queued["job_id"] not in ScheduledJobRegistry("imap", connection=redis).get_job_ids()
    assert queued["job_id"] not in FailedJobRegistry("imap", connection=redis).get_job_ids()
    assert Queue("imap", connection=redis).count == 0
    assert db.session.scalars(select(SyncRun).where(SyncRun.retry_of_id == run.id)).first() is None
    assert_no_secrets(secrets_of_test, workers, [queued["job_id"]])


# ----------------------------------------------------------------------------- e. secrets stay secret

def test_a_provider_echoing_the_secret_leaves_no_trace(
        api, app_ctx, oauth_server, oauth_imap_account, workers, secrets_of_test):
    """A refusal whose description quotes the client secret: the worker's log, Redis, the run
    and the mailbox carry it masked."""
    account, client = client_credentials_mailbox(api, oauth_imap_account, oauth_server)
    oauth_server.token_failure_status = 401
    oauth_server.token_failure_body = {
        "error": "invalid_client",
        "error_description": f"Client authentication failed: secret '{client.client_secret}' is not valid",
    }
    workers(1)
    queued = queue_sync(api, account)
    run = wait_run(queued["sync_run_id"], workers)
    assert (run.status, run.error) == ("failed", SIGN_IN_EXPIRED)
    account = db.session.get(ImapAccount, account.id)
    assert account.oauth_status == "needs_reauthorization"
    assert account.oauth_error == ("The provider refused the sign-in (invalid_client: Client authentication failed: "
                                   "secret '***' is not valid)")

    # The provider takes the secret again: the next sync works, and its token stays secret too.
    oauth_server.token_failure_status = None
    oauth_imap_account.append(make_message(1))
    again = queue_sync(api, account)
    assert wait_run(again["sync_run_id"], workers).status == "succeeded"
    assert db.session.get(ImapAccount, account.id).oauth_status == "connected"
    assert_no_secrets(secrets_of_test, workers, [queued["job_id"], again["job_id"]])
