"""Carts: a buyer funds several orders (any sellers, one token) with one permit and one transfer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import BuyerPrincipal, RuntimeDep
from app.api.openapi import AUTH, BAD_SIGNATURE, BODY, REVERT, REVERT_INPUT, WRONG_STATE, problems
from app.api.schemas import CartFundingCreate, CartSigningRequest
from app.services.trade import carts, order_views, orders
from app.services.wake import wake

router = APIRouter(prefix="/v1/carts", tags=["carts"])


@router.post("/signing", responses=problems(*AUTH, *BODY, 403, 404, valid={409: [WRONG_STATE]}))
def cart_signing(body: CartSigningRequest, rt: RuntimeDep, me: BuyerPrincipal) -> dict[str, Any]:
    """Buyer: the typed data to sign for a cart: each order's OrderAuthorization and one EIP-2612 permit
    for the total (valid until the earliest authorization deadline). Writes nothing."""
    return carts.signing(rt, me, body.order_ids)


@router.post(
    "/funding",
    status_code=202,
    responses=problems(
        *AUTH, *BODY, 403, 404, valid={422: [BAD_SIGNATURE, REVERT_INPUT], 409: [WRONG_STATE, REVERT]}
    ),
)
def fund_cart(body: CartFundingCreate, rt: RuntimeDep, me: BuyerPrincipal) -> dict[str, Any]:
    """Buyer: fund every order of the cart in one transaction, pulling the total once. Every signature is
    checked and the whole cart simulated before anything is stored; one intent per order answers."""
    items = [carts.CartItem(i.order_id, bytes.fromhex(i.signature[2:])) for i in body.items]
    permit = orders.Permit(bytes.fromhex(body.permit.signature[2:]), body.permit.deadline)
    intents = carts.fund(rt, me, items, permit)
    wake("relay")
    return {
        "items": [order_views.accepted(rt, me, it.order_id or "", it.id) for it in intents],
    }
