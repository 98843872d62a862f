"""/api/imap/... JSON blueprint."""
from flask import Blueprint

from ..auth import require_super_admin_api

bp = Blueprint("imap_api", __name__, url_prefix="/api/imap")
bp.before_request(require_super_admin_api)
