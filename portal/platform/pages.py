"""Server-rendered platform pages: tickets and companies (super admin only)."""
import re

from flask import Blueprint, abort, make_response, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import select

from ..auth import require_super_admin_page
from ..extensions import db
from ..http import get_or_404, paginate
from ..models import Attachment, Company, Ticket
from .attachments import INLINE_IMAGE_TYPES, send_attachment
from .ticket_list import ListState, filter_choices, ticket_query

bp = Blueprint("platform_pages", __name__)
bp.before_request(require_super_admin_page)

CID_SRC = re.compile(r'src="cid:([^"]+)"', re.IGNORECASE)
TICKETS_PER_PAGE = 25


@bp.get("/")
def index():
    return tickets()


@bp.get("/tickets")
def tickets():
    """The list with search, filters and sort from the query string; htmx asks for the results only."""
    state = ListState.from_args(request.args)
    results = paginate(ticket_query(state), state.page, TICKETS_PER_PAGE)
    context = {"state": state, "tickets": results.items, "results": results}
    if request.headers.get("HX-Request") == "true" and request.headers.get("HX-Target") == "ticket-results":
        response = make_response(render_template("platform/_ticket_results.html", **context))
        response.headers["HX-Push-Url"] = url_for("platform_pages.tickets", **state.args())  # without empty fields
    else:
        response = make_response(render_template("platform/tickets.html", choices=filter_choices(), **context))
    response.vary.add("HX-Request")  # the same URL answers a partial or a page
    return response


def html_with_inline_images(message) -> Markup:
    """Point cid: references at the message's own inline attachments (already sanitised HTML)."""
    by_cid = {a.content_id: a for a in message.attachments if a.content_id}

    def replace(match):
        attachment = by_cid.get(match.group(1))
        if attachment is None or attachment.content_type not in INLINE_IMAGE_TYPES:
            return 'src=""'
        return f'src="/tickets/attachments/{attachment.id}/inline"'

    return Markup(CID_SRC.sub(replace, message.body_html or ""))


def shows_html(message) -> bool:
    """A message reads as its HTML, unless it is a reply whose quoted history was taken apart
    (its new text then leads, and the HTML as sent is one click away)."""
    return bool(message.body_html) and not message.quoted_text


def listed_files(message) -> list[Attachment]:
    """Every attachment but the images the HTML on the page already shows (Content-Disposition
    does not matter: an inline photo or PDF nothing shows is a file like any other)."""
    shown = set(CID_SRC.findall(message.body_html or "")) if shows_html(message) else set()
    return [a for a in message.attachments if not (a.content_id in shown and a.content_type in INLINE_IMAGE_TYPES)]


@bp.get("/tickets/<id:ticket_id>")
def ticket_detail(ticket_id):
    ticket = get_or_404(Ticket, ticket_id)
    return render_template(
        "platform/ticket.html", ticket=ticket, render_html=html_with_inline_images, shows_html=shows_html,
        listed_files=listed_files,
    )


@bp.get("/tickets/attachments/<id:attachment_id>")
def attachment_download(attachment_id):
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None:
        abort(404, description="Attachment not found")
    return send_attachment(attachment)


@bp.get("/tickets/attachments/<id:attachment_id>/inline")
def attachment_inline(attachment_id):
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.content_type not in INLINE_IMAGE_TYPES:
        abort(404, description="Inline image not found")
    return send_attachment(attachment, inline=True)


@bp.get("/companies")
def companies():
    rows = db.session.scalars(select(Company).order_by(Company.name)).all()
    return render_template("platform/companies.html", companies=rows)
