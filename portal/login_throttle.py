"""Login attempts per account and per client address, counted in Redis (fixed windows).

A small counter rather than a rate-limiting library: the account key is the email typed into
the form, known only once the form is read, and two INCRs with an expiry say all we need.
If Redis does not answer, logins are let through (logged): the password check still costs a
full hash, and an outage of the job queue must not lock every administrator out."""
import hashlib
import logging
from dataclasses import dataclass

from flask import current_app
from redis.exceptions import RedisError

from .extensions import get_redis

log = logging.getLogger(__name__)
KEY_PREFIX = "login:attempts:"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the fullest window resets


def _key(kind: str, value: str) -> str:
    # Hashed: an email or address typed by anyone does not land in Redis as written.
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{KEY_PREFIX}{kind}:{digest}"


def register_attempt(email: str, address: str) -> Verdict:
    """Count one login attempt for this account and this address; refuse it over either limit."""
    config = current_app.config
    window = config["LOGIN_ATTEMPT_WINDOW_SECONDS"]
    limits = (
        (_key("account", email), config["LOGIN_MAX_ATTEMPTS_PER_ACCOUNT"]),
        (_key("address", address or "unknown"), config["LOGIN_MAX_ATTEMPTS_PER_ADDRESS"]),
    )
    try:
        pipe = get_redis().pipeline()
        for key, _limit in limits:
            pipe.set(key, 0, ex=window, nx=True)  # starts the window (EXPIRE NX needs Redis 7)
            pipe.incr(key)
            pipe.ttl(key)
        replies = pipe.execute()
    except RedisError as error:
        log.warning("Login throttling is off: Redis unavailable (%s)", type(error).__name__)
        return Verdict(True)
    retry_after = 0
    for index, (_key_name, limit) in enumerate(limits):
        count, ttl = replies[index * 3 + 1], replies[index * 3 + 2]
        if count > limit:
            retry_after = max(retry_after, ttl if ttl > 0 else window)
    return Verdict(retry_after == 0, retry_after)


def forget_account(email: str) -> None:
    """A successful login clears the account's count (the address keeps its own)."""
    try:
        get_redis().delete(_key("account", email))
    except RedisError:
        pass
