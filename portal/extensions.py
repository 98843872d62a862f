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


# lz4 where the server has it (PostgreSQL 14+ built with lz4): message bodies are TOASTed
# (compressed) when they exceed 2 kB, and pglz takes about three times as long as the rest of
# the INSERT (measured: 14.5 ms -> 4.9 ms for 200 bench messages). Reading is the same for
# both; it only chooses how new values are compressed, so durability is not touched.
_LZ4_WHERE_AVAILABLE = (
    "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings"
    " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


@event.listens_for(Engine, "connect")
def _postgresql_session(dbapi_connection, connection_record):
    if not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    with dbapi_connection.cursor() as cursor:
        cursor.execute(_LZ4_WHERE_AVAILABLE)
    dbapi_connection.commit()  # a setting made in a transaction is lost when it rolls back


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
