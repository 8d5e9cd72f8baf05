"""Structured logs: one JSON object per line, carrying the id of the HTTP request that caused it.

The API's observability middleware (:mod:`app.api.observability`) sets :data:`request_id` for the duration
of each request (the client's ``X-Request-Id`` when it is a sane token, else a fresh one); everything logged
while it runs, in the request's thread or in the worker thread a sync route runs on (Starlette copies the
context), including the relayer and inbox passes an eager ``kick`` runs inline, carries it. With
``TRADEGUARD_LOG_FORMAT=json`` :func:`configure` puts :class:`JsonFormatter` on the root logger's handlers,
so a log shipper can index ``request_id``, ``level``, ``logger`` and the ``extra`` fields of a record.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.config import Settings

#: The id of the HTTP request being served in this context (None outside a request).
request_id: ContextVar[str | None] = ContextVar("tradeguard_request_id", default=None)

#: A client's X-Request-Id is kept when it is a plain token (a UUID, a trace id, ``abc-123``); anything else
#: (too long, spaces, control characters) is replaced, so log lines and headers never carry injected text.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")

#: Attributes every LogRecord has: not copied into the JSON object as ``extra`` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def accept_request_id(value: str | None) -> str:
    """The client's request id when it is a sane token, else a new random one (32 hex digits)."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` with the current request's id (on a handler: every record it emits)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (RFC 3339 UTC), level, logger, message, request_id, the record's
    ``extra`` fields, and the traceback as ``exc_info`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(settings: Settings, root: logging.Logger | None = None) -> None:
    """With ``log_format == "json"``: JSON lines with the request id on every handler of the root logger
    (one to stderr is added if it has none), Python's warnings logged too (``py.warnings``, not printed),
    and the service's own loggers (``app``, ``workers``) at ``log_level``. The text format is left as the
    command line set it up. Safe to call again; every process calls it (the API's, ``tradeguard run``'s
    parent, and Celery's worker and beat once Celery has set up their handlers: ``workers.celery_app``)."""
    if settings.log_format != "json":
        return
    logging.captureWarnings(True)
    root = root or logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
    for name in ("app", "workers"):
        logging.getLogger(name).setLevel(settings.log_level)


__all__ = ["JsonFormatter", "RequestIdFilter", "accept_request_id", "configure", "request_id"]
