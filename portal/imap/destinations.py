"""Which IMAP servers the portal may connect to.

With IMAP_DENY_PRIVATE_NETWORKS on, a host that resolves to a loopback, link-local, private,
unspecified, multicast or otherwise non-public address is refused before any connection is
made, unless it is listed in IMAP_ALLOWED_HOSTS. Every address the host resolves to is
checked, so one public record cannot smuggle in a private one.

The check resolves the name itself and the client resolves it again when it connects: a DNS
server that answers differently the second time (rebinding) is not stopped here.
"""
import ipaddress
import socket

from flask import current_app

from .client_errors import ImapConnectError


def check_destination(host: str, port: int) -> None:
    """Raise ImapConnectError when the settings forbid connecting to `host`."""
    config = current_app.config
    if not config.get("IMAP_DENY_PRIVATE_NETWORKS"):
        return
    name = host.strip().rstrip(".").lower()
    if name in {allowed.strip().rstrip(".").lower() for allowed in config.get("IMAP_ALLOWED_HOSTS") or ()}:
        return
    for address in resolve(name, port):
        if not is_public(address):
            raise ImapConnectError(
                f"{host} resolves to a private address ({address}); allow it with IMAP_ALLOWED_HOSTS"
            )


def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        raise ImapConnectError(f"Could not resolve {host}: {reason}") from None
    # sockaddr[0] of an IPv6 link-local address may carry a zone ("fe80::1%eth0").
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not (
        address.is_loopback or address.is_link_local or address.is_private or address.is_unspecified
        or address.is_multicast or address.is_reserved
    )
