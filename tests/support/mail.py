"""Raw RFC 822 messages for tests and benchmarks."""
import base64
import itertools
from email.utils import format_datetime
from datetime import datetime, timezone

_counter = itertools.count(1)


def make_email(
    subject="Help needed",
    body="Hello, my printer is broken.",
    *,
    sender="Pat Customer <pat@acme.com>",
    to="support@helpdesk.test",
    message_id: str | None = "auto",
    headers: dict | None = None,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
    charset="utf-8",
) -> bytes:
    """A simple but real MIME message; message_id="auto" makes a unique one, None leaves it out."""
    if message_id == "auto":
        message_id = f"<msg{next(_counter)}.{id(subject)}@mail.acme.com>"
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc))}",
        "MIME-Version: 1.0",
    ]
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    text_part = [f'Content-Type: text/plain; charset="{charset}"', "Content-Transfer-Encoding: 8bit", "", body]
    if not html and not attachments:
        return ("\r\n".join(lines + text_part) + "\r\n").encode(charset if charset != "utf-8" else "utf-8")
    boundary = f"=_b{next(_counter)}"
    parts = []
    if html:
        alt = f"=_a{next(_counter)}"
        parts.append(
            "\r\n".join(
                [f'Content-Type: multipart/alternative; boundary="{alt}"', "", f"--{alt}", *text_part,
                 f"--{alt}", 'Content-Type: text/html; charset="utf-8"', "Content-Transfer-Encoding: 8bit", "", html, f"--{alt}--"]
            )
        )
    else:
        parts.append("\r\n".join(text_part))
    for filename, content_type, payload in attachments:
        encoded = base64.encodebytes(payload).decode().replace("\n", "\r\n")
        parts.append(
            "\r\n".join(
                [f"Content-Type: {content_type}; name=\"{filename}\"", "Content-Transfer-Encoding: base64",
                 f'Content-Disposition: attachment; filename="{filename}"', "", encoded]
            )
        )
    lines.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    body_text = "\r\n".join(lines) + "\r\n\r\n" + "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return body_text.encode("utf-8")
