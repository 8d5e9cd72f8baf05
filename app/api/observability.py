"""The outermost middleware: a request id on every request and its log lines, and the request histogram.

``X-Request-Id`` from the client is kept when it is a plain token (:func:`app.logs.accept_request_id`),
otherwise one is generated; either way it is answered in the response's ``X-Request-Id`` and set in
:data:`app.logs.request_id` while the request runs, so every log record of the request carries it. When the
response is done, the request is counted in :data:`app.services.metrics.REQUEST_SECONDS` under the route
*template* Starlette matched (``scope["route"]``), never the raw path (and counted in
:data:`~app.services.metrics.REQUESTS_IN_PROGRESS` while it runs), and logged once at INFO on
``app.access`` (method, route, status, duration) for the JSON log format.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs
from app.services import metrics

log = logging.getLogger("app.access")

HEADER = b"x-request-id"


def route_template(scope: Scope) -> str:
    """The template of the route that served the request (``/v1/orders/{order_id}``), else ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestObservability:
    """Request id, request metrics and the access log line (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(HEADER)
        rid = logs.accept_request_id(sent.decode("latin-1") if sent is not None else None)
        token = logs.request_id.set(rid)
        status = 500  # what the server answers if the app dies before it starts a response
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode("latin-1"))]}
            await send(message)

        metrics.REQUESTS_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.REQUESTS_IN_PROGRESS.dec()
            seconds = time.perf_counter() - started
            route = route_template(scope)
            metrics.observe_request(scope["method"], route, status, seconds)
            log.info(
                "%s %s %s %.1f ms",
                scope["method"],
                route,
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            logs.request_id.reset(token)
