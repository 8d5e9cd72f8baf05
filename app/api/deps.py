"""FastAPI dependencies as ``Annotated`` aliases: the runtime, the calling principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.middleware import run_read as run_read  # the routes await their reads through it
from app.errors import AuthError, Forbidden
from app.services import principals
from app.services.principals import Principal
from app.services.runtime import Runtime, get_runtime, load_runtime_if_any

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


async def runtime_dep() -> Runtime:
    """The process runtime. A coroutine: FastAPI runs a plain function dependency on a worker thread, and this
    one is on every route (issue 8: one thread hop less per request); a runtime not built yet is built on a
    worker thread, off the event loop."""
    rt = load_runtime_if_any()
    return rt if rt is not None else await anyio.to_thread.run_sync(get_runtime)


RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _key_of(creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise AuthError()
    return creds.credentials


async def _authenticated(request: Request, rt: Runtime, principal: Principal, stale_key: str | None) -> None:
    """What follows an authentication: the ``last_used_at`` refresh it may ask for (a write: not on the reads'
    threads), and the principal on the request (its logs and idempotency)."""
    if stale_key is not None:
        await anyio.to_thread.run_sync(principals.touch, rt.db, stale_key)
    request.state.principal = principal
    request.state.principal_id = principal.id


async def principal_dep(rt: RuntimeDep, request: Request, creds: Bearer) -> Principal:
    """The principal of the request's API key (401 problem when missing or unknown), resolved once per
    request: the idempotency middleware may have done it already. The lookup runs where reads run
    (:func:`~app.api.middleware.run_read`)."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    principal, stale_key = await run_read(principals.lookup, rt.db, _key_of(creds))
    await _authenticated(request, rt, principal, stale_key)
    return principal


async def read_as_caller(
    request: Request,
    rt: Runtime,
    creds: HTTPAuthorizationCredentials | None,
    view: Callable[..., T],
    *args: Any,
) -> T:
    """``view(session, caller, *args)`` in the read transaction that authenticates the caller
    (:func:`~app.services.principals.read_as`): a route that only reads, with one transaction instead of two.
    A missing or bad key is a 401 before ``view`` runs."""
    read: tuple[Principal, str | None, T] = await run_read(
        principals.read_as, rt.db, _key_of(creds), view, *args
    )
    await _authenticated(request, rt, read[0], read[1])
    return read[2]


CurrentPrincipal = Annotated[Principal, Depends(principal_dep)]


def _role_dep(action: str, *roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency answering 403 unless the caller has one of ``roles``.

    Used instead of :data:`CurrentPrincipal` on role-restricted routes: FastAPI solves dependencies before
    it validates the body, so a caller who may not use the route learns that (403), not what its body lacks.
    """

    async def check(me: CurrentPrincipal) -> Principal:  # no I/O: no worker thread for it
        if me.role not in roles:
            raise Forbidden(me.role, action)
        return me

    return check


AdminPrincipal = Annotated[Principal, Depends(_role_dep("use admin routes", "admin"))]
MerchantPrincipal = Annotated[Principal, Depends(_role_dep("use merchant routes", "merchant"))]
BuyerPrincipal = Annotated[Principal, Depends(_role_dep("use buyer routes", "buyer"))]
PartyPrincipal = Annotated[Principal, Depends(_role_dep("act for a party", "buyer", "merchant"))]
ArbitratorPrincipal = Annotated[Principal, Depends(_role_dep("rule on disputes", "arbitrator"))]
RegulatorPrincipal = Annotated[Principal, Depends(_role_dep("freeze orders", "regulator"))]
OraclePrincipal = Annotated[Principal, Depends(_role_dep("post attestations", "oracle"))]
CapturePrincipal = Annotated[Principal, Depends(_role_dep("capture EPCIS events", "oracle", "admin"))]
