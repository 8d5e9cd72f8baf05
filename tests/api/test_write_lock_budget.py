"""An API process runs its blocking request work on ``settings.api_threads`` threads, not anyio's 40; and
every write transaction is reported on ``/metrics`` by the function that opened it (lock wait, hold)."""

from __future__ import annotations

import uuid

import anyio
from fastapi.testclient import TestClient

from app.services.runtime import Runtime


def test_the_thread_budget_is_the_setting(client: TestClient, runtime: Runtime) -> None:
    assert runtime.settings.api_threads == 8
    assert client.get("/healthz").status_code == 200
    assert client.portal is not None
    tokens = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert tokens == runtime.settings.api_threads


def test_write_transactions_are_on_metrics_by_site(client: TestClient, admin_key: str) -> None:
    made = client.post(
        "/v1/principals",
        json={"role": "oracle", "address": "0x" + "ab" * 20, "name": "lock-metrics"},
        headers={"Authorization": f"Bearer {admin_key}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    text = client.get("/metrics").text
    counts = {
        line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tradeguard_db_write_seconds_count{")
    }
    # the key's claim rides in the principal's own write; the kept answer is a write of its own
    for site in ("app.services.principals.register", "app.services.idempotency.finish"):
        for phase in ("wait", "hold"):
            assert counts.get(f'phase="{phase}",site="{site}"', 0) >= 1, (site, phase, sorted(counts))
