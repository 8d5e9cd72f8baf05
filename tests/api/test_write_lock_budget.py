"""An API process runs its blocking request work on ``settings.api_threads`` threads, not anyio's 40; and
every write transaction is reported on ``/metrics`` by the function that opened it (lock wait, hold)."""

from __future__ import annotations

import threading
import uuid

import anyio
import pytest
from fastapi.testclient import TestClient

from app.services.runtime import Runtime, get_runtime
from tests.api.conftest import auth


def test_the_thread_budget_is_the_setting(client: TestClient, runtime: Runtime) -> None:
    assert runtime.settings.api_threads == 8
    assert client.get("/healthz").status_code == 200
    assert client.portal is not None
    tokens = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert tokens == runtime.settings.api_threads


def test_reads_run_where_the_budget_says(
    client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /v1/orders`` reads on the event loop on SQLite, on a worker thread on PostgreSQL."""
    from app.services.trade import order_views

    seen: list[int] = []
    page = order_views.page
    monkeypatch.setattr(order_views, "page", lambda *a: (seen.append(threading.get_ident()), page(*a))[1])
    assert client.get("/v1/orders", headers=auth(admin_key)).status_code == 200
    assert client.portal is not None
    loop_thread = client.portal.call(threading.get_ident)
    sqlite = get_runtime().settings.db_url.startswith("sqlite")
    assert len(seen) == 1 and (seen[0] == loop_thread) == sqlite


@pytest.mark.parametrize("read_threads", [0, 1, 2])
def test_run_read_keeps_to_the_reads_budget(read_threads: int) -> None:
    """0: each read runs on the event loop, one after the other; n: reads run on worker threads, n of them at
    once. Each group of n reads meets at a barrier before any of them ends, so the budget must let n run
    together (a budget of fewer breaks the barrier after its timeout: an error, not a timing guess); the
    count of reads inside at any moment never passes n."""
    from app.api.middleware import ThreadBudget, run_read

    async def noop(scope: object, receive: object, send: object) -> None:
        pass

    running, most = [0], [0]
    guard = threading.Lock()
    together = threading.Barrier(max(read_threads, 1), timeout=30)

    def read() -> int:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        together.wait()  # n reads inside at once (0 and 1: passes at once)
        with guard:
            running[0] -= 1
        return threading.get_ident()

    async def main() -> tuple[int, list[int]]:
        await ThreadBudget(noop, threads=8, read_threads=read_threads)({"type": "http"}, noop, noop)
        threads: list[int] = []

        async def one() -> None:
            threads.append(await run_read(read))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        return threading.get_ident(), threads

    loop_thread, threads = anyio.run(main)
    assert len(threads) == 4
    if read_threads == 0:
        assert set(threads) == {loop_thread} and most[0] == 1
    else:
        assert loop_thread not in threads and most[0] == read_threads


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


def _oracle_key(client: TestClient, admin_key: str, byte: str, name: str) -> str:
    """The API key of a new oracle principal (address 0x``byte``…``byte``)."""
    made = client.post(
        "/v1/principals",
        json={"role": "oracle", "address": "0x" + byte * 20, "name": name},
        headers={"Authorization": f"Bearer {admin_key}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    key: str = made.json()["api_key"]
    return key


def test_a_keys_use_is_one_lazy_update_at_most_once_a_window(client: TestClient, admin_key: str) -> None:
    """Authenticating is a read; ``last_used_at`` is refreshed by one UPDATE when it is due (then not
    again within :data:`~app.services.principals.LAST_USED_RESOLUTION`)."""
    from app.db.models import ApiKey
    from app.db.session import read_transaction
    from app.services import principals
    from app.services.runtime import get_runtime
    from tests.services.test_relayer_support import write_sites

    key = _oracle_key(client, admin_key, "cd", "last-used")
    db = get_runtime().db
    with write_sites() as sites:
        first = principals.resolve(db, key)
        again = principals.resolve(db, key)
    assert first.id == again.id and first.name == "last-used"
    assert sites == ["app.services.principals.touch"]  # the first use only
    with read_transaction(db) as s:
        stamps = [k.last_used_at for k in s.query(ApiKey).filter(ApiKey.principal_id == first.id)]
    assert len(stamps) == 1 and stamps[0] is not None


def test_a_get_of_an_order_authenticates_and_reads_in_one_transaction(
    client: TestClient, admin_key: str
) -> None:
    """``principals.read_as``: the view runs in the session that authenticated its caller; a bad key fails
    before the view runs. Through the API: a bad key is a 401 even for an order that does not exist."""
    from sqlalchemy.orm import Session

    from app.errors import AuthError
    from app.services import principals

    key = _oracle_key(client, admin_key, "ef", "one-read")
    db = get_runtime().db
    seen: list[tuple[Session, str]] = []

    def view(s: Session, me: principals.Principal, tag: str) -> str:
        seen.append((s, me.name))
        assert s.in_transaction()
        return tag

    me, stale_key, out = principals.read_as(db, key, view, "tag")
    assert (me.name, out, [name for _, name in seen]) == ("one-read", "tag", ["one-read"])
    assert stale_key is not None  # a key's first use: its last_used_at is due
    with pytest.raises(AuthError):
        principals.read_as(db, key + "x", view, "never")
    assert len(seen) == 1

    missing = "/v1/orders/0x" + "00" * 32
    assert client.get(missing, headers=auth(key + "x")).status_code == 401
    assert client.get(missing).status_code == 401
    assert client.get(missing, headers=auth(admin_key)).status_code == 404
