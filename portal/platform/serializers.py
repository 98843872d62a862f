"""JSON shapes of platform objects."""
from ..models import Company, Staff, Ticket, TicketMessage, User, isoformat


def company_json(company: Company) -> dict:
    return {
        "id": company.id,
        "name": company.name,
        "email_domains": company.email_domains,
        "created_at": isoformat(company.created_at),
    }


def staff_json(staff: Staff) -> dict:
    return {
        "id": staff.id,
        "company_id": staff.company_id,
        "email": staff.email,
        "name": staff.name,
        "created_at": isoformat(staff.created_at),
    }


def user_json(user: User) -> dict:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "is_super_admin": user.is_super_admin,
        "is_active": user.is_active,
        "created_at": isoformat(user.created_at),
    }


def message_json(message: TicketMessage) -> dict:
    return {
        "id": message.id,
        "author_email": message.author_email,
        "body_text": message.body_text,
        "body_html": message.body_html,
        "message_id": message.message_id,
        "created_at": isoformat(message.created_at),
        "attachments": [
            {
                "id": a.id,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
            }
            for a in message.attachments
        ],
    }


def ticket_json(ticket: Ticket, with_messages: bool = True) -> dict:
    data = {
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "company_id": ticket.company_id,
        "requester": ticket.requester,
        "source": ticket.source,
        "source_mailbox_id": ticket.source_mailbox_id,
        "created_at": isoformat(ticket.created_at),
        "updated_at": isoformat(ticket.updated_at),
    }
    if with_messages:
        data["messages"] = [message_json(m) for m in ticket.messages]
    return data
