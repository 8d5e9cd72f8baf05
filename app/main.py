"""The HTTP application ``tradeguard run`` serves, and the composition root of an API process: the API
(:mod:`app.api`), the web console on the same app (:mod:`app.web`), and where the requests' wake-ups go
(:mod:`app.services.wake`). The one module that knows all three; nothing imports it but the command line
and the tests."""

from __future__ import annotations

from fastapi import FastAPI

from app import web
from app.api.main import create_api
from app.services import wake


def create_app(waker: wake.Waker | None = None) -> FastAPI:
    """A new application over the process runtime: the API and the console. ``waker`` is who hears the
    requests' wakes; by default the workers' :func:`~workers.tasks.kick`, which finds the background
    sweepers, the parent process or the broker itself."""
    if waker is None:
        from workers.tasks import kick as waker
    wake.install(waker)
    app = create_api()
    web.install(app)
    return app
