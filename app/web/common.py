"""What every console route shares: templates, the session cookie, CSRF, security headers, error pages.

:class:`ConsoleRoute` wraps every console handler: a request without a live session is sent to the sign-in
page (pages) or answered 401 (the JSON endpoints the page scripts call); a refused action is an HTML page
saying why (or a problem+json for the scripts), never a stack trace; and every answer carries the security
headers (:func:`secure`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError

from app.api import problems
from app.db.models import Principal
from app.errors import AuthError, Forbidden, TradeGuardError
from app.services import web_sessions
from app.services.runtime import Runtime, get_runtime, load_runtime_if_any

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=WEB_DIR / "templates")

SESSION_COOKIE = "tg_session"
#: The sign-in form's CSRF token lives in this cookie (double submit: there is no session yet).
PRE_SESSION_COOKIE = "tg_signin"
CSRF_HEADER = "X-CSRF-Token"

#: Console pages: scripts, styles, images and requests from this origin only; no inline script or style,
#: no framing, no plugins, forms post here only.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class SignInRequired(Exception):
    """No live console session: pages go to the sign-in page."""


class CsrfRejected(Forbidden):
    """A console POST without the session's CSRF token."""

    def __init__(self) -> None:
        super().__init__("console", "post without the page's CSRF token")
        self.code = "csrf_rejected"


@dataclass(frozen=True)
class User:
    """The signed-in principal and its session's CSRF token."""

    principal: Principal
    csrf_token: str

    @property
    def role(self) -> str:
        return self.principal.role


async def runtime() -> Runtime:
    """The process runtime, without a worker thread once it is built (see app/api/deps.py)."""
    rt = load_runtime_if_any()
    return rt if rt is not None else await anyio.to_thread.run_sync(get_runtime)


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def current_user(request: Request, rt: RuntimeDep) -> User:
    """The principal of the session cookie; :class:`SignInRequired` without a live session."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if not cookie:
        raise SignInRequired()
    try:
        session = web_sessions.current(rt.db, cookie)
    except AuthError as exc:
        raise SignInRequired() from exc
    return User(session.principal, session.csrf_token)


UserDep = Annotated[User, Depends(current_user)]


def check_csrf(user: User, token: str | None) -> None:
    """Refuse (403) a POST whose token is not the session's."""
    if not web_sessions.csrf_ok(web_sessions.Current(user.principal, user.csrf_token), token):
        raise CsrfRejected()


def require(user: User, action: str, *roles: str) -> None:
    if user.role not in roles:
        raise Forbidden(user.role, action)


# --- rendering -------------------------------------------------------------------------------------------

#: Navigation per role: only what the role may do.
NAV: dict[str, list[tuple[str, str]]] = {
    "merchant": [
        ("/console/dashboard", "Settlements"),
        ("/console/orders", "Orders"),
        ("/console/orders/new", "New order"),
        ("/console/webhooks", "Webhooks"),
        ("/console/credits", "Credits"),
    ],
    "buyer": [("/console/orders", "My orders"), ("/console/credits", "Credits")],
    "arbitrator": [("/console/disputes", "Disputes")],
    "oracle": [("/console/captures", "Captures")],
    "regulator": [("/console/orders", "Orders")],
    "admin": [
        ("/console/principals", "Principals"),
        ("/console/corridors", "Corridors"),
        ("/console/orders", "Orders"),
    ],
}


def money(units: int | str | None, currency: str | None = None, decimals: int = 6) -> str:
    """Base units as a decimal with every digit of the token (``83.331667 tUSD``): exact, never rounded."""
    if units is None:
        return "—"
    text = f"{Decimal(int(units)).scaleb(-decimals):,.{decimals}f}"
    return f"{text} {currency}" if currency else text


def when(value: int | str | None) -> str:
    """Unix seconds or RFC 3339 as ``2026-12-06 07:20 UTC``."""
    if value is None or value == "":
        return "—"
    at = (
        datetime.fromtimestamp(int(value), UTC)
        if isinstance(value, int)
        else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(value: str | None, keep: int = 10) -> str:
    if not value:
        return "—"
    return value if len(value) <= keep + 6 else f"{value[:keep]}…{value[-4:]}"


templates.env.filters["money"] = money
templates.env.filters["when"] = when
templates.env.filters["short"] = short
templates.env.filters["tojson_attr"] = lambda value: json.dumps(value, separators=(",", ":"))


def render(
    request: Request, name: str, user: User | None, status_code: int = 200, **context: Any
) -> Response:
    rt = get_runtime()
    decimals = {t.symbol: t.decimals for t in rt.tokens.values()}
    response = templates.TemplateResponse(
        request,
        name,
        {
            "user": user,
            "nav": NAV.get(user.role, []) if user else [],
            "dev": rt.is_dev,
            "decimals": decimals,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )
    return secure(response)


def _wants_json(request: Request) -> bool:
    return CSRF_HEADER.lower() in request.headers or "application/json" in request.headers.get("accept", "")


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    user: User | None = None
    try:
        user = current_user(request, get_runtime())
    except Exception:  # the error page of a signed-out or broken session still renders
        user = None
    return render(request, "error.html", user, status_code=status, title=title, detail=detail)


class ConsoleRoute(APIRoute):
    """A console route: sign-in redirect, HTML (or problem+json) errors, security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except SignInRequired:
                if request.headers.get("HX-Request") == "true":  # a live page polling: send it to sign-in
                    return secure(Response(status_code=200, headers={"HX-Redirect": "/console/sign-in"}))
                if _wants_json(request):
                    return secure(problems.problem(401, "unauthorized", "sign in to the console again"))
                return secure(RedirectResponse("/console/sign-in", status_code=303))
            except RequestValidationError as exc:
                if _wants_json(request):
                    return secure(
                        problems.problem(
                            422, "validation_error", "the request does not match the form", errors=[]
                        )
                    )
                fields = ", ".join(
                    ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "form"))
                    for e in exc.errors()
                )
                return _error_page(
                    request, 422, "Check the form", f"these fields are missing or invalid: {fields}"
                )
            except (TradeGuardError, OSError, SQLAlchemyError) as exc:
                answer: JSONResponse = await problems.diagnosed(exc)
                if _wants_json(request):
                    return secure(answer)
                body = json.loads(bytes(answer.body))
                return _error_page(
                    request, answer.status_code, str(body.get("title")), str(body.get("detail"))
                )
            return secure(response)

        return handler
