"""SPEC §3 money rules, in token base units (``int``) only."""

from __future__ import annotations

from dataclasses import dataclass

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


def refund_split(amount: int) -> Split:
    """A refund charges neither commission nor tax."""
    return Split(amount, 0, 0, 0)
