"""Platform JSON API: companies, staff, users, tickets (super admin only)."""
import io

from flask import Blueprint, abort, current_app, jsonify, request, send_file
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .. import storage
from ..auth import require_super_admin_api
from ..extensions import db
from ..models import Attachment, AttachmentBlob, Company, CompanyDomain, Staff, Ticket, User, normalize_email
from ..validation import MAX_ID, Checker, Conflict, ValidationError, normalize_domain, parse_id
from .serializers import company_json, staff_json, ticket_json, user_json

bp = Blueprint("platform_api", __name__, url_prefix="/api")
bp.before_request(require_super_admin_api)


def register_json_errors(blueprint: Blueprint) -> None:
    """422 for invalid payloads, 409 for taken unique values (also when two requests race)."""

    @blueprint.errorhandler(ValidationError)
    def validation_failed(error: ValidationError):
        return jsonify(error=error.message, errors=error.errors), 422

    @blueprint.errorhandler(Conflict)
    def conflict(error: Conflict):
        db.session.rollback()
        return jsonify(error=error.message, errors={error.field: [error.message]}), 409

    @blueprint.errorhandler(IntegrityError)
    def integrity_conflict(error: IntegrityError):
        db.session.rollback()
        return jsonify(error="A record with the same unique value already exists"), 409


register_json_errors(bp)


def json_body() -> dict:
    payload = request.get_json(silent=True)
    if payload is None:
        raise ValidationError({"_": ["Expected a JSON object body"]}, "Invalid JSON body")
    return payload


def get_or_404(model, object_id: int):
    obj = db.session.get(model, object_id)
    if obj is None:
        abort(404, description=f"{model.__name__} {object_id} not found")
    return obj


MAX_PAGE = 1_000_000


def pagination() -> tuple[int, int]:
    errors = {}
    page = parse_id(request.args.get("page", "1"))
    per_page = parse_id(request.args.get("per_page", "50"))
    if page is None or page > MAX_PAGE:
        errors["page"] = [f"Must be an integer between 1 and {MAX_PAGE}"]
    if per_page is None or per_page > 200:
        errors["per_page"] = ["Must be an integer between 1 and 200"]
    if errors:
        raise ValidationError(errors, "Invalid query parameters")
    return page, per_page


def int_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    number = parse_id(value)
    if number is None:
        raise ValidationError({name: [f"Must be an integer between 1 and {MAX_ID}"]}, "Invalid query parameters")
    return number


def reject_unstorable_query_args():
    """before_request: NUL bytes in a query string would reach the database (PostgreSQL refuses them)."""
    bad = {name: ["Must not contain NUL characters"] for name, value in request.args.items(multi=True) if "\x00" in value}
    if bad:
        return jsonify(error="Invalid query parameters", errors=bad), 422
    return None


bp.before_request(reject_unstorable_query_args)


def paginated(query, page: int, per_page: int, serialize) -> dict:
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)).all()
    return {"items": [serialize(r) for r in rows], "page": page, "per_page": per_page, "total": total}


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


@bp.get("/companies")
def list_companies():
    page, per_page = pagination()
    return jsonify(paginated(select(Company).order_by(Company.name), page, per_page, company_json))


@bp.post("/companies")
def create_company():
    company = Company()
    _apply_company(company, json_body(), partial=False)
    db.session.add(company)
    db.session.commit()
    return jsonify(company_json(company)), 201


@bp.get("/companies/<id:company_id>")
def get_company(company_id):
    return jsonify(company_json(get_or_404(Company, company_id)))


@bp.put("/companies/<id:company_id>")
def update_company(company_id):
    company = get_or_404(Company, company_id)
    _apply_company(company, json_body(), partial=True)
    db.session.commit()
    return jsonify(company_json(company))


@bp.delete("/companies/<id:company_id>")
def delete_company(company_id):
    db.session.delete(get_or_404(Company, company_id))
    db.session.commit()
    return "", 204


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


@bp.get("/staff")
def list_staff():
    page, per_page = pagination()
    query = select(Staff).order_by(Staff.email, Staff.id)
    company_id = int_arg("company_id")
    if company_id is not None:
        query = query.where(Staff.company_id == company_id)
    return jsonify(paginated(query, page, per_page, staff_json))


@bp.post("/staff")
def create_staff():
    staff = Staff(name="")
    _apply_staff(staff, json_body(), partial=False)
    db.session.add(staff)
    db.session.commit()
    return jsonify(staff_json(staff)), 201


@bp.get("/staff/<id:staff_id>")
def get_staff(staff_id):
    return jsonify(staff_json(get_or_404(Staff, staff_id)))


@bp.put("/staff/<id:staff_id>")
def update_staff(staff_id):
    staff = get_or_404(Staff, staff_id)
    with db.session.no_autoflush:
        _apply_staff(staff, json_body(), partial=True)
    db.session.commit()
    return jsonify(staff_json(staff))


@bp.delete("/staff/<id:staff_id>")
def delete_staff(staff_id):
    db.session.delete(get_or_404(Staff, staff_id))
    db.session.commit()
    return "", 204


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


@bp.get("/users")
def list_users():
    page, per_page = pagination()
    return jsonify(paginated(select(User).order_by(User.email), page, per_page, user_json))


@bp.post("/users")
def create_user():
    user = User(name="", is_super_admin=False, is_active=True)
    _apply_user(user, json_body(), partial=False)
    db.session.add(user)
    db.session.commit()
    return jsonify(user_json(user)), 201


@bp.get("/users/<id:user_id>")
def get_user(user_id):
    return jsonify(user_json(get_or_404(User, user_id)))


@bp.put("/users/<id:user_id>")
def update_user(user_id):
    user = get_or_404(User, user_id)
    _apply_user(user, json_body(), partial=True)
    db.session.commit()
    return jsonify(user_json(user))


@bp.delete("/users/<id:user_id>")
def delete_user(user_id):
    db.session.delete(get_or_404(User, user_id))
    db.session.commit()
    return "", 204


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


def send_attachment(attachment: Attachment, *, inline: bool = False):
    """The attachment's bytes. Downloads are never rendered by the browser (the content is
    untrusted); `inline` is only used for the raster images a message shows."""
    if attachment.in_database:
        blob = db.session.get(AttachmentBlob, attachment.sha256)
        if blob is None:
            abort(404, description="Attachment content is missing")
        source = io.BytesIO(blob.content)
    else:
        source = storage.path_for(current_app.config["ATTACHMENT_DIR"], attachment.sha256)
    if inline:
        response = send_file(source, mimetype=attachment.content_type)
        response.headers["Content-Security-Policy"] = "default-src 'none'"
    else:
        response = send_file(source, mimetype="application/octet-stream", as_attachment=True, download_name=attachment.filename)
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
