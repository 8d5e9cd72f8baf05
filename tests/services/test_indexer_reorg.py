"""Reorgs for real, on an anvil node: ``anvil_reorg`` and snapshot/revert replace blocks the indexer has seen.

Every test deploys its own stack on the module's node (a fresh database records a fresh deployment), so the
tests do not depend on each other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.chain.client import ChainClient
from app.db.models import ChainEvent, KeyValue, WebhookDelivery, WebhookEvent
from app.db.session import transaction
from app.domain.encoding import hex32
from app.errors import ChainHalted
from app.services import chain_guard
from app.services.index import audit, indexer
from app.services.outbox import relayer
from app.services.runtime import Runtime, build_runtime
from tests.chain.conftest import anvil_binary
from tests.service_fixtures import make_settings
from tests.services.test_indexer import Shop, fresh_index_of, indexed_state, open_shop

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def node() -> Iterator[ChainClient]:
    anvil_binary()
    chain = ChainClient.start_anvil()
    yield chain
    chain.close()


def _url(chain: ChainClient) -> str:
    return str(chain.w3.provider.endpoint_uri)


@pytest.fixture
def anvil_rt(node: ChainClient, db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on anvil with its own stack (deployed now) and no confirmation depth."""
    rt = build_runtime(make_settings(db_url, tmp_path, chain=_url(node), confirmations=0), chain=node)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def shop(anvil_rt: Runtime) -> Shop:
    return open_shop(anvil_rt)


def _block_of(rt: Runtime, name: str, order_id: bytes) -> ChainEvent:
    with transaction(rt.db) as s:
        return s.scalars(
            select(ChainEvent).where(ChainEvent.name == name, ChainEvent.order_id == hex32(order_id))
        ).one()


def test_anvil_reorg_drops_the_delivery_and_the_index_follows(shop: Shop, tmp_path: Path) -> None:
    rt, f = shop.rt, shop.factory
    auth = shop.api_order("R-1")
    order = f.ship(shop.fund(auth))
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "shipped"

    f.deliver(order)
    rt.chain.mine(1)
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "delivered"
    delivered = _block_of(rt, "OrderDelivered", auth.order_id)
    head = rt.chain.block_number()
    assert audit.run(rt).findings == []  # the audit keeps its sums through the delivery

    # the delivery's block and the one after are replaced by empty blocks at the same heights
    rt.chain.reorg(head - delivered.block_number + 1)
    assert rt.chain.block_number() == head
    replaced = rt.chain.get_block(delivered.block_number)
    assert replaced is not None and replaced.hash != delivered.block_hash

    report = indexer.sync(rt)
    assert report.reorgs == 1 and report.rolled_back_to is not None
    assert report.rolled_back_to < delivered.block_number and report.removed_events >= 2
    with transaction(rt.db) as s:
        assert s.get(KeyValue, audit.SUMS_KEY) is None  # the roll-back dropped them
    assert audit.run(rt).findings == []
    row = shop.row(auth.order_id)
    assert (row.status, row.release_at, row.state_word) == ("shipped", None, order.state)
    with transaction(rt.db) as s:
        assert not s.scalars(
            select(ChainEvent).where(ChainEvent.block_number >= delivered.block_number)
        ).all()
    # the webhook already emitted stays; the merchant is told it was taken back
    assert shop.webhook_types(auth.order_id) == [
        "order.funded",
        "order.shipped",
        "order.delivered",
        "order.reorged",
    ]
    with transaction(rt.db) as s:
        reorged = s.scalars(select(WebhookEvent).where(WebhookEvent.type == "order.reorged")).one()
        withdrawn = reorged.payload["withdrawn"]
        assert [w["type"] for w in withdrawn] == ["order.delivered"] and reorged.payload[
            "status"
        ] == "shipped"
        assert withdrawn[0]["tx_hash"] == delivered.tx_hash
    assert indexed_state(rt) == fresh_index_of(rt, tmp_path, shop)

    # delivered again on the new chain: a new fact with a new event id
    rt.escrow.sync(rt.deployment_block)
    f.deliver(f.current(order))
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "delivered"
    types = shop.webhook_types(auth.order_id)
    assert types == ["order.funded", "order.shipped", "order.delivered", "order.reorged", "order.delivered"]
    assert indexed_state(rt) == fresh_index_of(rt, tmp_path, shop)


def test_other_transactions_at_the_same_heights_replace_the_delivery(shop: Shop, tmp_path: Path) -> None:
    rt, f, a = shop.rt, shop.factory, shop.actors
    auth = shop.api_order("R-2")
    order = f.ship(shop.fund(auth))
    indexer.sync(rt)
    snap = rt.chain.snapshot()
    f.deliver(order)
    indexer.sync(rt)
    delivered = _block_of(rt, "OrderDelivered", auth.order_id)

    rt.chain.revert(snap)
    rt.escrow.sync(rt.deployment_block)
    rt.escrow.refund_by_seller(f.current(order), a.seller)  # mined at the delivery's old height
    refunded_block = rt.chain.block_number()
    assert refunded_block == delivered.block_number

    report = indexer.sync(rt)
    assert report.reorgs == 1
    row = shop.row(auth.order_id)
    assert (row.status, row.buyer_refund, row.seller_net) == ("refunded", auth.amount, 0)
    assert shop.webhook_types(auth.order_id) == [
        "order.funded",
        "order.shipped",
        "order.delivered",
        "order.reorged",
        "order.refunded",
    ]
    assert indexed_state(rt) == fresh_index_of(rt, tmp_path, shop)


def test_a_reorg_within_the_confirmation_depth_is_never_seen(shop: Shop) -> None:
    rt, f = shop.rt, shop.factory
    rt.settings = rt.settings.model_copy(update={"confirmations": 3})
    auth = shop.api_order("R-3")
    order = shop.fund(auth)
    rt.chain.mine(3)
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "funded"
    f.ship(order)
    indexer.sync(rt)
    rt.chain.reorg(1)  # the shipment was never final enough to index
    rt.chain.mine(3)
    report = indexer.sync(rt)
    assert report.reorgs == 0 and shop.row(auth.order_id).status == "funded"
    assert shop.webhook_types(auth.order_id) == ["order.funded"]


def test_two_indexers_at_once_apply_each_block_once(shop: Shop, tmp_path: Path) -> None:
    rt, f = shop.rt, shop.factory
    for i in range(4):
        order = shop.fund(shop.api_order(f"R-4{i}"))
        if i % 2:
            f.deliver(order)
        else:
            f.ship(order)
    second_chain = ChainClient.rpc(_url(rt.chain))
    second = build_runtime(rt.settings, chain=second_chain)
    reports: list[indexer.IndexReport] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(runtime: Runtime) -> None:
        try:
            barrier.wait(timeout=30)
            reports.append(indexer.sync(runtime, max_blocks=2))
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in (rt, second)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        second.engine.dispose()
    assert not errors and len(reports) == 2 and all(r.caught_up for r in reports)
    blocks = rt.chain.block_number() - rt.deployment_block + 1
    assert sum(r.ranges for r in reports) == -(-blocks // 2)  # every range applied by exactly one of them
    logs = rt.chain.get_events(rt.escrow.address, rt.deployment_block, rt.chain.block_number())
    with transaction(rt.db) as s:
        assert s.scalar(select(func.count()).select_from(ChainEvent)) == len(logs)
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 8
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 8
    assert indexed_state(rt) == fresh_index_of(rt, tmp_path, shop)


def test_the_common_ancestor_is_exact_after_one_long_range(shop: Shop) -> None:
    rt = shop.rt
    shop.fund(shop.api_order("R-5"))
    rt.chain.mine(20)
    report = indexer.sync(rt)
    assert report.ranges == 1  # one range: only blocks within the finality depth are stored besides its end
    head = rt.chain.block_number()
    rt.chain.reorg(2)
    report = indexer.sync(rt)
    assert report.reorgs == 1 and report.rolled_back_to == head - 2
    assert report.removed_events == 0


def test_a_reorg_deeper_than_the_finality_depth_halts_and_rewinds_nothing(shop: Shop) -> None:
    rt, f = shop.rt, shop.factory
    rt.settings = rt.settings.model_copy(update={"finality_depth": 3})
    auth = shop.api_order("R-6")
    order = shop.fund(auth)
    rt.chain.mine(3)
    f.ship(order)
    rt.chain.mine(1)
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "shipped"
    shipped = _block_of(rt, "OrderShipped", auth.order_id)
    head = rt.chain.block_number()
    before = indexed_state(rt)

    rt.chain.reorg(head - shipped.block_number + 3)  # 4 blocks: the shipment and the two below it
    with pytest.raises(ChainHalted) as raised:
        indexer.sync(rt)
    assert raised.value.code == "deep_reorg"
    assert raised.value.details == {"cursor": head, "finality_depth": 3, "node_head": head}
    assert indexed_state(rt) == before  # cursor, events and orders as they were: nothing rewound
    assert shop.webhook_types(auth.order_id) == ["order.funded", "order.shipped"]
    with pytest.raises(ChainHalted, match="finality depth"):
        indexer.sync(rt)  # the halt is persistent, not a one-off
    with pytest.raises(ChainHalted):
        relayer.relay(rt)

    # the operator looks, allows a deeper rewind and clears the flag: now it is rolled back
    rt.settings = rt.settings.model_copy(update={"finality_depth": 64})
    assert chain_guard.clear_halt(rt.db, rt.guard) is not None
    report = indexer.sync(rt)
    assert report.reorgs == 1 and report.rolled_back_to is not None
    assert report.rolled_back_to <= shipped.block_number - 3  # the highest stored block still on the chain
    assert shop.row(auth.order_id).status == "funded"
