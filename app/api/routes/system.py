"""Health, chain metadata, principals, corridors and (dev chains only) faucet and clock."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from app.api.deps import AdminPrincipal, CurrentPrincipal, RuntimeDep
from app.api.openapi import AUTH, BODY, CHECKSUM, links, problems
from app.api.problems import problem
from app.api.schemas import (
    AdvanceTime,
    CorridorsPut,
    FaucetRequest,
    PrincipalCreate,
    PrincipalCreated,
    PrincipalPublic,
)
from app.errors import InvalidInput, NotFound
from app.services import dev_tools, principals, readiness
from app.services.trade import corridors, platform
from app.services.trade.orders import require_role
from app.services.wake import wake

router = APIRouter()


@router.get("/healthz", tags=["system"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["system"], response_model=None, responses=problems(503))
def readyz(rt: RuntimeDep) -> Any:
    """Readiness: the database and the chain both answer, and the chain is the database's (same genesis block
    and chain id) with no halt in force; otherwise 503 naming the reason."""
    found = readiness.check(rt)
    if found.halt is not None:
        halt = found.halt
        return problem(
            503,
            halt.code,
            f"chain work is halted: {halt.reason}",
            checks=found.checks,
            reason=halt.reason,
            **halt.details,
        )
    if found.checks.get("gas_wallet", "").startswith("low"):
        return problem(
            503,
            "gas_wallet_low",
            f"the relayer's gas wallet {found.checks['gas_wallet'].removeprefix('low: ')}: top it up",
            checks=found.checks,
        )
    if not found.ready:
        return problem(503, "not_ready", "a dependency is not available", checks=found.checks)
    return {"status": "ready", "checks": found.checks}


@router.get("/v1/chain", tags=["system"], responses=problems(503))
def chain_info(rt: RuntimeDep) -> dict[str, Any]:
    """The EIP-712 domain and types (SPEC §4), the escrow, settlement tokens and escrow configuration."""
    return platform.public_info(rt)


@router.post(
    "/v1/principals",
    tags=["principals"],
    status_code=201,
    response_model=PrincipalCreated,
    responses=problems(
        *AUTH,
        *BODY,
        403,
        valid={422: [("invalid_address", "a oracle needs a 0x-prefixed 20-byte address"), CHECKSUM]},
    ),
    openapi_extra=links(
        201, Disable=("/v1/principals/{principal_id}/disable", "post", {"principal_id": "$response.body#/id"})
    ),
)
def create_principal(
    body: PrincipalCreate, rt: RuntimeDep, me: AdminPrincipal, response: Response
) -> dict[str, Any]:
    """Admin: create a principal with one role and an address; its API key is in this answer only
    (never stored, not even for an ``Idempotency-Key`` replay)."""
    require_role(me, "create principals", "admin")
    response.headers["Cache-Control"] = "no-store"
    issued = principals.register(rt, body.role, body.address, body.name)
    p = issued.principal
    return {
        "id": p.id,
        "role": p.role,
        "address": p.address,
        "name": p.name,
        "created_at": p.created_at,
        "api_key": issued.api_key,
    }


@router.post(
    "/v1/principals/{principal_id}/disable",
    tags=["principals"],
    response_model=PrincipalPublic,
    responses=problems(
        *AUTH, 403, 404, 409, 422, valid={422: [("cannot_disable_self", "an admin cannot disable itself")]}
    ),
)
def disable_principal(
    principal_id: Annotated[str, Path(max_length=40)], rt: RuntimeDep, me: AdminPrincipal
) -> Any:
    """Admin: disable a principal and revoke its API keys (a leaked key, a merchant off-boarded)."""
    require_role(me, "disable principals", "admin")
    if principal_id == me.id:
        raise InvalidInput("cannot_disable_self", "an admin cannot disable itself")
    return principals.disable_by_id(rt, principal_id)


@router.get(
    "/v1/principals/me", tags=["principals"], response_model=PrincipalPublic, responses=problems(*AUTH)
)
def whoami(me: CurrentPrincipal) -> Any:
    """The calling principal."""
    return me


@router.get("/v1/corridors", tags=["principals"], responses=problems(*AUTH))
def list_corridors(rt: RuntimeDep, me: CurrentPrincipal) -> dict[str, Any]:
    """Tax corridors (destination, category → tax bps and recipient) that orders are priced with."""
    return {"items": [c.as_json() for c in corridors.current(rt)]}


@router.put(
    "/v1/corridors",
    tags=["principals"],
    responses=problems(
        *AUTH,
        *BODY,
        403,
        valid={422: [("invalid_corridor", "each (country, category) may appear once"), CHECKSUM]},
    ),
)
def put_corridors(body: CorridorsPut, rt: RuntimeDep, me: AdminPrincipal) -> dict[str, Any]:
    """Admin: replace the tax corridors. Open orders keep the terms their buyers signed."""
    require_role(me, "configure corridors", "admin")
    stored = corridors.replace_all(rt, [i.model_dump() for i in body.items])
    return {"items": [c.as_json() for c in stored]}


def _require_dev(rt: RuntimeDep) -> None:
    if not rt.is_dev:
        raise NotFound("route", "dev routes (TRADEGUARD_DEV is off or this is not a dev chain)")


@router.post(
    "/v1/dev/faucet",
    tags=["dev"],
    responses=problems(
        *AUTH,
        *BODY,
        404,
        valid={
            422: [
                ("unknown_currency", "no token 'EUR'"),
                (
                    "faucet_limit",
                    "the escrow refused: FaucetLimit(requested=…, limit=…): tUSD faucet: more than the "
                    "limit per call",
                    {"error": "FaucetLimit"},
                ),
                CHECKSUM,
            ]
        },
    ),
)
def faucet(body: FaucetRequest, rt: RuntimeDep, me: CurrentPrincipal) -> dict[str, Any]:
    """Dev chains only: mint test tokens to an address."""
    _require_dev(rt)
    tx_hash = dev_tools.faucet(rt, body.currency, body.address, int(body.amount))
    return {"tx_hash": tx_hash, "amount": body.amount}


@router.post("/v1/dev/advance-time", tags=["dev"], responses=problems(*AUTH, *BODY, 403, 404))
def advance_time(body: AdvanceTime, rt: RuntimeDep, me: AdminPrincipal) -> dict[str, Any]:
    """Dev chains only (admin): move the chain clock forward, then sweep timers (release, timeouts)."""
    _require_dev(rt)
    require_role(me, "move the dev clock", "admin")
    now = dev_tools.advance_time(rt, body.seconds)
    wake("keeper")
    return {"chain_time": now}
