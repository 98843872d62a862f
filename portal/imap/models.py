"""Mailboxes, the per-message audit, and sync runs."""
from datetime import datetime

from datetime import date

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false, text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models import Company, Ticket, utcnow
from .fields import MAX_LENGTH

OUTCOMES = (
    "imported",
    "threaded",
    "skipped_filter",
    "skipped_unknown_sender",
    "skipped_auto_reply",
    "skipped_bounce",
    "skipped_too_large",
    "duplicate",
    "failed",
)
# Outcomes whose rule may change: they become eligible again when the mailbox's rules change.
RULE_SKIPS = ("skipped_filter", "skipped_unknown_sender", "skipped_auto_reply", "skipped_bounce")
MAX_ATTEMPTS = 3

RUN_TRIGGERS = ("manual", "scheduled", "bulk")
RUN_STATUSES = (
    "queued",
    "running",
    "succeeded",
    "completed_with_errors",
    "failed",
    "deferred",
    "skipped",
)


def task_id_for(account_id: int) -> str:
    """The scheduled task of a mailbox, as the API and the jobs name it (see scheduling.py)."""
    return f"imap_sync:{account_id}"


class ImapAccount(db.Model):
    __tablename__ = "imap_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_LENGTH["name"]))
    host: Mapped[str] = mapped_column(String(MAX_LENGTH["host"]))
    port: Mapped[int] = mapped_column(default=993)
    security: Mapped[str] = mapped_column(String(10), default="ssl")
    verify_tls: Mapped[bool] = mapped_column(default=True)
    allow_plaintext: Mapped[bool] = mapped_column(default=False, server_default=false())
    username: Mapped[str] = mapped_column(String(MAX_LENGTH["username"]))
    password_encrypted: Mapped[str | None] = mapped_column(Text)

    # OAuth2 sign-in (oauth_providers.py): settings, then what the provider gave (encrypted).
    auth_method: Mapped[str] = mapped_column(String(20), default="password", server_default="password")
    oauth_provider: Mapped[str | None] = mapped_column(String(20))
    oauth_flow: Mapped[str | None] = mapped_column(String(30))
    oauth_client_id: Mapped[str | None] = mapped_column(String(MAX_LENGTH["oauth_client_id"]))
    oauth_client_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    oauth_service_account_encrypted: Mapped[str | None] = mapped_column(Text)
    oauth_tenant: Mapped[str | None] = mapped_column(String(MAX_LENGTH["oauth_tenant"]))
    oauth_scope: Mapped[str | None] = mapped_column(String(MAX_LENGTH["oauth_scope"]))
    oauth_authorize_url: Mapped[str | None] = mapped_column(String(MAX_LENGTH["oauth_authorize_url"]))
    oauth_token_url: Mapped[str | None] = mapped_column(String(MAX_LENGTH["oauth_token_url"]))
    oauth_access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    oauth_refresh_token_encrypted: Mapped[str | None] = mapped_column(Text)
    oauth_expires_at: Mapped[datetime | None] = mapped_column()
    oauth_status: Mapped[str] = mapped_column(String(30), default="not_connected", server_default="not_connected")
    oauth_account: Mapped[str | None] = mapped_column(String(320))
    oauth_error: Mapped[str | None] = mapped_column(Text)
    folder: Mapped[str] = mapped_column(String(MAX_LENGTH["folder"]), default="INBOX")
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("companies.id", ondelete="SET NULL"), index=True
    )
    priority: Mapped[int] = mapped_column(default=100)
    process_unread_only: Mapped[bool] = mapped_column(default=True)
    mark_as_read: Mapped[bool] = mapped_column(default=True)
    sync_known_only: Mapped[bool] = mapped_column(default=False)
    skip_auto_replies: Mapped[bool] = mapped_column(default=True, server_default=true())
    skip_bounces: Mapped[bool] = mapped_column(default=True, server_default=true())
    # The first sync's view of the mail already there: all, since import_since, or none (UIDs from
    # import_from_uid, the UIDNEXT recorded when it was first seen); import_left_out: how many the last
    # sync left out that way.
    import_existing: Mapped[str] = mapped_column(String(10), default="all", server_default="all")
    import_since: Mapped[date | None] = mapped_column()
    import_from_uid: Mapped[int | None] = mapped_column(BigInteger)
    import_left_out: Mapped[int] = mapped_column(default=0, server_default="0")
    schedule_cron: Mapped[str] = mapped_column(String(MAX_LENGTH["schedule_cron"]), default="*/15 * * * *")
    filter_query: Mapped[dict | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=True)
    push_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())

    # Sync state: the UID epoch and the highest UID seen in it.
    uid_validity: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped when filter_query or sync_known_only change, so rule skips are looked at again.
    rules_version: Mapped[int] = mapped_column(default=1)

    last_synced_at: Mapped[datetime | None] = mapped_column()
    last_sync_status: Mapped[str | None] = mapped_column(String(30))
    last_error: Mapped[str | None] = mapped_column(Text)
    schedule_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # A deleted mailbox stays, without schedule or secrets, so its audit and runs keep explaining
    # the tickets it made; its name is free again (the unique index covers live mailboxes only).
    deleted_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index("uq_imap_accounts_live_name", "name", unique=True,
              sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL")),
    )

    company: Mapped[Company | None] = relationship()

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    @property
    def has_oauth_client_secret(self) -> bool:
        return bool(self.oauth_client_secret_encrypted)

    @property
    def has_oauth_service_account(self) -> bool:
        return bool(self.oauth_service_account_encrypted)

    @property
    def scheduled_task_id(self) -> str | None:
        return task_id_for(self.id) if self.active and self.id else None


class ProcessedMessage(db.Model):
    __tablename__ = "imap_processed_messages"
    __table_args__ = (
        UniqueConstraint("account_id", "uid_validity", "uid"),
        Index("ix_imap_processed_dedupe", "account_id", "dedupe_key"),
        Index("ix_imap_processed_outcome", "account_id", "outcome"),
        Index("ix_imap_processed_dedupe_any", "dedupe_key"),  # the same email in another mailbox
        # what a sync decides again (failed, or skipped under older rules): read by every sync
        Index("ix_imap_processed_again", "account_id", "uid_validity", "outcome", "rules_version"),
        Index("ix_imap_processed_created", "account_id", "created_at"),  # the 30-day chart
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("imap_accounts.id", ondelete="CASCADE"))
    uid_validity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998))
    # "mid:<Message-ID>" or "sha256:<hex of the raw message>" when there is no Message-ID.
    dedupe_key: Mapped[str | None] = mapped_column(String(1010))
    outcome: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    subject: Mapped[str | None] = mapped_column(String(998))
    from_address: Mapped[str | None] = mapped_column(String(320))
    sent_at: Mapped[datetime | None] = mapped_column()  # the email's Date header, UTC
    size: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(default=1)
    rules_version: Mapped[int] = mapped_column(default=1)
    defects: Mapped[list | None] = mapped_column(JSON)  # what the parser noticed, for the audit
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    ticket: Mapped[Ticket | None] = relationship()


class SyncRun(db.Model):
    __tablename__ = "imap_sync_runs"
    __table_args__ = (Index("ix_imap_sync_runs_account", "account_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("imap_accounts.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(20), default="manual")
    status: Mapped[str] = mapped_column(String(30), default="queued")
    job_id: Mapped[str | None] = mapped_column(String(100))
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("imap_sync_runs.id", ondelete="SET NULL"))
    worker_name: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    # How many messages this run set out to process (its candidates), for "412 / 2,000".
    candidates: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


# Every column that holds a secret encrypted with portal.crypto (re-encrypted by `crypto reencrypt`).
ENCRYPTED_COLUMNS = (
    "password_encrypted",
    "oauth_client_secret_encrypted",
    "oauth_service_account_encrypted",
    "oauth_access_token_encrypted",
    "oauth_refresh_token_encrypted",
)


class OAuthState(db.Model):
    """One started authorization-code sign-in: single use, short-lived, bound to its mailbox,
    the user who started it and the mailbox's OAuth2 settings at that moment."""

    __tablename__ = "imap_oauth_states"
    id: Mapped[int] = mapped_column(primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the state
    account_id: Mapped[int] = mapped_column(ForeignKey("imap_accounts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_verifier_encrypted: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    settings_fingerprint: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
