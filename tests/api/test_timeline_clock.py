"""An order's timeline sorts on one clock (issue 10, item 6): when the service recorded each fact, whatever
the chain's block time says; each item shows both ``at`` (its own clock) and ``recorded_at``."""

from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient

from app.client import demo
from app.client.demo import Wallets
from app.services.runtime import Runtime
from workers.tasks import sweep_all

UNIT = 10**6
DAY = 86_400


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_chain_facts_from_a_clock_days_ahead_sort_where_they_happened(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    runtime.chain.advance_time(5 * DAY)  # block time now runs days ahead of the wall clock
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    ref = "TL-1"
    order = d.create_and_fund(ref, 10 * UNIT)
    sscc = d.ship(order, 61)
    d.epcis(sscc, "shipping", d.chain_time() - 60, order_ref=ref)
    sweep_all()
    timeline = d.order(d.parties.merchant, order["id"])["timeline"]
    kinds = [item["kind"] for item in timeline]
    # the causal order: the funding was submitted, then mined; the EPCIS event came after the funding
    assert kinds.index("fund.submitted") < kinds.index("OrderFunded") < kinds.index("logistics.shipping")
    assert kinds.index("logistics.shipping") < kinds.index("OrderShipped")
    recorded = [_t(item["recorded_at"]) for item in timeline]
    assert recorded == sorted(recorded)
    funded = next(item for item in timeline if item["kind"] == "OrderFunded")
    assert (_t(funded["at"]) - _t(funded["recorded_at"])).total_seconds() > 4 * DAY  # both clocks shown
    service = next(item for item in timeline if item["kind"] == "fund.submitted")
    assert service["at"] == service["recorded_at"]
