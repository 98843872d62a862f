"""Platform JSON API: companies, staff, users, tickets (super admin only)."""
from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, jsonify, request
from sqlalchemy import func, select

from ..auth import require_super_admin_api
from ..extensions import db
from ..http import get_or_404, int_arg, json_body, paginated, pagination, register_json_errors, reject_unstorable_query_args
from ..models import Attachment, Company, CompanyDomain, Staff, Ticket, User, normalize_email
from ..validation import Checker, Conflict, normalize_domain
from .attachments import send_attachment
from .serializers import company_json, staff_json, ticket_json, user_json

bp = Blueprint("platform_api", __name__, url_prefix="/api")
bp.before_request(require_super_admin_api)
bp.before_request(reject_unstorable_query_args)
register_json_errors(bp)


@dataclass(frozen=True)
class Resource:
    """A platform object with list, create, read, update and delete routes at /api/<plural>."""

    plural: str
    singular: str
    model: type
    to_json: Callable
    apply: Callable  # (obj, payload, partial) -> None: validates and sets fields, raises on bad input
    new: Callable  # () -> an empty object with its defaults
    order_by: tuple
    list_filters: Callable = lambda query: query


def register_resource(blueprint: Blueprint, resource: Resource) -> None:
    """The five routes, with the endpoint names list_<plural>, create_<singular>, ..."""
    r = resource

    def list_objects():
        page, per_page = pagination()
        query = r.list_filters(select(r.model).order_by(*r.order_by))
        return jsonify(paginated(query, page, per_page, r.to_json))

    def create_object():
        obj = r.new()
        _apply(obj, partial=False)
        db.session.add(obj)
        db.session.commit()
        return jsonify(r.to_json(obj)), 201

    def get_object(**url):
        return jsonify(r.to_json(_get(url)))

    def update_object(**url):
        obj = _get(url)
        _apply(obj, partial=True)
        db.session.commit()
        return jsonify(r.to_json(obj))

    def delete_object(**url):
        db.session.delete(_get(url))
        db.session.commit()
        return "", 204

    def _get(url):
        return get_or_404(r.model, url[id_name])

    def _apply(obj, partial):
        # Uniqueness checks query while fields are half set: a flush then would hit the
        # constraint and answer a generic 409 instead of the field's own Conflict.
        with db.session.no_autoflush:
            r.apply(obj, json_body(), partial)

    id_name = f"{r.singular}_id"
    collection, item = f"/{r.plural}", f"/{r.plural}/<id:{id_name}>"
    blueprint.add_url_rule(collection, f"list_{r.plural}", list_objects, methods=["GET"])
    blueprint.add_url_rule(collection, f"create_{r.singular}", create_object, methods=["POST"])
    blueprint.add_url_rule(item, f"get_{r.singular}", get_object, methods=["GET"])
    blueprint.add_url_rule(item, f"update_{r.singular}", update_object, methods=["PUT"])
    blueprint.add_url_rule(item, f"delete_{r.singular}", delete_object, methods=["DELETE"])


# --- companies ---------------------------------------------------------------

COMPANY_FIELDS = {"name", "email_domains"}


def _company_domains(check: Checker) -> list[str] | None:
    value = check.payload.get("email_domains")
    if value is None:
        return []
    if not isinstance(value, list):
        check.add("email_domains", "Must be an array of domain names")
        return None
    domains = []
    for index, raw in enumerate(value):
        domain = normalize_domain(raw)
        if domain is None:
            check.add("email_domains", f"Item {index}: not a valid domain name")
        elif domain not in domains:
            domains.append(domain)
    return domains


def _apply_company(company: Company, payload: dict, partial: bool) -> None:
    check = Checker(payload, COMPANY_FIELDS)
    name = check.string("name", required=True, max_length=200) if not partial or check.has("name") else None
    domains = _company_domains(check) if not partial or check.has("email_domains") else None
    check.raise_if_errors()
    if name is not None:
        clash = db.session.scalar(select(Company).where(func.lower(Company.name) == name.lower()))
        if clash is not None and clash is not company:
            raise Conflict("name", f"A company named '{name}' already exists")
        company.name = name
    if domains is not None:
        for domain in domains:
            owner = db.session.scalar(select(CompanyDomain).where(CompanyDomain.domain == domain))
            if owner is not None and owner.company is not company:
                raise Conflict("email_domains", f"Domain '{domain}' already belongs to company {owner.company_id}")
        current = {d.domain: d for d in company.domains}
        company.domains = [current.get(d) or CompanyDomain(domain=d) for d in domains]


register_resource(bp, Resource(
    "companies", "company", Company, company_json, _apply_company, Company, order_by=(Company.name,),
))


# --- staff -------------------------------------------------------------------

STAFF_FIELDS = {"company_id", "email", "name"}


def _apply_staff(staff: Staff, payload: dict, partial: bool) -> None:
    check = Checker(payload, STAFF_FIELDS)
    company_id = check.identifier("company_id") if not partial or check.has("company_id") else None
    email = check.email("email", required=True) if not partial or check.has("email") else None
    name = check.string("name", max_length=200, allow_empty=True) if check.has("name") else None
    if company_id is not None and db.session.get(Company, company_id) is None:
        check.add("company_id", f"Company {company_id} does not exist")
    check.raise_if_errors()
    if company_id is not None:
        staff.company_id = company_id
    if email is not None:
        staff.email = email
    if name is not None:
        staff.name = name
    clash = db.session.scalar(
        select(Staff).where(Staff.company_id == staff.company_id, Staff.email == staff.email)
    )
    if clash is not None and clash is not staff:
        raise Conflict("email", f"{staff.email} is already a contact of company {staff.company_id}")


def _staff_filters(query):
    company_id = int_arg("company_id")
    return query if company_id is None else query.where(Staff.company_id == company_id)


register_resource(bp, Resource(
    "staff", "staff", Staff, staff_json, _apply_staff, lambda: Staff(name=""),
    order_by=(Staff.email, Staff.id), list_filters=_staff_filters,
))


# --- users -------------------------------------------------------------------

USER_FIELDS = {"email", "name", "password", "is_super_admin", "is_active"}


def _apply_user(user: User, payload: dict, partial: bool) -> None:
    check = Checker(payload, USER_FIELDS)
    email = check.email("email", required=True) if not partial or check.has("email") else None
    name = check.string("name", max_length=200, allow_empty=True) if check.has("name") else None
    password = None
    if check.has("password") or not partial:
        raw = check.payload.get("password")
        if not isinstance(raw, str) or len(raw) < 8:
            check.add("password", "Must be a string of at least 8 characters")
        else:
            password = raw
    flags = {f: check.boolean(f) for f in ("is_super_admin", "is_active") if check.has(f)}
    check.raise_if_errors()
    if email is not None:
        clash = db.session.scalar(select(User).where(User.email == normalize_email(email)))
        if clash is not None and clash is not user:
            raise Conflict("email", f"A user with email {email} already exists")
        user.email = normalize_email(email)
    if name is not None:
        user.name = name
    if password is not None:
        user.set_password(password)
    for field, value in flags.items():
        setattr(user, field, value)


register_resource(bp, Resource(
    "users", "user", User, user_json, _apply_user, lambda: User(name="", is_super_admin=False, is_active=True),
    order_by=(User.email,),
))


# --- tickets -----------------------------------------------------------------


@bp.get("/tickets")
def list_tickets():
    page, per_page = pagination()
    query = select(Ticket).order_by(Ticket.id.desc())
    mailbox_id = int_arg("mailbox_id")
    company_id = int_arg("company_id")
    requester_email = request.args.get("requester_email")
    if mailbox_id is not None:
        query = query.where(Ticket.source_mailbox_id == mailbox_id)
    if company_id is not None:
        query = query.where(Ticket.company_id == company_id)
    if requester_email:
        email = normalize_email(requester_email)
        query = query.where(
            (func.lower(Ticket.requester_email) == email)
            | Ticket.requester_user.has(User.email == email)
            | Ticket.requester_staff.has(Staff.email == email)
        )
    return jsonify(paginated(query, page, per_page, lambda t: ticket_json(t, with_messages=False)))


@bp.get("/tickets/<id:ticket_id>")
def get_ticket(ticket_id):
    return jsonify(ticket_json(get_or_404(Ticket, ticket_id)))


@bp.get("/attachments/<id:attachment_id>")
def download_attachment(attachment_id):
    return send_attachment(get_or_404(Attachment, attachment_id))

