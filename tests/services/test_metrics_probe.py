"""The scrape's node probe: bounded wait, never two in flight (a hung node does not pile up threads)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from app.services import metrics


def test_a_hung_node_is_waited_for_once_and_not_asked_again_until_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = threading.Event()
    calls: list[int] = []

    def slow(_rt: Any) -> metrics.NodeReading:
        calls.append(1)
        answer.wait(30)
        return metrics.NodeReading(head=7, chain_time=1_700_000_000, gas_wallet_wei=10**18, relayer_nonce=3)

    monkeypatch.setattr(metrics, "_read_node", slow)
    probe = metrics._NodeProbe()
    rt: Any = SimpleNamespace(chain=SimpleNamespace(backend="rpc"))
    assert probe.read(rt, timeout=0.05) is None  # the scrape gives up on it
    assert probe.read(rt, timeout=0.05) is None  # and the next scrape does not start a second probe
    assert len(calls) == 1
    answer.set()
    assert probe._running is not None
    probe._running.result(timeout=30)  # the hung probe ends
    reading = probe.read(rt, timeout=5)  # the node answers again: a new probe, read in time
    assert reading == metrics.NodeReading(7, 1_700_000_000, 10**18, 3) and len(calls) == 2


def test_a_node_error_is_a_missing_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(_rt: Any) -> metrics.NodeReading:
        raise ConnectionError("refused")

    monkeypatch.setattr(metrics, "_read_node", failing)
    rt: Any = SimpleNamespace(chain=SimpleNamespace(backend="rpc"))
    assert metrics._NodeProbe().read(rt, timeout=5) is None
