"""JSON shapes of platform objects."""
from ..http import fields_json
from ..models import Company, Staff, Ticket, TicketMessage, User

COMPANY_FIELDS = ("id", "name", "email_domains", "created_at")
STAFF_FIELDS = ("id", "company_id", "email", "name", "created_at")
USER_FIELDS = ("id", "email", "name", "is_super_admin", "is_active", "created_at")
ATTACHMENT_FIELDS = ("id", "filename", "content_type", "size")
MESSAGE_FIELDS = (
    "id", "author_email", "author_name", "sent_at", "cc", "body_text", "quoted_text", "body_html", "message_id",
    "import_notes", "created_at",
)
TICKET_FIELDS = (
    "id", "subject", "status", "priority", "company_id", "requester", "source", "source_mailbox_id",
    "source_mailbox_name", "created_at", "updated_at",
)


def company_json(company: Company) -> dict:
    return fields_json(company, COMPANY_FIELDS)


def staff_json(staff: Staff) -> dict:
    return fields_json(staff, STAFF_FIELDS)


def user_json(user: User) -> dict:
    return fields_json(user, USER_FIELDS)


def message_json(message: TicketMessage) -> dict:
    data = fields_json(message, MESSAGE_FIELDS)
    data["attachments"] = [fields_json(a, ATTACHMENT_FIELDS) for a in message.attachments]
    return data


def ticket_json(ticket: Ticket, with_messages: bool = True) -> dict:
    data = fields_json(ticket, TICKET_FIELDS)
    if with_messages:
        data["messages"] = [message_json(m) for m in ticket.messages]
    return data
