"""Event decoding (indexed and tuple arguments), event queries over block ranges, and Escrow.sync."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from app.chain.abi import AbiRegistry, Event
from app.chain.client import ChainClient
from app.chain.escrow import Escrow, Order, Terms
from app.domain.ids import content_hash
from app.domain.order_state import Decision, Milestone, RefundReason, Status
from tests.chain.conftest import Stack
from tests.factories import DAY, HOLD, OrderFactory, skipped

TERMS_ABI = (
    "(address,address,address,uint256,uint16,uint16,address,uint64,uint64,uint32,uint8,uint32,uint32,uint64,"
    "address,bytes32,uint64)"
)
TERMS_FIELDS = [
    "buyer",
    "seller",
    "token",
    "amount",
    "commissionBps",
    "taxBps",
    "taxRecipient",
    "shipBy",
    "deliverBy",
    "holdSeconds",
    "threshold",
    "responseSeconds",
    "arbitrationSeconds",
    "fundedAt",
    "arbitrator",
    "arbitratorExtraDataHash",
    "metaEvidenceId",
]


def raw_logs(chain: ChainClient, tx_hash: str) -> list[Any]:
    return list(chain.w3.eth.get_transaction_receipt(tx_hash)["logs"])


def topic(signature: str) -> bytes:
    return keccak(text=signature)


def commitment(order: Order) -> bytes:
    """What the escrow stores for an order: keccak256(abi.encode(terms, state))."""
    return keccak(abi_encode([TERMS_ABI, "uint256"], [order.terms.as_tuple(), order.state]))


# ------------------------------------------------------------------------------------------ decode_log


def test_order_funded_decodes_indexed_id_and_terms_tuple(stack: Stack) -> None:
    f, a = stack.factory, stack.actors
    auth = f.auth(amount=123_456_789)
    result = f.fund_batch([auth])
    logs = [log for log in raw_logs(stack.chain, result.tx_hash) if log["address"] == stack.escrow.address]
    funded = [ev for log in logs if (ev := stack.chain.abis.decode_log(log)) and ev.name == "OrderFunded"]
    assert len(funded) == 1
    ev = funded[0]
    assert list(ev.args) == ["orderId", "terms", "state"]
    assert ev.args["orderId"] == auth.order_id
    assert ev.args["state"] & 0xFF == Status.FUNDED
    assert ev.args["state"] >> 176 == int(a.buyer.address, 16) & (2**80 - 1)  # the buyer tag
    terms = ev.args["terms"]
    assert list(terms) == TERMS_FIELDS
    block_time = stack.chain.w3.eth.get_block(ev.block_number)["timestamp"]
    assert terms == {
        "buyer": a.buyer.address,
        "seller": a.seller.address,
        "token": str(stack.deployment.token.address),
        "amount": 123_456_789,
        "commissionBps": 200,
        "taxBps": 1000,
        "taxRecipient": a.tax.address,
        "shipBy": auth.ship_by,
        "deliverBy": auth.deliver_by,
        "holdSeconds": HOLD,
        "threshold": 1,
        "responseSeconds": 3 * DAY,
        "arbitrationSeconds": 14 * DAY,
        "fundedAt": block_time,
        "arbitrator": "0x0000000000000000000000000000000000000000",
        "arbitratorExtraDataHash": bytes(32),
        "metaEvidenceId": 0,
    }
    assert ev.address == stack.escrow.address
    assert ev.tx_hash == result.tx_hash
    order = Order(auth.order_id, Terms.from_event(terms), ev.args["state"])
    assert order == stack.escrow.orders[auth.order_id]
    assert commitment(order) == stack.escrow.commitment(auth.order_id, auth.buyer)


def test_attested_decodes_two_indexed_arguments(stack: Stack) -> None:
    f, a = stack.factory, stack.actors
    order = f.fund()
    att = f.attestation(order, Milestone.SHIPPED, a.oracle2)
    result = stack.escrow.attest([(order, [att])], a.relayer)
    (attested,) = result.named("Attested")
    assert attested.args == {
        "orderId": order.order_id,
        "oracle": a.oracle2.address,
        "milestone": Milestone.SHIPPED,
        "eventTime": att.event_time,
        "trackingHash": att.tracking_hash,
        "evidenceHash": att.evidence_hash,
    }
    (shipped,) = result.named("OrderShipped")
    assert shipped.args["state"] == stack.escrow.orders[order.order_id].state


def test_receipt_events_come_in_log_order_across_contracts(stack: Stack) -> None:
    f, a = stack.factory, stack.actors
    auth = f.auth()
    result = f.fund_batch([auth])
    names = [(ev.name, ev.address) for ev in result.events]
    token = str(stack.deployment.token.address)
    assert names == [("OrderFunded", stack.escrow.address), ("Transfer", token)]
    assert [ev.log_index for ev in result.events] == sorted(ev.log_index for ev in result.events)
    transfer = result.events[1]
    assert transfer.args == {"from": a.buyer.address, "to": stack.escrow.address, "value": auth.amount}


def test_order_skipped_reason_is_a_decodable_custom_error(stack: Stack) -> None:
    f, a = stack.factory, stack.actors
    good, late = f.fund(), f.fund()
    stack.escrow.refund_by_seller(late, a.seller)
    late = f.current(late)
    items = [(o, [f.attestation(o, Milestone.SHIPPED)]) for o in (good, late)]
    result = stack.escrow.attest(items, a.relayer, strict=False)
    reasons = skipped(stack.chain, result)
    assert list(reasons) == [late.order_id]
    assert reasons[late.order_id].name == "InvalidStatus"
    assert reasons[late.order_id].args_by_name == {"orderId": late.order_id, "status": Status.REFUNDED}
    assert f.current(good).status == Status.SHIPPED


def _log(topics: list[bytes], data: bytes, address: str = "0x" + "11" * 20) -> dict[str, Any]:
    return {
        "address": address,
        "topics": topics,
        "data": data,
        "transactionHash": b"\x22" * 32,
        "blockNumber": 7,
        "logIndex": 3,
    }


def test_decode_log_refuses_logs_that_are_not_ours(chain: ChainClient) -> None:
    abis = chain.abis
    word = b"\x00" * 12 + b"\x33" * 20
    transfer = topic("Transfer(address,address,uint256)")
    assert abis.decode_log(_log([transfer, word, word], (5).to_bytes(32, "big"))) is not None
    # ERC-721's Transfer: same signature, the token id indexed too
    assert abis.decode_log(_log([transfer, word, word, (5).to_bytes(32, "big")], b"")) is None
    assert abis.decode_log(_log([topic("Unknown(uint256)")], b"\x00" * 32)) is None
    assert abis.decode_log(_log([], b"")) is None  # anonymous
    assert abis.decode_log(_log([transfer, word, word], b"\x01")) is None  # truncated data


def test_decode_log_dynamic_indexed_args_arrays_of_tuples_and_unnamed_args() -> None:
    abi = [
        {
            "type": "event",
            "name": "Sample",
            "anonymous": False,
            "inputs": [
                {"name": "label", "type": "string", "indexed": True},
                {"name": "", "type": "uint256", "indexed": True},
                {
                    "name": "items",
                    "type": "tuple[]",
                    "indexed": False,
                    "components": [
                        {"name": "who", "type": "address"},
                        {"name": "amount", "type": "uint128"},
                    ],
                },
                {"name": "owners", "type": "address[]", "indexed": False},
            ],
        }
    ]
    registry = AbiRegistry([abi])
    who = "0x" + "ab" * 20
    data = abi_encode(["(address,uint128)[]", "address[]"], [[(who, 5), (who, 6)], [who]])
    label_hash = keccak(text="hello")
    ev = registry.decode_log(
        _log(
            [
                topic("Sample(string,uint256,(address,uint128)[],address[])"),
                label_hash,
                (9).to_bytes(32, "big"),
            ],
            data,
        )
    )
    assert ev is not None
    assert ev.args == {
        "label": label_hash,
        "arg1": 9,
        "items": [
            {"who": to_checksum_address(who), "amount": 5},
            {"who": to_checksum_address(who), "amount": 6},
        ],
        "owners": [to_checksum_address(who)],
    }
    assert (ev.tx_hash, ev.block_number, ev.log_index) == ("0x" + "22" * 32, 7, 3)


# ------------------------------------------------------------------------------------------ get_events


def test_get_events_over_a_block_range(stack: Stack) -> None:
    f, chain, escrow = stack.factory, stack.chain, stack.escrow
    orders = [f.fund() for _ in range(3)]
    blocks = [
        next(e.block_number for e in chain.get_events(escrow.address, 0, chain.block_number()) if _is(e, o))
        for o in orders
    ]
    assert blocks == sorted(set(blocks))

    every = chain.get_events(escrow.address, blocks[0], blocks[2])
    assert [e.args["orderId"] for e in every if e.name == "OrderFunded"] == [o.order_id for o in orders]
    assert {e.address for e in every} == {escrow.address}  # tUSD's Transfer logs are not the escrow's
    assert [(e.block_number, e.log_index) for e in every] == sorted(
        (e.block_number, e.log_index) for e in every
    )
    assert every == chain.get_events(escrow.address, blocks[0], blocks[2], chunk_size=1)

    middle = chain.get_events(escrow.address, blocks[1], blocks[1])
    assert [e.name for e in middle] == ["OrderFunded"]
    assert middle[0].args["orderId"] == orders[1].order_id
    assert chain.get_events(escrow.address, blocks[2] + 1, chain.block_number()) == []
    assert chain.get_events(escrow.address, blocks[2], blocks[0]) == []
    with pytest.raises(ValueError):
        chain.get_events(escrow.address, 0, 1, chunk_size=0)


def _is(ev: Event, order: Order) -> bool:
    return ev.name == "OrderFunded" and ev.args["orderId"] == order.order_id


# ------------------------------------------------------------------------------------------ sync


def test_sync_rebuilds_every_tracked_order_from_the_chain_alone(factory: OrderFactory) -> None:
    f, escrow, chain, a = factory, factory.escrow, factory.chain, factory.actors
    start = chain.block_number()
    released, confirmed, ruled, given_up, frozen, timed_out = (f.fund() for _ in range(6))
    released = f.deliver(f.ship(released), a.oracle2)
    confirmed = f.deliver(confirmed)
    escrow.confirm_receipt(confirmed, a.buyer, content_hash(b"all good"))
    ruled = f.dispute(ruled, b"broken on arrival")
    escrow.submit_evidence(f.current(ruled), a.seller, content_hash(b"photos at dispatch"))
    escrow.rule(f.current(ruled), a.arbitrator, 3_000, content_hash(b"ruling"))
    escrow.refund_by_seller(given_up, a.seller)
    escrow.freeze(frozen, a.regulator, DAY, content_hash(b"sanctions check"))
    escrow.unfreeze(f.current(frozen), a.regulator)

    # two orders funded in one transaction; one disputed by the buyer's signed decision, relayed
    batch = [f.auth(), f.auth()]
    f.fund_batch(batch)
    decided, idle = (escrow.orders[x.order_id] for x in batch)
    until = chain.now() + DAY
    sig = escrow.sign_buyer_decision(
        a.buyer.key, decided.order_id, Decision.OPEN_DISPUTE, b"\x05" * 32, until
    )
    escrow.submit_buyer_decision(decided, Decision.OPEN_DISPUTE, b"\x05" * 32, until, sig, a.relayer)
    sig = escrow.sign_evidence(a.seller.key, idle.order_id, a.seller.address, b"\x06" * 32, until)
    escrow.submit_evidence_signed(idle, a.seller.address, b"\x06" * 32, until, sig, a.relayer)
    # a batch with a skipped entry changes nothing for that entry
    escrow.attest([(f.current(ruled), [f.attestation(ruled, Milestone.SHIPPED)])], a.relayer, strict=False)

    chain.advance_time(HOLD)
    escrow.release([f.current(released)], a.stranger)
    chain.advance_time(5 * DAY)
    escrow.timeout_refund(f.current(timed_out), a.stranger)

    mine = {o.order_id for o in (released, confirmed, ruled, given_up, frozen, timed_out, decided, idle)}
    assert mine <= set(escrow.orders)

    rebuilt = Escrow(chain, escrow.contract)
    rebuilt.sync(start)
    assert rebuilt.orders == {k: v for k, v in escrow.orders.items() if k in mine}
    statuses = {oid: rebuilt.orders[oid].status for oid in mine}
    assert statuses == {
        released.order_id: Status.RELEASED,
        confirmed.order_id: Status.RELEASED,
        ruled.order_id: Status.RESOLVED,
        given_up.order_id: Status.REFUNDED,
        frozen.order_id: Status.FUNDED,
        timed_out.order_id: Status.REFUNDED,
        decided.order_id: Status.DISPUTED,
        idle.order_id: Status.FUNDED,
    }
    assert rebuilt.orders[frozen.order_id].decoded.frozen_seconds > 0
    assert rebuilt.orders[ruled.order_id].decoded.responded
    for oid, order in rebuilt.orders.items():
        assert commitment(order) == escrow.commitment(oid, order.terms.buyer), oid.hex()

    # every rebuilt order is good enough to act on
    rebuilt.submit_evidence(rebuilt.orders[idle.order_id], a.buyer, content_hash(b"still waiting"))
    refunds = [
        e for e in chain.get_events(escrow.address, start, chain.block_number()) if e.name == "OrderRefunded"
    ]
    assert {e.args["orderId"]: e.args["reason"] for e in refunds} == {
        given_up.order_id: RefundReason.SELLER_REFUND,
        timed_out.order_id: RefundReason.SHIP_TIMEOUT,
    }

    again = Escrow(chain, escrow.contract)
    again.sync(start)
    again.sync(start)  # idempotent
    assert again.orders == rebuilt.orders
