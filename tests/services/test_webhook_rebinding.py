"""DNS rebinding (issue 10, item 6): off a dev chain a webhook's host is resolved again when it is sent, an
internal address is refused then (not only at registration), and the POST goes to the address checked."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.services.outbox import webhooks
from app.services.runtime import Runtime
from tests.services.test_webhooks import T0, Merchant, Receiver, _merchant


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def production(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Merchant:
    """A merchant on a runtime whose dev routes are off (as on any chain that is not a dev chain)."""
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"dev": False}))
    assert not runtime.is_dev
    return _merchant(runtime)


def resolving(monkeypatch: pytest.MonkeyPatch, table: dict[str, str]) -> list[str]:
    """Make ``socket.getaddrinfo`` answer from ``table``; returns the names asked, in order."""
    asked: list[str] = []

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (table[host], port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def test_a_name_that_now_resolves_inside_is_not_posted_to(
    production: Merchant, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # registered while it resolved to a public address; now the name points at the service's own host
    port = receiver.server.server_address[1]
    production.endpoint(f"http://hooks.shop.example:{port}/tradeguard")
    production.emit()
    resolving(monkeypatch, {"hooks.shop.example": "127.0.0.1"})
    report = webhooks.deliver_due(production.rt, now=T0)
    assert report.attempted == 1 and report.retrying == 1
    assert receiver.requests == []  # nothing reached the internal address
    [attempt] = production.attempts(production.delivery().id)
    assert attempt.status_code is None
    assert attempt.error == "refused: 'hooks.shop.example' resolves to the internal address 127.0.0.1"


def test_the_post_goes_to_the_address_checked_with_the_original_host(
    production: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    production.endpoint("https://user:pw@hooks.shop.example:8443/tg?x=1")
    production.emit()
    asked = resolving(monkeypatch, {"hooks.shop.example": "93.184.216.34"})
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        assert webhooks.deliver_due(production.rt, client, now=T0).delivered == 1
    [request] = seen
    assert str(request.url) == "https://user:pw@93.184.216.34:8443/tg?x=1"
    assert request.headers["host"] == "hooks.shop.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.shop.example"  # TLS checks the name's certificate
    assert asked == ["hooks.shop.example"]  # one lookup: nothing left to race


def test_an_ipv6_literal_and_a_name_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving(monkeypatch, {"2606:4700::1111": "2606:4700::1111"})
    pinned = webhooks.pin_public_address("http://[2606:4700::1111]/hook")
    assert isinstance(pinned, webhooks.PinnedTarget)
    assert pinned.url == "http://[2606:4700::1111]/hook" and pinned.host_header == "[2606:4700::1111]"
    refused = webhooks.pin_public_address("http://gone.example/hook")
    assert isinstance(refused, str) and refused.startswith("refused: 'gone.example' does not resolve")


def test_on_a_dev_chain_local_receivers_still_work(runtime: Runtime, receiver: Receiver) -> None:
    merchant = _merchant(runtime)
    assert runtime.is_dev
    merchant.endpoint(receiver.url)
    merchant.emit()
    assert webhooks.deliver_due(merchant.rt, now=T0).delivered == 1 and len(receiver.requests) == 1
