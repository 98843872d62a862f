"""The pending-restart flag: while it is set, sync jobs defer instead of connecting."""
import json
import time

from ..extensions import get_redis

RESTART_KEY = "portal:maintenance:restart_pending"


def begin(reason: str = "") -> None:
    get_redis().set(RESTART_KEY, json.dumps({"since": time.time(), "reason": reason}))


def end() -> bool:
    return bool(get_redis().delete(RESTART_KEY))


def status() -> dict | None:
    raw = get_redis().get(RESTART_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"since": None, "reason": ""}


def restart_pending() -> bool:
    return bool(get_redis().exists(RESTART_KEY))
