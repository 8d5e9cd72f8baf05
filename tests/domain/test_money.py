"""SPEC §3 money rules: every split conserves the amount and floors each fee leg, for all uint128 amounts."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.domain.money import (
    BPS,
    MAX_COMMISSION_BPS,
    MAX_TAX_BPS,
    refund_split,
    release_split,
    ruling_split,
)

MAX_AMOUNT = 2**128 - 1
# Small amounts hide fee bugs (every leg floors to 0 below 10000 / bps): mix the edges with the whole range.
AMOUNTS = st.one_of(
    st.sampled_from([0, 1, 9_999, 10_000, 10_001, 2**64, MAX_AMOUNT]),
    st.integers(0, MAX_AMOUNT),
    st.integers(0, 10**9),
)
COMMISSION = st.one_of(st.sampled_from([0, 1, MAX_COMMISSION_BPS]), st.integers(0, MAX_COMMISSION_BPS))
TAX = st.one_of(st.sampled_from([0, 1, MAX_TAX_BPS]), st.integers(0, MAX_TAX_BPS))
SHARE = st.one_of(st.sampled_from([0, 1, 5_000, 9_999, BPS]), st.integers(0, BPS))


def _is_floor(leg: int, amount: int, bps: int) -> bool:
    """``leg == floor(amount * bps / 10000)`` without trusting the same expression."""
    return leg * BPS <= amount * bps < (leg + 1) * BPS


@given(AMOUNTS, COMMISSION, TAX)
@example(MAX_AMOUNT, MAX_COMMISSION_BPS, MAX_TAX_BPS)
@example(9_999, 1, 1)
@example(10_000, 1, 1)
def test_release_split_conserves_and_floors_each_leg(amount: int, commission_bps: int, tax_bps: int) -> None:
    split = release_split(amount, commission_bps, tax_bps)
    assert split.buyer_refund == 0
    assert split.commission + split.tax + split.seller_net == amount == split.total
    assert _is_floor(split.commission, amount, commission_bps)
    assert _is_floor(split.tax, amount, tax_bps)
    # Within the bounds the seller always keeps at least 20% (30% commission + 50% tax at most).
    assert split.seller_net * BPS >= amount * (BPS - commission_bps - tax_bps)


@given(AMOUNTS, SHARE, COMMISSION, TAX)
@example(MAX_AMOUNT, 1, MAX_COMMISSION_BPS, MAX_TAX_BPS)
@example(10_001, 9_999, 1, 1)
def test_ruling_split_refunds_floor_share_and_settles_rest_as_release(
    amount: int, share: int, commission_bps: int, tax_bps: int
) -> None:
    split = ruling_split(amount, share, commission_bps, tax_bps)
    assert split.buyer_refund + split.commission + split.tax + split.seller_net == amount
    assert _is_floor(split.buyer_refund, amount, share)
    gross = amount - split.buyer_refund
    assert _is_floor(split.commission, gross, commission_bps)
    assert _is_floor(split.tax, gross, tax_bps)
    assert split.seller_net >= 0


@given(AMOUNTS, COMMISSION, TAX)
def test_ruling_extremes_are_a_refund_and_a_release(amount: int, commission_bps: int, tax_bps: int) -> None:
    full_refund = ruling_split(amount, BPS, commission_bps, tax_bps)
    assert (full_refund.buyer_refund, full_refund.commission, full_refund.tax, full_refund.seller_net) == (
        amount,
        0,
        0,
        0,
    )
    assert ruling_split(amount, 0, commission_bps, tax_bps) == release_split(amount, commission_bps, tax_bps)


@given(AMOUNTS)
def test_refund_charges_neither_commission_nor_tax(amount: int) -> None:
    split = refund_split(amount)
    assert (split.buyer_refund, split.commission, split.tax, split.seller_net) == (amount, 0, 0, 0)


@given(AMOUNTS, COMMISSION, COMMISSION, TAX, TAX)
def test_fee_legs_grow_with_their_rate(amount: int, c1: int, c2: int, t1: int, t2: int) -> None:
    (c1, c2), (t1, t2) = sorted((c1, c2)), sorted((t1, t2))
    assert release_split(amount, c1, t1).commission <= release_split(amount, c2, t1).commission
    assert release_split(amount, c1, t1).tax <= release_split(amount, c1, t2).tax


@pytest.mark.parametrize(
    ("amount", "bps", "leg"),
    [(9_999, 1, 0), (10_000, 1, 1), (10_001, 1, 1), (19_999, 1, 1), (1, MAX_TAX_BPS, 0), (2, MAX_TAX_BPS, 1)],
)
def test_legs_floor_at_the_10000_edge(amount: int, bps: int, leg: int) -> None:
    assert release_split(amount, bps, 0).commission == leg
    assert release_split(amount, 0, bps).tax == leg


@pytest.mark.parametrize(
    "args", [(-1, 0, 0), (1, -1, 0), (1, 0, BPS + 1), (1, BPS + 1, 0)], ids=["neg", "neg-bps", "tax", "comm"]
)
def test_release_split_refuses_out_of_range_inputs(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        release_split(*args)


def test_ruling_split_refuses_share_above_10000() -> None:
    with pytest.raises(ValueError):
        ruling_split(100, BPS + 1, 0, 0)
