"""The tickets list: what the query string asks for (search, filters, sort, page) and the query.

`ListState.from_args` reads `?q=&status=&mailbox=&company=&sort=&page=`; anything unusable reads
as "not given" (a page never fails on a hand-edited URL). `ticket_query` turns it into one select.
"""
from dataclasses import dataclass, replace

from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..http import MAX_PAGE
from ..models import TICKET_STATUSES, Company, Staff, Ticket, User
from ..validation import parse_id

MAX_QUERY_CHARS = 200

# sort key -> (label, order_by columns); every order ends with the id so pages are stable.
SORTS = {
    "-created": ("Newest first", (Ticket.created_at.desc(), Ticket.id.desc())),
    "created": ("Oldest first", (Ticket.created_at, Ticket.id)),
    "subject": ("Subject A–Z", (func.lower(Ticket.subject), Ticket.id)),
    "-subject": ("Subject Z–A", (func.lower(Ticket.subject).desc(), Ticket.id.desc())),
    "status": ("Status", (Ticket.status, Ticket.created_at.desc(), Ticket.id.desc())),
    "-status": ("Status, reversed", (Ticket.status.desc(), Ticket.created_at.desc(), Ticket.id.desc())),
    # Tickets without a company come last in both directions, on SQLite and PostgreSQL alike.
    "company": ("Company A–Z", (Company.id.is_(None), func.lower(Company.name), Ticket.id.desc())),
    "-company": ("Company Z–A", (Company.id.is_(None), func.lower(Company.name).desc(), Ticket.id.desc())),
}
DEFAULT_SORT = "-created"


@dataclass(frozen=True)
class ListState:
    q: str = ""
    status: str = ""
    mailbox: int | None = None
    company: int | None = None
    sort: str = DEFAULT_SORT
    page: int = 1

    @classmethod
    def from_args(cls, args) -> "ListState":
        q = (args.get("q") or "").replace("\x00", "").strip()[:MAX_QUERY_CHARS]
        status = args.get("status") or ""
        sort = args.get("sort") or DEFAULT_SORT
        page = args.get("page", 1, type=int) or 1
        return cls(
            q=q,
            status=status if status in TICKET_STATUSES else "",
            mailbox=parse_id(args.get("mailbox") or ""),
            company=parse_id(args.get("company") or ""),
            sort=sort if sort in SORTS else DEFAULT_SORT,
            page=min(max(page, 1), MAX_PAGE),
        )

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.status or self.mailbox or self.company)

    def args(self, **changes) -> dict:
        """The non-default query arguments of this state (with `changes`), for url_for."""
        state = replace(self, **changes)
        values = {
            "q": state.q, "status": state.status, "mailbox": state.mailbox, "company": state.company,
            "sort": state.sort if state.sort != DEFAULT_SORT else None,
            "page": state.page if state.page > 1 else None,
        }
        return {k: v for k, v in values.items() if v}

    def sort_link(self, column: str) -> dict:
        """Arguments for a column heading: sort by it, or reverse it when it is the current sort."""
        key = f"-{column}" if self.sort == column else column
        return self.args(sort=key, page=1)


def like_pattern(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere, with %, _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def ticket_query(state: ListState):
    """Tickets matching the state's search and filters, in its order (company, requester and
    their emails loaded with the page, not one query per row)."""
    query = select(Ticket).outerjoin(Company, Ticket.company_id == Company.id).options(
        selectinload(Ticket.company), selectinload(Ticket.requester_user), selectinload(Ticket.requester_staff)
    )
    if state.q:
        pattern = like_pattern(state.q)
        query = query.where(
            or_(
                Ticket.subject.ilike(pattern, escape="\\"),
                Ticket.requester_email.ilike(pattern, escape="\\"),
                Company.name.ilike(pattern, escape="\\"),
                Ticket.requester_user.has(User.email.ilike(pattern, escape="\\")),
                Ticket.requester_staff.has(Staff.email.ilike(pattern, escape="\\")),
            )
        )
    if state.status:
        query = query.where(Ticket.status == state.status)
    if state.mailbox:
        query = query.where(Ticket.source_mailbox_id == state.mailbox)
    if state.company:
        query = query.where(Ticket.company_id == state.company)
    return query.order_by(*SORTS[state.sort][1])


def filter_choices() -> dict:
    """The filter menus: companies by name, and every mailbox that made a ticket (by the name
    its newest ticket keeps, so deleted mailboxes stay choosable)."""
    companies = db.session.execute(select(Company.id, Company.name).order_by(func.lower(Company.name))).all()
    newest = select(func.max(Ticket.id)).where(Ticket.source_mailbox_id.is_not(None)).group_by(Ticket.source_mailbox_id)
    mailboxes = db.session.execute(
        select(Ticket.source_mailbox_id, Ticket.source_mailbox_name).where(Ticket.id.in_(newest))
    ).all()
    return {
        "companies": companies,
        "mailboxes": sorted(((i, name or f"Mailbox {i}") for i, name in mailboxes), key=lambda m: m[1].lower()),
        "statuses": TICKET_STATUSES,
        "sorts": {key: label for key, (label, _) in SORTS.items()},
    }
