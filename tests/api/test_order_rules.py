"""Order creation refuses every order the escrow would refuse at funding (one rule set in app/domain),
so a buyer is never asked to sign a dead order and no stored value can break a later read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.client.demo import Wallets
from app.domain.order_rules import MAX_AMOUNT, MAX_SCHEDULE_SECONDS
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth
from tests.api.test_bad_input import counts

ZERO = "0x" + "00" * 20


def body(wallets: Wallets, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "order_ref": "RULES-1",
        "buyer": wallets.buyer.address,
        "amount": "1000000",
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }
    values.update(overrides)
    return values


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def test_ship_by_in_year_9999_is_refused_and_lists_keep_working(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    before = counts(runtime)
    resp = client.post(
        "/v1/orders", json=body(wallets, ship_by="9999-12-31T23:59:59Z"), headers=auth(keys.merchant)
    )
    problem = assert_problem(resp, 422, "invalid_schedule")
    assert {e["field"] for e in problem["errors"]} == {"ship_by"}
    assert problem["error"] == "InvalidSchedule"
    assert counts(runtime) == before
    # nothing was stored, so nobody's listing can break
    assert client.get("/v1/orders", headers=auth(keys.merchant)).status_code == 200
    assert client.get("/v1/orders", headers=auth(keys.admin)).status_code == 200


def test_default_deliver_by_stays_inside_the_escrow_horizon(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    now = runtime.chain.now()
    ship_by = now + MAX_SCHEDULE_SECONDS - 3600  # legal; ship_by + 25 days would not be
    resp = client.post("/v1/orders", json=body(wallets, ship_by=iso(ship_by)), headers=auth(keys.merchant))
    assert resp.status_code == 201, resp.text
    message = resp.json()["sign"]["authorization"]["message"]
    assert message["shipBy"] == ship_by
    assert ship_by < message["deliverBy"] <= now + MAX_SCHEDULE_SECONDS + 60
    assert client.get("/v1/orders", headers=auth(keys.admin)).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"amount": "9" * 77}, "validation_error", "amount"),  # above 2^256-1 is not even a number here
        ({"amount": str(MAX_AMOUNT + 1)}, "invalid_amount", "amount"),
        ({"hold_seconds": 0}, "validation_error", "hold_seconds"),
        ({"hold_seconds": 3599}, "validation_error", "hold_seconds"),
        ({"hold_seconds": True}, "validation_error", "hold_seconds"),
        ({"hold_seconds": "3600"}, "validation_error", "hold_seconds"),
        ({"valid_for_seconds": False}, "validation_error", "valid_for_seconds"),
        ({"buyer": ZERO}, "invalid_parties", "buyer"),
        ({"ship_by": "2020-01-01T00:00:00Z"}, "invalid_schedule", "ship_by"),
        ({"ship_by": "2030-01-01T00:00:00"}, "validation_error", "ship_by"),  # no offset: ambiguous
        ({"deliver_by": "9999-12-31T23:59:59Z"}, "invalid_schedule", "deliver_by"),
    ],
)
def test_unfundable_terms_are_422_and_store_nothing(
    client: TestClient,
    keys: Keys,
    wallets: Wallets,
    runtime: Runtime,
    overrides: dict[str, Any],
    code: str,
    field: str,
) -> None:
    before = counts(runtime)
    resp = client.post("/v1/orders", json=body(wallets, **overrides), headers=auth(keys.merchant))
    problem = assert_problem(resp, 422, code)
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert counts(runtime) == before


def test_deliver_by_before_ship_by_names_both_broken_bounds(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    now = runtime.chain.now()
    resp = client.post(
        "/v1/orders",
        json=body(wallets, ship_by=iso(now - 10), deliver_by=iso(now - 20)),
        headers=auth(keys.merchant),
    )
    problem = assert_problem(resp, 422, "invalid_schedule")
    assert {e["field"] for e in problem["errors"]} == {"ship_by", "deliver_by"}


def test_a_corridor_above_the_chain_tax_cap_is_refused_at_creation(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    # a recipient the escrow has no cap for: any non-zero tax would revert TaxNotAllowed at funding
    stranger = runtime.dev_accounts["buyer2"].address
    items = [{"country": "FR", "category": "*", "tax_bps": 700, "recipient": stranger}]
    assert client.put("/v1/corridors", json={"items": items}, headers=auth(keys.admin)).status_code == 200
    before = counts(runtime)
    resp = client.post(
        "/v1/orders", json=body(wallets, destination_country="FR"), headers=auth(keys.merchant)
    )
    problem = assert_problem(resp, 422, "corridor_not_allowed")
    assert problem["error"] == "TaxNotAllowed"
    assert counts(runtime) == before


def test_a_ship_by_too_close_to_sign_and_fund_is_refused(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    before = counts(runtime)
    ship_by = runtime.chain.now() + 30
    resp = client.post("/v1/orders", json=body(wallets, ship_by=iso(ship_by)), headers=auth(keys.merchant))
    problem = assert_problem(resp, 422, "invalid_schedule")
    assert [e["field"] for e in problem["errors"]] == ["ship_by"]
    assert counts(runtime) == before


def test_authorization_expires_before_ship_by(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    now = runtime.chain.now()
    ship_by = now + 2 * 3600  # sooner than the default one-day validity
    resp = client.post("/v1/orders", json=body(wallets, ship_by=iso(ship_by)), headers=auth(keys.merchant))
    assert resp.status_code == 201, resp.text
    message = resp.json()["sign"]["authorization"]["message"]
    assert message["validUntil"] == ship_by - 1


def test_booleans_are_not_integers_anywhere(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    before = counts(runtime)
    items = [{"country": "FR", "category": "*", "tax_bps": True, "recipient": ZERO}]
    assert_problem(client.put("/v1/corridors", json={"items": items}, headers=auth(keys.admin)), 422)
    if runtime.is_dev:
        assert_problem(
            client.post("/v1/dev/advance-time", json={"seconds": True}, headers=auth(keys.admin)), 422
        )
    attestation = {
        "order_id": "0x" + "11" * 32,
        "milestone": True,
        "event_time": 1,
        "tracking_hash": "0x" + "22" * 32,
        "evidence_hash": "0x" + "33" * 32,
        "signature": "0x" + "44" * 65,
    }
    assert_problem(client.post("/v1/attestations", json=attestation, headers=auth(keys.oracle)), 422)
    assert counts(runtime) == before


def test_a_row_stored_before_the_rules_with_a_year_10000_time_does_not_break_reads(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    from sqlalchemy import update

    from app.db.models import Order

    resp = client.post("/v1/orders", json=body(wallets, order_ref="LEGACY-1"), headers=auth(keys.merchant))
    assert resp.status_code == 201, resp.text
    with runtime.db() as s, s.begin():  # what the old service let a merchant store
        s.execute(update(Order).where(Order.order_ref == "LEGACY-1").values(deliver_by=2**40, ship_by=2**39))
    for key in (keys.merchant, keys.admin):
        listing = client.get("/v1/orders", headers=auth(key))
        assert listing.status_code == 200, listing.text
    one = client.get(f"/v1/orders/{resp.json()['order']['id']}", headers=auth(keys.merchant))
    assert one.status_code == 200 and one.json()["deliver_by"] == "9999-12-31T23:59:59Z"
