"""The default mode (``tradeguard run`` without a broker): requests only validate, store and answer; the
relay, inbox, indexer, keeper and webhook sweeps run on background threads, woken by the requests' kicks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.client import demo
from app.client.demo import Wallets
from app.client.wallet import NodeWallet
from app.services.inbox import ingestion
from app.services.outbox import relayer
from app.services.runtime import Runtime
from app.services.settlement import keeper
from workers import sweepers, tasks


@pytest.fixture
def background(runtime: Runtime) -> Iterator[sweepers.Sweepers]:
    stop = threading.Event()
    running = tasks.start_background(runtime, stop)
    try:
        yield running
    finally:
        running.join()
    assert not sweepers.running()


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, threads: list[str]) -> None:
    real = getattr(module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def test_the_demo_settles_with_every_sweep_on_the_sweeper_threads(
    client: TestClient,
    admin_key: str,
    wallets: Wallets,
    background: sweepers.Sweepers,
    monkeypatch: pytest.MonkeyPatch,
    runtime: Runtime,
) -> None:
    """The demo scenarios end as they do with inline sweeps, and no relay, inbox or keeper pass ran inside a
    request: each ran on its sweep's thread."""
    threads: dict[str, list[str]] = {"relay": [], "process_pending": [], "sweep": []}
    _spy(monkeypatch, relayer, "relay", threads["relay"])
    _spy(monkeypatch, ingestion, "process_pending", threads["process_pending"])
    _spy(monkeypatch, keeper, "sweep", threads["sweep"])

    # the fourth scenario's refund and withdrawal go from the parties' wallets straight to the chain: the
    # indexer's periodic sweep (nothing kicks it) brings them into the service
    wallet = NodeWallet(runtime.chain, runtime.lock)
    result = demo.run(client, admin_key, wallets, say=lambda _line: None, wallet=wallet)

    assert result["happy"]["status"] == "released"
    assert result["dispute"]["status"] == "resolved"
    assert result["timeout"]["status"] == "refunded"
    assert result["happy"]["split"]["seller_net"] == str(197_500_000)
    refund = result["refund"]
    assert refund["status"] == "refunded" and refund["split"]["buyer_refund"] == str(60 * 10**6)
    # the buyer withdraws every credit it has: this refund (60), 40 % of the dispute's 400, the timeout's 90
    assert (refund["withdrawn"], refund["credit_left"]) == (str((60 + 160 + 90) * 10**6), "0")
    assert set(threads["relay"]) == {"sweep-relay"}, threads["relay"]
    assert set(threads["process_pending"]) == {"sweep-inbox"}, threads["process_pending"]
    assert set(threads["sweep"]) == {"sweep-keeper"}, threads["sweep"]
    # the sweeps' threads run at the priority the settings give them (10 steps below the requests' by default)
    assert background.nice == runtime.settings.sweep_nice == 10
