"""An EPCISQueryDocument (a SimpleEventQuery's answer, the form many systems export) is captured like an
EPCISDocument: its ``queryResults.resultsBody.eventList`` moves the order it names (issue 10, item 3)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.client import demo
from app.client.demo import Wallets
from app.db.models import InboxItem
from app.domain.encoding import rfc3339
from app.services.runtime import Runtime
from tests.api.conftest import assert_problem, auth
from workers.tasks import sweep_all

UNIT = 10**6
SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "epcis"
SAMPLE_9_6_1 = SAMPLE / "gs1-EPCIS__Example_9.6.1-ObjectEvent.jsonld"
LD_JSON = "application/ld+json"


def query_document(context: Any, events: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "@context": context,
            "type": "EPCISQueryDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-01-01T00:00:00Z",
            "epcisBody": {
                "queryResults": {
                    "queryName": "SimpleEventQuery",
                    "subscriptionID": "tradeguard-test",
                    "resultsBody": {"eventList": events},
                }
            },
        }
    ).encode()


def _inbox(rt: Runtime) -> int:
    with rt.db() as s:
        return int(s.scalar(select(func.count()).select_from(InboxItem)) or 0)


def test_gs1_sample_events_in_a_query_document_ship_and_deliver_the_order(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    if not SAMPLE_9_6_1.is_file():
        pytest.skip(f"sample data not available: {SAMPLE_9_6_1}")
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    order = d.create_and_fund("QD-1", 25 * UNIT)
    sample = json.loads(SAMPLE_9_6_1.read_bytes())
    # GS1's 9.6.1 shipping and receiving events as a query returns them, naming our order among their
    # bizTransactions, at times after the funding (the sample's are from 2005)
    now = d.chain_time()
    events = copy.deepcopy(sample["epcisBody"]["eventList"])
    for offset, ev in zip((-120, -60), events, strict=True):
        ev["eventTime"] = rfc3339(now + offset)
        ev["eventTimeZoneOffset"] = "+00:00"
        ev["bizTransactionList"].append({"type": "po", "bizTransaction": d.order_urn("QD-1")})
    body = query_document(sample["@context"], events)

    resp = client.post(
        "/v1/epcis/capture", content=body, headers={**auth(d.parties.oracle), "Content-Type": LD_JSON}
    )
    assert resp.status_code == 202, resp.text
    capture_id = resp.json()["capture_id"]
    capture = d.get(d.parties.oracle, f"/v1/epcis/capture/{capture_id}")
    assert capture["status"] == "processed", capture
    assert capture["outcome"]["matched"] and len(capture["outcome"]["intents"]) == 2, capture
    # the DELIVERED attestation waits for the SHIPPED one to be on chain; beat's next tick sends it
    sweep_all()
    view = d.order(d.parties.merchant, order["id"])
    assert view["status"] == "delivered" and view["release_at"]
    attested = [e["data"]["evidenceHash"] for e in view["timeline"] if e["kind"] == "Attested"]
    stored = [e["data"]["content_hash"] for e in view["timeline"] if e["kind"].startswith("logistics.")]
    assert attested == stored and len(stored) == 2  # each on-chain evidence hash is its event's RFC 8785 hash
    # the same query answer again is the same capture
    again = client.post(
        "/v1/epcis/capture", content=body, headers={**auth(d.parties.oracle), "Content-Type": LD_JSON}
    )
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert again.json()["capture_id"] == capture_id


def test_a_query_document_without_results_is_refused_and_not_stored(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    before = _inbox(runtime)
    body = json.dumps(
        {"type": "EPCISQueryDocument", "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery"}}}
    ).encode()
    resp = client.post("/v1/epcis/capture", content=body, headers=auth(d.parties.oracle))
    problem = assert_problem(resp, 422, "malformed")
    assert problem["field"] == "epcisBody.queryResults.resultsBody"
    assert _inbox(runtime) == before
