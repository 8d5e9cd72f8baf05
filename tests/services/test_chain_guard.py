"""The chain guard: a node of another chain, or the halt flag, stops the indexer, relayer and keeper, and
``/readyz`` and the chain's routes say why (503); nothing in the database changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.chain.client import BlockHeader
from app.db.models import Base, Intent, KeyValue
from app.db.session import transaction
from app.errors import ChainHalted, ChainMismatch
from app.main import create_app
from app.services import chain_guard
from app.services.bootstrap import prepare
from app.services.index import indexer
from app.services.outbox import relayer
from app.services.runtime import Runtime, build_runtime, set_runtime
from app.services.settlement import keeper
from tests.services.test_indexer import open_shop

OTHER_GENESIS = "0x" + "ab" * 32


def _record(rt: Runtime, **changes: Any) -> None:
    """Rewrite the database's deployment record (as if it had been made on another chain)."""
    with transaction(rt.db) as s:
        row = s.get(KeyValue, "deployment")
        assert row is not None
        value = {**dict(row.value), **changes}
        row.value = {k: v for k, v in value.items() if v is not None}


def _counts(rt: Runtime) -> dict[str, int]:
    with transaction(rt.db) as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


@pytest.fixture
def api(runtime: Runtime) -> Iterator[TestClient]:
    set_runtime(runtime)
    prepare(runtime)
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield client
    finally:
        set_runtime(None)


def test_a_node_of_another_chain_stops_indexer_relayer_and_keeper(runtime: Runtime) -> None:
    shop = open_shop(runtime)
    shop.fund(shop.api_order("G-1"))
    _record(runtime, genesis=OTHER_GENESIS)
    before = _counts(runtime)

    for work in (indexer.sync, relayer.relay, keeper.sweep):
        with pytest.raises(ChainMismatch) as raised:
            work(runtime)
        assert raised.value.code == "chain_mismatch"
        found = runtime.chain.get_block(0)
        assert found is not None
        assert raised.value.details == {
            "expected_chain_id": runtime.chain.chain_id,
            "found_chain_id": runtime.chain.chain_id,
            "expected_genesis": OTHER_GENESIS,
            "found_genesis": found.hash,
        }
    with pytest.raises(ChainMismatch):
        relayer.preflight(runtime, "release", {"orderId": "0x" + "11" * 32})
    assert _counts(runtime) == before
    with transaction(runtime.db) as s:
        assert indexer.cursor(s) is None  # the indexer never started on it


def test_a_mismatch_clears_by_itself_when_the_right_chain_answers(runtime: Runtime) -> None:
    genesis = runtime.chain.get_block(0)
    assert genesis is not None
    _record(runtime, genesis=OTHER_GENESIS)
    assert chain_guard.check(runtime, force=True) is not None
    runtime.guard.expected = None
    _record(runtime, genesis=genesis.hash)
    assert chain_guard.check(runtime, force=True) is None
    indexer.sync(runtime)


def test_the_identity_check_is_cached_for_chain_check_seconds(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"chain_check_seconds": 3600.0})
    calls: list[int] = []
    real = chain_guard._found

    def counting(rt: Runtime) -> tuple[int, str]:
        calls.append(1)  # one eth_chainId and one eth_getBlockByNumber(0)
        return real(rt)

    monkeypatch.setattr(chain_guard, "_found", counting)
    for _ in range(5):
        assert chain_guard.check(runtime) is None
    indexer.sync(runtime)
    keeper.sweep(runtime)
    assert len(calls) == 1
    assert chain_guard.check(runtime, force=True) is None
    assert len(calls) == 2


def test_the_halt_flag_persists_for_every_process_until_the_operator_clears_it(
    runtime: Runtime, tmp_path: Path
) -> None:
    error = chain_guard.halt(runtime, "deep_reorg", "reorg deeper than the finality depth", cursor=7)
    assert isinstance(error, ChainHalted) and error.code == "deep_reorg"
    other = build_runtime(runtime.settings, chain=runtime.chain)  # another process on the same database
    try:
        found = chain_guard.check(other)
        assert found is not None and (found.code, found.details) == ("deep_reorg", {"cursor": 7})
        with pytest.raises(ChainHalted, match="finality depth"):
            keeper.sweep(other)
        assert chain_guard.clear_halt(other.db) == found
        assert chain_guard.check(other, force=True) is None
        assert chain_guard.clear_halt(other.db) is None
    finally:
        other.engine.dispose()


def test_a_deployment_record_without_the_identity_gets_it_recorded(runtime: Runtime) -> None:
    _record(runtime, genesis=None, chain_id=None)
    assert chain_guard.check(runtime, force=True) is None
    genesis = runtime.chain.get_block(0)
    assert genesis is not None
    with transaction(runtime.db) as s:
        row = s.get(KeyValue, "deployment")
        assert row is not None
        assert (row.value["chain_id"], row.value["genesis"]) == (runtime.chain.chain_id, genesis.hash)


def test_readyz_and_the_chain_routes_answer_503_naming_the_reason(runtime: Runtime, api: TestClient) -> None:
    assert api.get("/readyz").status_code == 200
    _record(runtime, genesis=OTHER_GENESIS)
    runtime.guard.expected = None  # read once per process: this one "restarts" on the other record
    chain_guard.check(runtime, force=True)
    resp = api.get("/readyz")
    assert resp.status_code == 503 and resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["code"] == "chain_mismatch" and body["checks"]["chain_guard"] == "halted: chain_mismatch"
    assert body["expected_genesis"] == OTHER_GENESIS and body["found_genesis"] != OTHER_GENESIS
    assert OTHER_GENESIS in body["detail"]
    chain = api.get("/v1/chain")
    assert (chain.status_code, chain.json()["code"]) == (503, "chain_mismatch")
    assert api.get("/healthz").status_code == 200  # the process itself is alive

    _record(runtime, genesis=(runtime.chain.get_block(0) or BlockHeader(0, "", "", 0)).hash)
    runtime.guard.expected = None
    chain_guard.halt(runtime, "deep_reorg", "reorg deeper than the finality depth (3 blocks)")
    body = api.get("/readyz").json()
    assert (body["status"], body["code"]) == (503, "deep_reorg") and "finality depth" in body["detail"]


def test_tradeguard_chain_resume_clears_the_flag(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main
    from app.config import get_settings

    chain_guard.halt(runtime, "deep_reorg", "reorg deeper than the finality depth")
    monkeypatch.setenv("TRADEGUARD_DATABASE_URL", runtime.settings.db_url)
    get_settings.cache_clear()
    try:
        assert main(["chain", "resume"]) == 0
        assert main(["chain", "resume"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "cleared: deep_reorg: reorg deeper than the finality depth" in out
    assert "no chain halt was set" in out
    with transaction(runtime.db) as s:
        assert chain_guard.stored_halt(s) is None


def test_the_relayer_checks_uncached_before_it_sends_anything(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"chain_check_seconds": 3600.0})
    assert chain_guard.check(runtime) is None  # cached as fine for an hour
    with transaction(runtime.db) as s:
        intent_id = relayer.submit(s, "release", {"orderId": "0x" + "22" * 32}).id
    # the node starts answering for another chain (replaced within the cache window)
    monkeypatch.setattr(chain_guard, "_found", lambda rt: (rt.chain.chain_id, OTHER_GENESIS))
    keeper.sweep(runtime)  # the keeper only writes intents: its cached check still passes
    with pytest.raises(ChainMismatch):
        relayer.relay(runtime)
    with transaction(runtime.db) as s:
        intent = s.get(Intent, intent_id)
        assert intent is not None and (intent.status, intent.tx_hash, intent.attempts) == ("pending", None, 0)
