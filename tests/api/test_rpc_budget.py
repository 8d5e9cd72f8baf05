"""JSON-RPC calls per funded order (issue 8): at most 8 with the service's caches on, none of them a call that
a burst of orders can share (chain id, tip, nonce, chain identity, the latest block) paid per order.

Counted at web3's request manager, so every call the service makes counts, whatever makes it: the create and
funding requests, the relayer's pass that sends and settles, the indexer's pass that marks the order funded.
The caches are the ones `tradeguard run` has by default, held for the test's length (a deterministic count,
not a timing); with them off (every other test), each reading goes to the node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.chain.client import ChainClient
from app.chain.eip712 import sign_typed_data
from app.client import demo
from app.client.demo import Wallets
from app.main import create_app
from app.services.bootstrap import prepare
from app.services.index import indexer
from app.services.outbox import relayer
from app.services.runtime import Runtime, build_runtime, set_runtime
from tests.api.conftest import auth
from tests.chain.conftest import anvil_binary
from tests.service_fixtures import make_settings
from workers.celery_app import celery_app, configure

pytestmark = [pytest.mark.anvil]

UNIT = 10**6
ORDERS = 12
BUDGET = 8


def _count(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    manager = runtime.chain.w3.manager
    real = manager._make_request

    def counting(method: Any, params: Any) -> Any:
        calls[str(method)] += 1
        return real(method, params)

    monkeypatch.setattr(manager, "_make_request", counting)
    return calls


@pytest.fixture
def service(tmp_path: Path, db_url: str) -> Iterator[tuple[Runtime, TestClient]]:
    """The service on an anvil node (a real JSON-RPC round trip per call), caches held for the test."""
    anvil_binary()
    node = ChainClient.start_anvil()
    url = str(node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    settings = make_settings(
        db_url,
        tmp_path,
        chain=url,
        head_cache_seconds=3600,
        platform_cache_seconds=3600,
        chain_check_seconds=3600,
    )
    rt = build_runtime(settings, chain=ChainClient.rpc(url, timeout=10))
    try:
        set_runtime(rt)
        configure(celery_app, settings)
        prepare(rt)
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield rt, client
    finally:
        set_runtime(None)
        rt.close()
        node.close()


def test_a_funded_order_costs_at_most_eight_json_rpc_calls(
    service: tuple[Runtime, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, client = service
    dev = runtime.dev_accounts
    wallets = Wallets(dev["merchant"], dev["buyer"], dev["arbitrator"], dev["oracle"].address)
    assert runtime.settings.admin_api_key is not None
    d = demo.Demo(client, runtime.settings.admin_api_key.get_secret_value(), wallets, say=lambda _line: None)
    buyer = wallets.buyer
    d.post(
        d.parties.admin, "/v1/dev/faucet", {"address": buyer.address, "amount": str(ORDERS * 5 * UNIT)}, 200
    )
    relayer.relay(runtime)
    indexer.sync(runtime)

    calls = _count(runtime, monkeypatch)
    for n in range(ORDERS):
        body = {
            "order_ref": f"RPC-{n}",
            "buyer": buyer.address,
            "amount": str(5 * UNIT),
            "currency": d.currency,
            "destination_country": "DE",
            "goods_category": "apparel",
        }
        created = client.post("/v1/orders", json=body, headers=auth(d.parties.merchant))
        assert created.status_code == 201, created.text
        sign = created.json()["sign"]
        funding = {
            "signature": "0x" + sign_typed_data(buyer.key, sign["authorization"]).hex(),
            "permit": {
                "deadline": int(sign["permit"]["message"]["deadline"]),
                "signature": "0x" + sign_typed_data(buyer.key, sign["permit"]).hex(),
            },
        }
        oid = created.json()["order"]["id"]
        sent = client.post(f"/v1/orders/{oid}/funding", json=funding, headers=auth(d.parties.buyer))
        assert sent.status_code == 202, sent.text
        # no broker here: the funding's kick ran the relayer's pass and that the indexer's (Celery eager)
        order = client.get(f"/v1/orders/{oid}", headers=auth(d.parties.buyer, None)).json()
        assert order["status"] == "funded", order

    per_order = sum(calls.values()) / ORDERS
    print(f"\n{per_order:.2f} JSON-RPC calls per funded order: {dict(calls.most_common())}")
    assert per_order <= BUDGET, calls
    # what a burst shares is read once, not per order
    for shared in ("eth_chainId", "eth_maxPriorityFeePerGas", "eth_getTransactionCount"):
        assert calls[shared] <= 1, calls
    # per order: the buyer's permit nonce once, the funding's simulation, its estimate, its broadcast, its
    # receipt, and the indexer's head and logs
    assert calls["eth_sendRawTransaction"] == ORDERS and calls["eth_getLogs"] <= ORDERS, calls
