"""Platform core: companies, people, tickets, attachments, API tokens."""
from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, orm_insert_sentinel, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db

TICKET_STATUSES = ("open", "pending", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_SOURCES = ("email", "web", "api")


def utcnow() -> datetime:
    """Naive UTC: every timestamp column stores UTC without tzinfo."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def isoformat(value: datetime | None) -> str | None:
    """UTC in ISO 8601 with milliseconds and a Z suffix (2026-11-27T08:14:23.512Z): what every
    JSON answer carries, so events a few milliseconds apart keep their order."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def normalize_email(value: str) -> str:
    return (value or "").strip().lower()


class Company(db.Model):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    domains: Mapped[list["CompanyDomain"]] = relationship(
        back_populates="company", cascade="all, delete-orphan", order_by="CompanyDomain.domain"
    )
    staff: Mapped[list["Staff"]] = relationship(
        back_populates="company", cascade="all, delete-orphan", order_by="Staff.email"
    )

    @property
    def email_domains(self) -> list[str]:
        return [d.domain for d in self.domains]


class CompanyDomain(db.Model):
    __tablename__ = "company_domains"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    company: Mapped[Company] = relationship(back_populates="domains")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(256))
    is_super_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped on logout-everywhere and password change: sessions carrying an older one end.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def get_id(self) -> str:
        """What the session cookie names: the user and the session version it was issued under."""
        return f"{self.id}:{self.session_version or 1}"

    def revoke_sessions(self) -> None:
        self.session_version = (self.session_version or 1) + 1

    def set_password(self, password: str) -> None:
        if self.password_hash:
            self.revoke_sessions()  # a changed password ends the sessions signed in with the old one
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)


class Staff(db.Model):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("company_id", "email"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    company: Mapped[Company] = relationship(back_populates="staff")


class Ticket(db.Model):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(998))
    status: Mapped[str] = mapped_column(String(20), default="open")
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("companies.id", ondelete="SET NULL"), index=True
    )
    requester_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requester_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    requester_email: Mapped[str | None] = mapped_column(String(320), index=True)
    source: Mapped[str] = mapped_column(String(10), default="web")
    # Plain integer, not a foreign key: tickets outlive the mailbox that created them.
    source_mailbox_id: Mapped[int | None] = mapped_column(index=True)
    source_mailbox_name: Mapped[str | None] = mapped_column(String(200))  # kept when the mailbox goes
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # Lets SQLite return new ids in input order for a multi-row INSERT (see ticket_writer.py).
    _sentinel: Mapped[int | None] = orm_insert_sentinel()

    company: Mapped[Company | None] = relationship()
    requester_user: Mapped[User | None] = relationship()
    requester_staff: Mapped[Staff | None] = relationship()
    messages: Mapped[list["TicketMessage"]] = relationship(
        back_populates="ticket", cascade="all, delete-orphan", order_by="TicketMessage.id"
    )

    @property
    def requester(self) -> dict | None:
        if self.requester_staff is not None:
            return {"type": "staff", "id": self.requester_staff_id, "email": self.requester_staff.email}
        if self.requester_user is not None:
            return {"type": "user", "id": self.requester_user_id, "email": self.requester_user.email}
        if self.requester_email:
            return {"type": "email", "id": None, "email": self.requester_email}
        return None


class TicketMessage(db.Model):
    __tablename__ = "ticket_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    author_email: Mapped[str | None] = mapped_column(String(320))
    author_name: Mapped[str | None] = mapped_column(String(320))  # the sender's display name
    sent_at: Mapped[datetime | None] = mapped_column()  # the email's Date header, UTC
    cc: Mapped[list | None] = mapped_column(JSON)  # Cc recipients: [{"name", "email"}]
    # A threaded reply keeps its new text in body_text; the history it quoted goes here (collapsed).
    quoted_text: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    # What the import left out of this message (parts past the limits, ...), shown on the ticket.
    import_notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    _sentinel: Mapped[int | None] = orm_insert_sentinel()

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list["Attachment"]] = relationship(
        back_populates="message", cascade="all, delete-orphan", order_by="Attachment.id"
    )

    __table_args__ = (Index("ix_ticket_messages_message_id", "message_id"),)


class Attachment(db.Model):
    """Metadata; the bytes live content-addressed in attachment_blobs or on disk (portal.storage)."""

    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("ticket_messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_id: Mapped[str | None] = mapped_column(String(255))
    is_inline: Mapped[bool] = mapped_column(default=False)
    # True: the bytes are in attachment_blobs; False: on disk (see portal/storage.py).
    in_database: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped[TicketMessage] = relationship(back_populates="attachments")


class AttachmentBlob(db.Model):
    """Attachment bytes up to storage.INLINE_MAX_BYTES, once per distinct content."""

    __tablename__ = "attachment_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class ApiToken(db.Model):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship()

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or utcnow())
