"""Realistic support mail for the ingest benchmark (deterministic for a given seed).

    support_corpus(2000)   mixed support traffic: plain text and text+HTML alternatives,
                           attachments (PDF/PNG-like bytes, 10-200 KB), legacy charsets
                           (iso-8859-1, windows-1252, shift_jis, koi8-r as 8bit bodies and
                           RFC 2047 subjects), replies that point at earlier mails of the
                           corpus, a few auto-replies and bounces, ~50 sender domains, and
                           optionally one message just under the 25 MiB size limit.
    small_corpus(10000)    tiny plain mails, for the no-new-mail sync.

Every message uses CRLF line endings (as Dovecot stores and returns them), so its
RFC822.SIZE is len(raw). Each `Mail` says which outcome the importer should record.
"""
from __future__ import annotations

import base64
import binascii
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import quoprimime
from email.utils import format_datetime

DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024  # the project's IMAP_MAX_MESSAGE_BYTES default
SUPPORT_ADDRESS = "support@helpdesk.example"

# Shares of the corpus (the rest are new tickets).
REPLY_SHARE = 0.25
AUTO_SHARE = 0.03
ATTACHMENT_SHARE = 0.15
LEGACY_SHARE = 0.15
HTML_SHARE = 0.45

COMPANY_WORDS = (
    "acme globex initech umbrella hooli vandelay wonka stark wayne tyrell soylent cyberdyne "
    "massive oscorp aperture gringotts duff krusty monarch nakatomi pied virtucon weyland "
    "zorg bluth dunder prestige sterling wernham gekko"
).split()
TLDS = ("com", "de", "fr", "co.uk", "jp", "ru", "nl", "io", "at", "ch")

FIRST_NAMES = ("Jörg", "Anna", "Hélène", "Björn", "Zoë", "Luis", "Mette", "François", "Pat",
               "Jean-Luc", "Sato", "Olga", "Giulia", "Ines", "Søren", "Yuki", "Dmitri", "Chloé")
LAST_NAMES = ("Müller", "Smith", "Dubois", "Öztürk", "García", "Nakamura", "Ivanova", "Rossi",
              "Jensen", "O'Brien", "Kowalski", "Schäfer", "Tanaka", "Petrov", "Lefèvre")

ENGLISH = (
    "Hi team, the printer on the second floor shows a paper jam although there is no paper inside.",
    "Since this morning nobody in accounting can log in to the VPN; the client says the certificate expired.",
    "Could you please reset the password for our new colleague? She starts on Monday.",
    "The invoice portal returns error 500 when we upload the monthly CSV export.",
    "Outlook keeps asking for the password every ten minutes on two laptops.",
    "We need three more licences for the design software before the end of the quarter.",
    "The shared drive S: is very slow, opening a 2 MB spreadsheet takes more than a minute.",
    "Attached you will find the screenshot of the error message and the log file.",
    "This is urgent: our web shop is down and customers cannot place orders.",
    "Thanks for the quick help last week, everything works again.",
    "Please also check the backup job, the report says it finished with warnings.",
    "The new phone system drops calls after exactly 30 seconds on the reception desk.",
)
LEGACY_TEXTS = {
    "iso-8859-1": (
        "Sehr geehrte Damen und Herren, unser Drucker im Büro funktioniert seit Montag nicht mehr.",
        "Die Anmeldung am Portal schlägt fehl, obwohl das Passwort stimmt. Grüße aus Köln.",
        "Bonjour, le serveur de fichiers ne répond plus depuis ce matin. Merci d'avance.",
        "Können Sie bitte prüfen, warum die Sicherung am Wochenende abgebrochen ist? Gruß, Jörg",
    ),
    "windows-1252": (
        "Die Rechnung über 1.250 € ist falsch – bitte prüfen. „Danke“ im Voraus!",
        "We were charged €49.99 twice – could you “please” refund the second payment?",
        "The ‘Save’ button does nothing… we tried Edge and Firefox — same result.",
    ),
    "shift_jis": (
        "お世話になっております。ログインできません。パスワードをリセットしてください。",
        "プリンターが動きません。至急確認をお願いいたします。よろしくお願いいたします。",
        "請求書の金額が間違っているようです。ご確認ください。",
    ),
    "koi8-r": (
        "Здравствуйте! Не работает принтер в бухгалтерии. Спасибо.",
        "Добрый день, не могу войти в систему, пишет «неверный пароль».",
        "Просим проверить резервное копирование, отчёт пришёл с ошибками.",
    ),
}
LEGACY_SUBJECTS = {
    "iso-8859-1": ("Drucker im Büro defekt", "Problème de connexion à l'intranet", "Sicherung fehlgeschlagen - dringend"),
    "windows-1252": ("Rechnung über 1.250 € – falscher Betrag", "Doppelte Abbuchung „Premium“-Tarif"),
    "shift_jis": ("ログインできません", "プリンターの故障について", "請求書の金額について"),
    "koi8-r": ("Не работает принтер", "Проблема со входом в систему", "Ошибка резервного копирования"),
}
# Python's codec names differ from MIME names for one of them.
PY_CODEC = {"windows-1252": "cp1252"}
ENGLISH_SUBJECTS = (
    "Printer not working", "VPN login fails", "Password reset for new colleague",
    "Error 500 in the invoice portal", "Outlook asks for password", "Need 3 more licences",
    "Shared drive very slow", "URGENT: web shop down", "Backup finished with warnings",
    "Phone system drops calls", "Grüße – Zugang gesperrt", "Question about our contract",
)
REPLY_PREFIXES = ("Re: ", "RE: ", "AW: ", "Re: Re: ")
AUTO_KINDS = ("out_of_office", "autoreply_header", "bulk", "bounce")


@dataclass
class Mail:
    raw: bytes
    message_id: str
    expected: str  # outcome the importer should record: imported, threaded, skipped_auto_reply, skipped_bounce
    attachments: int = 0  # attachment parts (files) in the message


@dataclass
class _Thread:
    message_id: str
    references: list[str]
    subject: str
    charset: str
    sender: tuple[str, str]


# ----------------------------------------------------------------- encodings
def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def b64_lines(data: bytes) -> bytes:
    """Base64 with 76-character lines and CRLF line ends, as mail clients send it."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def b64_encoded_size(n: int) -> int:
    encoded = 4 * ((n + 2) // 3)
    return encoded + 2 * ((encoded + 75) // 76)


def qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data, istext=True).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def encoded_word(text: str, charset: str) -> str:
    """One RFC 2047 encoded word: Q for the Latin charsets (as mail clients do), else B."""
    data = text.encode(PY_CODEC.get(charset, charset))
    if charset in ("iso-8859-1", "windows-1252"):
        return quoprimime.header_encode(data, charset)
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?="


def encoded_words(text: str, charset: str) -> str:
    """RFC 2047 encoded words, each at most 75 characters, folded onto continuation lines."""
    words, chunk = [], ""
    for ch in text:
        if chunk and len(encoded_word(chunk + ch, charset)) > 75:
            words.append(encoded_word(chunk, charset))
            chunk = ""
        chunk += ch
    words.append(encoded_word(chunk, charset))
    return "\r\n ".join(words)


def header_text(text: str, charset: str = "utf-8") -> str:
    """A header value: plain when it is ASCII, else RFC 2047 in ``charset``."""
    return text if text.isascii() else encoded_words(text, charset)


# ------------------------------------------------------------------ generator
class CorpusBuilder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.domains = self._domains(50)
        self.threads: list[_Thread] = []
        self.start = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
        self.serial = 0

    def _domains(self, count: int) -> list[str]:
        rng, found = self.rng, []
        while len(found) < count:
            name = f"{rng.choice(COMPANY_WORDS)}-{rng.choice(COMPANY_WORDS)}.{rng.choice(TLDS)}"
            if name not in found:
                found.append(name)
        return found

    # one message --------------------------------------------------------------
    def mail(self, kind: str) -> Mail:
        """kind: 'new', 'reply' or 'auto'."""
        self.serial += 1
        if kind == "reply" and self.threads:
            return self._reply()
        if kind == "auto":
            return self._auto()
        return self._new()

    def _sender(self) -> tuple[str, str]:
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{first}.{last}".lower().encode("ascii", "ignore").decode().replace("'", "")
        return f"{first} {last}", f"{local}{rng.randint(1, 9)}@{rng.choice(self.domains)}"

    def _message_id(self, domain: str) -> str:
        token = self.rng.getrandbits(64)
        return f"{token:016x}.{self.serial}@{domain}"

    def _date(self) -> str:
        return format_datetime(self.start + timedelta(seconds=self.serial * 37))

    def _new(self) -> Mail:
        rng = self.rng
        name, address = self._sender()
        charset = rng.choice(list(LEGACY_TEXTS)) if rng.random() < LEGACY_SHARE else "utf-8"
        if charset == "utf-8":
            subject = f"{rng.choice(ENGLISH_SUBJECTS)} ({rng.randint(100, 9999)})"
        else:
            subject = rng.choice(LEGACY_SUBJECTS[charset])
        message_id = self._message_id(address.split("@")[1])
        self.threads.append(_Thread(message_id, [], subject, charset, (name, address)))
        raw, attachments = self._message(name, address, subject, message_id, charset, headers=[])
        return Mail(raw, message_id, "imported", attachments)

    def _reply(self) -> Mail:
        rng = self.rng
        parent = rng.choice(self.threads[-300:])  # replies come within a few hours
        name, address = parent.sender
        subject = rng.choice(REPLY_PREFIXES) + parent.subject
        message_id = self._message_id(address.split("@")[1])
        references = (parent.references + [parent.message_id])[-10:]
        headers = [f"In-Reply-To: <{parent.message_id}>",
                   "References: " + "\r\n ".join(f"<{r}>" for r in references)]
        self.threads.append(_Thread(message_id, references, parent.subject, parent.charset, parent.sender))
        quote = f"\n\nOn {self._date()}, {name} wrote:\n> " + "\n> ".join(ENGLISH[:3])
        raw, attachments = self._message(name, address, subject, message_id, parent.charset,
                                         headers=headers, quote=quote)
        return Mail(raw, message_id, "threaded", attachments)

    def _auto(self) -> Mail:
        rng = self.rng
        kind = rng.choice(AUTO_KINDS)
        name, address = self._sender()
        domain = address.split("@")[1]
        message_id = self._message_id(domain)
        if kind == "bounce":  # a delivery status notification: skip_bounces (default on)
            return Mail(self._bounce(domain, message_id), message_id, "skipped_bounce")
        headers = {
            "out_of_office": ["Auto-Submitted: auto-replied", "X-Auto-Response-Suppress: All"],
            "autoreply_header": ["X-Autoreply: yes"],
            "bulk": ["Precedence: bulk", "List-Unsubscribe: <mailto:unsubscribe@" + domain + ">"],
        }[kind]
        if kind == "bulk":  # list and bulk mail is imported: only auto-replies and bounces are skipped
            subject, body, expected = "Newsletter: our November update", "What changed in November.\n", "imported"
        else:
            subject = "Automatic reply: Out of office until Monday"
            body, expected = "I am out of the office until Monday with limited access to email.\n", "skipped_auto_reply"
        raw = self._head(name, address, subject, message_id, headers) + self._text_part(body, "utf-8")
        return Mail(raw, message_id, expected)

    def _bounce(self, domain: str, message_id: str) -> bytes:
        boundary = f"bounce{self.serial}"
        head = self._head("Mail Delivery Subsystem", f"MAILER-DAEMON@{domain}",
                          "Undelivered Mail Returned to Sender", message_id, [],
                          return_path="<>",
                          content_type=f'multipart/report; report-type=delivery-status; boundary="{boundary}"')
        body = crlf(
            f"\n--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n"
            "This is the mail system at host mx.example.\n\nI'm sorry to have to inform you that your "
            "message could not be delivered to one or more recipients.\n\n"
            f"--{boundary}\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; mx.{domain}\n\nFinal-Recipient: rfc822; nobody@{domain}\n"
            "Action: failed\nStatus: 5.1.1\n\n"
            f"--{boundary}--\n")
        return head + body.encode("ascii")

    # building blocks -----------------------------------------------------------
    def _head(self, name, address, subject, message_id, extra, *, return_path=None,
              content_type=None, subject_charset="utf-8") -> bytes:
        rng = self.rng
        domain = address.split("@")[1]
        hops = [
            f"Received: from mx.{domain} (mx.{domain} [198.51.100.{rng.randint(1, 254)}])\n"
            f"\tby mail.helpdesk.example (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\n"
            f"\tfor <{SUPPORT_ADDRESS}>; {self._date()}"
            for _ in range(rng.randint(1, 3))
        ]
        lines = [
            f"Return-Path: {return_path or '<' + address + '>'}",
            *hops,
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=sel1;\n"
            f"\th=from:to:subject:date:message-id; bh={base64.b64encode(rng.randbytes(32)).decode()};\n"
            f"\tb={base64.b64encode(rng.randbytes(128)).decode()}",
            f"From: {header_text(name)} <{address}>",
            f"To: Support <{SUPPORT_ADDRESS}>",
            *([self._cc()] if rng.random() < 0.2 else []),
            f"Subject: {header_text(subject, subject_charset)}",
            f"Date: {self._date()}",
            f"Message-ID: <{message_id}>",
            *extra,
            f"X-Mailer: {rng.choice(['Microsoft Outlook 16.0', 'Apple Mail (2.3731)', 'Thunderbird 128.3', 'Roundcube 1.6'])}",
            "MIME-Version: 1.0",
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        return crlf("\n".join(lines) + "\n").encode("utf-8")

    def _cc(self) -> str:
        name, address = self._sender()
        return f"Cc: {header_text(name)} <{address}>"

    def _text(self, charset: str, quote: str = "") -> str:
        rng = self.rng
        sentences = ENGLISH if charset == "utf-8" else LEGACY_TEXTS[charset]
        paragraphs = [" ".join(rng.choice(sentences) for _ in range(rng.randint(2, 8)))
                      for _ in range(rng.randint(2, 14))]
        return "\n\n".join(paragraphs) + "\n\n-- \nKind regards\n" + quote + "\n"

    @staticmethod
    def _html(text: str) -> str:
        paragraphs = "".join(
            f'<p class="MsoNormal" style="margin:0;font-family:Calibri,sans-serif;font-size:11pt">'
            f'<span lang="EN-US" style="color:#1F497D">'
            f"{p.replace('&', '&amp;').replace('<', '&lt;').replace(chr(10), '<br>')}</span></p>\n"
            '<p class="MsoNormal"><span lang="EN-US">&nbsp;</span></p>\n'
            for p in text.split("\n\n")
        )
        return ("<html><head><meta charset=\"utf-8\"><style>p.MsoNormal{margin:0}</style></head>"
                f'<body lang="en"><div class="WordSection1">{paragraphs}</div></body></html>')

    @staticmethod
    def _text_part(text: str, charset: str) -> bytes:
        codec = PY_CODEC.get(charset, charset)
        if charset == "utf-8":
            return (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                    + qp(text.encode("utf-8")))
        return (f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".encode()
                + crlf(text).encode(codec, "replace"))

    @staticmethod
    def _html_part(html: str) -> bytes:
        return (b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                + b64_lines(html.encode("utf-8")))

    def _attachment(self) -> bytes:
        rng = self.rng
        size = rng.randint(10_000, 200_000)
        if rng.random() < 0.5:
            name, ctype = f"Rechnung {rng.randint(1000, 9999)}.pdf", "application/pdf"
            payload = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(size) + b"\n%%EOF\n"
        else:
            name, ctype = f"screenshot-{rng.randint(1, 99)}.png", "image/png"
            payload = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(size) + b"IEND\xaeB`\x82"
        return attachment_part(name, ctype, payload)

    def _message(self, name, address, subject, message_id, charset, *, headers, quote="") -> tuple[bytes, int]:
        """(raw message, number of attachments)."""
        rng = self.rng
        attachments = 0
        text = self._text(charset, quote)
        if charset == "utf-8" and rng.random() < HTML_SHARE:
            body, ctype = multipart("alternative", f"=_alt{self.serial}", [self._text_part(text, charset), self._html_part(self._html(text))])
        else:
            body, ctype = self._text_part(text, charset), None
        if rng.random() < ATTACHMENT_SHARE:
            parts = [body if ctype is None else f"Content-Type: {ctype}\r\n\r\n".encode() + body]
            attachments = rng.choice((1, 1, 1, 2, 3))
            parts += [self._attachment() for _ in range(attachments)]
            body, ctype = multipart("mixed", f"=_mix{self.serial}", parts)
        head = self._head(name, address, subject, message_id, headers, subject_charset=charset)
        if ctype is None:  # single part: its own headers join the message's
            return head + body, attachments
        return head + f"Content-Type: {ctype}\r\n\r\n".encode() + body, attachments

    def big_mail(self, target_size: int) -> Mail:
        """A new ticket with one big PDF attachment (base64); the whole message is at most
        ``target_size`` bytes and less than 80 bytes under it."""
        self.serial += 1
        name, address = self._sender()
        message_id = self._message_id(address.split("@")[1])
        head = self._head(name, address, "Scan of the signed contract (large)", message_id, [])
        text = self._text_part("Please find the scanned contract attached.\n", "utf-8")
        boundary = f"=_big{self.serial}"

        def build(payload_size: int) -> bytes:
            payload = b"%PDF-1.4\n" + self.rng.randbytes(max(0, payload_size - 9))
            body, ctype = multipart("mixed", boundary, [text, attachment_part("contract-scan.pdf", "application/pdf", payload)])
            return head + f"Content-Type: {ctype}\r\n\r\n".encode() + body

        overhead = len(build(0)) - b64_encoded_size(0)
        payload_size = (target_size - overhead) * 57 // 78
        while b64_encoded_size(payload_size) + overhead > target_size:
            payload_size -= 1
        self.threads.append(_Thread(message_id, [], "Scan of the signed contract (large)", "utf-8", (name, address)))
        return Mail(build(payload_size), message_id, "imported", attachments=1)


def attachment_part(filename: str, content_type: str, payload: bytes) -> bytes:
    return (f'Content-Type: {content_type}; name="{filename}"\r\n'
            f'Content-Disposition: attachment; filename="{filename}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + b64_lines(payload)


def multipart(subtype: str, boundary: str, parts: list[bytes]) -> tuple[bytes, str]:
    """(body, content type) of a multipart entity made of complete parts."""
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/{subtype}; boundary="{boundary}"'


# ------------------------------------------------------------------------ API
def support_corpus(count: int, *, seed: int = 1, big_attachment: bool = True,
                   max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[Mail]:
    """``count`` messages in delivery (UID) order; with ``big_attachment`` one of them, in the
    middle, is 4 KiB under ``max_message_bytes`` (so it is imported, not skipped)."""
    builder = CorpusBuilder(seed)
    big_at = count // 2 if big_attachment and count else -1
    mails = []
    for i in range(count):
        if i == big_at:
            mails.append(builder.big_mail(max_message_bytes - 4096))
            continue
        roll = builder.rng.random()
        kind = "auto" if roll < AUTO_SHARE else "reply" if roll < AUTO_SHARE + REPLY_SHARE and i > 10 else "new"
        mails.append(builder.mail(kind))
    return mails


def small_corpus(count: int, *, seed: int = 2) -> list[bytes]:
    """``count`` small (about 600 bytes) plain-text mails with unique Message-IDs."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        body = rng.choice(ENGLISH)
        out.append(crlf(
            f"From: Customer {i} <customer{i % 500}@client{i % 50}.example>\n"
            f"To: {SUPPORT_ADDRESS}\nSubject: Ticket {i}: {rng.choice(ENGLISH_SUBJECTS)}\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\nMessage-ID: <small{i}.{rng.getrandbits(48):012x}@client.example>\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
            f"{body}\n").encode("utf-8"))
    return out


def describe(mails: list[Mail]) -> str:
    sizes = sorted(len(m.raw) for m in mails)
    total = sum(sizes)
    expected: dict[str, int] = {}
    for m in mails:
        expected[m.expected] = expected.get(m.expected, 0) + 1
    return (f"{len(mails)} messages, {total / 1e6:.1f} MB (median {sizes[len(sizes) // 2] / 1024:.1f} KB, "
            f"largest {sizes[-1] / 1e6:.2f} MB); expected outcomes: "
            + ", ".join(f"{k} {v}" for k, v in sorted(expected.items())))
