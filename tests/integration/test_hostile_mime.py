"""The hostile-MIME corpus against a real Dovecot and a real worker process: every hostile
message gets exactly one recorded outcome, the mailbox's ordinary mail is imported,
attachment names are safe, what was left out is said on the ticket, and the worker stays
under the bench's memory limit (bench/ingest.py: 150 MB)."""
import base64
import json
import subprocess
import sys

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.imap.models import ProcessedMessage, SyncRun
from portal.imap.tasks import enqueue_sync
from portal.models import Attachment, Ticket, TicketMessage
from tests.conftest import login
from tests.integration.imap_helpers import create_mailbox
from tests.support import processes
from tests.support.mail import make_email

WORKER_MEMORY_LIMIT = 150 * 1024 * 1024


def mail(*headers: bytes, body: bytes = b"x\r\n") -> bytes:
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def multipart(boundary: bytes, parts: list[bytes], *headers: bytes) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + boundary + b"--\r\n"
    return mail(b"From: sender@example.com", *headers,
                b'Content-Type: multipart/mixed; boundary="' + boundary + b'"', body=body)


def attachment(name: bytes, payload: bytes = b"data") -> bytes:
    return (b'Content-Type: application/octet-stream; name="' + name + b'"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(payload))


def deep_nesting(levels: int = 1000) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nthe bottom\r\n"
    for i in range(levels):
        inner = (b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                 + inner + b"\r\n--b%d--\r\n" % i)
    return multipart(b"top", [b"Content-Type: text/plain\r\n\r\nreadable text near the top", inner],
                     b"Subject: hostile deep nesting")


HOSTILE = {
    "deep nesting": deep_nesting(),
    "20,000 header lines": mail(b"From: sender@example.com", b"Subject: hostile many headers",
                                *(b"X-Filler-%d: %d" % (i, i) for i in range(20000))),
    "broken base64": mail(b"From: sender@example.com", b"Subject: hostile base64",
                          b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: base64",
                          body=b"SGVsbG8gV29ybGQ!!!@@@===SGk\r\nQUJD=Q\r\n"),
    "broken quoted-printable": mail(b"From: sender@example.com", b"Subject: hostile qp",
                                    b"Content-Type: text/plain; charset=utf-8",
                                    b"Content-Transfer-Encoding: quoted-printable",
                                    body=b"caf=C3=A9 =ZZ =\r\n=C3 =3 soft=\r\nend=\r\n"),
    "NULs": mail(b"From: sender@example.com", b"Subject: hostile \x00nul", body=b"before\x00after\r\n" * 50),
    "a 2 MB line": mail(b"From: sender@example.com", b"Subject: hostile long line", body=b"y" * (2 * 1024 * 1024)),
    "invalid charsets": multipart(b"cs", [
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nGr\xfc\xdfe",
        b"Content-Type: text/plain; charset=base64\r\n\r\nabc",
        b"Content-Type: text/html; charset=utf-7\r\n\r\n<p>+AGEAYgBj-</p>",
    ], b"Subject: hostile charsets"),
    "malformed encoded words": mail(b"From: =?utf-8?B?SsO2cmc?= <sender@example.com>",
                                    b"Subject: =?x-bogus?Q?abc?= =?utf-8?B?R3LDvMOfZ?= =?utf-8?Q?=FF?= =?utf-8?q?ok?="),
    "5,000 parts": multipart(b"p", [attachment(b"f%d.bin" % i, b"%d" % i) for i in range(5000)],
                             b"Subject: hostile many parts"),
    "path traversal and RTL names": multipart(b"n", [
        b"Content-Type: text/plain\r\n\r\nsee attachments",
        attachment(b"../../../etc/passwd"),
        attachment(b"..\\..\\windows\\system32\\evil.dll"),
        attachment("invoice\u202efdp.exe".encode()),
        attachment(b"=?utf-8?B?" + base64.b64encode("..\u202e/x.exe".encode()) + b"?="),
        attachment(b"CON"),
    ], b"Subject: hostile names"),
    "garbage From": mail(b'From: <<<>>>,,,"\x01\x02 @@@ (((', b"Subject: hostile from"),
    "empty message": b"\r\n",
}

NORMAL = [make_email(subject=f"Normal mail {n}") for n in range(3)]


@pytest.fixture
def mailbox(app_ctx, imap_account):
    return create_mailbox(imap_account)


# Spawned straight from pytest, the worker's ru_maxrss would include pytest's own RSS (Linux
# keeps the pre-exec high-water mark of the forked process); a small launcher in between
# reports the worker's own peak alone (as bench/ingest.py does).
LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump({"maxrss": usage.ru_maxrss * 1024}, fh)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_worker_burst(app, tmp_path) -> int:
    """One `python worker.py --burst` to the end; returns the peak RSS (bytes) of the worker
    (it runs the job in its own process)."""
    report = tmp_path / "rusage.json"
    proc = processes.start(app, "-c", LAUNCHER, str(report), sys.executable, "worker.py", "--burst",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(output.decode(errors="replace")[-3000:])
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    return json.loads(report.read_text())["maxrss"]


def test_hostile_corpus_every_message_has_one_outcome_and_the_worker_stays_lean(app, mailbox, imap_account, client, admin, tmp_path):
    uids = {name: imap_account.append(raw) for name, raw in HOSTILE.items()}
    normal_uids = [imap_account.append(raw) for raw in NORMAL]
    run = enqueue_sync(mailbox)
    peak_rss = run_worker_burst(app, tmp_path)
    db.session.expire_all()

    run = db.session.get(SyncRun, run.id)
    assert run.status in ("succeeded", "completed_with_errors"), (run.status, run.error)
    rows = db.session.scalars(select(ProcessedMessage).where(ProcessedMessage.account_id == mailbox.id)).all()
    by_uid: dict[int, list[ProcessedMessage]] = {}
    for row in rows:
        by_uid.setdefault(row.uid, []).append(row)
    assert set(by_uid) == set(uids.values()) | set(normal_uids)
    for name, uid in uids.items():
        [row] = by_uid[uid]
        assert row.outcome in ("imported", "failed") or row.outcome.startswith("skipped"), (name, row.outcome)
        assert row.outcome == "imported" or row.reason, (name, row.outcome)
    for uid in normal_uids:
        assert [r.outcome for r in by_uid[uid]] == ["imported"]

    names = db.session.scalars(select(Attachment.filename)).all()
    assert names
    for name in names:
        assert "/" not in name and "\\" not in name and ".." not in name, name
        assert not any(ch in name for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"), name

    deep = _message_of(by_uid[uids["deep nesting"]][0])
    assert "readable text near the top" in deep.body_text
    assert "MIME parts nested deeper than 40 levels were not imported" in deep.import_notes
    assert "MIME nesting too deep; inner parts dropped" in by_uid[uids["deep nesting"]][0].defects
    many = _message_of(by_uid[uids["5,000 parts"]][0])
    assert "4,001 more MIME parts were not imported (limit 1,000)" in many.import_notes
    assert len(many.attachments) == 999
    words = _message_of(by_uid[uids["malformed encoded words"]][0]).ticket
    assert words.subject == "=?x-bogus?Q?abc?= =?utf-8?B?R3LDvMOfZ?= =?utf-8?Q?=FF?= ok"

    assert peak_rss < WORKER_MEMORY_LIMIT, f"worker peak RSS {peak_rss / 2**20:.0f} MB"
    _shown_to_people(client, mailbox, many)


def _shown_to_people(client, mailbox, message: TicketMessage) -> None:
    """The ticket page and the ticket JSON say what was left out; the audit page shows defects."""
    login(client, "admin@portal.test")
    page = client.get(f"/tickets/{message.ticket_id}").get_data(as_text=True)
    assert "Noted on import" in page
    assert "4,001 more MIME parts were not imported (limit 1,000)" in page
    ticket = client.get(f"/api/tickets/{message.ticket_id}").json
    assert "4,001 more MIME parts" in ticket["messages"][0]["import_notes"]
    audit = client.get(f"/admin/modules/imap/{mailbox.id}/messages", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "defects: " in audit and "more than 1000 MIME parts; the rest left out" in audit


def _message_of(row: ProcessedMessage) -> TicketMessage:
    assert row.outcome == "imported", (row.outcome, row.reason)
    ticket = db.session.get(Ticket, row.ticket_id)
    return ticket.messages[0]
