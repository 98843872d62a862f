"""IMAP IDLE push: the listener loop behind `python listener.py`.

A listener watches every push mailbox (push_enabled, active, not deleted) it holds the lease of:
one thread per mailbox signs in with the mailbox's own credentials (credentials.sign_in:
password or OAuth2), EXAMINEs its folder and IDLEs (client_idle.py), re-issuing the IDLE every
IMAP_PUSH_IDLE_SECONDS (under the 29 minutes of RFC 2177). New mail (EXISTS/RECENT) is reported
to the listener's main loop, which debounces it (IMAP_PUSH_QUIET_SECONDS of quiet, at most
IMAP_PUSH_MAX_WAIT_SECONDS after the first report) and enqueues the mailbox's normal sync
(tasks.enqueue_sync, trigger `scheduled`): a burst of mail is one sync. It enqueues nothing while
the mailbox already has a run queued or deferred (that run will see the mail), and waits while
one is running (it may have searched before the mail came). Each (re)connection also enqueues
a catch-up sync for what arrived while nobody listened, unless SELECT shows the same UIDVALIDITY
and no UID above the highest one recorded (needs_catch_up).

Leases: any number of listeners share the push mailboxes through Redis keys `imap:push:<id>`
holding the listener's name with a TTL of IMAP_PUSH_LEASE_SECONDS, renewed every third of it;
a listener takes a mailbox only with SET NX, so each is watched by exactly one. A killed
listener stops renewing: its mailboxes are free after the TTL and the next refresh of another
listener takes them (within TTL + TTL/3). A listener that loses a lease stops that watcher.

State, for the detail page, the API, /api/health and /metrics: `imap:push:state:<id>` (JSON:
state, listener, since, detail), with a TTL of twice the lease so a dead listener's states
vanish; no key means `off` (push disabled, mailbox paused, or no listener running): the cron
schedule syncs the mailbox as always. `imap:push:listener:<name>` is each listener's heartbeat.
States: listening, reconnecting (connection lost: backoff from 1 s doubling to
IMAP_PUSH_BACKOFF_MAX_SECONDS; also while a restart is pending), unsupported (no IDLE in the
server's CAPABILITY: cron only; looked at again every IMAP_PUSH_RECHECK_SECONDS), off.
A sign-in only a person can fix (SignInNeedsAction: an OAuth2 mailbox not connected, its consent
revoked, a token the server refuses) is not retried on a timer: the watcher stays `reconnecting`
with the reason and "push waits for a new sign-in", and tries again once the mailbox's sign-in
settings or tokens change (SIGN_IN_COLUMNS, compared by the listener's refresh: one query for all
such mailboxes), e.g. when it is reconnected.

While a restart is pending (maintenance.py) the watchers hang up and nothing is enqueued; the
leases are kept, and the watchers start again when the restart is over.

Memory: a watcher is a thread with its own IMAP connection (about 100-200 KB of buffers and
stack in use each, 8 MB of stack reserved but not touched); 200 mailboxes are 200 threads.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db, get_redis
from ..log_format import log_context
from . import credentials, maintenance, tasks
from .client_errors import ImapError
from .client_idle import IdleUnsupported, Idler, supports_idle
from .client_wire import FolderState
from .models import ImapAccount, SyncRun
from .oauth_access import SignInNeedsAction

log = logging.getLogger(__name__)

LISTENING, RECONNECTING, UNSUPPORTED, OFF = "listening", "reconnecting", "unsupported", "off"
PUSH_STATES = (LISTENING, RECONNECTING, UNSUPPORTED, OFF)
LISTENER_PREFIX = "imap:push:listener:"
#: runs that will see new mail when they run: no second sync is queued behind them
WAITING_RUNS = ("queued", "deferred")

_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0"""
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""


#: what a sign-in depends on: a refused sign-in is tried again once one of these changes
SIGN_IN_COLUMNS = (
    ImapAccount.host, ImapAccount.port, ImapAccount.security, ImapAccount.username, ImapAccount.password_encrypted,
    ImapAccount.auth_method, ImapAccount.oauth_flow, ImapAccount.oauth_client_id,
    ImapAccount.oauth_client_secret_encrypted, ImapAccount.oauth_service_account_encrypted, ImapAccount.oauth_tenant,
    ImapAccount.oauth_scope, ImapAccount.oauth_token_url, ImapAccount.oauth_access_token_encrypted,
    ImapAccount.oauth_refresh_token_encrypted, ImapAccount.oauth_status,
)
WAITING_FOR_SIGN_IN = "push waits for a new sign-in"


def sign_in_fingerprint(account: ImapAccount) -> tuple:
    return tuple(getattr(account, column.key) for column in SIGN_IN_COLUMNS)


def needs_catch_up(folder: FolderState, uid_validity: int | None, last_seen_uid: int | None) -> bool:
    """Whether mail may have come while nobody listened: anything but the same UID epoch with no
    UID handed out above the highest one a sync recorded (a listener restart, or a dropped
    connection, then costs no sync per mailbox). Mail a sync will take again anyway (failed,
    or skipped under older rules) waits for the next sync."""
    if uid_validity is None or folder.uidvalidity != uid_validity or folder.uidnext is None:
        return True
    return folder.uidnext > (last_seen_uid or 0) + 1


def lease_key(account_id: int) -> str:
    return f"imap:push:{account_id}"


def state_key(account_id: int) -> str:
    return f"imap:push:state:{account_id}"


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


@dataclass
class PushSettings:
    lease_seconds: float = 30.0
    quiet_seconds: float = 1.0
    max_wait_seconds: float = 5.0
    idle_seconds: float = 25 * 60.0
    backoff_max_seconds: float = 60.0
    recheck_seconds: float = 600.0

    @classmethod
    def from_env(cls, env=os.environ) -> "PushSettings":
        def number(name: str, default: float) -> float:
            return float(env.get(name, default))

        settings = cls(
            lease_seconds=number("IMAP_PUSH_LEASE_SECONDS", cls.lease_seconds),
            quiet_seconds=number("IMAP_PUSH_QUIET_SECONDS", cls.quiet_seconds),
            max_wait_seconds=number("IMAP_PUSH_MAX_WAIT_SECONDS", cls.max_wait_seconds),
            idle_seconds=number("IMAP_PUSH_IDLE_SECONDS", cls.idle_seconds),
            backoff_max_seconds=number("IMAP_PUSH_BACKOFF_MAX_SECONDS", cls.backoff_max_seconds),
            recheck_seconds=number("IMAP_PUSH_RECHECK_SECONDS", cls.recheck_seconds),
        )
        if not 0 < settings.idle_seconds < 29 * 60:
            raise ValueError("IMAP_PUSH_IDLE_SECONDS must be above 0 and under 29 minutes (RFC 2177)")
        if settings.lease_seconds < 1:
            raise ValueError("IMAP_PUSH_LEASE_SECONDS must be at least 1")
        return settings


# --- reading the state (web, health, metrics) ---------------------------------------------------


def push_states(account_ids, redis=None) -> dict[int, dict]:
    """account id -> {"state", "listener", "since", "detail"}; `off` where no listener holds it."""
    ids = list(account_ids)
    result = {i: {"state": OFF, "listener": None, "since": None, "detail": None} for i in ids}
    if not ids:
        return result
    try:
        raw = (redis or get_redis()).mget([state_key(i) for i in ids])
    except (RedisError, OSError):
        return result
    for account_id, value in zip(ids, raw):
        try:
            state = json.loads(value) if value else None
        except ValueError:
            state = None
        if isinstance(state, dict) and state.get("state") in PUSH_STATES:
            result[account_id] = {key: state.get(key) for key in ("state", "listener", "since", "detail")}
    return result


def listeners(redis) -> list[dict]:
    """The listeners whose heartbeat key is alive (it expires two lease periods after the last beat)."""
    found = []
    for key in redis.scan_iter(match=LISTENER_PREFIX + "*", count=500):
        value = redis.get(key)
        try:
            beat = json.loads(value) if value else None
        except ValueError:
            beat = None
        if isinstance(beat, dict):
            found.append(beat)
    found.sort(key=lambda beat: str(beat.get("name")))
    return found


def connections(redis) -> int:
    """IDLE connections held now, fleet-wide (the listeners' own counts)."""
    return sum(int(beat.get("listening") or 0) for beat in listeners(redis))


# --- one mailbox ---------------------------------------------------------------------------------


class Watcher(threading.Thread):
    """IDLE on one mailbox until stopped; reports new mail to the listener."""

    def __init__(self, listener: "Listener", account_id: int):
        super().__init__(name=f"imap-push-{account_id}", daemon=True)
        self.listener = listener
        self.account_id = account_id
        self.stopping = threading.Event()
        self.state = None
        #: the sign-in a person has to fix (SIGN_IN_COLUMNS as they were), None while not waiting for one
        self.refused_sign_in: tuple | None = None
        self._wake = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def sign_in_changed(self) -> None:
        """The listener saw the mailbox's sign-in change: try it again."""
        self._wake.set()

    def run(self) -> None:
        backoff = 1.0
        with log_context(mailbox_id=self.account_id):
            while not self.stopping.is_set():
                try:
                    self._watch()
                    return
                except IdleUnsupported as exc:
                    self._set(UNSUPPORTED, str(exc))
                    log.info("mailbox %s: %s; it stays on its cron schedule", self.account_id, exc)
                    self.stopping.wait(self.listener.settings.recheck_seconds)
                    continue
                except SignInNeedsAction as exc:
                    if self.refused_sign_in is not None:  # the sign-in that was refused is known
                        self._wait_for_new_sign_in(str(exc))
                        backoff = 1.0
                        continue
                    detail = str(exc)
                except (ImapError, OSError) as exc:
                    detail = str(exc)
                except Exception as exc:  # noqa: BLE001 - a watcher must never die silently
                    log.exception("mailbox %s: push watcher failed", self.account_id)
                    detail = f"{type(exc).__name__}"
                if self.stopping.is_set():
                    return
                pause = backoff * random.uniform(0.8, 1.2)
                self._set(RECONNECTING, f"{detail} (retry in {pause:.0f} s)")
                log.warning("mailbox %s: push connection lost: %s; retrying in %.1f s", self.account_id, detail, pause)
                self.stopping.wait(pause)
                backoff = min(backoff * 2, self.listener.settings.backoff_max_seconds)

    def _wait_for_new_sign_in(self, reason: str) -> None:
        """No retries on a timer: a person has to act (reconnect, a secret, a permission)."""
        self._set(RECONNECTING, f"{reason.rstrip('.')}; {WAITING_FOR_SIGN_IN}")
        log.warning("mailbox %s: %s; %s", self.account_id, reason, WAITING_FOR_SIGN_IN)
        self._wake.wait()
        self._wake.clear()
        self.refused_sign_in = None

    def _sign_in(self):
        app = self.listener.app
        with app.app_context():
            try:
                account = db.session.get(ImapAccount, self.account_id)
                if account is None or account.deleted_at is not None:
                    self.stopping.set()
                    return None, None, None
                try:
                    return credentials.sign_in(account), account.folder, (account.uid_validity, account.last_seen_uid)
                except SignInNeedsAction:
                    db.session.rollback()
                    db.session.refresh(account)  # as sign_in left it (it may have marked the status)
                    self.refused_sign_in = sign_in_fingerprint(account)
                    raise
            finally:
                db.session.remove()

    def _watch(self) -> None:
        session, folder, synced = self._sign_in()
        if session is None:
            return
        with session:
            if not supports_idle(session):
                raise IdleUnsupported(f"The server {session._where} does not support IDLE")
            state = session.select(folder, readonly=True)
            idler = Idler(session, state.exists)
            self._set(LISTENING, None)
            if needs_catch_up(state, *synced):  # mail came while nobody listened
                self.listener.new_mail(self.account_id)
            while not self.stopping.is_set():
                idler.start()
                until = time.monotonic() + self.listener.settings.idle_seconds
                while not self.stopping.is_set() and time.monotonic() < until:
                    event = idler.wait(until - time.monotonic(), self.stopping.is_set)
                    if event.bye:
                        raise ImapError(f"Server {session._where} ended the connection (BYE)")
                    if event.new_mail:
                        self.listener.new_mail(self.account_id)
                if idler.done().new_mail:  # re-issued before the server's 30 minutes
                    self.listener.new_mail(self.account_id)

    def _set(self, state: str, detail: str | None) -> None:
        if self.stopping.is_set():  # dropped: the mailbox may be another listener's by now
            return
        self.state = state
        self.listener.write_state(self.account_id, state, detail)


# --- the listener --------------------------------------------------------------------------------


class Listener:
    def __init__(self, app, name: str | None = None, settings: PushSettings | None = None):
        self.app = app
        self.name = name or default_name()
        self.settings = settings or PushSettings()
        self.watchers: dict[int, Watcher] = {}
        self.paused = False
        #: account id -> [first report, last report, not before (a run was busy: look again then)]
        self._pending: dict[int, list[float]] = {}
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._last_refresh = float("-inf")
        self._redis = None

    @property
    def redis(self):
        if self._redis is None:
            with self.app.app_context():
                self._redis = get_redis()
        return self._redis

    # called from watcher threads -----------------------------------------------------------
    def new_mail(self, account_id: int) -> None:
        now = time.monotonic()
        with self._pending_lock:
            times = self._pending.setdefault(account_id, [now, now, 0.0])
            times[1] = now

    def write_state(self, account_id: int, state: str, detail: str | None) -> None:
        value = {"state": state, "listener": self.name, "since": time.time(), "detail": detail}
        try:
            self.redis.set(state_key(account_id), json.dumps(value), px=int(self.settings.lease_seconds * 2000))
        except (RedisError, OSError) as exc:
            log.warning("mailbox %s: push state not written (%s)", account_id, type(exc).__name__)

    # the main loop -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, tick: float = 0.2) -> None:
        log.info("push listener %s started (lease %gs)", self.name, self.settings.lease_seconds)
        try:
            while not self._stop.is_set():
                healthy = self.step()
                self._stop.wait(min(tick, self.until_due()) if healthy else tick)
        finally:
            self.shutdown()

    def step(self) -> bool:
        """Refresh the leases when due, enqueue the bursts that are over; False when Redis or
        the database failed (the main loop then waits a whole tick)."""
        with self.app.app_context():
            try:
                if time.monotonic() - self._last_refresh >= self.settings.lease_seconds / 3:
                    self.refresh()
                if not self.paused:
                    self.enqueue_due()
                return True
            except (RedisError, OSError, SQLAlchemyError) as exc:
                log.warning("push listener: %s; trying again", type(exc).__name__)
                db.session.rollback()
                return False
            finally:
                db.session.remove()

    def wanted(self) -> list[int]:
        return list(db.session.scalars(select(ImapAccount.id).where(
            ImapAccount.push_enabled.is_(True), ImapAccount.active.is_(True), ImapAccount.deleted_at.is_(None))))

    def refresh(self) -> None:
        """Renew the leases held, drop the mailboxes no longer pushed or lost, take free ones."""
        self._last_refresh = time.monotonic()
        redis, ttl_ms = self.redis, int(self.settings.lease_seconds * 1000)
        wanted = set(self.wanted())
        for account_id in list(self.watchers):
            if account_id not in wanted:
                self._drop(account_id, release=True)
            elif not redis.eval(_RENEW, 1, lease_key(account_id), self.name, ttl_ms):
                log.warning("mailbox %s: push lease lost; another listener watches it", account_id)
                self._drop(account_id, release=False)
            else:
                redis.pexpire(state_key(account_id), ttl_ms * 2)
        for account_id in sorted(wanted - set(self.watchers)):
            if redis.set(lease_key(account_id), self.name, nx=True, px=ttl_ms):
                self.watchers[account_id] = None  # held; the watcher starts below unless paused
        self._pause_for_restart()
        self._start_watchers()
        self._recheck_refused_sign_ins()
        self._beat()

    def _recheck_refused_sign_ins(self) -> None:
        waiting = {account_id: watcher for account_id, watcher in self.watchers.items()
                   if watcher is not None and watcher.refused_sign_in is not None}
        if not waiting:
            return
        rows = db.session.execute(select(ImapAccount.id, *SIGN_IN_COLUMNS).where(ImapAccount.id.in_(list(waiting))))
        for account_id, *now in rows:
            if tuple(now) != waiting[account_id].refused_sign_in:
                log.info("mailbox %s: its sign-in changed; push signs in again", account_id)
                waiting[account_id].sign_in_changed()

    def _pause_for_restart(self) -> None:
        pending = maintenance.restart_pending()
        if pending and not self.paused:
            log.info("restart pending: push watchers hang up until it is over")
        elif self.paused and not pending:
            log.info("restart over: push watchers start again")
        self.paused = pending
        if pending:
            for account_id, watcher in list(self.watchers.items()):
                if watcher is not None:
                    watcher.stop()
                    self.watchers[account_id] = None
                self.write_state(account_id, RECONNECTING, "Restart pending")
            with self._pending_lock:
                self._pending.clear()

    def _start_watchers(self) -> None:
        if self.paused:
            return
        for account_id, watcher in list(self.watchers.items()):
            if watcher is None or not watcher.is_alive():
                watcher = Watcher(self, account_id)
                self.watchers[account_id] = watcher
                watcher.start()

    def _drop(self, account_id: int, *, release: bool) -> None:
        watcher = self.watchers.pop(account_id, None)
        if watcher is not None:
            watcher.stop()
        with self._pending_lock:
            self._pending.pop(account_id, None)
        if release:
            self.redis.eval(_RELEASE, 1, lease_key(account_id), self.name)
            self.redis.delete(state_key(account_id))

    def _beat(self) -> None:
        listening = sum(1 for w in self.watchers.values() if w is not None and w.state == LISTENING)
        value = {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time(),
                 "mailboxes": len(self.watchers), "listening": listening, "paused": self.paused}
        self.redis.set(LISTENER_PREFIX + self.name, json.dumps(value), px=int(self.settings.lease_seconds * 2000))

    def _due_at(self, first: float, last: float, not_before: float) -> float:
        return max(not_before, min(last + self.settings.quiet_seconds, first + self.settings.max_wait_seconds))

    def until_due(self) -> float:
        """Seconds until the next pending burst is due (the main loop sleeps no longer)."""
        with self._pending_lock:
            due = min((self._due_at(*times) for times in self._pending.values()), default=float("inf"))
        return max(0.01, due - time.monotonic())

    def enqueue_due(self, busy_recheck: float = 0.2) -> None:
        """Enqueue the syncs whose burst is over (quiet long enough, or waited long enough).
        At most a sixth of the lease's time per step: a storm of syncs at start (each connection's
        catch-up) must not hold up the renewal of the leases; the rest is due on the next step."""
        now = time.monotonic()
        budget_ends = now + self.settings.lease_seconds / 6
        with self._pending_lock:
            due = [i for i, times in self._pending.items() if self._due_at(*times) <= now]
        for account_id in due:
            if time.monotonic() > budget_ends:
                break
            outcome = self._enqueue(account_id)
            with self._pending_lock:
                if outcome != "busy":
                    self._pending.pop(account_id, None)
                elif account_id in self._pending:
                    self._pending[account_id][2] = time.monotonic() + busy_recheck

    def _enqueue(self, account_id: int) -> str:
        if account_id not in self.watchers:
            return "dropped"
        statuses = set(db.session.scalars(select(SyncRun.status).where(
            SyncRun.account_id == account_id, SyncRun.status.in_(WAITING_RUNS + ("running",)))))
        if statuses & set(WAITING_RUNS):
            return "covered"  # a run that has not started yet will see the new mail
        if "running" in statuses:
            return "busy"  # it may have looked before the mail came: sync again once it is done
        account = db.session.get(ImapAccount, account_id)
        if account is None or account.deleted_at is not None or not account.active:
            return "dropped"
        run = tasks.enqueue_sync(account, trigger="scheduled")
        log.info("mailbox %s: new mail; sync run %s queued", account_id, run.id)
        return "queued"

    def shutdown(self) -> None:
        """Hang up, and hand the mailboxes back at once (another listener takes them)."""
        for watcher in self.watchers.values():
            if watcher is not None:
                watcher.stop()
        for watcher in self.watchers.values():
            if watcher is not None:
                watcher.join(timeout=5)
        try:
            for account_id in list(self.watchers):
                self.redis.eval(_RELEASE, 1, lease_key(account_id), self.name)
                self.redis.delete(state_key(account_id))
            self.redis.delete(LISTENER_PREFIX + self.name)
        except (RedisError, OSError):
            pass
        self.watchers.clear()
        log.info("push listener %s stopped", self.name)
