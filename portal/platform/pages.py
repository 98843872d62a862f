"""Server-rendered platform pages: tickets and companies (super admin only)."""
import re

from flask import Blueprint, abort, render_template, request
from markupsafe import Markup
from sqlalchemy import func, select

from ..auth import require_super_admin_page
from ..extensions import db
from ..models import Attachment, Company, Ticket

bp = Blueprint("platform_pages", __name__)
bp.before_request(require_super_admin_page)

INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
CID_SRC = re.compile(r'src="cid:([^"]+)"', re.IGNORECASE)


@bp.get("/")
def index():
    return tickets()


@bp.get("/tickets")
def tickets():
    page = request.args.get("page", 1, type=int) or 1
    per_page = 25
    query = select(Ticket).order_by(Ticket.id.desc())
    total = db.session.scalar(select(func.count(Ticket.id)))
    rows = db.session.scalars(query.limit(per_page).offset((max(page, 1) - 1) * per_page)).all()
    pages = max(1, (total + per_page - 1) // per_page)
    return render_template("platform/tickets.html", tickets=rows, page=page, pages=pages, total=total)


def html_with_inline_images(message) -> Markup:
    """Point cid: references at the message's own inline attachments (already sanitised HTML)."""
    by_cid = {a.content_id: a for a in message.attachments if a.content_id}

    def replace(match):
        attachment = by_cid.get(match.group(1))
        if attachment is None or attachment.content_type not in INLINE_IMAGE_TYPES:
            return 'src=""'
        return f'src="/tickets/attachments/{attachment.id}/inline"'

    return Markup(CID_SRC.sub(replace, message.body_html or ""))


@bp.get("/tickets/<id:ticket_id>")
def ticket_detail(ticket_id):
    ticket = db.session.get(Ticket, ticket_id)
    if ticket is None:
        abort(404, description=f"Ticket {ticket_id} not found")
    return render_template("platform/ticket.html", ticket=ticket, render_html=html_with_inline_images)


@bp.get("/tickets/attachments/<id:attachment_id>")
def attachment_download(attachment_id):
    from .api import send_attachment

    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None:
        abort(404, description="Attachment not found")
    return send_attachment(attachment)


@bp.get("/tickets/attachments/<id:attachment_id>/inline")
def attachment_inline(attachment_id):
    from .api import send_attachment

    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.content_type not in INLINE_IMAGE_TYPES:
        abort(404, description="Inline image not found")
    return send_attachment(attachment, inline=True)


@bp.get("/companies")
def companies():
    rows = db.session.scalars(select(Company).order_by(Company.name)).all()
    return render_template("platform/companies.html", companies=rows)
