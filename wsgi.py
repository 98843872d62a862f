from portal import create_app
from portal.log_format import configure_logging

configure_logging()  # LOG_FORMAT=json: the app's lines and gunicorn's as one JSON object per line
app = create_app()
