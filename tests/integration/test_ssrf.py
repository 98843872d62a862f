"""Test connection and syncs as a way into the network: private destinations are refused when
IMAP_DENY_PRIVATE_NETWORKS is on, and whatever answers that is not IMAP is not echoed."""
import ipaddress
import socket

import pytest

from portal.imap import destinations
from portal.imap.client_errors import ImapConnectError
from portal.imap.connection_check import check_connection
from tests.integration.imap_helpers import RecordingServer, create_mailbox, sync

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


@pytest.fixture
def deny_private(app, monkeypatch):
    monkeypatch.setitem(app.config, "IMAP_DENY_PRIVATE_NETWORKS", True)
    monkeypatch.setitem(app.config, "IMAP_ALLOWED_HOSTS", [])
    return app


@pytest.fixture
def listener():
    with RecordingServer() as server:
        yield server


def form(host, port, **fields):
    values = {"host": host, "port": str(port), "security": "none", "allow_plaintext": "y", "username": "u",
              "password": "pw"}
    values.update(fields)
    return values


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:127.0.0.1",
])
def test_private_and_special_addresses_are_not_public(address):
    assert not destinations.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_public(address):
    assert destinations.is_public(ipaddress.ip_address(address))


def test_test_connection_to_loopback_is_refused_without_connecting(deny_private, listener):
    with deny_private.test_request_context():
        result = check_connection(form(listener.host, listener.port))
    assert result.error == (
        f"{listener.host} resolves to a private address (127.0.0.1); allow it with IMAP_ALLOWED_HOSTS"
    )
    assert listener.connections == 0


def test_a_host_listed_in_imap_allowed_hosts_is_reached(deny_private, monkeypatch, imap_account):
    monkeypatch.setitem(deny_private.config, "IMAP_ALLOWED_HOSTS", [imap_account.host])
    imap_account.create_folder("Billing")
    values = form(imap_account.host, imap_account.port, username=imap_account.username, password=imap_account.password)
    with deny_private.test_request_context():
        result = check_connection(values)
    assert result.error is None and "Billing" in result.folders


def test_syncs_are_refused_too(deny_private, app_ctx, imap_account, listener):
    mailbox = create_mailbox(imap_account, host=listener.host, port=listener.port)
    result = sync(mailbox)
    assert result["status"] == "failed" and "resolves to a private address" in result["error"], result
    assert listener.connections == 0


def test_every_resolved_address_is_checked(deny_private, monkeypatch):
    answers = {
        "mixed.example": ["93.184.216.34", "10.0.0.5"],
        "public.example": ["93.184.216.34", "2606:4700:4700::1111"],
        "mapped.example": ["::ffff:192.168.0.10"],
    }

    def fake_getaddrinfo(host, port, *args, **kwargs):
        family = lambda a: socket.AF_INET6 if ":" in a else socket.AF_INET  # noqa: E731
        return [(family(a), socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(destinations.socket, "getaddrinfo", fake_getaddrinfo)
    with deny_private.app_context():
        destinations.check_destination("public.example", 993)
        for host in ("mixed.example", "mapped.example"):
            with pytest.raises(ImapConnectError, match="resolves to a private address"):
                destinations.check_destination(host, 993)
        monkeypatch.setitem(deny_private.config, "IMAP_ALLOWED_HOSTS", ["Mixed.Example"])
        destinations.check_destination("mixed.example", 993)


@pytest.mark.parametrize("greeting", [SSH_BANNER, b"220 mail.internal ESMTP Postfix secret-build\r\n",
                                      b"* BYE internal-banner-words\r\n"])
def test_a_foreign_banner_is_not_echoed(app, greeting):
    with RecordingServer(greeting=greeting) as other:
        with app.test_request_context():
            result = check_connection(form(other.host, other.port))
    assert result.error == f"The server at {other.host}:{other.port} did not answer as an IMAP server"
    assert "SSH" not in result.error and "secret-build" not in result.error and "banner" not in result.error
