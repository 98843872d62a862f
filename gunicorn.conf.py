"""gunicorn reads this file from the directory it starts in (the Procfile's `gunicorn ... wsgi:app`).
With LOG_FORMAT=json gunicorn's own lines, the master's and the workers', error and access log,
are JSON objects like the app's (portal/log_format.py); otherwise gunicorn logs as it always does."""
import os

from gunicorn.glogging import Logger


class JsonLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        from portal.log_format import ContextFilter, JsonFormatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
                handler.addFilter(ContextFilter())


if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    logger_class = JsonLogger
