"""The bounds the escrow enforces when an order is funded, as one rule set.

The contract checks an OrderAuthorization in ``_open`` (``TradeGuardEscrow.sol``); the service's order
creation (:mod:`app.services.trade.orders`) and the test-only reference model (``tests/model/lifecycle.py``)
both ask this module, so a buyer is never handed terms the escrow will refuse and no stored term can later
break a read (every time stays within a year of the chain's clock, every amount within ``uint128``).

:func:`funding_violations` lists every broken rule in the contract's order, each as a :class:`Violation`
whose ``code`` is the escrow's custom error name and whose ``details`` carry that error's arguments. The
model raises the first one (as the chain would); the API reports them all as field errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from app.domain.money import MAX_TAX_BPS

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
HOUR = 3600
DAY = 86_400
MAX_AMOUNT = 2**128 - 1
MIN_HOLD_SECONDS = HOUR
MAX_HOLD_SECONDS = 90 * DAY
MAX_SCHEDULE_SECONDS = 365 * DAY
DEFAULT_SHIP_WITHIN = 5 * DAY
DEFAULT_DELIVER_WITHIN = 25 * DAY  # after ship-by


@dataclass(frozen=True)
class Violation:
    """One broken funding rule: the escrow's error name, the request field it is about, and why."""

    code: str
    field: str
    message: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_error(self) -> dict[str, str]:
        """A problem+json ``errors`` item."""
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass(frozen=True)
class FundingTerms:
    """The numbers an OrderAuthorization binds (SPEC §4), as the rules need them."""

    buyer: str
    seller: str
    token: str
    amount: int
    commission_bps: int
    tax_bps: int
    tax_recipient: str
    ship_by: int
    deliver_by: int
    hold_seconds: int


@dataclass(frozen=True)
class OrderTerms(FundingTerms):
    """The terms locked at funding: the buyer's request plus the platform settings of that moment.

    These are what the escrow stores (hashed) per order, so nothing the admin changes later alters them.
    """

    threshold: int
    response_seconds: int
    arbitration_seconds: int
    funded_at: int
    #: ERC-792 arbitrator the buyer signed (SPEC §4.1); the zero address means the platform's arbitrators
    arbitrator: str = ZERO_ADDRESS
    #: keccak256 of the extraData the arbitrator's createDispute must be given (zero without an arbitrator)
    arbitrator_extra_data_hash: bytes = b"\x00" * 32
    #: ERC-1497 meta-evidence id in force at funding
    meta_evidence_id: int = 0


def usable_oracles(active: int, pending: int, pending_until: int, now: int) -> int:
    """How many oracles an order funded at ``now`` may count on, as the escrow reckons it.

    Conservative: while the latest added oracle is still inside its role delay, every oracle added since the
    previous such period ended is left out, even one whose own delay is already over. Removing such an oracle
    once it is active does not lower the pending count, so the result floors at zero.
    """
    if now >= pending_until:
        return active
    return max(0, active - pending)


@dataclass(frozen=True)
class PlatformLimits:
    """The platform settings funding is checked against, as of ``now``.

    ``token_supply`` is the settlement token's total supply when known: an amount above it can never be
    pulled, so it is refused up front (the escrow itself would fail later, at the transfer).
    """

    token_allowed: bool
    commission_bps: int
    tax_cap: int
    threshold: int
    usable_oracles: int
    paused: bool = False
    token_supply: int | None = None


def amount_violations(amount: int, token_supply: int | None = None) -> list[Violation]:
    """``1 <= amount <= 2^128-1`` (the escrow's ``InvalidAmount``), and never above the token's supply."""
    if not 0 < amount <= MAX_AMOUNT:
        return [Violation("InvalidAmount", "amount", "must be 1 .. 2^128-1 base units", {"amount": amount})]
    if token_supply is not None and amount > token_supply:
        return [
            Violation(
                "AmountAboveSupply",
                "amount",
                f"exceeds the token's total supply ({token_supply})",
                {"amount": amount, "totalSupply": token_supply},
            )
        ]
    return []


def parties_violations(buyer: str, seller: str) -> list[Violation]:
    """Buyer and seller are non-zero and differ (``InvalidParties``)."""
    details = {"buyer": buyer, "seller": seller}
    if buyer.lower() == ZERO_ADDRESS:
        return [Violation("InvalidParties", "buyer", "must not be the zero address", details)]
    if seller.lower() == ZERO_ADDRESS:
        return [Violation("InvalidParties", "seller", "must not be the zero address", details)]
    if buyer.lower() == seller.lower():
        return [Violation("InvalidParties", "buyer", "must differ from the seller", details)]
    return []


def schedule_violations(now: int, ship_by: int, deliver_by: int, hold_seconds: int) -> list[Violation]:
    """``now < shipBy < deliverBy <= now + 365 days`` and ``1 h <= hold <= 90 days`` (``InvalidSchedule``).

    Each broken bound is its own violation (same code), so a client learns every field to fix at once.
    """
    details = {"shipBy": ship_by, "deliverBy": deliver_by, "holdSeconds": hold_seconds}
    out: list[Violation] = []

    def bad(where: str, message: str) -> None:
        out.append(Violation("InvalidSchedule", where, message, details))

    if ship_by <= now:
        bad("ship_by", "must be in the future")
    elif ship_by >= now + MAX_SCHEDULE_SECONDS:
        bad("ship_by", "must be less than 365 days ahead")
    if deliver_by <= ship_by:
        bad("deliver_by", "must be after ship_by")
    elif deliver_by > now + MAX_SCHEDULE_SECONDS:
        bad("deliver_by", "must be at most 365 days ahead")
    if not MIN_HOLD_SECONDS <= hold_seconds <= MAX_HOLD_SECONDS:
        bad("hold_seconds", f"must be {MIN_HOLD_SECONDS} .. {MAX_HOLD_SECONDS} seconds")
    return out


def fee_violations(
    limits: PlatformLimits, commission_bps: int, tax_bps: int, tax_recipient: str
) -> list[Violation]:
    """Commission is the platform rate; tax is 0 without a recipient, else within the recipient's cap."""
    out: list[Violation] = []
    if commission_bps != limits.commission_bps:
        out.append(
            Violation(
                "CommissionMismatch",
                "commission_bps",
                "is not the platform rate",
                {"signed": commission_bps, "expected": limits.commission_bps},
            )
        )
    # the escrow's own rule; a cap is at most 5000 bps and the zero address never has one
    tax_ok = (
        tax_recipient.lower() == ZERO_ADDRESS if tax_bps == 0 else tax_bps <= min(limits.tax_cap, MAX_TAX_BPS)
    )
    if not tax_ok:
        out.append(
            Violation(
                "TaxNotAllowed",
                "tax_bps",
                f"the corridor's rate is above its recipient's cap on chain ({limits.tax_cap} bps)",
                {"taxRecipient": tax_recipient, "taxBps": tax_bps},
            )
        )
    return out


def funding_violations(terms: FundingTerms, limits: PlatformLimits, now: int) -> list[Violation]:
    """Every rule the escrow's ``_open`` would refuse ``terms`` by, at block time ``now``, in its order.

    Not covered here, because they depend on the moment of funding rather than the terms: the buyer's
    signature, ``validUntil`` against block time, and whether the order id is free.
    """
    out: list[Violation] = []
    if not limits.token_allowed:
        out.append(
            Violation(
                "TokenNotAllowed",
                "currency",
                "the token is not on the escrow's allowlist",
                {"token": terms.token},
            )
        )
    out += amount_violations(terms.amount, limits.token_supply)
    out += parties_violations(terms.buyer, terms.seller)
    if limits.paused:
        out.append(Violation("EnforcedPause", "order", "the escrow takes no new orders now (paused)"))
    out += fee_violations(limits, terms.commission_bps, terms.tax_bps, terms.tax_recipient)
    out += schedule_violations(now, terms.ship_by, terms.deliver_by, terms.hold_seconds)
    if limits.threshold > limits.usable_oracles:
        out.append(
            Violation(
                "InvalidThreshold",
                "order",
                f"the oracle threshold ({limits.threshold}) is above the oracles that count now"
                f" ({limits.usable_oracles})",
                {"threshold": limits.threshold, "activeOracles": limits.usable_oracles},
            )
        )
    return out


#: A new order's ship-by leaves the buyer at least this long to sign and fund (``validUntil < shipBy``).
MIN_SIGNING_SECONDS = 60


def signing_window_violations(now: int, ship_by: int) -> list[Violation]:
    """At creation, beyond the escrow's own rules: a ship-by so close that the authorization would expire
    before anyone could fund the order (it must end before ship-by) is refused too."""
    if now < ship_by < now + MIN_SIGNING_SECONDS:
        message = f"must be at least {MIN_SIGNING_SECONDS} s ahead, to leave time to sign and fund"
        return [Violation("InvalidSchedule", "ship_by", message, {"shipBy": ship_by})]
    return []


def default_schedule(now: int, ship_by: int | None, deliver_by: int | None) -> tuple[int, int]:
    """Ship-by and deliver-by with the platform defaults filled in (5 days to ship, 25 more to deliver).

    A defaulted deliver-by never lands past the escrow's one-year horizon (it is pulled back to it, so a far
    ship-by is reported as the merchant's own field, not as a default the merchant never chose).
    """
    ship = ship_by if ship_by is not None else now + DEFAULT_SHIP_WITHIN
    if deliver_by is not None:
        return ship, deliver_by
    return ship, min(ship + DEFAULT_DELIVER_WITHIN, now + MAX_SCHEDULE_SECONDS)


def authorization_deadline(now: int, valid_for_seconds: int, ship_by: int) -> int:
    """``validUntil`` of the buyer's authorization: ``valid_for`` from now, but never at or past ship-by.

    The escrow refuses funding at or after ship-by, so a signature valid beyond it would only invite a
    funding that must fail.
    """
    return max(now, min(now + valid_for_seconds, ship_by - 1))
