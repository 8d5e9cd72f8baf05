"""Merchant webhook signatures (SPEC §6): ``TradeGuard-Signature: t=<unix>,v1=<hex>``."""

from __future__ import annotations

import re

import pytest

from app.feeds.outbound import sign_webhook, verify_webhook

SECRET = "whsec_test"
BODY = b'{"id":"evt_1"}'
T = 1_700_000_000


def test_signature_matches_the_spec_formula() -> None:
    # HMAC-SHA256("whsec_test", b'1700000000.{"id":"evt_1"}'), computed independently
    expected = "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
    assert sign_webhook(SECRET, BODY, T) == f"t={T},v1={expected}"


def test_signature_shape() -> None:
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", sign_webhook(SECRET, b"", 0))


def test_verifies_own_signature() -> None:
    assert verify_webhook(SECRET, BODY, sign_webhook(SECRET, BODY, T), now=T)


@pytest.mark.parametrize("now", [T - 300, T + 300])
def test_accepts_clock_skew_within_tolerance(now: int) -> None:
    assert verify_webhook(SECRET, BODY, sign_webhook(SECRET, BODY, T), now=now)


@pytest.mark.parametrize("now", [T - 301, T + 301])
def test_refuses_stale_or_future_timestamp(now: int) -> None:
    assert not verify_webhook(SECRET, BODY, sign_webhook(SECRET, BODY, T), now=now)


def test_custom_tolerance() -> None:
    header = sign_webhook(SECRET, BODY, T)
    assert verify_webhook(SECRET, BODY, header, now=T + 3600, tolerance=3600)
    assert not verify_webhook(SECRET, BODY, header, now=T + 3601, tolerance=3600)


def test_refuses_wrong_secret_and_tampered_body() -> None:
    header = sign_webhook(SECRET, BODY, T)
    assert not verify_webhook("other", BODY, header, now=T)
    assert not verify_webhook(SECRET, BODY + b" ", header, now=T)


def test_timestamp_is_signed() -> None:
    mac = sign_webhook(SECRET, BODY, T).split(",v1=")[1]
    assert not verify_webhook(SECRET, BODY, f"t={T + 1},v1={mac}", now=T)


def test_any_v1_entry_may_match_during_rotation() -> None:
    mac = sign_webhook(SECRET, BODY, T).split(",v1=")[1]
    assert verify_webhook(SECRET, BODY, f"t={T},v1={'0' * 64},v1={mac}", now=T)
    assert verify_webhook(SECRET, BODY, f"t={T}, v1={mac.upper()}", now=T)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"v1={'0' * 64}",
        f"t={T}",
        f"t=abc,v1={'0' * 64}",
        f"t=-{T},v1={'0' * 64}",
        f"t={T},t={T},v1={'0' * 64}",
        f"t={'9' * 5000},v1={'0' * 64}",
        f"t={T},v1=ünïcode",
        f"t=١٢٣,v1={'0' * 64}",
    ],
)
def test_malformed_headers_are_false_not_errors(header: str | None) -> None:
    assert verify_webhook(SECRET, BODY, header, now=T) is False


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        sign_webhook("", BODY, T)
    assert not verify_webhook("", BODY, sign_webhook(SECRET, BODY, T), now=T)


def test_negative_timestamp_is_refused() -> None:
    with pytest.raises(ValueError):
        sign_webhook(SECRET, BODY, -1)
