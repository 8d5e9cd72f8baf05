"""The demo's three scenarios, through HTTP only: happy path, dispute with a split ruling, ship-by timeout."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.client import demo
from app.client.demo import Wallets

UNIT = 10**6


def test_three_scenarios_settle_with_the_exact_split(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    lines: list[str] = []
    result = demo.run(client, admin_key, wallets, say=lines.append)

    happy = result["happy"]
    assert happy["status"] == "released"
    # 250 tUSD to DE: commission 200 bps, tax 1900 bps (corridor DE/*), seller gets the rest
    assert happy["split"] == {
        "final": True,
        "buyer_refund": "0",
        "commission": str(5 * UNIT),
        "tax": str(47_500_000),
        "seller_net": str(197_500_000),
    }
    kinds = [item["kind"] for item in happy["timeline"]]
    for expected in ("OrderFunded", "OrderShipped", "OrderDelivered", "OrderReleased"):
        assert expected in kinds, kinds
    assert all(item.get("tx_hash") for item in happy["timeline"] if item["source"] == "chain")

    dispute = result["dispute"]
    assert dispute["status"] == "resolved"
    # 40 % of 400 back to the buyer; 240 settled like a release
    assert dispute["split"] == {
        "final": True,
        "buyer_refund": str(160 * UNIT),
        "commission": str(4_800_000),
        "tax": str(45_600_000),
        "seller_net": str(189_600_000),
    }

    timeout = result["timeout"]
    assert timeout["status"] == "refunded"
    assert timeout["split"]["buyer_refund"] == str(90 * UNIT)
    assert timeout["split"]["seller_net"] == "0"

    table = result["table"]
    assert "released" in table and "resolved" in table and "refunded" in table
    assert "197.50" in table and "189.60" in table and "90.00" in table
