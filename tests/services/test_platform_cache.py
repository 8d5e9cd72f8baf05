"""The escrow settings a new order is checked against are read once per ``platform_cache_seconds``."""

from __future__ import annotations

from typing import Any

import pytest

from app.services.runtime import Runtime
from app.services.trade import platform


def _count_reads(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    cls = type(runtime.escrow)
    real = cls.config

    def config(self: Any) -> dict[str, Any]:
        reads.append(1)
        return real(self)

    monkeypatch.setattr(cls, "config", config)
    return reads


def test_a_burst_of_orders_reads_the_settings_once_and_a_change_is_seen_after_forget(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"platform_cache_seconds": 3600})
    platform.forget(runtime)
    reads = _count_reads(runtime, monkeypatch)
    token = next(iter(runtime.tokens))
    customs = runtime.dev_accounts["customs"].address
    now = runtime.chain.now()

    first = platform.limits(runtime, token, customs, now)
    again = [platform.limits(runtime, token, customs, now + i) for i in range(20)]
    assert len(reads) == 1
    assert all(a == first for a in again)
    assert first.token_allowed and not first.paused and first.tax_cap > 0

    # the escrow is paused behind the cache's back: the cached answer stands until forgotten (or expired)
    deployer = runtime.dev_accounts["deployer"]
    receipt = runtime.chain.send(runtime.escrow.contract.functions.pause(), deployer)
    assert int(receipt["status"]) == 1
    assert not platform.limits(runtime, token, customs, now).paused
    platform.forget(runtime)
    assert platform.limits(runtime, token, customs, now).paused
    assert len(reads) == 2


def test_with_no_cache_every_order_reads_the_chain(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.settings.platform_cache_seconds == 0
    reads = _count_reads(runtime, monkeypatch)
    token = next(iter(runtime.tokens))
    customs = runtime.dev_accounts["customs"].address
    for _ in range(3):
        platform.limits(runtime, token, customs, runtime.chain.now())
    assert len(reads) == 3
