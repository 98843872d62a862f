"""/admin/modules/imap pages and partials."""
from flask import Blueprint, render_template

from ..auth import require_super_admin_page

bp = Blueprint("imap_views", __name__, url_prefix="/admin/modules/imap")
bp.before_request(require_super_admin_page)


@bp.get("/")
def index():
    return render_template("imap/index.html")
