"""RPC hygiene: on a node the chain id is read once, not before every call and estimate (web3's validation
middleware asked for it each time: 21 of ~48 JSON-RPC calls per funded order)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.chain.client import ChainClient

pytestmark = [pytest.mark.anvil]


@pytest.fixture
def node() -> Iterator[ChainClient]:
    client = ChainClient.start_anvil()
    try:
        yield client
    finally:
        client.close()


def test_calls_and_estimates_do_not_ask_for_the_chain_id(
    node: ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    methods: list[str] = []
    real = node.w3.manager._make_request

    def counting(method: Any, params: Any) -> Any:
        methods.append(str(method))
        return real(method, params)

    monkeypatch.setattr(node.w3.manager, "_make_request", counting)
    a, b = node.w3.eth.accounts[:2]
    for _ in range(3):
        node.w3.eth.call({"from": a, "to": b, "data": "0x", "chainId": node.chain_id})
    node.w3.eth.estimate_gas({"from": a, "to": b, "value": 1, "chainId": node.chain_id})
    assert methods.count("eth_call") == 3 and methods.count("eth_estimateGas") == 1
    assert "eth_chainId" not in methods, methods
    assert node.chain_id == 31337
