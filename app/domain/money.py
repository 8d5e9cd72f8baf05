"""SPEC §3 money rules, in token base units (``int``) only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BPS = 10_000
MAX_COMMISSION_BPS = 3000
MAX_TAX_BPS = 5000


@dataclass(frozen=True)
class Split:
    """How one order's amount is paid out."""

    buyer_refund: int
    commission: int
    tax: int
    seller_net: int

    @property
    def total(self) -> int:
        """Everything paid out; always the order amount."""
        return self.buyer_refund + self.commission + self.tax + self.seller_net


def release_split(gross: int, commission_bps: int, tax_bps: int) -> Split:
    """Split a released gross: each fee leg is floored, the seller gets the rest."""
    if gross < 0 or not 0 <= commission_bps <= BPS or not 0 <= tax_bps <= BPS:
        raise ValueError("gross must be >= 0 and bps within 0..10000")
    commission = gross * commission_bps // BPS
    tax = gross * tax_bps // BPS
    return Split(0, commission, tax, gross - commission - tax)


def ruling_split(amount: int, buyer_share_bps: int, commission_bps: int, tax_bps: int) -> Split:
    """A ruling refunds ``floor(amount * share / 10000)`` and settles the rest like a release."""
    if not 0 <= buyer_share_bps <= BPS:
        raise ValueError("buyer_share_bps must be within 0..10000")
    refund = amount * buyer_share_bps // BPS
    rest = release_split(amount - refund, commission_bps, tax_bps)
    return Split(refund, rest.commission, rest.tax, rest.seller_net)


#: ERC-792 ruling options of an order with an external arbitrator (SPEC §4.1): 1..10, and 0 "refused to
#: arbitrate".
RULING_CHOICES = 10


def ruling_share_bps(ruling: int) -> int:
    """The buyer's share an ERC-792 ruling gives (SPEC §4.1): ``(r - 1) * 1111`` bps for ``r`` in 1..9, 10000
    for 10 (full refund), 5000 for 0 (the arbitrator refused to arbitrate: split evenly)."""
    if not 0 <= ruling <= RULING_CHOICES:
        raise ValueError(f"an ERC-792 ruling is 0..{RULING_CHOICES}")
    if ruling == 0:
        return 5000
    return BPS if ruling == RULING_CHOICES else (ruling - 1) * 1111


def refund_split(amount: int) -> Split:
    """A refund charges neither commission nor tax."""
    return Split(amount, 0, 0, 0)


#: The escrow events that settle an order, and so carry (or imply) its final split.
SETTLING_EVENTS = ("OrderReleased", "DisputeResolved", "OrderRefunded")


def settled_split(event: str, args: Mapping[str, Any], amount: int) -> dict[str, int]:
    """The final split a settling event (:data:`SETTLING_EVENTS`) paid, by field, from its arguments (a
    refund's from the order's ``amount``); integers, whatever the arguments were stored as."""
    if event == "OrderRefunded":
        return {"buyer_refund": amount, "commission": 0, "tax": 0, "seller_net": 0}
    return {
        "buyer_refund": int(args.get("buyerRefund") or 0),
        "commission": int(args["commission"]),
        "tax": int(args["tax"]),
        "seller_net": int(args["sellerNet"]),
    }
