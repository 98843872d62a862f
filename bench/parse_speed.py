"""Micro-benchmark for portal.imap.parsing.parse_message.

Generates typical support mails in memory (text+html alternative, some with a
small attachment or an HTML-only body, 5-20 KB) and prints messages/second on
one core.

    .venv/bin/python bench/parse_speed.py [--seconds 3] [--stdlib]

--stdlib times the stdlib ``email`` parser (policy.default) doing the same
job instead: subject, From, text and HTML bodies, attachment names and bytes.
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from portal.imap.parsing import parse_message  # noqa: E402

WORDS = (
    "printer server login password reset invoice error Grüße Köln ticket urgent "
    "please help the VPN is down again since Monday C:\\Users\\new\\app crashes"
).split()


def _paragraphs(rng: random.Random, size: int) -> list[str]:
    paragraphs, total = [], 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
        paragraphs.append(line)
        total += len(line) + 2
    return paragraphs


def _html(paragraphs: list[str]) -> str:
    body = "".join(
        f'<p style="font-family: Arial; color: #333">{p}</p>\n'
        f'<div><a href="https://example.com/kb/{i}" onclick="x()">link {i}</a><br></div>\n'
        for i, p in enumerate(paragraphs)
    )
    return (
        "<html><head><style>p {margin:0}</style></head><body>"
        f"<table width=\"100%\"><tr><td>{body}</td></tr></table>"
        '<img src="cid:logo@x" alt="logo"></body></html>'
    )


def make_mail(rng: random.Random, i: int) -> bytes:
    paragraphs = _paragraphs(rng, rng.randint(1_500, 5_000))
    text = "\n\n".join(paragraphs)
    html = _html(paragraphs)
    kind = i % 4  # 0,1: alternative; 2: alternative + attachment; 3: html only
    headers = (
        f"Return-Path: <user{i}@customer.example>\r\n"
        f"Received: from mx.customer.example (mx.customer.example [192.0.2.{i % 250}])\r\n"
        "\tby mail.portal.example with ESMTPS id abc123 for <support@portal.example>;\r\n"
        "\tMon, 3 Mar 2025 10:00:00 +0100\r\n"
        f"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <user{i}@customer.example>\r\n"
        "To: Support <support@portal.example>\r\n"
        "Cc: \"Doe, Jane\" <jane@customer.example>, bob@customer.example\r\n"
        f"Subject: =?utf-8?B?{base64.b64encode(f'Drucker geht nicht – Ticket {i}'.encode()).decode()}?=\r\n"
        "Date: Mon, 3 Mar 2025 10:00:00 +0100\r\n"
        f"Message-ID: <{i}.{rng.random()}@customer.example>\r\n"
        "In-Reply-To: <prev@portal.example>\r\n"
        "References: <root@portal.example> <prev@portal.example>\r\n"
        "MIME-Version: 1.0\r\n"
    )
    text_part = (
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + text.replace("ü", "=C3=BC").replace("ö", "=C3=B6").replace("ß", "=C3=9F").replace("\n", "\r\n")
    )
    html_b64 = base64.encodebytes(html.encode()).decode().replace("\n", "\r\n")
    html_part = f"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{html_b64}"
    if kind == 3:
        return (headers + html_part).encode()
    alternative = (
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        f"--alt\r\n{text_part}\r\n--alt\r\n{html_part}\r\n--alt--\r\n"
    )
    if kind != 2:
        return (headers + alternative).encode()
    attachment = base64.encodebytes(rng.randbytes(3_000)).decode().replace("\n", "\r\n")
    return (
        headers
        + 'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
        + f"--mix\r\n{alternative}\r\n--mix\r\n"
        + 'Content-Type: application/pdf; name="Rechnung 2025.pdf"\r\n'
        + 'Content-Disposition: attachment; filename="Rechnung 2025.pdf"\r\n'
        + f"Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--mix--\r\n"
    ).encode()


def stdlib_parse(raw: bytes) -> tuple:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return (
        str(message["subject"]),
        message["from"].addresses,
        text.get_content() if text else "",
        html.get_content() if html else "",
        [(part.get_filename(), part.get_content()) for part in message.iter_attachments()],
    )


KINDS = ("alternative", "alternative", "alternative + attachment", "html only")


def _rate(mails: list[bytes], seconds: float, parse=parse_message) -> tuple[float, float]:
    """(best, median) msgs/s over rounds of parsing every mail once."""
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        start = time.perf_counter()
        for mail in mails:
            parse(mail)
        rates.append(len(mails) / (time.perf_counter() - start))
    rates.sort()
    return rates[-1], rates[len(rates) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--stdlib", action="store_true", help="time the stdlib email parser instead")
    args = parser.parse_args()
    parse = stdlib_parse if args.stdlib else parse_message

    rng = random.Random(42)
    mails = [make_mail(rng, i) for i in range(args.mails)]
    sizes = sorted(len(m) for m in mails)
    for mail in mails[:20]:  # warm-up (regex compilation, mimetypes, caches)
        parse(mail)

    # Best round = least disturbed by other processes; median for context.
    best, median = _rate(mails, args.seconds, parse)
    print(
        f"{'stdlib' if args.stdlib else 'all'}:  {best:,.0f} msgs/s best round, {median:,.0f} median, one core "
        f"({len(mails)} mails {sizes[0] / 1024:.1f}-{sizes[-1] / 1024:.1f} KB, "
        f"median {sizes[len(sizes) // 2] / 1024:.1f} KB)"
    )
    for kind in sorted(set(KINDS)):
        subset = [m for i, m in enumerate(mails) if KINDS[i % 4] == kind]
        best, median = _rate(subset, args.seconds / 3, parse)
        print(f"  {kind:<25} {best:,.0f} msgs/s best, {median:,.0f} median")


if __name__ == "__main__":
    main()
