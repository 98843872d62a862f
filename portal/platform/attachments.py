"""An attachment's bytes as an HTTP response, for the API and the ticket pages."""
import io

from flask import abort, current_app, send_file

from .. import storage
from ..extensions import db
from ..models import Attachment, AttachmentBlob

INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


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
