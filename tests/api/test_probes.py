"""The outside probe's classes of bad input (types, sizes, encodings, addresses, time bounds, idempotency
races): every one is a 4xx problem+json and leaves every table as it was."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.client.demo import Wallets
from app.db.models import Order
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth
from tests.api.test_bad_input import counts
from tests.api.test_order_rules import body as order_body

OID = "0x" + "ab" * 32
SIG = "0x" + "11" * 65
HASH = "0x" + "22" * 32


# (role, method, path, body) per probe; the body callable gets the wallets
PROBES: dict[str, tuple[str, str, str, Any]] = {
    # types
    "amount as a JSON number": ("merchant", "POST", "/v1/orders", {"amount": 1000000}),
    "amount negative": ("merchant", "POST", "/v1/orders", {"amount": "-5"}),
    "amount zero": ("merchant", "POST", "/v1/orders", {"amount": "0"}),
    "amount with a decimal point": ("merchant", "POST", "/v1/orders", {"amount": "1.5"}),
    "amount with leading zeros": ("merchant", "POST", "/v1/orders", {"amount": "007"}),
    "amount null": ("merchant", "POST", "/v1/orders", {"amount": None}),
    "order_ref as a list": ("merchant", "POST", "/v1/orders", {"order_ref": ["a"]}),
    "valid_for as a float": ("merchant", "POST", "/v1/orders", {"valid_for_seconds": 86400.5}),
    "valid_for as a string": ("merchant", "POST", "/v1/orders", {"valid_for_seconds": "86400"}),
    "an unknown field": ("merchant", "POST", "/v1/orders", {"is_admin": True}),
    "share as a boolean": (
        "arbitrator",
        "POST",
        f"/v1/orders/{OID}/ruling",
        {"buyer_share_bps": False, "rationale_hash": HASH, "valid_until": 1, "signature": SIG},
    ),
    "valid_until as a string": (
        "buyer",
        "POST",
        f"/v1/orders/{OID}/confirm-receipt",
        {"signature": SIG, "valid_until": "1"},
    ),
    # sizes
    "order_ref too long": ("merchant", "POST", "/v1/orders", {"order_ref": "R" * 201}),
    "amount of 78 digits": ("merchant", "POST", "/v1/orders", {"amount": "1" + "0" * 77}),
    "valid_until above 2^63": (
        "buyer",
        "POST",
        f"/v1/orders/{OID}/confirm-receipt",
        {"signature": SIG, "valid_until": 2**64},
    ),
    "share above 10000": (
        "arbitrator",
        "POST",
        f"/v1/orders/{OID}/ruling",
        {"buyer_share_bps": 10_001, "rationale_hash": HASH, "valid_until": 1, "signature": SIG},
    ),
    "a short signature": (
        "buyer",
        "POST",
        f"/v1/orders/{OID}/confirm-receipt",
        {"signature": "0x" + "11" * 64, "valid_until": 1},
    ),
    "too many corridors": (
        "admin",
        "PUT",
        "/v1/corridors",
        {
            "items": [
                {"country": "DE", "category": f"c{i}", "tax_bps": 1, "recipient": "0x" + "1" * 40}
                for i in range(501)
            ]
        },
    ),
    # encodings
    "order_ref with a NUL": ("merchant", "POST", "/v1/orders", {"order_ref": "A\x00B"}),
    "order_ref with non-ASCII": ("merchant", "POST", "/v1/orders", {"order_ref": "订单-1"}),
    "order_ref with a newline": ("merchant", "POST", "/v1/orders", {"order_ref": "A\nB"}),
    "category in upper case": ("merchant", "POST", "/v1/orders", {"goods_category": "APPAREL"}),
    "country of three letters": ("merchant", "POST", "/v1/orders", {"destination_country": "DEU"}),
    "principal name with a NUL": (
        "admin",
        "POST",
        "/v1/principals",
        {"role": "buyer", "name": "a\x00", "address": "0x" + "3" * 40},
    ),
    # addresses
    "buyer of 39 hex digits": ("merchant", "POST", "/v1/orders", {"buyer": "0x" + "1" * 39}),
    "buyer not hex": ("merchant", "POST", "/v1/orders", {"buyer": "0x" + "g" * 40}),
    "buyer without 0x": ("merchant", "POST", "/v1/orders", {"buyer": "1" * 40}),
    "buyer with a bad checksum": (
        "merchant",
        "POST",
        "/v1/orders",
        {"buyer": "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"},
    ),
    "buyer the zero address": ("merchant", "POST", "/v1/orders", {"buyer": "0x" + "0" * 40}),
    "principal with a bad address": ("admin", "POST", "/v1/principals", {"role": "buyer", "address": "0x12"}),
    "order id not hex": ("buyer", "GET", "/v1/orders/0x" + "zz" * 32, None),
    "order id too short": ("buyer", "GET", "/v1/orders/0x1234", None),
    # time bounds
    "ship_by in year 1": ("merchant", "POST", "/v1/orders", {"ship_by": "0001-01-01T00:00:00Z"}),
    "ship_by in year 9999": ("merchant", "POST", "/v1/orders", {"ship_by": "9999-12-31T23:59:59Z"}),
    "ship_by without an offset": ("merchant", "POST", "/v1/orders", {"ship_by": "2031-01-01T00:00:00"}),
    "ship_by not a time": ("merchant", "POST", "/v1/orders", {"ship_by": "tomorrow"}),
    "ship_by as a number": ("merchant", "POST", "/v1/orders", {"ship_by": 1e300}),
    "deliver_by two years out": ("merchant", "POST", "/v1/orders", {"deliver_by": "2099-01-01T00:00:00Z"}),
    "hold of 91 days": ("merchant", "POST", "/v1/orders", {"hold_seconds": 91 * 86_400}),
    "valid_for of a second": ("merchant", "POST", "/v1/orders", {"valid_for_seconds": 1}),
    "attestation from year 2^63": (
        "oracle",
        "POST",
        "/v1/attestations",
        {
            "order_id": OID,
            "milestone": 1,
            "event_time": 2**63,
            "tracking_hash": HASH,
            "evidence_hash": HASH,
            "signature": SIG,
        },
    ),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_probe_is_a_4xx_problem_and_changes_nothing(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime, probe: str
) -> None:
    role, method, path, body = PROBES[probe]
    if path == "/v1/orders" and method == "POST":
        body = order_body(wallets, **body)
    before = counts(runtime)
    resp = client.request(method, path, json=body, headers=auth(getattr(keys, role)))
    assert 400 <= resp.status_code < 500, (probe, resp.status_code, resp.text)
    assert_problem(resp, resp.status_code)
    assert counts(runtime) == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"order_ref": "\xff\xfe"}', "application/json"),  # not UTF-8
        (b"\xef\xbb\xbf{}", "application/json"),  # a byte-order mark
        (b'{"order_ref": "a"', "application/json"),  # cut short
        (b"order_ref=a", "application/x-www-form-urlencoded"),
        (b"<order/>", "application/xml"),
        (b'{"a": 1, "a": 2}', "text/plain"),
        (b"", "application/json"),
        (b"NaN", "application/json"),
    ],
)
def test_bodies_that_are_not_json_objects(
    client: TestClient, keys: Keys, runtime: Runtime, content: bytes, content_type: str
) -> None:
    before = counts(runtime)
    resp = client.post(
        "/v1/orders", content=content, headers={**auth(keys.merchant), "Content-Type": content_type}
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert_problem(resp, resp.status_code)
    assert counts(runtime) == before


def test_a_non_ascii_idempotency_key_is_a_problem(client: TestClient, keys: Keys, wallets: Wallets) -> None:
    headers = {**auth(keys.merchant), "Idempotency-Key": "k" * 256}
    assert_problem(client.post("/v1/orders", json=order_body(wallets), headers=headers), 422)


def test_concurrent_retries_with_one_idempotency_key_create_one_order(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    headers = auth(keys.merchant, "race-key-1")
    body = order_body(wallets, order_ref="RACE-1")
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def post() -> None:
        resp = client.post("/v1/orders", json=body, headers=headers)
        with lock:
            answers.append((resp.status_code, resp.json()))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    statuses = sorted(status for status, _ in answers)
    assert len(answers) == 8 and set(statuses) <= {201, 409}, answers
    assert statuses.count(201) >= 1
    created = {a["order"]["id"] for s, a in answers if s == 201}
    assert len(created) == 1  # every 201 is the same order, replayed
    assert all(a["code"] == "idempotency_key_in_flight" for s, a in answers if s == 409)
    with runtime.db() as s:
        assert s.query(Order).filter(Order.order_ref == "RACE-1").count() == 1


def test_concurrent_creates_of_one_order_ref_without_a_key_store_one(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    body = order_body(wallets, order_ref="RACE-2")
    statuses: list[int] = []

    def post() -> None:
        statuses.append(client.post("/v1/orders", json=body, headers=auth(keys.merchant)).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [201] + [409] * 5, statuses
    with runtime.db() as s:
        assert s.query(Order).filter(Order.order_ref == "RACE-2").count() == 1


def test_readyz_is_503_while_the_gas_wallet_cannot_pay_the_minimum(
    client: TestClient, runtime: Runtime
) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    balance = runtime.chain.balance(runtime.relayer.address)
    price = runtime.chain.gas_price()
    runtime.settings = runtime.settings.model_copy(update={"gas_wallet_min_gas": balance // price + 1})

    body = assert_problem(client.get("/readyz"), 503, "gas_wallet_low")

    assert body["checks"]["gas_wallet"].startswith("low: ")
    assert runtime.relayer.address in body["detail"] and "top it up" in body["detail"]
    assert body["checks"]["database"] == "ok" and body["checks"]["chain_guard"] == "ok"
