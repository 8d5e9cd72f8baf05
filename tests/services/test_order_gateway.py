"""The order gateway: an order's terms and state come from the index, caught up from the indexer's cursor; the
cost of one action (a relayed attestation, an ingested capture) does not grow with the chain's age."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from web3.middleware import Web3Middleware

from app.chain.escrow import Order
from app.client.demo import epcis_document, object_event
from app.db.models import Principal
from app.db.session import read_transaction, transaction
from app.domain.order_state import Milestone, Status
from app.services.inbox import ingestion
from app.services.index import indexer
from app.services.index.order_gateway import OrderGateway, order_key
from app.services.outbox.relayer import CONFIRMED, preflight, relay, submit
from app.services.runtime import Runtime
from tests.services.test_relayer_support import Svc, hex32


@dataclass(frozen=True)
class Call:
    method: str
    params: Any


@contextmanager
def recording(rt: Runtime) -> Iterator[list[Call]]:
    """Every JSON-RPC request the runtime's chain client makes while the block runs."""
    calls: list[Call] = []

    class Record(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def middleware(method: str, params: Any) -> Any:
                calls.append(Call(str(method), params))
                return make_request(method, params)

            return middleware

    rt.chain.w3.middleware_onion.add(Record, name="record_rpc")
    try:
        yield calls
    finally:
        rt.chain.w3.middleware_onion.remove("record_rpc")


def put(rt: Runtime, kind: str, payload: dict[str, Any]) -> str:
    with transaction(rt.db) as s:
        intent = submit(s, kind, payload)
        s.flush()
        return intent.id


def _block(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def log_ranges(calls: list[Call]) -> list[tuple[int, int]]:
    """The (fromBlock, toBlock) of every ``eth_getLogs`` among ``calls``."""
    return [
        (_block(c.params[0]["fromBlock"]), _block(c.params[0]["toBlock"]))
        for c in calls
        if c.method == "eth_getLogs"
    ]


def cursor(rt: Runtime) -> int:
    with read_transaction(rt.db) as s:
        found = indexer.cursor(s)
    assert found is not None
    return found


def fund(svc: Svc) -> Order:
    """An order funded directly by its buyer (its state as the escrow client saw it in the receipt)."""
    rt = svc.rt
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    rt.chain.send(svc.token.functions.approve(rt.escrow.address, auth.amount), svc["buyer"])
    rt.escrow.fund([auth], [rt.escrow.sign_authorization(svc["buyer"].key, auth)], svc["buyer"])
    return rt.escrow.orders[auth.order_id]


def ship(svc: Svc, order: Order) -> Order:
    """The oracle attests SHIPPED directly (not through the relayer)."""
    p = svc.attest_payload(order.order_id, Milestone.SHIPPED)
    att = svc.rt.escrow.sign_attestation(
        svc["oracle"].key,
        order.order_id,
        Milestone.SHIPPED,
        p["eventTime"],
        bytes.fromhex(p["trackingHash"][2:]),
        bytes.fromhex(p["evidenceHash"][2:]),
    )
    svc.rt.escrow.attest([(order, [att])], svc["deployer"])
    return svc.rt.escrow.orders[order.order_id]


# ------------------------------------------------------------------------------------------- the gateway


def test_an_order_is_read_from_the_index_and_caught_up_from_the_cursor_only(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = fund(svc)
    indexer.sync(runtime)
    at = cursor(runtime)
    shipped = ship(svc, order)  # after the cursor: not indexed yet
    gateway = OrderGateway.of(runtime)

    with recording(runtime) as calls:
        current = gateway.current(order.order_id)
    assert current == shipped and current.status == Status.SHIPPED
    assert log_ranges(calls) == [(at + 1, runtime.chain.block_number())]

    with recording(runtime) as calls:
        indexed = gateway.current(hex32(order.order_id), at_least=at)
    assert indexed == order and calls == []  # the index covers the block asked for: the node is not asked

    indexer.sync(runtime)
    with recording(runtime) as calls:
        assert gateway.current(order.order_id) == shipped
    assert log_ranges(calls) == []  # the cursor is at the head: nothing to catch up


def test_an_index_on_a_replaced_block_is_trusted_only_below_the_finality_depth(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = fund(svc)
    indexer.sync(runtime)
    before_ship = runtime.chain.snapshot()
    ship(svc, order)
    indexer.sync(runtime)  # the index says shipped, at a cursor block ...
    at = cursor(runtime)
    runtime.chain.revert(before_ship)
    runtime.chain.mine(3)  # ... that another block replaced, and the indexer has not rolled back yet

    with recording(runtime) as calls:
        current = OrderGateway.of(runtime).current(order.order_id)

    assert current == order and current.status == Status.FUNDED  # the chain as it is, not the stale index
    floor = max(runtime.deployment_block, at - runtime.settings.finality_depth + 1)
    assert [start for start, _ in log_ranges(calls)] == [floor]


def test_many_orders_are_one_read_and_one_log_query(runtime: Runtime) -> None:
    svc = Svc(runtime)
    first, second = fund(svc), fund(svc)
    indexer.sync(runtime)
    third = fund(svc)
    shipped = ship(svc, first)
    unknown = bytes(32)

    with recording(runtime) as calls:
        got = OrderGateway.of(runtime).current_many(
            [first.order_id, hex32(second.order_id), third.order_id, unknown]
        )

    assert got == {
        order_key(first.order_id): shipped,
        order_key(second.order_id): second,
        order_key(third.order_id): third,
        order_key(unknown): None,
    }
    assert len(log_ranges(calls)) == 1
    assert OrderGateway.of(runtime).current_many([]) == {}


def test_before_the_first_index_pass_the_chain_is_read_from_the_deployment(runtime: Runtime) -> None:
    order = fund(Svc(runtime))

    with recording(runtime) as calls:
        assert OrderGateway.of(runtime).current(order.order_id) == order

    assert [start for start, _ in log_ranges(calls)] == [runtime.deployment_block]


# ------------------------------------------------------------------------------- cost flat in the age


def _oracle_principal(rt: Runtime) -> Principal:
    assert rt.oracle is not None
    with transaction(rt.db) as s:
        p = Principal(role="oracle", address=rt.oracle.address, name="oracle")
        s.add(p)
        s.flush()
        return p


def _one_age(rt: Runtime, svc: Svc, oracle: Principal, blocks: int) -> dict[str, list[tuple[int, int]]]:
    """The log queries of a relayed attestation and of an ingested capture, ``blocks`` blocks after the order
    was funded, with the indexer caught up to the head; ranges relative to the cursor."""
    old = fund(svc)
    rt.chain.mine(blocks)
    indexer.sync(rt)
    at = cursor(rt)
    assert at == rt.chain.block_number() and at - rt.deployment_block > blocks
    fresh = fund(svc)  # funded after the cursor: its row still says awaiting_funding
    svc.project(fresh, status="awaiting_funding", state_word=None)
    ship(svc, old)

    with recording(rt) as attest_calls:
        payload = svc.attest_payload(old.order_id, Milestone.DELIVERED)
        preflight(rt, "attest", payload)
        iid = put(rt, "attest", payload)
        relay(rt)
    assert svc.intent(iid).status == CONFIRMED

    names_it = [{"type": "po", "bizTransaction": hex32(fresh.order_id)}]
    event = object_event(rt.chain.now(), "shipping", bizTransactionList=names_it)
    with recording(rt) as ingest_calls:
        accepted = ingestion.accept_epcis(rt, oracle, epcis_document(event), "application/ld+json")
        report = ingestion.process_pending(rt)
    assert report.intents == 1, accepted.item.id  # the chain view saw the funding the row has not
    relay(rt)  # the next age starts with an empty outbox

    return {
        name: [(start - at, end - at) for start, end in log_ranges(calls)]
        for name, calls in (("attestation", attest_calls), ("ingestion", ingest_calls))
    }


def test_the_cost_of_an_action_is_flat_in_the_chains_age(runtime: Runtime) -> None:
    svc = Svc(runtime)
    oracle = _oracle_principal(runtime)

    young = _one_age(runtime, svc, oracle, 10)
    old = _one_age(runtime, svc, oracle, 2_000)

    assert old == young
    for ranges in young.values():
        assert ranges  # each action did catch up (the chain moved past the cursor) ...
        assert all(1 <= start <= end <= 20 for start, end in ranges)  # ... from the cursor on, never earlier
