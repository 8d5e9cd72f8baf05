"""The web console: server-rendered pages (Jinja2) with small ES modules, served by the API's own app.

The console is an API client like any other: its routes call :mod:`app.services` (the functions the API's
routes use), never the database or the chain. Sign-in exchanges an API key for an HttpOnly, SameSite=Strict
session cookie; every form carries a CSRF token; every page is served with a strict Content-Security-Policy
(scripts from this origin only, no inline script). Browser assets (htmx, Chart.js, Swagger UI, ReDoc) are
vendored from npm into ``app/web/static/vendor`` by ``scripts/bootstrap.sh``: nothing is loaded from a CDN.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.web.common import STATIC_DIR
from app.web.docs import router as docs_router
from app.web.pages import router as pages_router


def install(app: FastAPI) -> None:
    """Serve the console (``/`` and ``/console``), its static files (``/static``) and offline API docs."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.include_router(docs_router)
    app.include_router(pages_router)
