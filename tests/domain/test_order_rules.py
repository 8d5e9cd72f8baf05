"""The funding rule set (app/domain/order_rules): the bounds of the escrow's ``_open``, each one named."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.order_rules import (
    DAY,
    MAX_AMOUNT,
    MAX_HOLD_SECONDS,
    MAX_SCHEDULE_SECONDS,
    MIN_HOLD_SECONDS,
    ZERO_ADDRESS,
    FundingTerms,
    PlatformLimits,
    authorization_deadline,
    default_schedule,
    funding_violations,
)

NOW = 1_800_000_000
BUYER, SELLER, TOKEN, TAX = "0x" + "b" * 40, "0x" + "5" * 40, "0x" + "7" * 40, "0x" + "a" * 40
TERMS = FundingTerms(
    buyer=BUYER,
    seller=SELLER,
    token=TOKEN,
    amount=10**6,
    commission_bps=200,
    tax_bps=1900,
    tax_recipient=TAX,
    ship_by=NOW + 5 * DAY,
    deliver_by=NOW + 30 * DAY,
    hold_seconds=3 * DAY,
)
LIMITS = PlatformLimits(
    token_allowed=True, commission_bps=200, tax_cap=5000, threshold=1, usable_oracles=1, token_supply=10**12
)


def codes(terms: FundingTerms = TERMS, limits: PlatformLimits = LIMITS) -> list[str]:
    return [v.code for v in funding_violations(terms, limits, NOW)]


def test_good_terms_break_no_rule() -> None:
    assert codes() == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 0}, "InvalidAmount"),
        ({"amount": MAX_AMOUNT + 1}, "InvalidAmount"),
        ({"amount": 10**12 + 1}, "AmountAboveSupply"),
        ({"buyer": ZERO_ADDRESS}, "InvalidParties"),
        ({"seller": ZERO_ADDRESS}, "InvalidParties"),
        ({"buyer": SELLER.upper().replace("0X", "0x")}, "InvalidParties"),
        ({"commission_bps": 201}, "CommissionMismatch"),
        ({"tax_bps": 5001}, "TaxNotAllowed"),
        ({"tax_bps": 0}, "TaxNotAllowed"),  # zero tax must name no recipient
        ({"ship_by": NOW}, "InvalidSchedule"),
        ({"deliver_by": NOW + 5 * DAY}, "InvalidSchedule"),
        ({"deliver_by": NOW + MAX_SCHEDULE_SECONDS + 1}, "InvalidSchedule"),
        ({"hold_seconds": MIN_HOLD_SECONDS - 1}, "InvalidSchedule"),
        ({"hold_seconds": MAX_HOLD_SECONDS + 1}, "InvalidSchedule"),
    ],
)
def test_each_bound_is_named(change: dict[str, object], code: str) -> None:
    assert codes(replace(TERMS, **change)) == [code]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"token_allowed": False}, "TokenNotAllowed"),
        ({"paused": True}, "EnforcedPause"),
        ({"threshold": 2}, "InvalidThreshold"),
        ({"tax_cap": 1899}, "TaxNotAllowed"),
    ],
)
def test_platform_state_is_checked(change: dict[str, object], code: str) -> None:
    assert codes(limits=replace(LIMITS, **change)) == [code]  # type: ignore[arg-type]


def test_violations_come_in_the_escrows_order() -> None:
    broken = replace(TERMS, amount=0, buyer=ZERO_ADDRESS, ship_by=NOW - 1, hold_seconds=0)
    assert codes(broken, replace(LIMITS, token_allowed=False)) == [
        "TokenNotAllowed",
        "InvalidAmount",
        "InvalidParties",
        "InvalidSchedule",
        "InvalidSchedule",
    ]


@given(ship_in=st.integers(1, MAX_SCHEDULE_SECONDS - 1))
def test_a_defaulted_deliver_by_is_always_fundable(ship_in: int) -> None:
    ship_by, deliver_by = default_schedule(NOW, NOW + ship_in, None)
    terms = replace(TERMS, ship_by=ship_by, deliver_by=deliver_by)
    assert codes(terms) == []


@given(valid_for=st.integers(60, 30 * DAY), ship_in=st.integers(1, 60 * DAY))
def test_an_authorization_never_outlives_ship_by(valid_for: int, ship_in: int) -> None:
    deadline = authorization_deadline(NOW, valid_for, NOW + ship_in)
    assert NOW <= deadline < NOW + ship_in or (ship_in == 1 and deadline == NOW)
    assert deadline <= NOW + valid_for
