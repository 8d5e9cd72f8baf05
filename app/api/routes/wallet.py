"""Transactions for a party's own wallet, where SPEC §4 has no signed message: a seller's refund, a withdrawal
of credits, the escrow admin's registration of oracles and arbitrators, and, on an order with an ERC-792
arbitrator (SPEC §4.1), the buyer's fee-paying dispute and anyone's ``executeRuling``; plus credits and
on-chain roles.

Each answer is the exact transaction (``from``, ``to``, ``data``, ``value``, ``chainId``, ``gas``), estimated
against the chain first (a refusal is its decoded error, 409/422); these routes write nothing, and the indexer
picks the result of the sent transaction up like any other event.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from app.api.deps import (
    AdminPrincipal,
    BuyerPrincipal,
    CurrentPrincipal,
    MerchantPrincipal,
    RegulatorPrincipal,
    RuntimeDep,
)
from app.api.openapi import AUTH, REVERT, REVERT_INPUT, WRONG_STATE, problems
from app.api.schemas import PRINTABLE, Address, Amount, Hex32
from app.services.trade import wallet_actions

router = APIRouter(tags=["wallet"])

OrderIdPath = Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{64}$", description="orderId, 0x + 64 hex")]
PrincipalIdPath = Annotated[str, Path(max_length=40)]
NO_ROLE = (
    "no_onchain_role",
    "a merchant has no role on the escrow (only oracles and arbitrators are registered)",
)
NO_CREDIT = (
    "insufficient_credit",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65 is owed 0 of tUSD; cannot withdraw 0",
)
PREPARED = problems(
    *AUTH, 403, 404, 422, valid={409: [WRONG_STATE, REVERT], 422: [REVERT_INPUT, NO_ROLE, NO_CREDIT]}
)


@router.get("/v1/orders/{order_id}/refund-transaction", responses=PREPARED)
def seller_refund(order_id: OrderIdPath, rt: RuntimeDep, me: MerchantPrincipal) -> dict[str, Any]:
    """Seller: the ``refundBySeller`` transaction for its wallet (the buyer gets the whole amount back)."""
    return wallet_actions.seller_refund(rt, me, order_id)


#: What the ERC-792 routes answer besides 200.
ERC792 = problems(
    *AUTH,
    403,
    404,
    422,
    valid={
        409: [
            WRONG_STATE,
            REVERT,
            (
                "platform_arbitration_conflict",
                "order 0x5e1f… is arbitrated by the platform: POST /v1/orders/{id}/disputes",
            ),
        ],
        422: [
            REVERT_INPUT,
            (
                "insufficient_funds",
                "0x3C44… holds 0 wei of the chain's currency; this transaction sends 10^16",
            ),
        ],
    },
)


@router.get("/v1/orders/{order_id}/dispute-transaction", responses=ERC792)
def dispute_transaction(
    order_id: OrderIdPath,
    rt: RuntimeDep,
    me: BuyerPrincipal,
    evidence_hash: Annotated[
        Hex32, Query(description="SHA-256 of the buyer's evidence, anchored with the dispute (default none)")
    ] = "0x" + "00" * 32,
) -> dict[str, Any]:
    """Buyer: on an order with an ERC-792 arbitrator (SPEC §4.1), the ``submitBuyerDecision`` transaction that
    opens the dispute from the buyer's own wallet, with ``value`` = the arbitrator's ``arbitrationCost`` now
    (in wei; the escrow forwards it to ``createDispute``; the relayer cannot pay it for the buyer)."""
    return wallet_actions.dispute_transaction(rt, me, order_id, bytes.fromhex(evidence_hash[2:]))


@router.get("/v1/orders/{order_id}/execute-ruling-transaction", responses=ERC792)
def execute_ruling_transaction(order_id: OrderIdPath, rt: RuntimeDep, me: CurrentPrincipal) -> dict[str, Any]:
    """Any party of the order: the ``executeRuling`` transaction that settles it by its ERC-792 arbitrator's
    ruling, for its own wallet (the keeper also sends it on its own once the ruling is indexed)."""
    return wallet_actions.execute_ruling_transaction(rt, me, order_id)


@router.get("/v1/orders/{order_id}/freeze-transaction", responses=PREPARED)
def freeze(
    order_id: OrderIdPath,
    rt: RuntimeDep,
    me: RegulatorPrincipal,
    seconds: Annotated[int, Query(ge=1, le=wallet_actions.MAX_FREEZE_SECONDS)],
    reason: Annotated[str, Query(min_length=1, max_length=500, pattern=PRINTABLE)],
) -> dict[str, Any]:
    """Regulator: the ``freeze`` transaction for its wallet (the order's timers stop for ``seconds``; the
    SHA-256 of ``reason`` is anchored)."""
    return wallet_actions.freeze(rt, me, order_id, seconds, reason)


@router.get("/v1/orders/{order_id}/unfreeze-transaction", responses=PREPARED)
def unfreeze(order_id: OrderIdPath, rt: RuntimeDep, me: RegulatorPrincipal) -> dict[str, Any]:
    """Regulator: the ``unfreeze`` transaction for its wallet."""
    return wallet_actions.unfreeze(rt, me, order_id)


@router.get("/v1/credits", responses=problems(*AUTH))
def credits(rt: RuntimeDep, me: CurrentPrincipal) -> dict[str, Any]:
    """The caller's unpaid credits on the escrow, per settlement token (net, tax, commission, refunds)."""
    return wallet_actions.credits(rt, me)


@router.get("/v1/credits/withdrawal", responses=PREPARED)
def withdrawal(
    rt: RuntimeDep,
    me: CurrentPrincipal,
    currency: Annotated[str, Query(min_length=1, max_length=16)],
    amount: Annotated[Amount | None, Query(description="base units; default: the whole credit")] = None,
    to: Annotated[Address | None, Query(description="default: the caller's own address")] = None,
) -> dict[str, Any]:
    """The caller's ``withdraw`` transaction for its wallet."""
    return wallet_actions.withdrawal(rt, me, currency, None if amount is None else int(amount), to)


@router.get(
    "/v1/principals/{principal_id}/onchain",
    tags=["principals"],
    responses=problems(*AUTH, 403, 404, valid={422: [NO_ROLE]}),
)
def onchain_role(principal_id: PrincipalIdPath, rt: RuntimeDep, me: AdminPrincipal) -> dict[str, Any]:
    """Admin: whether an oracle's or arbitrator's address holds its role on the escrow, and from when."""
    return wallet_actions.role_status(rt, principal_id)


@router.get("/v1/principals/{principal_id}/onchain/{change}", tags=["principals"], responses=PREPARED)
def onchain_role_change(
    principal_id: PrincipalIdPath,
    change: Annotated[str, Path(pattern="^(registration|removal)$")],
    rt: RuntimeDep,
    me: AdminPrincipal,
    admin_address: Annotated[Address | None, Query(description="the escrow admin's wallet")] = None,
) -> dict[str, Any]:
    """Admin: the escrow admin's ``addOracle``/``addArbitrator`` (registration) or ``remove…`` (removal)
    transaction for the principal's address; a new role counts after the escrow's ``ROLE_DELAY``."""
    return wallet_actions.role_change(rt, principal_id, change == "registration", admin_address)
