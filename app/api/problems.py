"""RFC 9457 problem details: every error the API returns, mapped from the exception tree in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain import contract_errors
from app.errors import (
    AuthError,
    ChainError,
    ChainHalted,
    ChainUnavailable,
    ConfigError,
    ContractRevert,
    DomainError,
    FeedError,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    NonceContention,
    NotFound,
    TradeGuardError,
    TransactionFailed,
)

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
TYPE_BASE = "https://tradeguard.dev/problems/"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_title(status: int) -> str:
    """The ``title`` of a problem with this status."""
    return _TITLES.get(status, "Error")


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; ``code`` becomes the ``type`` URI's last segment."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def from_exception(exc: Exception) -> JSONResponse:
    """Map any exception to a problem response (the single table of the project)."""
    if isinstance(exc, ContractRevert):  # code and status from the one table (app/domain/contract_errors.py)
        known = contract_errors.describe(exc.name)
        return problem(
            known.status,
            known.code,
            f"the escrow refused: {exc}: {known.meaning}",
            error=exc.name,
            arguments=_jsonable(exc.args_by_name),
            tx_hash=exc.tx_hash,
        )
    if isinstance(exc, NotFound):
        return problem(404, "not_found", str(exc))
    if isinstance(exc, IdempotencyConflict):
        return problem(409 if exc.in_flight else 422, exc.code, str(exc))
    if isinstance(exc, InvalidInput):
        return problem(422, exc.code, str(exc), errors=exc.errors or None, **_jsonable(exc.details))
    if isinstance(exc, DomainError):
        status = 409 if exc.code.endswith(("_conflict", "_exists", "_state")) else 422
        return problem(status, exc.code, str(exc), **_jsonable(exc.details))
    if isinstance(exc, Forbidden):
        return problem(403, "forbidden", str(exc))
    if isinstance(exc, AuthError):
        return problem(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, FeedError):
        status = {"bad_signature": 401, "too_large": 413, "not_configured": 404}.get(exc.code, 422)
        return problem(status, exc.code, str(exc), **_jsonable(exc.details))
    if isinstance(exc, ChainHalted):
        return problem(
            503, exc.code, f"chain work is halted: {exc.reason}", reason=exc.reason, **_jsonable(exc.details)
        )
    if isinstance(exc, ChainUnavailable):
        return problem(503, "chain_unavailable", f"the chain is not reachable: {exc}")
    if isinstance(exc, NonceContention):
        return problem(503, "nonce_contention", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, TransactionFailed):
        return problem(409, "transaction_failed", str(exc), tx_hash=exc.tx_hash)
    if isinstance(exc, OSError | TimeoutError):  # a node or a database that does not answer
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return problem(
            503, "unavailable", "a dependency (chain node or database) is not reachable; retry later"
        )
    if isinstance(exc, OperationalError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        log.warning("database unavailable: %s", getattr(exc, "orig", None) or exc)
        return problem(503, "database_unavailable", "the database is not available; retry later")
    if isinstance(exc, ChainError | ConfigError | TradeGuardError):
        log.error("unexpected %s: %s", type(exc).__name__, exc)
        return problem(503, "service_unavailable", "the service cannot do this right now")
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal_error", "an unexpected error occurred; it has been logged")


async def diagnosed(exc: Exception) -> JSONResponse:
    """:func:`from_exception`, except that an error nobody expected (a 500, or an unexpected chain error) is
    first held against the chain guard: when the node serves another chain or chain work is halted, the
    answer is that 503 with its reason (the guard may ask the node: it runs in a worker thread)."""
    response = from_exception(exc)
    unexpected = response.status_code == 500 or (
        isinstance(exc, ChainError)
        and not isinstance(exc, ChainHalted | ChainUnavailable | ContractRevert | NonceContention)
    )
    if not unexpected:  # an unreachable node or database stays a plain 503 (no second wait on a hung node)
        return response
    halt = await run_in_threadpool(_chain_halt)
    return response if halt is None else from_exception(halt)


def _chain_halt() -> ChainHalted | None:
    from app.services import chain_guard
    from app.services.runtime import load_runtime_if_any

    rt = load_runtime_if_any()
    if rt is None:
        return None
    try:
        found = chain_guard.check(rt, force=True)
    except Exception:  # the node or the database is away: the original answer stands
        return None
    return None if found is None else found.error()


class LastResort:
    """Turns an exception no handler knows into a logged 500 problem, *without* re-raising it.

    Starlette's handler for ``Exception`` answers and then re-raises, so the server logs "Exception in ASGI
    application" and drops the keep-alive connection: the client's next request on it fails. Added as the
    innermost middleware, this one answers like any other handler and the connection stays usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the point of a last resort
            if started:  # too late for a problem body; the server closes this response
                raise
            await (await diagnosed(exc))(scope, receive, send)


def _allowed_methods(request: Request) -> str | None:
    """Every method the OpenAPI documents for the request's path (``Allow`` of a 405), or ``None``."""
    segments = str(request.scope.get("path", "")).split("/")
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            t == s or (t[:1] == "{" and t[-1:] == "}" and s) for t, s in zip(parts, segments, strict=True)
        ):
            methods.update(m.upper() for m in item if m in _HTTP_METHODS)
    return ", ".join(sorted(methods)) or None


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def install(app: FastAPI) -> None:
    """Register the handlers: our errors, request validation, routing errors, failing dependencies (node,
    database) and a last resort. Every one answers as an ordinary response: nothing is re-raised to the
    server, so a 503 or even a 500 keeps the client's keep-alive connection usable."""

    async def on_error(_request: Request, exc: Exception) -> JSONResponse:
        return await diagnosed(exc)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "body",
                "message": str(err.get("msg", "invalid")),
            }
            for err in exc.errors()
        ]
        return problem(422, "validation_error", "the request does not match the schema", errors=errors)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(exc.status_code, "error")
        headers = getattr(exc, "headers", None)
        allowed = _allowed_methods(request) if exc.status_code == 405 else None
        if allowed:  # Starlette's Allow names the methods of the path's first route only
            headers = {**(headers or {}), "Allow": allowed}
        return problem(exc.status_code, code, str(exc.detail), headers=headers)

    app.add_exception_handler(TradeGuardError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # dependencies that fail (a node or a database not answering) are ordinary handled answers (503)
    app.add_exception_handler(OSError, on_error)
    app.add_exception_handler(SQLAlchemyError, on_error)
    app.add_middleware(LastResort)  # innermost user middleware: sees what the handlers above did not
