"""The kept-alive JSON-RPC transport (app/chain/transport.py): the answers web3's own provider gives, a
connection per thread, a node that closed the connection or went away, HTTP errors, and the URLs it leaves to
web3's provider."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from app.chain.client import ChainClient
from app.chain.transport import KeepAliveHTTPProvider, NodeHTTPError, provider_for, serves
from app.errors import ChainUnavailable
from tests.threads import run_threads

pytestmark = [pytest.mark.anvil]


@pytest.fixture
def node(anvil_chain: ChainClient) -> ChainClient:
    return anvil_chain


def test_the_chain_client_uses_it_and_answers_as_web3s_provider(node: ChainClient) -> None:
    assert isinstance(node.w3.provider, KeepAliveHTTPProvider)
    plain = Web3(HTTPProvider(str(node.w3.provider.endpoint_uri)))
    for method, params in (
        ("eth_chainId", []),
        ("eth_getBlockByNumber", ["0x0", True]),
        ("eth_getBalance", [node.dev_accounts(1)[0].address, "latest"]),
        ("no_such_method", []),
    ):
        ours = node.w3.provider.make_request(method, params)
        theirs = plain.provider.make_request(method, params)  # type: ignore[arg-type]
        assert {k: v for k, v in ours.items() if k != "id"} == {k: v for k, v in theirs.items() if k != "id"}
    assert node.w3.eth.get_block("latest")["hash"] == plain.eth.get_block("latest")["hash"]


def test_one_connection_per_thread_many_threads_at_once(node: ChainClient) -> None:
    answers: list[int] = []
    lock = threading.Lock()

    def read() -> None:
        for _ in range(20):
            number = node.w3.eth.block_number
            with lock:
                answers.append(number)

    assert run_threads([read] * 8) == []
    assert len(answers) == 160 and all(isinstance(n, int) for n in answers)


class _Node:
    """A JSON-RPC server on a port of its own: answers eth_chainId with ``status``; ``close_after`` requests
    per connection it closes the connection (as a node restarting or timing out idle clients does)."""

    def __init__(self, status: int = 200, close_after: int | None = None) -> None:
        self.status, self.close_after, self.connections, self.requests = status, close_after, 0, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner.connections += 1
                self.served = 0

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                req = json.loads(self.rfile.read(int(self.headers["content-length"])))
                body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0x7"}).encode()
                self.served += 1
                owner.requests += 1
                self.send_response(owner.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if owner.close_after is not None and self.served >= owner.close_after:
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> _Node:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_connection_is_kept_between_calls_and_replaced_when_the_node_closed_it() -> None:
    with _Node() as kept:
        provider = KeepAliveHTTPProvider(kept.url, timeout=5)
        for _ in range(5):
            assert provider.make_request("eth_chainId", [])["result"] == "0x7"
        assert kept.connections == 1
    with _Node(close_after=1) as closing:  # the node hangs up after every answer, without saying so first
        provider = KeepAliveHTTPProvider(closing.url, timeout=5)
        for _ in range(5):
            assert provider.make_request("eth_chainId", [])["result"] == "0x7"
        assert closing.connections == 5


def test_an_http_error_status_is_an_oserror_retried_as_web3_retries_requests_http_errors() -> None:
    with _Node(status=503) as failing:
        provider = KeepAliveHTTPProvider(failing.url, timeout=5)
        provider.exception_retry_configuration.backoff_factor = 0
        with pytest.raises(NodeHTTPError, match="HTTP 503") as info:
            provider.make_request("debug_traceTransaction", ["0x00"])
        assert isinstance(info.value, OSError) and failing.requests == 1  # not on web3's retry list
        failing.requests = 0
        with pytest.raises(NodeHTTPError):
            provider.make_request("eth_chainId", [])
        assert failing.requests == provider.exception_retry_configuration.retries  # web3 retries it
        assert failing.connections == 1  # an error status keeps the connection


def test_a_node_that_went_away_is_chain_unavailable(node: ChainClient) -> None:
    gone = ChainClient.start_anvil()
    gone.w3.eth.block_number  # noqa: B018 (a kept-alive connection now exists)
    gone._anvil.stop()  # type: ignore[union-attr]
    with pytest.raises(ChainUnavailable):
        gone.now()
    gone.close()


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("http://127.0.0.1:8545", {}, True),
        ("https://rpc.example.org/v2/key", {}, True),
        ("https://user:secret@rpc.example.org", {}, False),
        ("https://rpc.example.org", {"https_proxy": "http://proxy:3128"}, False),
        ("http://127.0.0.1:8545", {"http_proxy": "http://proxy:3128", "no_proxy": "127.0.0.1"}, True),
        ("ws://127.0.0.1:8546", {}, False),
    ],
)
def test_urls_it_would_reach_differently_keep_web3s_provider(
    url: str, env: dict[str, str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert serves(url) is expected
    if url.startswith("http"):
        assert isinstance(provider_for(url, 5), KeepAliveHTTPProvider) is expected


def test_https_is_verified_against_the_bundle_requests_would_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi

    seen: list[str | None] = []
    real = ssl.create_default_context

    def spy(*args: Any, cafile: str | None = None, **kwargs: Any) -> ssl.SSLContext:
        seen.append(cafile)
        return real(*args, cafile=cafile, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", spy)
    for env, bundle in (({"REQUESTS_CA_BUNDLE": certifi.where()}, certifi.where()), ({}, certifi.where())):
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        conn, reused = KeepAliveHTTPProvider("https://rpc.example.org", timeout=5)._connection()
        assert isinstance(conn, http.client.HTTPSConnection) and not reused and seen[-1] == bundle
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        KeepAliveHTTPProvider("https://rpc.example.org", timeout=5)._connection()
        assert seen[-1] == "/etc/ssl/certs/ca-certificates.crt"
