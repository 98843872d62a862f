"""Fault scenarios: short lease, heartbeat and deadline settings so each finishes in seconds."""
import pytest

FAST = {
    "IMAP_LOCK_SECONDS": 3,
    "IMAP_HEARTBEAT_SECONDS": 0.5,
    "IMAP_REAP_AFTER_SECONDS": 4,
    "IMAP_HOUSEKEEPING_SECONDS": 1,
}


@pytest.fixture
def fast_lease(app):
    """The in-process app with the fast settings (restored after the test)."""
    saved = {key: app.config[key] for key in (*FAST, "IMAP_SYNC_DEADLINE_SECONDS")}
    app.config.update(FAST)
    yield FAST
    app.config.update(saved)


def mails(count: int, prefix: str) -> list[bytes]:
    from tests.support.mail import make_email

    return [make_email(subject=f"{prefix} {n}") for n in range(count)]
