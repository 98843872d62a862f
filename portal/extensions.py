"""Extension objects and the Redis/RQ handles built from the app's config."""
from flask import current_app
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from redis import Redis
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=naming_convention))
csrf = CSRFProtect()
login_manager = LoginManager()

IMAP_QUEUE = "imap"


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Fast commits; imap.throughput.commits_are_durable() is the barrier before anything irreversible.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Fewer automatic checkpoints: each one fsyncs, and on ext4 that also flushes every
    # attachment file written since the last one.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def get_redis() -> Redis:
    """One Redis client per app; short timeouts so a dead Redis fails fast."""
    app = current_app._get_current_object()
    client = app.extensions.get("portal_redis")
    if client is None:
        client = Redis.from_url(
            app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=10
        )
        app.extensions["portal_redis"] = client
    return client


def get_queue():
    from rq import Queue

    return Queue(IMAP_QUEUE, connection=get_redis())


def get_scheduler():
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=IMAP_QUEUE, connection=get_redis())
