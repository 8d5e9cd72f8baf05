"""The FastAPI application: routers, problem+json handlers, idempotency and body limits, OpenAPI at
``/openapi.json`` and docs at ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI

from app import logs
from app.api import problems
from app.api.middleware import EmbeddedChainLock, IdempotencyMiddleware, ThreadBudget
from app.api.observability import RequestObservability
from app.api.routes import carts, logistics, metrics, orders, settlements, system, wallet, webhook_endpoints
from app.config import get_settings
from app.services.runtime import load_runtime_if_any

DESCRIPTION = """
TradeGuard holds a buyer's payment in an on-chain escrow until delivery is attested and the T+N hold window
passes, then splits it into commission, cross-border tax and the seller's net.

Authenticate with `Authorization: Bearer <api key>`. Every POST honours `Idempotency-Key`. Errors are
RFC 9457 `application/problem+json`; a contract revert names the decoded custom error. Amounts are token base
units as decimal strings; times are RFC 3339 UTC.
"""


def create_api() -> FastAPI:
    """The API over the process runtime (:func:`app.services.runtime.get_runtime`): its routers, problem+json
    handlers and middlewares. What serves it is :func:`app.main.create_app`, which adds the console."""
    # /docs and /redoc are served by the console (app.web) from vendored assets: FastAPI's own load a CDN
    app = FastAPI(title="TradeGuard", version="1.0.0", description=DESCRIPTION, docs_url=None, redoc_url=None)
    problems.install(app)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(EmbeddedChainLock)  # idempotency bookkeeping runs inside the turn
    # outermost too: a failure in the middlewares' own database work (the idempotency claim, the principal)
    # is an ordinary answer (503 when the database is down), never Starlette's re-raising 500
    app.add_middleware(problems.LastResort)
    # outermost of all: the request id is set before anything logs, and every answer is counted
    app.add_middleware(RequestObservability)
    # TRADEGUARD_LOG_FORMAT=json: JSON lines with the request id (the runtime's settings, as the CLI set it)
    rt = load_runtime_if_any()
    settings = rt.settings if rt is not None else get_settings()
    logs.configure(settings)
    app.add_middleware(ThreadBudget, threads=settings.api_threads, read_threads=settings.read_threads)
    for module in (system, metrics, orders, carts, wallet, settlements, logistics, webhook_endpoints):
        app.include_router(module.router)
    return app
