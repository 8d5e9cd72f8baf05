"""The indexer on the embedded chain: projection of every lifecycle path, webhooks, idempotency, reorgs.

The helpers at the top are shared with ``test_indexer_reorg.py`` (the same scenarios on anvil).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from app.chain.escrow import Order as ChainOrder
from app.chain.escrow import OrderAuthorization
from app.db.models import (
    ChainEvent,
    IndexedBlock,
    KeyValue,
    Order,
    OrderColumns,
    Principal,
    TimelineEntry,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.db.session import read_transaction, transaction
from app.domain.encoding import hex32
from app.domain.ids import content_hash
from app.domain.money import release_split, ruling_split
from app.domain.order_state import OrderState
from app.errors import NotFound
from app.services.index import indexer, projection
from app.services.runtime import Runtime, build_runtime
from app.services.trade import orders
from tests import service_fixtures
from tests.factories import DAY, HOLD, Actors, OrderFactory
from tests.service_fixtures import PG_URL, make_settings

SECRET = "whsec_indexer_test"


# ------------------------------------------------------------------------------------------- helpers


def service_actors(rt: Runtime) -> Actors:
    """The runtime's dev roles as the factory's actors (the service stack registers these)."""
    d, extra = rt.dev_accounts, rt.chain.dev_accounts(14)
    return Actors(
        admin=d["deployer"],
        treasury=d["treasury"],
        buyer=d["buyer"],
        seller=d["merchant"],
        oracle1=d["oracle"],
        oracle2=extra[10],
        oracle3=extra[11],
        arbitrator=d["arbitrator"],
        regulator=d["regulator"],
        tax=d["customs"],
        relayer=d["relayer"],
        stranger=extra[12],
        buyer2=d["buyer2"],
        seller2=extra[13],
    )


@dataclass
class Shop:
    """A runtime with a merchant principal (and a webhook endpoint) and an order factory for its stack."""

    rt: Runtime
    factory: OrderFactory
    actors: Actors
    merchant_id: str

    @property
    def currency(self) -> str:
        return next(iter(self.rt.tokens.values())).symbol

    def api_order(self, ref: str, **overrides: Any) -> OrderAuthorization:
        """What ``POST /v1/orders`` does: a row awaiting funding with the terms the buyer will sign."""
        auth = self.factory.auth(order_ref=ref, **overrides)
        with transaction(self.rt.db) as s:
            s.add(order_row(auth, ref, self.merchant_id, self.currency))
        return auth

    def fund(self, auth: OrderAuthorization) -> ChainOrder:
        f, a = self.factory, self.actors
        buyer = f.account(auth.buyer)
        f.mint(buyer, auth.amount)
        f.approve(buyer, auth.amount)
        self.rt.escrow.fund([auth], [self.rt.escrow.sign_authorization(buyer.key, auth)], a.relayer)
        return self.rt.escrow.orders[auth.order_id]

    def row(self, order_id: bytes | str) -> Order:
        oid = order_id if isinstance(order_id, str) else hex32(order_id)
        with transaction(self.rt.db) as s:
            row = s.get(Order, oid)
            assert row is not None, oid
            return row

    def webhook_types(self, order_id: bytes) -> list[str]:
        with transaction(self.rt.db) as s:
            rows = s.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.order_id == hex32(order_id))
                .order_by(WebhookEvent.created_at, WebhookEvent.id)
            )
            return [r.type for r in rows]


def order_row(auth: OrderAuthorization, ref: str, merchant_id: str, currency: str) -> Order:
    return Order(
        id=hex32(auth.order_id),
        order_ref=ref,
        merchant_id=merchant_id,
        buyer=auth.buyer,
        seller=auth.seller,
        token=auth.token,
        currency=currency,
        amount=auth.amount,
        commission_bps=auth.commission_bps,
        tax_bps=auth.tax_bps,
        tax_recipient=auth.tax_recipient,
        destination_country="DE",
        goods_category="electronics",
        ship_by=auth.ship_by,
        deliver_by=auth.deliver_by,
        hold_seconds=auth.hold_seconds,
        valid_until=auth.valid_until,
        status="awaiting_funding",
    )


def open_shop(rt: Runtime, *, endpoint: bool = True) -> Shop:
    actors = service_actors(rt)
    [token] = rt.tokens.values()
    factory = OrderFactory(rt.chain, rt.escrow, rt.chain.contract("TestUSD", token.address), actors)
    with transaction(rt.db) as s:
        merchant = Principal(role="merchant", address=actors.seller.address, name="shop")
        s.add(merchant)
        s.flush()
        if endpoint:
            s.add(WebhookEndpoint(principal_id=merchant.id, url="http://127.0.0.1:9/hook", secret=SECRET))
        merchant_id = merchant.id
    return Shop(rt, factory, actors, merchant_id)


def indexed_state(rt: Runtime) -> dict[str, Any]:
    """Everything the indexer derives from the chain, without surrogate ids (to compare two databases)."""
    with transaction(rt.db) as s:
        events = [
            (e.block_number, e.block_hash, e.block_time, e.tx_hash, e.log_index, e.name, e.order_id, e.args)
            for e in s.scalars(select(ChainEvent).order_by(ChainEvent.block_number, ChainEvent.log_index))
        ]
        orders = {
            o.id: {c: getattr(o, c) for c in projection.PROJECTED_COLUMNS} for o in s.scalars(select(Order))
        }
        cursor = indexer.cursor(s)
    return {"events": events, "orders": orders, "cursor": cursor}


@contextmanager
def another_runtime(rt: Runtime, tmp_path: Path) -> Iterator[Runtime]:
    """A second runtime on a fresh database, attached to ``rt``'s chain and deployment."""
    with transaction(rt.db) as s:
        kv = s.get(KeyValue, "deployment")
        assert kv is not None
        record = dict(kv.value)
    folder = tmp_path / f"other-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    schema = None
    if service_fixtures.test_db_backend() == "postgresql":
        schema = f"t_{uuid.uuid4().hex[:16]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{folder / 'other.db'}"
    settings = make_settings(url, folder, chain=rt.settings.chain, confirmations=rt.settings.confirmations)
    other = build_runtime(settings, chain=rt.chain, deployment=record)
    try:
        yield other
    finally:
        other.engine.dispose()
        if schema is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def fresh_index_of(rt: Runtime, tmp_path: Path, shop: Shop) -> dict[str, Any]:
    """What a brand-new database gets from indexing ``rt``'s chain, with the same merchant and API rows."""
    with transaction(rt.db) as s:
        merchant = s.get(Principal, shop.merchant_id)
        assert merchant is not None
        api_rows = [o for o in s.scalars(select(Order)) if o.order_ref != o.id]
        copies = [
            Order(
                **{
                    c.key: getattr(o, c.key)
                    for c in Order.__table__.columns
                    if c.key not in projection.PROJECTED_COLUMNS
                }
            )
            for o in api_rows
        ]
        merchant_copy = Principal(
            id=merchant.id, role=merchant.role, address=merchant.address, name=merchant.name
        )
    with another_runtime(rt, tmp_path) as other:
        with transaction(other.db) as s:
            s.add(merchant_copy)
            s.flush()
            s.add_all(copies)
        indexer.sync(other)
        return indexed_state(other)


@pytest.fixture
def shop(runtime: Runtime) -> Shop:
    return open_shop(runtime)


# --------------------------------------------------------------------------------------------- tests


def test_follows_an_order_from_funding_to_release(shop: Shop) -> None:
    rt, f, a = shop.rt, shop.factory, shop.actors
    auth = shop.api_order("SO-1001")
    oid = hex32(auth.order_id)
    assert shop.row(oid).status == "awaiting_funding"

    order = shop.fund(auth)
    report = indexer.sync(rt)
    assert report.caught_up and report.events >= 1 and report.orders == 1
    row = shop.row(oid)
    assert (row.status, row.state_word, row.funded_at) == ("funded", order.state, order.terms.funded_at)
    assert row.release_at is None and row.closed_at is None

    order = f.ship(order)
    indexer.sync(rt)
    assert shop.row(oid).status == "shipped"

    order = f.deliver(order)
    indexer.sync(rt)
    row = shop.row(oid)
    release_at = OrderState.unpack(order.state).release_at
    assert (row.status, row.release_at) == ("delivered", release_at)
    assert release_at is not None and release_at == rt.chain.now() + HOLD

    result = rt.escrow.confirm_receipt(order, a.buyer)
    indexer.sync(rt)
    row = shop.row(oid)
    split = release_split(auth.amount, auth.commission_bps, auth.tax_bps)
    assert row.status == "released" and row.state_word == rt.escrow.orders[auth.order_id].state
    assert (row.buyer_refund, row.commission, row.tax, row.seller_net) == (
        0,
        split.commission,
        split.tax,
        split.seller_net,
    )
    block_time = rt.chain.get_block(int(result.receipt["blockNumber"]))
    assert block_time is not None and row.closed_at == block_time.timestamp
    assert row.release_at is None and not row.needs_review
    assert shop.webhook_types(auth.order_id) == [
        "order.funded",
        "order.shipped",
        "order.delivered",
        "order.released",
    ]


def test_stores_events_with_json_safe_args_blocks_and_the_cursor(shop: Shop) -> None:
    rt = shop.rt
    auth = shop.api_order("SO-1002")
    order = shop.fund(auth)
    report = indexer.sync(rt)
    head = rt.chain.block_number()
    assert (report.head, report.target, report.cursor) == (head, head, head)
    with transaction(rt.db) as s:
        funded = s.scalars(select(ChainEvent).where(ChainEvent.name == "OrderFunded")).one()
    header = rt.chain.get_block(funded.block_number)  # no RPC inside a write transaction (the tripwire)
    with transaction(rt.db) as s:
        funded = s.scalars(select(ChainEvent).where(ChainEvent.name == "OrderFunded")).one()
        assert header is not None
        assert (funded.block_hash, funded.block_time) == (header.hash, header.timestamp)
        assert funded.order_id == hex32(auth.order_id)
        assert funded.args["orderId"] == funded.order_id
        # the v2 state word carries the buyer tag in its top bits: too big for a JSON number, kept as a string
        assert funded.args["state"] == str(order.state)
        assert funded.args["terms"]["amount"] == auth.amount
        assert funded.args["terms"]["seller"] == shop.actors.seller.address
        json.dumps(funded.args)  # plain JSON all the way down
        # platform events (the deployment's admin calls) are stored too, without an order
        names = set(s.scalars(select(ChainEvent.name).where(ChainEvent.order_id.is_(None))))
        assert {"TokenAllowed", "OracleAdded", "ArbitratorAdded"} <= names
        assert s.get(IndexedBlock, head) is not None
        assert s.get(IndexedBlock, funded.block_number) is not None
        kv = s.get(KeyValue, indexer.CURSOR_KEY)
    header = rt.chain.get_block(head)
    assert kv is not None and header is not None
    assert kv.value == {"block": head, "hash": header.hash}


def test_json_safe_turns_big_ints_into_strings_and_bytes_into_hex() -> None:
    value = {
        "a": 2**53 - 1,
        "b": 2**53,
        "c": -(2**60),
        "d": b"\x01\xff",
        "e": (1, [True, None]),
        "f": {"g": 2**200},
    }
    assert projection.json_safe(value) == {
        "a": 2**53 - 1,
        "b": str(2**53),
        "c": str(-(2**60)),
        "d": "0x01ff",
        "e": [1, [True, None]],
        "f": {"g": str(2**200)},
    }


def test_running_twice_changes_nothing(shop: Shop) -> None:
    rt, f = shop.rt, shop.factory
    order = shop.fund(shop.api_order("SO-1003"))
    f.deliver(order)
    first = indexer.sync(rt)
    before = indexed_state(rt)
    with transaction(rt.db) as s:
        webhooks_before = s.scalar(select(func.count()).select_from(WebhookEvent))
    second = indexer.sync(rt)
    assert first.events > 0 and (second.events, second.orders, second.webhooks, second.ranges) == (0, 0, 0, 0)
    assert indexed_state(rt) == before
    with transaction(rt.db) as s:
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == webhooks_before


def test_small_ranges_give_the_same_result_as_one(shop: Shop, tmp_path: Path) -> None:
    rt, f = shop.rt, shop.factory
    order = shop.fund(shop.api_order("SO-1004"))
    f.ship(order)
    other = shop.fund(shop.api_order("SO-1005"))
    f.dispute(other)
    with transaction(rt.db) as s:
        assert indexer.cursor(s) is None
    report = indexer.sync(rt, max_blocks=3)
    blocks = rt.chain.block_number() - rt.deployment_block + 1
    assert report.ranges == -(-blocks // 3) and report.caught_up
    assert indexed_state(rt) == fresh_index_of(rt, tmp_path, shop)


def test_max_ranges_bounds_a_pass(shop: Shop) -> None:
    rt = shop.rt
    shop.fund(shop.api_order("SO-1006"))
    report = indexer.sync(rt, max_blocks=2, max_ranges=2)
    assert report.ranges == 2 and not report.caught_up and report.cursor == rt.deployment_block - 1 + 4
    assert indexer.sync(rt).caught_up


def test_dispute_deadlines_evidence_and_split_ruling(shop: Shop) -> None:
    rt, f, a = shop.rt, shop.factory, shop.actors
    auth = shop.api_order("SO-1007")
    order = f.dispute(f.ship(shop.fund(auth)))
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    disputed_at = OrderState.unpack(order.state).disputed_at
    cfg = rt.escrow.config()
    assert (row.status, row.disputed_at, row.seller_evidence) == ("disputed", disputed_at, False)
    assert disputed_at is not None
    assert row.response_deadline == disputed_at + cfg["response_seconds"]
    assert row.arbitration_deadline == disputed_at + cfg["arbitration_seconds"]

    rt.escrow.submit_evidence(order, a.seller, content_hash(b"tracking proof"))
    indexer.sync(rt)
    assert shop.row(auth.order_id).seller_evidence is True

    order = f.current(order)
    rt.escrow.rule(order, a.arbitrator, 2_500, content_hash(b"ruling"))
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    split = ruling_split(auth.amount, 2_500, auth.commission_bps, auth.tax_bps)
    assert row.status == "resolved"
    assert (row.buyer_refund, row.commission, row.tax, row.seller_net) == (
        split.buyer_refund,
        split.commission,
        split.tax,
        split.seller_net,
    )
    assert (
        row.disputed_at == disputed_at and row.response_deadline is None and row.arbitration_deadline is None
    )
    assert shop.webhook_types(auth.order_id) == [
        "order.funded",
        "order.shipped",
        "order.disputed",
        "order.resolved",
    ]


def test_refund_credits_the_whole_amount_to_the_buyer(shop: Shop) -> None:
    rt, a = shop.rt, shop.actors
    auth = shop.api_order("SO-1008")
    rt.escrow.refund_by_seller(shop.fund(auth), a.seller)
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    assert (row.status, row.buyer_refund, row.commission, row.tax, row.seller_net) == (
        "refunded",
        auth.amount,
        0,
        0,
        0,
    )
    with transaction(rt.db) as s:
        refunded = s.scalars(select(WebhookEvent).where(WebhookEvent.type == "order.refunded")).one()
        assert refunded.payload["split"] == {
            "buyer_refund": str(auth.amount),
            "commission": "0",
            "tax": "0",
            "seller_net": "0",
        }
        assert refunded.payload["refund_reason"] == "seller_refund"
        assert refunded.payload["amount"] == str(auth.amount)


def test_another_buyers_order_under_our_order_id_is_not_ours(shop: Shop) -> None:
    """Escrow v2 keys orders by (order id, buyer): someone funding our order id first under another buyer
    blocks nothing, and that order's events (funded first, then refunded) never reach our row."""
    rt, a = shop.rt, shop.actors
    auth = shop.api_order("SO-1009")
    squat = replace(shop.factory.auth(order_ref="SO-1009-squat", buyer=a.buyer2), order_id=auth.order_id)
    rt.escrow.refund_by_seller(shop.fund(squat), a.seller)
    order = shop.fund(auth)
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    assert (row.status, row.buyer, row.needs_review) == ("funded", a.buyer.address, False)
    assert row.state_word == order.state
    rt.escrow.refund_by_seller(order, a.seller)
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "refunded"
    # the view's plain-column read of the events (order_facts) keeps exactly what order_events keeps
    oid = hex32(auth.order_id)
    with read_transaction(rt.db) as s:
        ours = s.get(Order, oid)
        assert ours is not None
        facts = indexer.order_facts(s, ours)
        events = indexer.order_events(s, oid)
        every = s.scalars(select(ChainEvent).where(ChainEvent.order_id == oid)).all()
    fields = ("name", "args", "order_id", "tx_hash", "block_number", "log_index", "block_time", "recorded_at")
    assert [tuple(f) for f in facts] == [tuple(getattr(e, k) for k in fields) for e in events]
    assert [f.name for f in facts if f.name == "OrderFunded"] == ["OrderFunded"]
    assert facts[0].args["terms"]["buyer"] == a.buyer.address
    assert len(every) > len(facts)  # the squatter's funding and refund are indexed, and left out


def test_a_view_reads_the_same_order_as_columns_as_the_orm_loads_it(shop: Shop) -> None:
    """orders.read_visible (a row of the order's columns, for views) answers what get_visible (the ORM
    object) answers: the same public view, the same 404 for a party that may not see the order."""
    rt, a = shop.rt, shop.actors
    order = shop.fund(shop.api_order("SO-1011"))
    rt.escrow.refund_by_seller(order, a.seller)
    indexer.sync(rt)
    oid = hex32(order.order_id)
    buyer = Principal(id="p-buyer", role="buyer", address=a.buyer.address, name="b")
    other = Principal(id="p-other", role="buyer", address=a.buyer2.address, name="o")
    assert set(OrderColumns.__annotations__) <= set(Order.__table__.columns.keys())
    with read_transaction(rt.db) as s:
        # the upper-case id, as a client may send it
        row = orders.read_visible(s, buyer, oid.upper().replace("0X", "0x"))
        assert orders.public(row) == orders.public(orders.get_visible(s, buyer, oid))
        assert orders.public(row)["status"] == "refunded" and row.seller_net == 0
        for read in (orders.read_visible, orders.get_visible):
            with pytest.raises(NotFound):
                read(s, other, oid)


def test_freeze_and_unfreeze_move_the_timers(shop: Shop) -> None:
    rt, f, a = shop.rt, shop.factory, shop.actors
    auth = shop.api_order("SO-1009")
    order = f.deliver(shop.fund(auth))
    release_at = OrderState.unpack(order.state).release_at
    assert release_at is not None
    rt.escrow.freeze(order, a.regulator, 2 * DAY, content_hash(b"sanctions check"))
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    assert (row.status, row.frozen_until) == ("delivered", rt.chain.now() + 2 * DAY)
    assert row.release_at == release_at + 2 * DAY
    rt.escrow.unfreeze(f.current(order), a.regulator)
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    state = OrderState.unpack(f.current(order).state)
    assert row.frozen_until == rt.chain.now() == state.frozen_until
    assert row.release_at == state.release_at and release_at < row.release_at < release_at + 2 * DAY
    assert shop.webhook_types(auth.order_id)[-2:] == ["order.frozen", "order.unfrozen"]


def test_webhooks_carry_stable_ids_and_reach_the_merchant_endpoints(shop: Shop) -> None:
    rt, f = shop.rt, shop.factory
    auth = shop.api_order("SO-1010")
    f.ship(shop.fund(auth))
    indexer.sync(rt)
    with transaction(rt.db) as s:
        events = list(s.scalars(select(WebhookEvent).order_by(WebhookEvent.created_at)))
        assert [e.type for e in events] == ["order.funded", "order.shipped"]
        assert {e.principal_id for e in events} == {shop.merchant_id}
        chain_events = {
            e.name: e for e in s.scalars(select(ChainEvent).where(ChainEvent.order_id == events[0].order_id))
        }
        funded = chain_events["OrderFunded"]
        assert events[0].id == projection.stable_id(
            funded.block_hash, funded.tx_hash, str(funded.log_index), "order.funded"
        )
        assert events[1].payload["status"] == "shipped" and events[1].payload["previous_status"] == "funded"
        assert events[1].payload["tx_hash"] == chain_events["OrderShipped"].tx_hash
        assert events[1].payload["currency"] == shop.currency and events[1].payload["amount"] == str(
            auth.amount
        )
        deliveries = list(s.scalars(select(WebhookDelivery)))
        assert sorted(d.event_id for d in deliveries) == sorted(e.id for e in events)
        assert {d.status for d in deliveries} == {"pending"}


def test_order_funded_on_chain_gets_a_row_when_the_seller_is_our_merchant(shop: Shop) -> None:
    rt = shop.rt
    order = shop.factory.fund(order_ref="direct-1")  # funded on chain, never through the API
    indexer.sync(rt)
    row = shop.row(order.order_id)
    assert (row.merchant_id, row.order_ref, row.status) == (shop.merchant_id, row.id, "funded")
    assert (row.amount, row.buyer, row.currency) == (order.terms.amount, order.terms.buyer, shop.currency)
    assert shop.webhook_types(order.order_id) == ["order.funded"]


def test_order_of_an_unknown_seller_keeps_only_its_events(shop: Shop) -> None:
    rt, f, a = shop.rt, shop.factory, shop.actors
    order = f.fund(seller=a.seller2, order_ref="elsewhere-1")
    indexer.sync(rt)
    oid = hex32(order.order_id)
    with transaction(rt.db) as s:
        assert s.get(Order, oid) is None
        assert [e.name for e in s.scalars(select(ChainEvent).where(ChainEvent.order_id == oid))] == [
            "OrderFunded"
        ]
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 0


def test_a_row_created_after_funding_catches_up(shop: Shop) -> None:
    rt, f, a = shop.rt, shop.factory, shop.actors
    auth = f.auth(seller=a.seller2, order_ref="late-1")  # seller2 is nobody's merchant yet
    shop.fund(auth)
    indexer.sync(rt)
    with transaction(rt.db) as s:
        merchant = Principal(role="merchant", address=a.seller2.address, name="late shop")
        s.add(merchant)
        s.flush()
        s.add(order_row(auth, "late-1", merchant.id, shop.currency))
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    assert (row.status, row.order_ref) == ("funded", "late-1")
    assert shop.webhook_types(auth.order_id) == ["order.funded"]


def test_a_pass_with_nothing_new_takes_no_write_lock(shop: Shop) -> None:
    """The catch-up of late rows is looked for in a read transaction: an indexer pass that finds no new
    block and no row to catch up opens no write transaction (it took the write lock every pass)."""
    from tests.services.test_relayer_support import write_sites

    shop.fund(shop.factory.auth(order_ref="quiet-1"))
    indexer.sync(shop.rt)
    with write_sites() as sites:
        indexer.sync(shop.rt)
    assert sites == []


def test_a_range_of_several_orders_reads_their_events_rows_and_webhooks_once(shop: Shop) -> None:
    """The orders a range touches are projected with one query each for their events, their rows and their
    emitted webhooks, not three or more per order under the write lock; the result is the same."""
    from sqlalchemy import event as sa_event

    engine = shop.rt.db.kw["bind"]
    auths = [shop.api_order(f"MANY-{i}") for i in range(3)]
    for auth in auths:
        shop.fund(auth)
    ran: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        ran.append(" ".join(statement.split()))

    sa_event.listen(engine, "before_cursor_execute", note)
    try:
        indexer.sync(shop.rt)
    finally:
        sa_event.remove(engine, "before_cursor_execute", note)
    loads = [q for q in ran if q.startswith("SELECT chain_events.") and "chain_events.order_id IN" in q]
    assert len(loads) == 1, loads
    assert not [q for q in ran if q.startswith("SELECT chain_events.") and "chain_events.order_id = " in q]
    assert len([q for q in ran if q.startswith("SELECT webhook_events.id")]) <= 1
    for auth in auths:
        assert shop.row(auth.order_id).status == "funded"
        assert shop.webhook_types(auth.order_id) == ["order.funded"]


def test_the_catch_up_looks_orders_up_by_id_not_by_reading_every_event(shop: Shop) -> None:
    """SQLite's plan for the catch-up query searches the events by order id for each order awaiting
    funding; it never scans the indexed events, whose number grows with the chain's age."""
    engine = shop.rt.db.kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("the plan checked is SQLite's (PostgreSQL plans the same query as a semi-join)")
    sql = str(indexer.CATCH_UP.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    # by the order's id (an index on the event name alone would read every OrderFunded event)
    assert any(step.startswith("SEARCH chain_events") and "order_id=?" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


def test_terms_that_differ_from_the_row_flag_the_order_for_review(shop: Shop) -> None:
    rt = shop.rt
    auth = shop.api_order("SO-1011")
    with transaction(rt.db) as s:
        row = s.get(Order, hex32(auth.order_id))
        assert row is not None
        row.amount = auth.amount + 1
    shop.fund(auth)
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    assert row.needs_review and row.status == "funded"


def test_confirmation_depth_keeps_the_newest_blocks_out(shop: Shop) -> None:
    rt = shop.rt
    rt.settings = rt.settings.model_copy(update={"confirmations": 2})
    auth = shop.api_order("SO-1012")
    shop.fund(auth)
    report = indexer.sync(rt)
    assert report.cursor == rt.chain.block_number() - 2
    assert shop.row(auth.order_id).status == "awaiting_funding"
    rt.chain.mine(2)
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "funded"


def test_reorg_on_the_embedded_chain_rolls_back_and_equals_a_fresh_index(shop: Shop, tmp_path: Path) -> None:
    rt, f = shop.rt, shop.factory
    auth = shop.api_order("SO-1013")
    order = f.ship(shop.fund(auth))
    indexer.sync(rt)
    snap = rt.chain.snapshot()
    f.deliver(order)
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "delivered"

    rt.chain.revert(snap)  # the delivery's block is replaced by two other blocks
    rt.chain.mine(2)
    report = indexer.sync(rt)
    assert report.reorgs == 1 and report.removed_events >= 2 and report.rolled_back_to is not None
    row = shop.row(auth.order_id)
    assert (row.status, row.release_at) == ("shipped", None)
    assert shop.webhook_types(auth.order_id) == [
        "order.funded",
        "order.shipped",
        "order.delivered",
        "order.reorged",
    ]
    assert indexed_state(rt) == fresh_index_of(rt, tmp_path, shop)


def test_reorg_that_undoes_the_funding_returns_the_row_to_awaiting_funding(shop: Shop) -> None:
    rt = shop.rt
    auth = shop.api_order("SO-1014")
    snap = rt.chain.snapshot()
    shop.fund(auth)
    indexer.sync(rt)
    assert shop.row(auth.order_id).status == "funded"
    rt.chain.revert(snap)
    rt.chain.mine(8)
    indexer.sync(rt)
    row = shop.row(auth.order_id)
    assert (row.status, row.state_word, row.funded_at) == ("awaiting_funding", None, None)
    with transaction(rt.db) as s:
        reorged = s.scalars(select(WebhookEvent).where(WebhookEvent.type == "order.reorged")).one()
        assert reorged.payload["status"] == "awaiting_funding"
        assert [w["type"] for w in reorged.payload["withdrawn"]] == ["order.funded"]
        assert (
            s.scalar(select(func.count()).select_from(ChainEvent).where(ChainEvent.name == "OrderFunded"))
            == 0
        )


def test_a_shorter_new_chain_is_a_reorg_too(shop: Shop) -> None:
    rt, f = shop.rt, shop.factory
    auth = shop.api_order("SO-1015")
    order = shop.fund(auth)
    indexer.sync(rt)
    snap = rt.chain.snapshot()
    f.ship(order)
    rt.chain.mine(3)
    indexer.sync(rt)
    rt.chain.revert(snap)  # the chain is now shorter than the cursor
    report = indexer.sync(rt)
    assert report.reorgs == 1 and report.cursor == rt.chain.block_number()
    assert shop.row(auth.order_id).status == "funded"


def test_timeline_merges_chain_and_service_facts(shop: Shop) -> None:
    rt, f = shop.rt, shop.factory
    auth = shop.api_order("SO-1016")
    oid = hex32(auth.order_id)
    with transaction(rt.db) as s:
        s.add(TimelineEntry(order_id=oid, kind="order.created", data={"order_ref": "SO-1016"}))
    order = f.deliver(shop.fund(auth))
    f.dispute(order)
    indexer.sync(rt)
    with transaction(rt.db) as s:
        items = indexer.timeline(s, oid)
    kinds = [i["kind"] for i in items]
    assert kinds == ["order.created", "OrderFunded", "Attested", "OrderDelivered", "DisputeOpened"]
    created, funded, attested, delivered, disputed = items
    assert created["source"] == "service" and created["tx_hash"] is None
    assert funded["source"] == "chain" and funded["data"]["amount"] == str(auth.amount)
    assert funded["at"].endswith("Z") and funded["tx_hash"].startswith("0x")
    assert attested["data"]["oracle"] == shop.actors.oracle1.address and attested["data"]["milestone"] == 2
    assert delivered["data"]["status"] == "delivered" and isinstance(delivered["data"]["releaseAt"], int)
    assert disputed["data"]["evidenceHash"] == "0x" + content_hash(b"buyer evidence").hex()
    assert all("state" not in i["data"] for i in items)


def test_events_without_a_merchant_endpoint_still_make_webhook_events(runtime: Runtime) -> None:
    shop = open_shop(runtime, endpoint=False)
    shop.fund(shop.api_order("SO-1017"))
    indexer.sync(runtime)
    with transaction(runtime.db) as s:
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 1
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_orders_in_one_block_batch(shop: Shop) -> None:
    rt, f = shop.rt, shop.factory
    auths = [shop.api_order(f"SO-20{i}") for i in range(3)]
    f.fund_batch(auths)
    indexer.sync(rt)
    assert {shop.row(a.order_id).status for a in auths} == {"funded"}


def test_a_reorg_deeper_than_the_kept_history_reindexes_from_the_deployment(
    shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, f = shop.rt, shop.factory
    monkeypatch.setattr(indexer, "BLOCK_HISTORY", 2)
    auth = shop.api_order("SO-1018")
    snap = rt.chain.snapshot()
    f.ship(shop.fund(auth))
    rt.chain.mine(5)
    indexer.sync(rt, max_blocks=1)
    head = rt.chain.block_number()
    with transaction(rt.db) as s:
        assert min(s.scalars(select(IndexedBlock.number))) >= head - 2
    rt.chain.revert(snap)
    shop.fund(auth)  # funded again, at other heights, and never shipped
    rt.chain.mine(10)
    report = indexer.sync(rt)
    assert report.reorgs == 1 and report.rolled_back_to == rt.deployment_block - 1
    assert shop.row(auth.order_id).status == "funded"
    assert indexed_state(rt) == fresh_index_of(rt, tmp_path, shop)


def test_logs_carry_the_hash_of_their_block(shop: Shop) -> None:
    rt = shop.rt
    shop.fund(shop.api_order("SO-1019"))
    events = rt.chain.get_events(rt.escrow.address, rt.deployment_block, rt.chain.block_number())
    assert events
    for e in events:
        header = rt.chain.get_block(e.block_number)
        assert header is not None and e.block_hash == header.hash
    assert rt.chain.get_block(rt.chain.block_number() + 1) is None
