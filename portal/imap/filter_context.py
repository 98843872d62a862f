"""What a filter sees of a message: its fields (subject, body, addresses and domains, headers,
flags, size) plus the mailbox's, as the dict `filters.evaluate` reads (pure).

The names and their meaning are MyPortal's (its `_build_filter_context`): `message_id` is the
header as written, with its angle brackets; `body` is the HTML body when there is one, else the
text; every header is reachable by its lower-case name. `body_text`, `body_html`,
`has_attachments` and `size` are ours."""
from __future__ import annotations


def build_context(email, *, account_id, account_name, company_id, folder, flags, size) -> dict:
    """Evaluation context for a parsed email plus its mailbox/account values."""
    flags = list(flags or [])
    is_unread = "\\seen" not in (f.lower() for f in flags)
    from_ = getattr(email, "from_", None)
    from_list = list(getattr(email, "from_addresses", None) or ([from_] if from_ else []))
    to, cc = _addresses(email, "to"), _addresses(email, "cc")
    text = getattr(email, "text", None) or ""
    html = getattr(email, "html", None) or ""
    headers = {}
    for name, values in (getattr(email, "headers", None) or {}).items():
        values = [values] if isinstance(values, str) else list(values or [])
        if values:
            headers[name.lower()] = values[0] if len(values) == 1 else values
    return {
        "subject": getattr(email, "subject", None) or "",
        "body": html if html.strip() else text,
        "body_text": text,
        "body_html": html,
        "message_id": _message_id_as_written(email, headers),
        "from": {
            "address": _address(from_) if from_ else None,
            "addresses": [_address(a) for a in from_list],
            "domain": _domain(from_) if from_ else None,
            "domains": _domains(from_list),
            "raw": getattr(email, "from_raw", None),
        },
        "to": [_address(a) for a in to],
        "cc": [_address(a) for a in cc],
        "bcc": [_address(a) for a in _addresses(email, "bcc")],
        "to_domains": _domains(to),
        "cc_domains": _domains(cc),
        "reply_to": {"addresses": [_address(a) for a in _addresses(email, "reply_to")]},
        "sender": {"addresses": [_address(a) for a in _addresses(email, "sender")]},
        "mailbox": {"folder": folder, "name": account_name},
        "is_unread": is_unread,
        "is_read": not is_unread,
        "flags": flags,
        "headers": headers,
        "account": {"id": account_id, "name": account_name, "company_id": company_id},
        "has_attachments": bool(getattr(email, "attachments", None)),
        "size": size,
    }


def _message_id_as_written(email, headers: dict) -> str | None:
    """The Message-ID header with its angle brackets (MyPortal's meaning), e.g. `<srv-1@x>`."""
    value = headers.get("message-id")
    value = value[0] if isinstance(value, list) else value
    if value and value.strip():
        return value.strip()
    bare = getattr(email, "message_id", None)
    return f"<{bare}>" if bare else None


def _addresses(email, attr) -> list:
    return [a for a in (getattr(email, attr, None) or []) if a is not None]


def _address(addr) -> str:
    return (getattr(addr, "address", None) or "").strip().lower()


def _domain(addr) -> str:
    domain = getattr(addr, "domain", None)
    if not domain:
        local, at, domain = _address(addr).rpartition("@")
        domain = domain if at else ""
    return domain.strip().lower()


def _domains(addrs) -> list[str]:
    return list(dict.fromkeys(d for d in (_domain(a) for a in addrs) if d))
