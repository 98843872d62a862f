"""Settings from the environment."""
import os
from datetime import timedelta

DEV_SECRET_KEY = "dev-only-insecure-secret-key"
LOCAL_ENVIRONMENTS = ("development", "testing")


class ConfigError(RuntimeError):
    pass


def _list(value: str | None) -> list[str]:
    """A comma-separated setting."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _flag(value: str | None, *, default: bool | None) -> bool | None:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_config(overrides: dict | None = None, instance_path: str = "instance") -> dict:
    env = os.environ
    # Only PORTAL_ENV chooses the environment: FLASK_ENV is a generic Flask setting that must
    # not switch on the built-in development key by accident.
    environment = env.get("PORTAL_ENV", "production").lower()
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
        "IMAP_DENY_PRIVATE_NETWORKS": _flag(env.get("IMAP_DENY_PRIVATE_NETWORKS"), default=None),
        "IMAP_ALLOWED_HOSTS": _list(env.get("IMAP_ALLOWED_HOSTS")),
        "MAX_CONTENT_LENGTH": int(env.get("MAX_CONTENT_LENGTH", 1024 * 1024)),
        "SESSION_IDLE_MINUTES": int(env.get("SESSION_IDLE_MINUTES", 120)),
        # Login throttling (portal/login_throttle.py): attempts per window, per account and per address.
        "LOGIN_ATTEMPT_WINDOW_SECONDS": int(env.get("LOGIN_ATTEMPT_WINDOW_SECONDS", 15 * 60)),
        "LOGIN_MAX_ATTEMPTS_PER_ACCOUNT": int(env.get("LOGIN_MAX_ATTEMPTS_PER_ACCOUNT", 10)),
        "LOGIN_MAX_ATTEMPTS_PER_ADDRESS": int(env.get("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", 50)),
        # Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted
        # (0: none, the headers are ignored).
        "PROXY_FIX_HOPS": int(env.get("PROXY_FIX_HOPS", 0)),
        "PREFERRED_URL_SCHEME": env.get("PREFERRED_URL_SCHEME", "http"),
        # Where browsers reach the portal (https://portal.example.com): the OAuth2 redirect URI is
        # built on it. Unset: the request's own scheme and host.
        "PUBLIC_BASE_URL": (env.get("PUBLIC_BASE_URL") or "").strip().rstrip("/") or None,
        # GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset: /metrics is off (404).
        "METRICS_TOKEN": (env.get("METRICS_TOKEN") or "").strip() or None,
        # text (readable lines) or json (one object per line; see portal/log_format.py).
        "LOG_FORMAT": (env.get("LOG_FORMAT") or "text").strip().lower(),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
    }
    config.update(overrides or {})
    environment = config["PORTAL_ENV"]
    local = environment in LOCAL_ENVIRONMENTS
    if config["IMAP_DENY_PRIVATE_NETWORKS"] is None:  # unset: on everywhere but on a developer's machine
        config["IMAP_DENY_PRIVATE_NETWORKS"] = not local
    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, not {config['LOG_FORMAT']!r}.")
    _check_secret_key_length(config, environment)
    if not config.get("SECRET_KEY"):
        if not local:
            raise ConfigError(
                "SECRET_KEY is not set. Set SECRET_KEY to a long random value "
                "(or PORTAL_ENV=development for local use)."
            )
        config["SECRET_KEY"] = DEV_SECRET_KEY
    if not local and config["SECRET_KEY"] == DEV_SECRET_KEY:
        raise ConfigError("SECRET_KEY must not be the development key outside development.")
    config["TESTING"] = environment == "testing" or config.get("TESTING", False)
    _cookie_settings(config)
    uri = config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgres://"):
        config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + uri[len("postgres://"):]
    elif uri.startswith("postgresql://"):
        config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + uri[len("postgresql://"):]
    return config


MIN_SECRET_KEY_BYTES = 32


def _check_secret_key_length(config: dict, environment: str) -> None:
    """A key someone set must be long enough to sign sessions and derive encryption keys."""
    key = config.get("SECRET_KEY")
    if not key or environment == "testing":
        return
    if len(key.encode("utf-8") if isinstance(key, str) else key) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(
            f"SECRET_KEY is shorter than {MIN_SECRET_KEY_BYTES} bytes. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )


def _cookie_settings(config: dict) -> None:
    """Session and remember-me cookies: Secure under https, and alive no longer than the idle limit.
    (Requests that arrive over https get Secure cookies too: see portal.auth.SessionInterface.)"""
    secure = config["PREFERRED_URL_SCHEME"] == "https"
    config.setdefault("SESSION_COOKIE_SECURE", secure)
    config.setdefault("REMEMBER_COOKIE_SECURE", secure)
    config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    idle = timedelta(minutes=config["SESSION_IDLE_MINUTES"])
    config.setdefault("PERMANENT_SESSION_LIFETIME", idle)
    config.setdefault("REMEMBER_COOKIE_DURATION", idle)
