"""Settings from the environment."""
import os

DEV_SECRET_KEY = "dev-only-insecure-secret-key"


class ConfigError(RuntimeError):
    pass


def _list(value: str | None) -> list[str]:
    """A comma-separated setting."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_config(overrides: dict | None = None, instance_path: str = "instance") -> dict:
    env = os.environ
    environment = env.get("PORTAL_ENV", env.get("FLASK_ENV", "production")).lower()
    config = {
        "PORTAL_ENV": environment,
        "SECRET_KEY": env.get("SECRET_KEY"),
        "SECRET_KEY_FALLBACKS": _list(env.get("SECRET_KEY_FALLBACKS")),
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL")
        or "sqlite:///" + os.path.join(os.path.abspath(instance_path), "portal.db"),
        "REDIS_URL": env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "IMAP_MAX_MESSAGE_BYTES": int(env.get("IMAP_MAX_MESSAGE_BYTES", 25 * 1024 * 1024)),
        "IMAP_TIMEOUT_SECONDS": float(env.get("IMAP_TIMEOUT_SECONDS", 30)),
        "RESTART_DEFER_SECONDS": int(env.get("RESTART_DEFER_SECONDS", 30)),
        "ATTACHMENT_DIR": env.get("ATTACHMENT_DIR")
        or os.path.join(os.path.abspath(instance_path), "attachments"),
        "IMAP_SYNC_DEADLINE_SECONDS": float(env.get("IMAP_SYNC_DEADLINE_SECONDS", 1800)),
        # A sync's mailbox lock lives this long unless its heartbeat renews it (every
        # IMAP_HEARTBEAT_SECONDS); a run whose heartbeat is older than IMAP_REAP_AFTER_SECONDS is
        # ended by the reaper, which scheduler.py runs every IMAP_HOUSEKEEPING_SECONDS (with a
        # reconcile of the cron jobs).
        "IMAP_LOCK_SECONDS": float(env.get("IMAP_LOCK_SECONDS", 30)),
        "IMAP_HEARTBEAT_SECONDS": float(env.get("IMAP_HEARTBEAT_SECONDS", 10)),
        "IMAP_REAP_AFTER_SECONDS": float(env.get("IMAP_REAP_AFTER_SECONDS", 90)),
        "IMAP_HOUSEKEEPING_SECONDS": float(env.get("IMAP_HOUSEKEEPING_SECONDS", 60)),
        # Test connection and mailboxes may not reach loopback, link-local or private ranges
        # (on outside development) unless the host is listed in IMAP_ALLOWED_HOSTS.
        "IMAP_DENY_PRIVATE_NETWORKS": _flag(env.get("IMAP_DENY_PRIVATE_NETWORKS"), default=environment not in ("development", "testing")),
        "IMAP_ALLOWED_HOSTS": _list(env.get("IMAP_ALLOWED_HOSTS")),
        "MAX_CONTENT_LENGTH": int(env.get("MAX_CONTENT_LENGTH", 1024 * 1024)),
        "SESSION_IDLE_MINUTES": int(env.get("SESSION_IDLE_MINUTES", 120)),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
    }
    config.update(overrides or {})
    environment = config["PORTAL_ENV"]
    if not config.get("SECRET_KEY"):
        if environment not in ("development", "testing"):
            raise ConfigError(
                "SECRET_KEY is not set. Set SECRET_KEY to a long random value "
                "(or PORTAL_ENV=development for local use)."
            )
        config["SECRET_KEY"] = DEV_SECRET_KEY
    if environment not in ("development", "testing") and config["SECRET_KEY"] == DEV_SECRET_KEY:
        raise ConfigError("SECRET_KEY must not be the development key outside development.")
    config["TESTING"] = environment == "testing" or config.get("TESTING", False)
    uri = config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgres://"):
        config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + uri[len("postgres://"):]
    elif uri.startswith("postgresql://"):
        config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + uri[len("postgresql://"):]
    return config
