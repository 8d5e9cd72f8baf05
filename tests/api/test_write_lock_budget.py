"""An API process runs its blocking request work on ``settings.api_threads`` threads, not anyio's 40; and
every write transaction is reported on ``/metrics`` by the function that opened it (lock wait, hold)."""

from __future__ import annotations

import threading
import uuid

import anyio
from fastapi.testclient import TestClient

from app.services.runtime import Runtime, get_runtime
from tests.api.conftest import auth


def test_the_thread_budget_is_the_setting(client: TestClient, runtime: Runtime) -> None:
    assert runtime.settings.api_threads == 8
    assert client.get("/healthz").status_code == 200
    assert client.portal is not None
    tokens = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert tokens == runtime.settings.api_threads


def test_reads_wait_for_their_own_narrower_budget(client: TestClient, admin_key: str) -> None:
    """Authentication and ``GET /v1/orders`` run on the reads' threads (1 on SQLite, 2 on PostgreSQL): while
    every one of them is taken, a GET waits (this runtime's embedded chain serves one request at a time, so
    nothing else is asked meanwhile), and it is answered once one is free."""
    from app.api.middleware import _READS

    assert client.get("/healthz").status_code == 200  # the budgets are set at the first request
    assert client.portal is not None
    limiter = client.portal.call(_READS.get)
    expected = 1 if str(client.portal.call(lambda: get_runtime().settings.db_url)).startswith("sqlite") else 2
    assert client.portal.call(lambda: limiter.total_tokens) == expected
    holders = [object() for _ in range(expected)]
    for holder in holders:
        client.portal.call(limiter.acquire_on_behalf_of_nowait, holder)
    answers: list[int] = []
    waiting = threading.Thread(
        target=lambda: answers.append(client.get("/v1/orders", headers=auth(admin_key)).status_code)
    )
    try:
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and answers == []  # queued behind the taken budget
    finally:
        for holder in holders:
            client.portal.call(limiter.release_on_behalf_of, holder)
    waiting.join(timeout=30)
    assert answers == [200]


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


def test_a_keys_use_is_one_lazy_update_at_most_once_a_window(client: TestClient, admin_key: str) -> None:
    """Authenticating is a read; ``last_used_at`` is refreshed by one UPDATE when it is due (then not
    again within :data:`~app.services.principals.LAST_USED_RESOLUTION`)."""
    from app.db.models import ApiKey
    from app.db.session import read_transaction
    from app.services import principals
    from app.services.runtime import get_runtime
    from tests.services.test_relayer_support import write_sites

    made = client.post(
        "/v1/principals",
        json={"role": "oracle", "address": "0x" + "cd" * 20, "name": "last-used"},
        headers={"Authorization": f"Bearer {admin_key}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    key = made.json()["api_key"]
    db = get_runtime().db
    with write_sites() as sites:
        first = principals.resolve(db, key)
        again = principals.resolve(db, key)
    assert first.id == again.id and first.name == "last-used"
    assert sites == ["app.services.principals.touch"]  # the first use only
    with read_transaction(db) as s:
        stamps = [k.last_used_at for k in s.query(ApiKey).filter(ApiKey.principal_id == first.id)]
    assert len(stamps) == 1 and stamps[0] is not None
