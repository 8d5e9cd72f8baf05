"""Health, chain metadata, principals, corridors and (dev chains only) faucet and clock."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from sqlalchemy import text

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
from app.chain import eip712
from app.db.session import read_transaction, transaction
from app.errors import InvalidInput, NotFound
from app.services import chain_guard, corridors, principals
from app.services.orders import require_role

router = APIRouter()


@router.get("/healthz", tags=["system"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["system"], response_model=None, responses=problems(503))
def readyz(rt: RuntimeDep) -> Any:
    """Readiness: the database and the chain both answer, and the chain is the database's (same genesis block
    and chain id) with no halt in force; otherwise 503 naming the reason."""
    checks: dict[str, str] = {}
    try:
        with read_transaction(rt.db) as s:  # no write lock for a probe
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        checks["chain"] = f"ok (block {rt.chain.block_number()})"
    except Exception as exc:  # any transport error means not ready
        checks["chain"] = f"error: {type(exc).__name__}"
    if not all(v.startswith("ok") for v in checks.values()):
        return problem(503, "not_ready", "a dependency is not available", checks=checks)
    try:
        halt = chain_guard.check(rt)
    except Exception as exc:  # the node or the database went away between the checks
        checks["chain_guard"] = f"error: {type(exc).__name__}"
        return problem(503, "not_ready", "a dependency is not available", checks=checks)
    if halt is not None:
        checks["chain_guard"] = f"halted: {halt.code}"
        return problem(
            503,
            halt.code,
            f"chain work is halted: {halt.reason}",
            checks=checks,
            reason=halt.reason,
            **halt.details,
        )
    checks["chain_guard"] = "ok"
    return {"status": "ready", "checks": checks}


@router.get("/v1/chain", tags=["system"], responses=problems(503))
def chain_info(rt: RuntimeDep) -> dict[str, Any]:
    """The EIP-712 domain and types (SPEC §4), the escrow, settlement tokens and escrow configuration."""
    chain_guard.require(rt)
    config = rt.escrow.config()
    return {
        "chain_id": rt.chain.chain_id,
        "escrow": rt.escrow.address,
        "block_number": rt.chain.block_number(),
        "chain_time": rt.chain.now(),
        "dev": rt.is_dev,
        "domain": eip712.domain(rt.chain.chain_id, rt.escrow.address),
        "types": {"EIP712Domain": eip712.EIP712_DOMAIN, **eip712.TYPES},
        "milestones": {"SHIPPED": 1, "DELIVERED": 2},
        "decisions": {"CONFIRM_RECEIPT": 1, "OPEN_DISPUTE": 2},
        "tokens": [
            {"address": t.address, "currency": t.symbol, "decimals": t.decimals} for t in rt.tokens.values()
        ],
        "commission_bps": config["commission_bps"],
        "default_hold_seconds": rt.settings.hold_seconds,
        "relayer": rt.relayer.address,
        "platform_oracle": rt.oracle.address if rt.oracle else None,
    }


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
    with transaction(rt.db) as s:
        issued = principals.create_principal(s, body.role, body.address, body.name)
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
    with transaction(rt.db) as s:
        return principals.disable(s, principal_id)


@router.get(
    "/v1/principals/me", tags=["principals"], response_model=PrincipalPublic, responses=problems(*AUTH)
)
def whoami(me: CurrentPrincipal) -> Any:
    """The calling principal."""
    return me


@router.get("/v1/corridors", tags=["principals"], responses=problems(*AUTH))
def list_corridors(rt: RuntimeDep, me: CurrentPrincipal) -> dict[str, Any]:
    """Tax corridors (destination, category → tax bps and recipient) that orders are priced with."""
    with read_transaction(rt.db) as s:
        return {"items": [c.as_json() for c in corridors.load(s)]}


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
    with transaction(rt.db) as s:
        return {"items": [c.as_json() for c in corridors.store(s, [i.model_dump() for i in body.items])]}


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
                    "contract_revert",
                    "the escrow refused: ERC20InvalidReceiver(receiver=0x0000…0000)",
                    {"error": "ERC20InvalidReceiver"},
                ),
                CHECKSUM,
            ]
        },
    ),
)
def faucet(body: FaucetRequest, rt: RuntimeDep, me: CurrentPrincipal) -> dict[str, Any]:
    """Dev chains only: mint test tokens to an address."""
    _require_dev(rt)
    chain_guard.require(rt)
    token = rt.token_by_symbol(body.currency)
    if token is None:
        raise InvalidInput("unknown_currency", f"no token {body.currency!r}")
    contract = rt.chain.contract("TestUSD", token.address)
    deployer = rt.dev_accounts["deployer"]
    receipt = rt.chain.send(contract.functions.faucet(body.address, int(body.amount)), deployer)
    return {"tx_hash": "0x" + bytes(receipt["transactionHash"]).hex(), "amount": body.amount}


@router.post("/v1/dev/advance-time", tags=["dev"], responses=problems(*AUTH, *BODY, 403, 404))
def advance_time(body: AdvanceTime, rt: RuntimeDep, me: AdminPrincipal) -> dict[str, Any]:
    """Dev chains only (admin): move the chain clock forward, then sweep timers (release, timeouts)."""
    _require_dev(rt)
    require_role(me, "move the dev clock", "admin")
    chain_guard.require(rt)
    now = rt.chain.advance_time(body.seconds)
    from workers.tasks import kick

    kick("keeper")
    return {"chain_time": now}
