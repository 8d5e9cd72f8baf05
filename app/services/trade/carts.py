"""A buyer's cart: several orders, from any sellers, in one token, funded with one EIP-2612 permit and one
transfer (SPEC §4's OrderAuthorization for each order, one permit for the total).

The contract pulls the buyer's tokens once per run of consecutive orders with the same buyer and token, and
only the first may carry the permit. So a cart becomes one ``fund`` intent per order: the first carries the
permit for the cart's total, the others rely on the allowance it gives; the relayer sends them as one batch
(:meth:`app.services.outbox.relayer._Pass.fund_units` puts a permit's run behind it). Before anything is
stored the whole cart is simulated as that one transaction, because an order after the first cannot be funded
alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.chain import eip712
from app.db.models import Intent, Order, Principal, TimelineEntry
from app.db.session import read_transaction, transaction
from app.errors import DomainError, InvalidInput
from app.services.outbox import relayer
from app.services.runtime import Runtime
from app.services.trade import orders

#: Orders in one cart at most (one fund batch: the permit's run goes out in one transaction).
MAX_CART = 50


@dataclass(frozen=True)
class CartItem:
    """One order of a cart and the buyer's OrderAuthorization signature for it."""

    order_id: str
    signature: bytes


def _load(rt: Runtime, buyer: Principal, order_ids: Sequence[str]) -> list[Order]:
    """The cart's orders, in the given order: the buyer's own, each awaiting funding, all in one token."""
    orders.require_role(buyer, "fund orders", "buyer")
    ids = [oid.lower() for oid in order_ids]
    if not 1 <= len(ids) <= min(MAX_CART, rt.settings.fund_batch):
        raise InvalidInput(
            "invalid_cart",
            f"a cart holds 1..{min(MAX_CART, rt.settings.fund_batch)} orders",
            errors=[{"field": "order_ids", "message": "size"}],
        )
    if len(set(ids)) != len(ids):
        raise InvalidInput(
            "invalid_cart",
            "an order appears twice in the cart",
            errors=[{"field": "order_ids", "message": "duplicate"}],
        )
    with read_transaction(rt.db) as s:
        found = [orders.get_visible(s, buyer, oid) for oid in ids]
    waiting = [o for o in found if o.status != "awaiting_funding"]
    if waiting:
        raise DomainError(
            "invalid_state",
            f"order {waiting[0].id} is {waiting[0].status}, not awaiting_funding",
            order_id=waiting[0].id,
        )
    if len({o.token for o in found}) > 1:
        raise InvalidInput(
            "cart_mixed_currency",
            "a cart is paid in one token: "
            + ", ".join(sorted({o.currency for o in found}))
            + " are separate carts",
            errors=[{"field": "order_ids", "message": "one currency per cart"}],
        )
    return found


def _total(cart: Sequence[Order]) -> int:
    return sum(o.amount for o in cart)


def signing(rt: Runtime, buyer: Principal, order_ids: Sequence[str]) -> dict[str, Any]:
    """What the buyer signs for a cart: each order's OrderAuthorization and one permit for the total, valid
    until the earliest authorization deadline (at the buyer's current permit nonce)."""
    cart = _load(rt, buyer, order_ids)
    deadline = min(o.valid_until for o in cart)
    permit, nonce = orders._permit_document(rt, cart[0], deadline, value=_total(cart))
    return {
        "orders": [
            {"order_id": o.id, "authorization": eip712.jsonable(rt.escrow.document(orders.authorization(o)))}
            for o in cart
        ],
        "permit": eip712.jsonable(permit),
        "total": str(_total(cart)),
        "currency": cart[0].currency,
        "permit_nonce": nonce,
    }


def fund(rt: Runtime, buyer: Principal, items: Sequence[CartItem], permit: orders.Permit) -> list[Intent]:
    """The buyer's signed cart → one ``fund`` intent per order (the first with the permit), after checking
    every signature off chain and simulating the whole cart as one transaction; nothing is stored if any
    check fails."""
    cart = _load(rt, buyer, [i.order_id for i in items])
    payloads: list[dict[str, Any]] = []
    total = _total(cart)
    for n, (order, item) in enumerate(zip(cart, items, strict=True)):
        message = orders.authorization(order)
        orders._check_signer(
            rt.escrow.document(message), item.signature, order.buyer, f"items[{n}].signature"
        )
        payloads.append(
            {
                "authorization": message.payload(),
                "signature": "0x" + item.signature.hex(),
                "permit": permit.payload(total) if n == 0 else None,
            }
        )
    nonce = orders.signed_permit(rt, cart[0], permit, value=total)
    relayer.preflight_funding(rt, payloads)
    with transaction(rt.db) as s:
        intents = [relayer.submit(s, "fund", p, order_id=o.id) for o, p in zip(cart, payloads, strict=True)]
        s.flush()
        orders._claim_permit(s, cart[0], nonce, intents[0])
        cart_ids = [o.id for o in cart]
        for order, intent in zip(cart, intents, strict=True):
            s.add(
                TimelineEntry(
                    order_id=order.id,
                    kind="fund.submitted",
                    data={"intent_id": intent.id, "cart": cart_ids, "cart_total": str(total)},
                )
            )
    return intents


__all__ = ["MAX_CART", "CartItem", "fund", "signing"]
