"""Chain-side faults on a real anvil the test starts, under the service (in process, eager tasks, its API):

- the node SIGKILLed: restarted from its last atomic save on the same port, dev clock kept, nothing rewound;
- the chain replaced by a fresh anvil on the same port: indexer, relayer and keeper halt, ``/readyz`` and
  every route that needs the chain answer 503 with the reason, and the database stays byte for byte the same;
- a reorg deeper than the finality depth: the indexer halts (persistent flag, 503) instead of rewinding.

Each prints the measured recovery seconds (``pytest -s -m faults``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.chain.anvil import AnvilProcess
from app.chain.client import ChainClient
from app.client.demo import Demo, Wallets
from app.db.models import Base, KeyValue
from app.db.session import transaction
from app.errors import ChainHalted, ChainMismatch
from app.main import create_app
from app.services import chain_guard
from app.services.bootstrap import prepare
from app.services.index import indexer
from app.services.outbox import relayer
from app.services.runtime import Runtime, build_runtime, set_runtime
from app.services.settlement import keeper
from tests.api.conftest import assert_problem, auth
from tests.chain.conftest import anvil_binary
from tests.service_fixtures import make_settings
from workers.celery_app import celery_app, configure
from workers.tasks import sweep_all

pytestmark = [pytest.mark.faults, pytest.mark.anvil]

AMOUNT = 25_000_000


@dataclass
class Service:
    """The service in process over an anvil it does not own (``node``, which the test kills or replaces)."""

    node: ChainClient
    state_file: Path
    rt: Runtime
    client: TestClient
    demo: Demo

    @property
    def anvil(self) -> AnvilProcess:
        process = self.node._anvil
        assert process is not None
        return process

    def statuses(self) -> dict[str, str]:
        return {
            o["order_ref"]: o["status"]
            for o in self.demo.get(self.demo.parties.merchant, "/v1/orders?limit=100")["items"]
        }


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; returns the seconds it took (fails the test after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:  # the node or the service is still coming back
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def _saved(service: Service) -> bool:
    return service.anvil.saved_block == service.node.block_number()


def database(rt: Runtime) -> str:
    """Every row of every table, in a stable order, as one string (to compare the database byte for byte);
    an API key's ``last_used_at`` (bookkeeping of the requests the test makes) is left out."""
    rows: dict[str, list[str]] = {}
    with rt.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if c.name != "last_used_at"]
            found = conn.execute(select(*columns)).all()
            rows[table.name] = sorted(json.dumps(list(r), default=str, sort_keys=True) for r in found)
    return json.dumps(rows, sort_keys=True)


@pytest.fixture
def service(tmp_path: Path, db_url: str) -> Iterator[Service]:
    anvil_binary()
    state_file = tmp_path / "anvil-state.json"
    node = ChainClient.start_anvil(state_file=state_file)
    url = str(node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    settings = make_settings(db_url, tmp_path, chain=url, chain_check_seconds=0.5, finality_depth=3)
    rt: Runtime | None = None
    client: TestClient | None = None
    service: Service | None = None
    try:
        rt = build_runtime(settings, chain=ChainClient.rpc(url, timeout=10))
        set_runtime(rt)
        configure(celery_app, settings)
        prepare(rt)
        client = TestClient(create_app(), raise_server_exceptions=False)
        dev = rt.dev_accounts
        wallets = Wallets(dev["merchant"], dev["buyer"], dev["arbitrator"], dev["oracle"].address)
        assert settings.admin_api_key is not None
        demo = Demo(client, settings.admin_api_key.get_secret_value(), wallets, say=lambda _: None)
        service = Service(node, state_file, rt, client, demo)
        yield service
    finally:
        if client is not None:
            client.close()
        set_runtime(None)
        if rt is not None:
            rt.close()
        node.close()
        if service is not None:
            service.node.close()  # the node the test started in place of the replaced one, if any


def test_node_sigkill_restarts_from_state_with_the_dev_clock_and_nothing_rewound(service: Service) -> None:
    d = service.demo
    d.create_and_fund("K-1", AMOUNT)
    d.create_and_fund("K-2", AMOUNT)
    d.advance(6 * 3600)
    sweep_all()
    clock = d.chain_time()
    statuses = service.statuses()
    assert statuses == {"K-1": "funded", "K-2": "funded"}
    with transaction(service.rt.db) as s:
        cursor = indexer.cursor(s)
    assert cursor is not None
    _until(lambda: _saved(service), 10, "the state saved after the last block")

    pid = service.anvil.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    recovery = _until(
        lambda: service.anvil.restarts == 1 and service.client.get("/readyz").status_code == 200,
        30,
        "restarted from its state and ready again",
    )
    print(f"\nnode SIGKILL -> restarted from state, /readyz 200 again in {recovery:.2f} s")

    # the dev clock came back forward: block time never behind the last saved block
    assert d.chain_time() >= clock
    report = indexer.sync(service.rt)
    assert report.reorgs == 0 and report.cursor >= cursor
    assert service.statuses() == statuses
    # and new orders still fund (a clock back at wall time would refuse them: InvalidSchedule/Threshold)
    assert d.create_and_fund("K-3", AMOUNT)["status"] == "funded"
    sweep_all()
    assert service.statuses() == {**statuses, "K-3": "funded"}


def test_a_replaced_chain_halts_the_service_and_changes_nothing(service: Service) -> None:
    d, rt = service.demo, service.rt
    d.create_and_fund("M-1", AMOUNT)
    d.create_and_fund("M-2", AMOUNT)
    sweep_all()
    statuses = service.statuses()
    port = service.anvil.port
    before = database(rt)

    # the node goes away and a fresh chain answers on the same port. Its genesis is dated an hour later: an
    # anvil started within the same second as the first has the very same genesis block (its hash covers the
    # timestamp in seconds), which no identity check can tell apart (CI met it about one run in ten)
    first = service.node.get_block(0)
    assert first is not None
    service.node.close()
    fresh = ChainClient.start_anvil(port=port, extra_args=["--timestamp", str(first.timestamp + 3600)])
    try:
        # seen at the latest when the cached identity check expires (chain_check_seconds, 0.5 s here)
        seen = _until(lambda: service.client.get("/readyz").status_code == 503, 5, "/readyz 503")
        print(f"\nreplaced chain -> /readyz 503 after {seen:.2f} s")
        body = assert_problem(service.client.get("/readyz"), 503, "chain_mismatch")
        genesis = fresh.get_block(0)
        assert genesis is not None
        assert body["found_genesis"] == genesis.hash and body["expected_genesis"] != genesis.hash
        assert body["expected_chain_id"] == body["found_chain_id"] == 31337
        assert "genesis" in body["detail"] and "another chain" in body["detail"]

        assert_problem(service.client.get("/v1/chain"), 503, "chain_mismatch")
        order = {
            "order_ref": "M-3",
            "buyer": d.wallets.buyer.address,
            "amount": str(AMOUNT),
            "currency": d.currency,
            "destination_country": "DE",
            "goods_category": "apparel",
        }
        resp = service.client.post("/v1/orders", json=order, headers=auth(d.parties.merchant))
        assert_problem(resp, 503, "chain_mismatch")
        for work in (indexer.sync, relayer.relay, keeper.sweep):
            with pytest.raises(ChainMismatch):
                work(rt)
        sweep_all()  # what beat / the eager sweeper runs: the chain's sweeps are ignored, the rest go on
        assert service.statuses() == statuses  # reads still answer, from the database
        assert database(rt) == before

        # the right chain back on the port: the service resumes by itself
        fresh.close()
        service.node = ChainClient.start_anvil(state_file=service.state_file, port=port)
        recovery = _until(lambda: service.client.get("/readyz").status_code == 200, 10, "ready again")
        print(f"original chain back -> /readyz 200 in {recovery:.2f} s")
        assert indexer.sync(rt).reorgs == 0
        assert d.create_and_fund("M-3", AMOUNT)["status"] == "funded"
    finally:
        fresh.close()


def test_a_reorg_deeper_than_the_finality_depth_halts_instead_of_rewinding(service: Service) -> None:
    d, rt = service.demo, service.rt
    assert rt.settings.finality_depth == 3
    d.create_and_fund("D-1", AMOUNT)
    rt.chain.mine(2)
    sweep_all()
    assert service.statuses() == {"D-1": "funded"}
    with transaction(rt.db) as s:
        cursor = indexer.cursor(s)
        funded_block = s.execute(
            text("SELECT block_number FROM chain_events WHERE name = 'OrderFunded'")
        ).scalar_one()
    assert cursor is not None
    rt.chain.reorg(cursor - funded_block + 2)  # the funding's block and the one before it are replaced
    before = database(rt)

    with pytest.raises(ChainHalted) as raised:
        indexer.sync(rt)
    assert raised.value.code == "deep_reorg" and raised.value.details["finality_depth"] == 3
    assert database(rt) != before  # only the halt flag was written ...
    with transaction(rt.db) as s:
        flag = s.get(KeyValue, chain_guard.HALT_KEY)
        assert flag is not None and flag.value["code"] == "deep_reorg"
        value = dict(flag.value)
        s.delete(flag)
    assert database(rt) == before  # ... nothing else: no roll back, no order rewound
    with transaction(rt.db) as s:
        s.add(KeyValue(key=chain_guard.HALT_KEY, value=value))

    assert service.statuses() == {"D-1": "funded"}
    body = assert_problem(service.client.get("/readyz"), 503, "deep_reorg")
    assert "finality depth" in body["detail"]
    for work in (relayer.relay, keeper.sweep, indexer.sync):
        with pytest.raises(ChainHalted):
            work(rt)
    # the flag persists: another process (a new runtime on the same database) is halted too
    other = build_runtime(rt.settings, chain=ChainClient.rpc(str(rt.chain.w3.provider.endpoint_uri)))  # type: ignore[attr-defined]
    try:
        with pytest.raises(ChainHalted):
            indexer.sync(other)
    finally:
        other.engine.dispose()
