"""A private Dovecot IMAP server for tests (one per pytest session).

Everything (config, TLS material, sockets, logs, maildirs) lives in one
temporary directory (under /dev/shm when available, or $DOVECOT_TEST_TMPDIR)
that is removed when the server is cleaned up; stopping leaves no dovecot
process behind.  The helpers that set up mailboxes talk IMAP through the
standard library's ``imaplib`` so that they stay independent of
``portal.imap.client``, the code under test.

Fixtures (load with ``pytest_plugins = ["tests.support.dovecot"]``):

* ``dovecot_server`` (session): a :class:`DovecotServer` with a plain port
  (``.port``, offers STARTTLS) and an implicit-TLS port (``.ssl_port``);
  the certificate (SAN 127.0.0.1, ::1, localhost) is signed by a throw-away
  CA at ``.ca_cert_path``.  Plaintext login is allowed.
* ``dovecot_server_no_tls`` (session, started on first use): ``ssl = no``,
  so no STARTTLS capability and no imaps port.
* ``imap_account`` (function): an :class:`ImapAccount` -- a fresh user with
  a random password on ``dovecot_server`` (``host``, ``port``, ``ssl_port``,
  ``ca_cert_path``, ``username``, ``password``) with helpers
  ``append(raw, folder="INBOX", flags=()) -> uid``,
  ``append_many(raws, folder="INBOX", flags=()) -> [uid]`` (MULTIAPPEND),
  ``fill_maildir(raws, folder="INBOX", flags=()) -> [uid]`` (fastest),
  ``flags(folder="INBOX") -> {uid: {flag}}``,
  ``store_flags(uids, flags, folder="INBOX", add=True)``,
  ``expunge(uids, folder="INBOX")``, ``create_folder(name)``,
  ``delete_folder(name)``, ``list_folders()``, ``connect() -> imaplib.IMAP4``.

* ``oauth_dovecot`` (session): an :class:`OAuthDovecotServer` (no TLS)
  whose users sign in with ``AUTHENTICATE XOAUTH2`` / ``OAUTHBEARER``,
  tokens checked by the ``oauth_server`` fixture's ``/introspect``
  (``tests.support.oauth_server`` must be loaded as a plugin too);
  ``.authenticate(user, token) -> imaplib.IMAP4``.
* ``oauth_imap_account`` (function): an :class:`ImapAccount` on it.

``DovecotServer(root=None, *, tls=True, require_tls=False, port=None,
ssl_port=None, extra_config="")``: ``start()``, ``stop()`` (graceful),
``kill()`` (SIGKILL to every process of the instance), ``restart()`` (same
ports and data), ``cleanup()``, ``pids()``, ``session_pids(user)``,
``add_user(name, password)``, ``new_user(prefix="user", password=None)``,
``remove_user(name)``, and the same helpers as ImapAccount taking
``(user, password, folder, ...)``: ``append``, ``append_many``,
``fill_maildir``, ``uids_and_flags``, ``store_flags``, ``expunge``,
``create_folder``, ``delete_folder``, ``list_folders``.
``make_message(n, subject=..., body=...)`` builds a small CRLF message.

Requires Debian's ``dovecot-imapd`` (``apt-get install -y dovecot-imapd``).
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import imaplib
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

INSTALL_HINT = "apt-get install -y dovecot-imapd"

# system flag -> maildir info letter (maildir letters must be sorted ASCII)
_MAILDIR_FLAG_LETTERS = {
    "\\draft": "D",
    "\\flagged": "F",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}

_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.I)
_FETCH_UID_RE = re.compile(rb"UID (\d+)")
_FETCH_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")

_instances: "set[DovecotServer]" = set()
_instances_lock = threading.Lock()


_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")


def _sleep_to_next_second() -> None:
    now = time.time()
    time.sleep(int(now) + 1.01 - now)


def _scratch_dir() -> str | None:
    """Where server directories go: $DOVECOT_TEST_TMPDIR, else /dev/shm when
    it is a writable tmpfs (maildir writes are ~4x faster there), else the
    default temp dir."""
    env = os.environ.get("DOVECOT_TEST_TMPDIR")
    if env:
        return env
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


class DovecotError(RuntimeError):
    """The test Dovecot could not be started/stopped or a helper failed."""


def find_dovecot() -> str | None:
    """Path of the dovecot binary, or None."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def imap_utf7_encode(name: str) -> str:
    """Mailbox name -> IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def quote_mailbox(name: str) -> str:
    encoded = imap_utf7_encode(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_uid_set(text: str | bytes) -> list[int]:
    """'1:3,7' -> [1, 2, 3, 7] (no '*')."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    result: list[int] = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            lo, hi = min(a, b), max(a, b)
            result.extend(range(lo, hi + 1))
        else:
            result.append(int(part))
    return result


def uid_set(uids: Iterable[int]) -> str:
    """[1, 2, 3, 7] -> '1:3,7'.

    Written apart from ``portal.imap.client.compress_uids`` (runs of
    consecutive UIDs share ``uid - position``), so the helpers that set up
    mailboxes do not lean on the code under test and can check it."""
    ordered = sorted({int(u) for u in uids})
    if not ordered:
        raise ValueError("empty UID set")
    runs = (list(run) for _, run in itertools.groupby(ordered, key=lambda u, n=itertools.count(): u - next(n)))
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}:{r[-1]}" for r in runs)


def _flags_arg(flags: Iterable[str]) -> str:
    return "(" + " ".join(flags) + ")"


def make_tls_material(directory: Path, *, dns_names: Sequence[str] = ("localhost",),
                      ip_addresses: Sequence[str] = ("127.0.0.1", "::1")) -> tuple[Path, Path, Path]:
    """Create a throw-away CA and a server certificate signed by it.

    Returns (ca_cert_path, server_cert_path, server_key_path), PEM files.
    Uses the ``cryptography`` package, or the ``openssl`` CLI as fallback.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    try:
        _make_tls_material_cryptography(ca_path, cert_path, key_path, dns_names, ip_addresses)
    except ImportError:
        _make_tls_material_openssl(directory, ca_path, cert_path, key_path, dns_names, ip_addresses)
    os.chmod(key_path, 0o600)
    return ca_path, cert_path, key_path


def _make_tls_material_cryptography(ca_path, cert_path, key_path, dns_names, ip_addresses) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(days=1)
    not_after = now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MyPortal test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0] if dns_names else "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))


def _make_tls_material_openssl(directory, ca_path, cert_path, key_path, dns_names, ip_addresses) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise DovecotError("need the 'cryptography' package or the openssl CLI to make test certificates")
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    ext = directory / "server.ext"
    san = ",".join([f"DNS:{n}" for n in dns_names] + [f"IP:{ip}" for ip in ip_addresses])
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(ca_key), "-out", str(ca_path), "-days", "30", "-subj", "/CN=MyPortal test CA",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key_path), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_path), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert_path), "-days", "30", "-extfile", str(ext))


def _processes() -> Iterator[tuple[int, bytes, int, int]]:
    """(pid, state, ppid, pgrp) of every process, from /proc/<pid>/stat."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
            # pid (comm) state ppid pgrp ...   comm may contain spaces/parens
            rest = stat[stat.rindex(b")") + 2:].split()
            fields = (int(entry), rest[0], int(rest[1]), int(rest[2]))
        except (OSError, ValueError, IndexError):
            continue
        yield fields


def _children_of(pids: set[int]) -> set[int]:
    """All descendants of ``pids``."""
    parent_of = {pid: ppid for pid, _state, ppid, _pgrp in _processes()}
    found: set[int] = set()
    frontier = set(pids)
    while frontier:
        nxt = {pid for pid, ppid in parent_of.items() if ppid in frontier and pid not in found}
        found |= nxt
        frontier = nxt
    return found


def _process_group_members(pgid: int) -> set[int]:
    return {pid for pid, state, _ppid, pgrp in _processes() if pgrp == pgid and state != b"Z"}


def _set_child_subreaper(on: bool) -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER); False where unavailable."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1 if on else 0, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    state = stat[stat.rindex(b")") + 2:].split()[0]
    return state not in (b"Z", b"X")


class _SourceAddressRelay:
    """TCP relay: accepts on ``listen``, connects to ``target`` from
    ``source_ip``.  Dovecot treats a connection whose remote IP equals its
    local IP (any loopback connection) as secure, so ``ssl = required``
    would never bite in tests; relayed connections arrive from 127.0.0.2."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], source_ip: str) -> None:
        self.target, self.source_ip = target, source_ip
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(listen)
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, name="dovecot-relay", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10,
                                                    source_address=(self.source_ip, 0))
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    upstream.close()
                    return
                self._socks |= {conn, upstream}
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks, self._socks = self._socks, set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class DovecotServer:
    """One private Dovecot instance.

    ``tls``: configure a certificate; the plain port then offers STARTTLS and
    ``ssl_port`` speaks implicit TLS.  ``require_tls``: ``ssl = required``
    (login only over TLS/STARTTLS); ``port`` is then a relay in the test
    process that reaches Dovecot from 127.0.0.2, because Dovecot counts
    same-IP (loopback) connections as secure.  Restarting keeps ports and data.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, tls: bool = True,
                 require_tls: bool = False, host: str = "127.0.0.1",
                 port: int | None = None, ssl_port: int | None = None,
                 extra_config: str = "", binary: str | None = None) -> None:
        if require_tls and not tls:
            raise ValueError("require_tls needs tls=True")
        self.binary = binary or find_dovecot()
        if not self.binary:
            raise DovecotError(f"dovecot is not installed (no 'dovecot' binary); run: {INSTALL_HINT}")
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-test-", dir=_scratch_dir()) if root is None else root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # mail processes run as an unprivileged user
        self.host = host
        self.port = port or free_port(host)
        self.dovecot_port = free_port(host) if require_tls else self.port  # where Dovecot listens
        self._relay: _SourceAddressRelay | None = None
        self.tls = tls
        self.require_tls = require_tls
        self.ssl_port: int | None = (ssl_port or free_port(host)) if tls else None
        self.extra_config = extra_config
        self.base_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.mail_root = self.root / "mail"
        self.log_path = self.root / "dovecot.log"
        self.conf_path = self.root / "dovecot.conf"
        self.passwd_dir = self.root / "users"  # one passwd-file per user
        self.ca_cert_path: Path | None = None
        self.server_cert_path: Path | None = None
        self.server_key_path: Path | None = None
        self.users: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None
        self._users_lock = threading.Lock()
        self._counter = itertools.count(1)
        self._prepare()

    # ------------------------------------------------------------------ setup
    def _prepare(self) -> None:
        for d in (self.base_dir, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.mail_root, 0o777)
        self.passwd_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.passwd_dir, 0o755)
        if self.tls and self.ca_cert_path is None:
            self.ca_cert_path, self.server_cert_path, self.server_key_path = make_tls_material(self.root / "tls")
        self.conf_path.write_text(self._config())

    def _config(self) -> str:
        if os.geteuid() == 0:
            mail_user, mail_group = "nobody", "nogroup"
            users = ""
        else:  # unprivileged run: everything as the current user
            import grp
            import pwd
            mail_user = pwd.getpwuid(os.getuid()).pw_name
            mail_group = grp.getgrgid(os.getgid()).gr_name
            users = f"default_internal_user = {mail_user}\ndefault_login_user = {mail_user}\n"
        if self.tls:
            ssl_mode = "required" if self.require_tls else "yes"
            dh = "/usr/share/dovecot/dh.pem"
            ssl_conf = (f"ssl = {ssl_mode}\nssl_cert = <{self.server_cert_path}\n"
                        f"ssl_key = <{self.server_key_path}\n"
                        + (f"ssl_dh = <{dh}\n" if os.path.exists(dh) else ""))
            imaps = f"  inet_listener imaps {{\n    address = {self.host}\n    port = {self.ssl_port}\n    ssl = yes\n  }}\n"
        else:
            ssl_conf = "ssl = no\n"
            imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        return f"""# generated by tests/support/dovecot.py
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
verbose_proctitle = yes
listen = {self.host}
{users}{ssl_conf}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{self.mail_root}/%u
mail_fsync = never
mail_max_userip_connections = 1000
imap_max_line_length = 4M
# IDLE wakes through inotify; past fs.inotify.max_user_instances (128 by default, shared by every
# Dovecot and IDLE session of this user on the machine) Dovecot falls back to polling the
# mailbox every mailbox_idle_check_interval (30 s by default): keep that fallback short.
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={self.mail_root}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.dovecot_port}
  }}
{imaps}  chroot =
}}
service anvil {{
  chroot =
  # no auth penalty (delays after failed logins from 127.0.0.1)
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{self.extra_config}
"""

    # -------------------------------------------------------------- lifecycle
    @property
    def master_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def is_running(self) -> bool:
        return self.master_pid is not None

    def pids(self) -> set[int]:
        """PIDs of this instance's processes (master and all children)."""
        if self._proc is None:
            return set()
        pids = {self._proc.pid} if _alive(self._proc.pid) else set()
        return (pids | _children_of({self._proc.pid}) | _process_group_members(self._proc.pid))

    def session_pids(self, user: str) -> set[int]:
        """PIDs of the imap processes serving ``user`` (e.g. to SIGSTOP one
        and provoke a client timeout).  Relies on verbose_proctitle."""
        found = set()
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    title = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if title.startswith("dovecot/imap ") and f"[{user} " in title:
                found.add(pid)
        return found

    def start(self, timeout: float = 20.0) -> "DovecotServer":
        if self.is_running():
            return self
        self._proc = None
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True)
        with _instances_lock:
            _instances.add(self)
        deadline = time.monotonic() + timeout
        ports = [(self.dovecot_port, False)] + ([(self.ssl_port, True)] if self.ssl_port else [])
        for port, use_tls in ports:
            while True:
                if self._proc.poll() is not None:
                    raise DovecotError(f"dovecot exited with status {self._proc.returncode} "
                                       f"while starting; log:\n{self.log_tail()}")
                if self._greets(port, use_tls):
                    break
                if time.monotonic() > deadline:
                    self.kill()
                    raise DovecotError(f"dovecot did not greet on {self.host}:{port} within {timeout}s; "
                                       f"log:\n{self.log_tail()}")
                time.sleep(0.05)
        if self.dovecot_port != self.port and self._relay is None:
            self._relay = _SourceAddressRelay((self.host, self.port), (self.host, self.dovecot_port), "127.0.0.2")
        return self

    def _greets(self, port: int, use_tls: bool) -> bool:
        try:
            sock = socket.create_connection((self.host, port), timeout=2)
        except OSError:
            return False
        try:
            if use_tls:
                sock = self.ssl_context().wrap_socket(sock, server_hostname=self.host)
            return sock.recv(200).startswith(b"* OK")
        except OSError:
            return False
        finally:
            sock.close()

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM to the master, like ``kill $(cat master.pid)``);
        waits until every process of the instance is gone.  Dovecot's log
        process may outlive the master by a moment; as child subreaper the
        test process reaps it instead of leaving a zombie to init."""
        proc = self._proc
        if proc is None:
            return
        subreaper = _set_child_subreaper(True)
        try:
            pids = self.pids()
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
                    return
            self._wait_gone(pids | self.pids(), timeout, reap=subreaper)
        finally:
            if subreaper:
                _set_child_subreaper(False)
        self._finish()

    def kill(self) -> None:
        """Crash the instance: SIGKILL to the master and every child.

        The test process becomes a child subreaper meanwhile, so the killed
        children are reparented to it and reaped here rather than staying
        zombies under an init that may not reap them."""
        proc = self._proc
        if proc is None:
            return
        subreaper = _set_child_subreaper(True)
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGSTOP)  # no respawning while we kill the children
            pids = self.pids()
            for pid in pids - {proc.pid}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            pids |= self.pids()
            self._wait_gone(pids, 10, reap=subreaper)
        finally:
            if subreaper:
                _set_child_subreaper(False)
        self._finish()

    def _wait_gone(self, pids: set[int], timeout: float, reap: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if reap:
                for pid in pids:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(pid, os.WNOHANG)
            left = {pid for pid in pids if _alive(pid)}
            if not left:
                return
            if time.monotonic() > deadline:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
                return
            time.sleep(0.02)

    def _finish(self) -> None:
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        with _instances_lock:
            _instances.discard(self)
        # stale pid file would confuse a later start
        with contextlib.suppress(FileNotFoundError):
            (self.base_dir / "master.pid").unlink()

    def restart(self, timeout: float = 20.0) -> "DovecotServer":
        """Stop (if running) and start again on the same ports with the same data."""
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        """Stop and remove the temp directory (if this object created it)."""
        try:
            self.stop()
        finally:
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "DovecotServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, password: str) -> None:
        """Add (or replace) a user; no restart needed.

        Each user has a passwd-file of its own (``users/<name>``), because
        Dovecot re-reads a changed passwd-file at most once per second and
        compares whole-second mtimes: with one shared file a user added
        right after a login in the same second stays unknown.  A new file
        is always read on first lookup.  Replacing an existing user's
        password waits for the next second for the same reason."""
        if not _USERNAME_RE.match(name):
            raise ValueError(f"test user names must match {_USERNAME_RE.pattern}: {name!r}")
        if any(c in password for c in ":\n\r"):
            raise ValueError("passwords may not contain ':' or newlines here")
        path = self.passwd_dir / name
        with self._users_lock:
            replacing = path.exists()
            tmp = self.passwd_dir / f".{name}.tmp"
            tmp.write_text(f"{name}:{{PLAIN}}{password}\n")
            os.chmod(tmp, 0o644)
            if replacing:
                _sleep_to_next_second()
            os.replace(tmp, path)
            if replacing:
                _sleep_to_next_second()
            self.users[name] = password

    def remove_user(self, name: str) -> None:
        """Delete the user's passwd-file and mail (new logins fail at once)."""
        with self._users_lock:
            self.users.pop(name, None)
            with contextlib.suppress(FileNotFoundError):
                (self.passwd_dir / name).unlink()
        if _USERNAME_RE.match(name):
            shutil.rmtree(self.mail_root / name, ignore_errors=True)

    def new_user(self, prefix: str = "user", password: str | None = None) -> tuple[str, str]:
        """Create a unique user (random password unless given); returns (name, password)."""
        name = f"{prefix}{next(self._counter)}x{secrets.token_hex(3)}"
        if password is None:
            password = "pw-" + secrets.token_urlsafe(12)
        self.add_user(name, password)
        return name, password

    # ------------------------------------------------------------ imap access
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.ca_cert_path:
            ctx.load_verify_locations(cafile=str(self.ca_cert_path))
        return ctx

    def connect(self, user: str, password: str, *, use_ssl: bool = False,
                timeout: float = 30.0) -> imaplib.IMAP4:
        """Logged-in imaplib client (STARTTLS first when the server requires TLS)."""
        if use_ssl:
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.ssl_port, ssl_context=self.ssl_context(),
                                                      timeout=timeout)
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=timeout)
            if self.require_tls:
                client.starttls(self.ssl_context())
        try:
            client.login(user, password)
            # imaplib keeps the pre-login capabilities; MULTIAPPEND etc. come after login
            typ, data = client.capability()
            if typ == "OK" and data and data[-1]:
                client.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    @contextlib.contextmanager
    def session(self, user: str, password: str):
        client = self.connect(user, password)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    @staticmethod
    def _check(result: tuple, what: str) -> list:
        typ, data = result
        if typ != "OK":
            raise DovecotError(f"{what} failed: {typ} {data!r}")
        return data

    def create_folder(self, user: str, password: str, folder: str) -> None:
        with self.session(user, password) as c:
            self._check(c.create(quote_mailbox(folder)), f"CREATE {folder}")

    def delete_folder(self, user: str, password: str, folder: str) -> None:
        with self.session(user, password) as c:
            self._check(c.delete(quote_mailbox(folder)), f"DELETE {folder}")

    def list_folders(self, user: str, password: str) -> list[str]:
        with self.session(user, password) as c:
            data = self._check(c.list(), "LIST")
        names = []
        for item in data:
            if isinstance(item, tuple):  # name sent as literal
                names.append(item[1].decode())
            elif item:
                m = re.match(rb'\([^)]*\) (?:"[^"]*"|NIL) (.*)$', item)
                if m:
                    names.append(m.group(1).decode().strip('"'))
        return names

    def _ensure_folder(self, client: imaplib.IMAP4, folder: str, create: bool) -> None:
        if folder.upper() == "INBOX":
            return
        typ, data = client.status(quote_mailbox(folder), "(MESSAGES)")
        if typ == "OK":
            return
        if not create:
            raise DovecotError(f"folder {folder!r} does not exist")
        self._check(client.create(quote_mailbox(folder)), f"CREATE {folder}")

    def append(self, user: str, password: str, folder: str, raw: bytes,
               flags: Iterable[str] = (), create: bool = True) -> int:
        """APPEND one message; returns its UID (from APPENDUID)."""
        return self.append_many(user, password, folder, [raw], flags=flags, create=create)[0]

    def append_many(self, user: str, password: str, folder: str, raws: Sequence[bytes],
                    flags: Iterable[str] = (), create: bool = True,
                    batch: int = 500, batch_bytes: int = 16 << 20) -> list[int]:
        """Fast bulk APPEND: one connection, MULTIAPPEND with LITERAL+
        (no round trip per message).  Returns the UIDs in input order."""
        raws = [bytes(r) for r in raws]
        if not raws:
            return []
        flag_arg = _flags_arg(flags).encode("ascii")
        uids: list[int] = []
        with self.session(user, password) as c:
            self._ensure_folder(c, folder, create)
            caps = set(c.capabilities)
            pipelined = "LITERAL+" in caps and "MULTIAPPEND" in caps
            mailbox = quote_mailbox(folder).encode("ascii")
            i = 0
            while i < len(raws):
                if not pipelined:
                    typ, data = c.append(mailbox.decode(), flag_arg.decode(), None, raws[i])
                    uids.extend(self._appenduids(typ, data, 1))
                    i += 1
                    continue
                group: list[bytes] = []
                size = 0
                while i < len(raws) and len(group) < batch and (not group or size + len(raws[i]) <= batch_bytes):
                    group.append(raws[i])
                    size += len(raws[i])
                    i += 1
                uids.extend(self._multiappend(c, mailbox, flag_arg, group))
        return uids

    def _multiappend(self, c: imaplib.IMAP4, mailbox: bytes, flag_arg: bytes,
                     group: list[bytes]) -> list[int]:
        tag = b"MA" + secrets.token_hex(4).encode()
        parts = [tag, b" APPEND ", mailbox]
        for raw in group:
            parts += [b" ", flag_arg, b" {", str(len(raw)).encode(), b"+}\r\n", raw]
        parts.append(b"\r\n")
        c.send(b"".join(parts))
        while True:
            line = c.readline()
            if not line:
                raise DovecotError("connection closed during APPEND")
            if line.startswith(tag + b" "):
                break
        status = line.split(b" ", 2)[1].upper()
        if status != b"OK":
            raise DovecotError(f"APPEND failed: {line!r}")
        return self._appenduids("OK", [line], len(group))

    @staticmethod
    def _appenduids(typ: str, data: list, count: int) -> list[int]:
        if typ != "OK":
            raise DovecotError(f"APPEND failed: {typ} {data!r}")
        text = b" ".join(d for d in data if isinstance(d, bytes))
        m = _APPENDUID_RE.search(text)
        if not m:
            raise DovecotError(f"no APPENDUID in APPEND response: {data!r}")
        uids = parse_uid_set(m.group(2))
        if len(uids) != count:
            raise DovecotError(f"APPENDUID lists {len(uids)} UIDs for {count} messages: {text!r}")
        return uids

    def folder_path(self, user: str, folder: str) -> Path:
        """Maildir++ directory of a folder."""
        base = self.mail_root / user
        if folder.upper() == "INBOX":
            return base
        return base / ("." + imap_utf7_encode(folder))

    def fill_maildir(self, user: str, password: str, folder: str, raws: Sequence[bytes],
                     flags: Iterable[str] = (), create: bool = True) -> list[int]:
        """Fastest bulk path: write the messages as maildir files, then let
        Dovecot assign UIDs (via STATUS) and read them back from
        ``dovecot-uidlist``.  Returns UIDs in input order.  Only system flags."""
        letters = []
        for flag in flags:
            letter = _MAILDIR_FLAG_LETTERS.get(flag.lower())
            if letter is None:
                raise ValueError(f"fill_maildir supports only system flags, not {flag!r}")
            letters.append(letter)
        info = ":2," + "".join(sorted(set(letters)))
        with self.session(user, password) as c:
            self._ensure_folder(c, folder, create)
            self._check(c.status(quote_mailbox(folder), "(UIDNEXT)"), f"STATUS {folder}")
            path = self.folder_path(user, folder)
            if not (path / "cur").is_dir():
                raise DovecotError(f"maildir for {folder!r} not found at {path}")
            st = os.stat(path / "cur")
            ts = int(time.time())
            stamp = f"{ts}.M{{:09d}}P{os.getpid()}Q{secrets.token_hex(4)}.portaltest"
            names = []
            tmp_dir = path / "tmp"
            for n, raw in enumerate(raws):
                name = stamp.format(n)
                names.append(name)
                tmp = tmp_dir / name
                with open(tmp, "wb") as fh:
                    fh.write(raw)
                if os.geteuid() == 0:
                    os.chown(tmp, st.st_uid, st.st_gid)
                if letters:
                    os.rename(tmp, path / "cur" / (name + info))
                else:
                    os.rename(tmp, path / "new" / name)
            # make sure Dovecot notices even if it trusts cached directory mtimes
            future = time.time() + 2
            for sub in ("new", "cur"):
                os.utime(path / sub, (future, future))
            # any command that syncs the mailbox makes Dovecot assign UIDs
            self._check(c.status(quote_mailbox(folder), "(MESSAGES UIDNEXT)"), f"STATUS {folder}")
        uid_of: dict[str, int] = {}
        wanted = set(names)
        for line in (path / "dovecot-uidlist").read_text(errors="replace").splitlines()[1:]:
            if " :" not in line:
                continue
            head, fname = line.split(" :", 1)
            fname = fname.split(":2,", 1)[0]
            if fname in wanted:
                uid_of[fname] = int(head.split()[0])
        missing = [n for n in names if n not in uid_of]
        if missing:
            raise DovecotError(f"Dovecot did not assign UIDs to {len(missing)} maildir files")
        return [uid_of[n] for n in names]

    def uids_and_flags(self, user: str, password: str, folder: str) -> dict[int, set[str]]:
        """{uid: flags} of a folder (read-only EXAMINE; \\Recent left out)."""
        result: dict[int, set[str]] = {}
        with self.session(user, password) as c:
            typ, data = c.select(quote_mailbox(folder), readonly=True)
            self._check((typ, data), f"EXAMINE {folder}")
            if int(data[0] or 0) == 0:
                return result
            data = self._check(c.uid("FETCH", "1:*", "(UID FLAGS)"), "UID FETCH")
        for item in data:
            if isinstance(item, tuple):
                item = item[0]
            if not item:
                continue
            m_uid = _FETCH_UID_RE.search(item)
            m_flags = _FETCH_FLAGS_RE.search(item)
            if not m_uid:
                continue
            flags = set(m_flags.group(1).decode().split()) if m_flags else set()
            flags.discard("\\Recent")
            result[int(m_uid.group(1))] = flags
        return result

    def store_flags(self, user: str, password: str, folder: str, uids: Iterable[int],
                    flags: Iterable[str], add: bool = True) -> None:
        uids = list(uids)
        if not uids:
            return
        with self.session(user, password) as c:
            self._check(c.select(quote_mailbox(folder)), f"SELECT {folder}")
            op = "+FLAGS.SILENT" if add else "-FLAGS.SILENT"
            self._check(c.uid("STORE", uid_set(uids), op, _flags_arg(flags)), "UID STORE")

    def expunge(self, user: str, password: str, folder: str, uids: Iterable[int]) -> None:
        """Remove exactly these UIDs (\\Deleted + UID EXPUNGE)."""
        uids = list(uids)
        if not uids:
            return
        with self.session(user, password) as c:
            self._check(c.select(quote_mailbox(folder)), f"SELECT {folder}")
            s = uid_set(uids)
            self._check(c.uid("STORE", s, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
            self._check(c.uid("EXPUNGE", s), "UID EXPUNGE")


@dataclass
class ImapAccount:
    """A user on a test Dovecot, with helpers bound to it."""
    server: DovecotServer
    username: str
    password: str = field(repr=False)

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def ssl_port(self) -> int | None:
        return self.server.ssl_port

    @property
    def ca_cert_path(self) -> str | None:
        return str(self.server.ca_cert_path) if self.server.ca_cert_path else None

    def append(self, raw: bytes, folder: str = "INBOX", flags: Iterable[str] = (), create: bool = True) -> int:
        return self.server.append(self.username, self.password, folder, raw, flags=flags, create=create)

    def append_many(self, raws: Sequence[bytes], folder: str = "INBOX", flags: Iterable[str] = (),
                    create: bool = True) -> list[int]:
        return self.server.append_many(self.username, self.password, folder, raws, flags=flags, create=create)

    def fill_maildir(self, raws: Sequence[bytes], folder: str = "INBOX", flags: Iterable[str] = (),
                     create: bool = True) -> list[int]:
        return self.server.fill_maildir(self.username, self.password, folder, raws, flags=flags, create=create)

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        return self.server.uids_and_flags(self.username, self.password, folder)

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], folder: str = "INBOX",
                    add: bool = True) -> None:
        self.server.store_flags(self.username, self.password, folder, uids, flags, add=add)

    def create_folder(self, folder: str) -> None:
        self.server.create_folder(self.username, self.password, folder)

    def delete_folder(self, folder: str) -> None:
        self.server.delete_folder(self.username, self.password, folder)

    def list_folders(self) -> list[str]:
        return self.server.list_folders(self.username, self.password)

    def expunge(self, uids: Iterable[int], folder: str = "INBOX") -> None:
        self.server.expunge(self.username, self.password, folder, uids)

    def connect(self) -> imaplib.IMAP4:
        """A logged-in imaplib client (caller logs out)."""
        return self.server.connect(self.username, self.password)


class OAuthDovecotServer(DovecotServer):
    """A Dovecot whose IMAP users sign in with OAuth2 (``AUTHENTICATE
    XOAUTH2`` / ``OAUTHBEARER``): its ``oauth2`` passdb asks
    ``introspection_url`` (RFC 7662, POST) about every token, so Dovecot
    itself refuses a wrong, expired, revoked or other user's token.

    The users still get a password, but it is accepted only for PLAIN /
    LOGIN (a second passdb limited to those mechanisms): the inherited
    helpers (``append``, ``fill_maildir``, ``uids_and_flags``...) use it to
    set up mailboxes without a token.  The auth cache is off, so a token's
    fate at the OAuth2 server counts at the very next login."""

    def __init__(self, introspection_url: str, **kwargs) -> None:
        self.introspection_url = introspection_url
        kwargs.setdefault("tls", False)
        super().__init__(**kwargs)

    def _prepare(self) -> None:
        (self.root / "dovecot-oauth2.conf.ext").write_text(
            "# generated by tests/support/dovecot.py\n"
            "introspection_mode = post\n"
            f"introspection_url = {self.introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n")
        super()._prepare()

    def _config(self) -> str:
        config = super()._config()
        replacements = {
            "auth_mechanisms = plain login\n":
                "auth_mechanisms = xoauth2 oauthbearer plain login\nauth_cache_size = 0\n",
            "passdb {\n  driver = passwd-file\n":
                "passdb {\n"
                "  driver = oauth2\n"
                "  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {self.root}/dovecot-oauth2.conf.ext\n"
                "}\n"
                "# the password only serves the setup helpers\n"
                "passdb {\n"
                "  driver = passwd-file\n"
                "  mechanisms = plain login\n",
        }
        for old, new in replacements.items():
            if old not in config:
                raise DovecotError(f"unexpected base config, cannot add OAuth2: {old!r} not found")
            config = config.replace(old, new, 1)
        return config

    def authenticate(self, user: str, access_token: str, *, timeout: float = 30.0) -> imaplib.IMAP4:
        """An imaplib client signed in with ``AUTHENTICATE XOAUTH2`` (caller
        logs out); raises ``imaplib.IMAP4.error`` when Dovecot refuses."""
        client = imaplib.IMAP4(self.host, self.port, timeout=timeout)
        try:
            client.authenticate("XOAUTH2", lambda _: xoauth2_string(user, access_token))
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client


def xoauth2_string(user: str, access_token: str) -> bytes:
    """The XOAUTH2 initial response (imaplib base64-encodes it)."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01".encode()


def make_message(n: int = 1, *, subject: str | None = None, body: bytes | None = None,
                 sender: str = "customer@example.com", to: str = "support@example.com",
                 extra_headers: str = "") -> bytes:
    """A small RFC 5322 message with CRLF line endings (Dovecot returns CRLF,
    so CRLF input comes back byte-for-byte)."""
    subject = subject if subject is not None else f"Test message {n}"
    body = body if body is not None else f"Hello, this is message number {n}.\r\n".encode()
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <test-{n}-{secrets.token_hex(6)}@example.com>\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n{extra_headers}"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    return head.encode() + body


@atexit.register
def _stop_all_at_exit() -> None:
    """Safety net: never leave dovecot processes or temp dirs behind."""
    with _instances_lock:
        leftovers = list(_instances)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.kill()
        if server._own_root:
            shutil.rmtree(server.root, ignore_errors=True)


# ------------------------------------------------------------------ fixtures
try:
    import pytest
except ImportError:  # pragma: no cover - module usable without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def _start_or_fail(**kwargs) -> DovecotServer:
        if not find_dovecot():
            pytest.fail(f"Dovecot is required for the IMAP integration tests but is not installed; "
                        f"run: {INSTALL_HINT}", pytrace=False)
        server = DovecotServer(**kwargs)
        try:
            server.start()
        except Exception:
            server.cleanup()
            raise
        return server

    @contextlib.contextmanager
    def _running(**kwargs):
        server = _start_or_fail(**kwargs)
        try:
            yield server
        finally:
            server.cleanup()

    @pytest.fixture(scope="session")
    def dovecot_server():
        """Session-wide Dovecot: plain port with STARTTLS, implicit-TLS ssl_port."""
        with _running(tls=True) as server:
            yield server

    @pytest.fixture(scope="session")
    def dovecot_server_no_tls():
        """Session-wide Dovecot without any TLS (no STARTTLS capability)."""
        with _running(tls=False) as server:
            yield server

    @pytest.fixture(scope="session")
    def oauth_dovecot(oauth_server_session):
        """Session-wide OAuth2 Dovecot (no TLS) checking tokens against the
        ``oauth_server`` fixture's ``/introspect``
        (needs the ``tests.support.oauth_server`` plugin)."""
        if not find_dovecot():
            pytest.fail(f"Dovecot is required for the IMAP integration tests but is not installed; "
                        f"run: {INSTALL_HINT}", pytrace=False)
        server = OAuthDovecotServer(oauth_server_session.introspection_url)
        try:
            server.start()
            yield server
        finally:
            server.cleanup()

    @pytest.fixture
    def oauth_imap_account(oauth_dovecot):
        """A fresh user on ``oauth_dovecot`` (an :class:`ImapAccount`: its
        setup helpers sign in with the setup-only password); log in as the
        product would with ``oauth_dovecot.authenticate(username, token)``."""
        name, password = oauth_dovecot.new_user()
        yield ImapAccount(oauth_dovecot, name, password)
        oauth_dovecot.remove_user(name)

    @pytest.fixture
    def imap_account(dovecot_server):
        """A fresh user with a random password on ``dovecot_server``; its
        mail is deleted after the test."""
        name, password = dovecot_server.new_user()
        yield ImapAccount(dovecot_server, name, password)
        dovecot_server.remove_user(name)
