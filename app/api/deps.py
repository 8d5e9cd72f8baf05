"""FastAPI dependencies as ``Annotated`` aliases: the runtime, the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.db.models import Principal
from app.db.session import transaction
from app.errors import AuthError
from app.services import principals
from app.services.runtime import Runtime, get_runtime

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def runtime_dep() -> Runtime:
    """The process runtime."""
    return get_runtime()


RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]


def principal_dep(
    rt: RuntimeDep,
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal of the request's API key (401 problem when missing or unknown)."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise AuthError()
    with transaction(rt.db) as s:
        principal = principals.authenticate(s, creds.credentials)
    request.state.principal_id = principal.id
    return principal


CurrentPrincipal = Annotated[Principal, Depends(principal_dep)]
