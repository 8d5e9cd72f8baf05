"""RPC hygiene: on a node the chain id is read once, not before every call and estimate (web3's validation
middleware asked for it each time: 21 of ~48 JSON-RPC calls per funded order)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.chain.client import BlockHeader, ChainClient

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


def _counting(node: ChainClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    methods: list[str] = []
    real = node.w3.manager._make_request

    def counting(method: Any, params: Any) -> Any:
        methods.append(str(method))
        return real(method, params)

    monkeypatch.setattr(node.w3.manager, "_make_request", counting)
    return methods


def test_the_latest_block_and_tip_are_shared_within_max_age(
    node: ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    methods = _counting(node, monkeypatch)
    first = node.fees(max_age=3600)
    assert node.fees(max_age=3600) == first and node.now(max_age=3600) == node.latest(max_age=3600).timestamp
    assert methods.count("eth_getBlockByNumber") == 1 and methods.count("eth_maxPriorityFeePerGas") == 1
    # no max_age: always the node's answer (a new block is seen at once)
    node.w3.provider.make_request("evm_mine", [])
    assert node.latest().number == node.latest(max_age=3600).number == node.w3.eth.block_number
    node.forget_head()
    node.fees(max_age=3600)
    assert methods.count("eth_maxPriorityFeePerGas") == 2


class _NoTipNode:
    """A JSON-RPC node that knows blocks and the chain id but neither eth_maxPriorityFeePerGas nor
    eth_feeHistory (web3's fallback), answering -32601 like geth does for an unknown method."""

    def __enter__(self) -> str:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers["content-length"])))
                block = {"number": "0x5", "hash": "0x" + "11" * 32, "parentHash": "0x" + "22" * 32}
                answers: dict[str, Any] = {
                    "eth_chainId": {"result": "0x7"},
                    "eth_getBlockByNumber": {
                        "result": {**block, "timestamp": "0x10", "baseFeePerGas": "0x7"}
                    },
                }
                missing = {"code": -32601, "message": f"the method {req['method']} does not exist"}
                res = answers.get(req["method"], {"error": missing})
                body = json.dumps({"jsonrpc": "2.0", "id": req["id"], **res}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.filterwarnings("ignore:There was an issue with the method")
def test_a_node_without_a_tip_method_gets_the_usual_one_gwei() -> None:
    with _NoTipNode() as url:
        fees = ChainClient.rpc(url, timeout=5).fees()
    assert (fees.max_fee, fees.priority) == (2 * 7 + 10**9, 10**9)


def test_block_headers_read_as_plain_json_are_web3s(node: ChainClient) -> None:
    """Headers and the base fee come from the node's JSON without web3's result formatters: the same values
    web3's ``get_block`` gives, None past the head, and through web3's middleware (counted like any call)."""
    for _ in range(3):
        node.w3.provider.make_request("evm_mine", [])
    head = node.w3.eth.block_number
    for number in range(head + 1):
        block = node.w3.eth.get_block(number)
        assert node.get_block(number) == BlockHeader(
            number=number,
            hash="0x" + bytes(block["hash"]).hex(),
            parent_hash="0x" + bytes(block["parentHash"]).hex(),
            timestamp=int(block["timestamp"]),
        )
    assert node.get_block(head + 1) is None
    latest = node.w3.eth.get_block("latest")
    assert node.latest().number == latest["number"]
    fees = node.fees()
    assert fees.priority is not None and fees.max_fee - fees.priority == 2 * int(latest["baseFeePerGas"])


def test_a_block_read_goes_through_the_middleware(node: ChainClient, monkeypatch: pytest.MonkeyPatch) -> None:
    methods = _counting(node, monkeypatch)
    node.get_block(0)
    node.latest()
    assert methods == ["eth_getBlockByNumber", "eth_getBlockByNumber"]
