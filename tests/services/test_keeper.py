"""The keeper: every timeout refund and the T+N release, at the chain's time, freezes included; idempotent.

Each test drives a real order on the chain, writes the ``orders`` row as the indexer would (``Svc.project``),
sweeps, and lets the relayer carry the intent out, so the keeper's rule is checked against the contract's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.chain.escrow import Order
from app.db.models import Intent
from app.db.models import Order as OrderRow
from app.db.session import transaction
from app.domain.ids import content_hash
from app.domain.order_state import Milestone, Status
from app.services.outbox.relayer import CONFIRMED, FAILED, relay
from app.services.runtime import Runtime
from app.services.settlement import keeper
from tests.services.test_relayer_support import DAY, Svc

HOLD, RESPONSE, ARBITRATION = 3 * DAY, 3 * DAY, 14 * DAY


def sweep_and_relay(rt: Runtime) -> keeper.KeeperReport:
    report = keeper.sweep(rt)
    relay(rt)
    return report


def expect_nothing_due(svc: Svc, order: Order) -> None:
    svc.project(order)
    assert keeper.sweep(svc.rt).submitted == 0


def expect_due(svc: Svc, order: Order, kind: str, final: Status) -> None:
    oid = svc.project(order)
    first = sweep_and_relay(svc.rt)
    assert first.intents == [(kind, oid)]
    [intent] = svc.intents()
    assert (intent.kind, intent.status, intent.error) == (kind, CONFIRMED, None)
    assert svc.order(order.order_id).status == final
    again = keeper.sweep(svc.rt)  # the indexer has not caught up yet: the row still says due
    assert (again.submitted, again.already) == (0, 1) and svc.count() == 1


def test_a_delivered_order_is_released_once_the_hold_is_over(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.delivered()
    expect_nothing_due(svc, order)
    runtime.chain.advance_time(HOLD - 10)
    expect_nothing_due(svc, order)
    runtime.chain.advance_time(10)
    expect_due(svc, order, "release", Status.RELEASED)


def test_an_order_flagged_for_review_is_not_released_by_the_platform(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.delivered()
    oid = svc.project(order)
    with transaction(runtime.db) as s:
        s.execute(update(OrderRow).where(OrderRow.id == oid).values(needs_review=True))
    runtime.chain.advance_time(HOLD + 1)
    report = keeper.sweep(runtime)
    assert (report.submitted, report.held) == (0, [oid]) and svc.count() == 0


def test_a_funded_order_past_ship_by_is_refunded(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.fund()
    runtime.chain.advance_time(order.terms.ship_by - runtime.chain.now())
    expect_nothing_due(svc, order)  # the ship-by second itself still belongs to the merchant
    runtime.chain.advance_time(1)
    expect_due(svc, order, "timeout_refund", Status.REFUNDED)


def test_a_shipped_order_past_deliver_by_is_refunded(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.attest(svc.fund(), Milestone.SHIPPED)
    runtime.chain.advance_time(order.terms.ship_by - runtime.chain.now() + 1)
    expect_nothing_due(svc, order)  # shipped in time: ship-by no longer matters
    runtime.chain.advance_time(order.terms.deliver_by - runtime.chain.now() + 1)
    expect_due(svc, order, "timeout_refund", Status.REFUNDED)


def dispute(svc: Svc, order: Order) -> Order:
    svc.rt.escrow.open_dispute(order, svc["buyer"], content_hash(b"it never came"))
    return svc.order(order.order_id)


def test_a_dispute_the_seller_does_not_answer_is_refunded_after_the_response_window(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = dispute(svc, svc.attest(svc.fund(), Milestone.SHIPPED))
    assert order.decoded.disputed_at is not None
    runtime.chain.advance_time(order.decoded.disputed_at + RESPONSE - runtime.chain.now())
    expect_nothing_due(svc, order)
    runtime.chain.advance_time(1)
    expect_due(svc, order, "timeout_refund", Status.REFUNDED)


def test_an_answered_dispute_is_refunded_only_after_the_arbitration_deadline(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = dispute(svc, svc.delivered())
    runtime.escrow.submit_evidence(order, svc["merchant"], content_hash(b"signed delivery note"))
    order = svc.order(order.order_id)
    assert order.decoded.responded
    disputed_at = order.decoded.disputed_at
    assert disputed_at is not None
    runtime.chain.advance_time(disputed_at + RESPONSE + 1 - runtime.chain.now())
    expect_nothing_due(svc, order)
    runtime.chain.advance_time(disputed_at + ARBITRATION - runtime.chain.now())
    expect_nothing_due(svc, order)
    runtime.chain.advance_time(1)
    expect_due(svc, order, "timeout_refund", Status.REFUNDED)


def test_a_freeze_stops_the_keeper_and_extends_the_deadline(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.fund()
    runtime.escrow.freeze(order, svc["regulator"], 2 * DAY, content_hash(b"sanctions screening"))
    order = svc.order(order.order_id)
    runtime.chain.advance_time(DAY)
    expect_nothing_due(svc, order)  # frozen
    runtime.chain.advance_time(order.terms.ship_by - runtime.chain.now() + 1)
    expect_nothing_due(svc, order)  # past ship-by, but not past ship-by + the freeze
    runtime.chain.advance_time(2 * DAY)
    expect_due(svc, order, "timeout_refund", Status.REFUNDED)


def test_a_release_that_failed_on_a_freeze_is_revived_when_due_again(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.chain.advance_time(HOLD)
    oid = svc.project(order)
    assert keeper.sweep(runtime).submitted == 1
    runtime.escrow.freeze(
        order, svc["regulator"], DAY, content_hash(b"hold for review")
    )  # before it went out
    relay(runtime)
    [intent] = svc.intents()
    assert (intent.status, intent.error_name) == (FAILED, "OrderIsFrozen")

    order = svc.order(order.order_id)
    svc.project(order)
    runtime.chain.advance_time(DAY)
    assert keeper.sweep(runtime).submitted == 0  # failed just now: not revived at once
    with transaction(runtime.db) as s:
        s.execute(update(Intent).values(updated_at=intent.updated_at - timedelta(minutes=10)))
    report = sweep_and_relay(runtime)

    assert (report.submitted, report.revived, report.intents) == (1, 1, [("release", oid)])
    assert svc.intent(intent.id).status == CONFIRMED
    assert svc.order(order.order_id).status == Status.RELEASED


def test_final_and_unfunded_orders_are_left_alone(runtime: Runtime) -> None:
    svc = Svc(runtime)
    released = svc.delivered()
    runtime.escrow.confirm_receipt(released, svc["buyer"])
    svc.project(svc.order(released.order_id))
    unfunded = svc.fund()
    svc.project(unfunded, status="awaiting_funding", state_word=None)
    runtime.chain.advance_time(60 * DAY)
    assert keeper.sweep(runtime).intents == []


@pytest.mark.parametrize(
    ("columns", "now", "expected"),
    [
        ({"status": "delivered", "release_at": 100}, 99, None),
        ({"status": "delivered", "release_at": 100}, 100, "release"),
        ({"status": "delivered", "release_at": 100, "frozen_until": 150}, 120, None),
        ({"status": "funded"}, 1_000, None),
        ({"status": "funded"}, 1_001, "timeout_refund"),
        ({"status": "shipped"}, 1_001, None),
        ({"status": "shipped"}, 2_001, "timeout_refund"),
        (
            {"status": "disputed", "disputed_at": 10, "response_deadline": 40, "arbitration_deadline": 90},
            41,
            "timeout_refund",
        ),
        (
            {
                "status": "disputed",
                "disputed_at": 10,
                "response_deadline": 40,
                "arbitration_deadline": 90,
                "seller_evidence": True,
            },
            41,
            None,
        ),
        (
            {
                "status": "disputed",
                "disputed_at": 10,
                "response_deadline": 40,
                "arbitration_deadline": 90,
                "seller_evidence": True,
            },
            91,
            "timeout_refund",
        ),
        ({"status": "released"}, 10**9, None),
    ],
)
def test_the_rule_from_the_projected_columns_alone(
    columns: dict[str, object], now: int, expected: str | None
) -> None:
    """Rows without a state word (an indexer that did not store it) are judged by their columns."""
    row = OrderRow(**{"ship_by": 1_000, "deliver_by": 2_000, "seller_evidence": False, **columns})
    assert keeper.due_action(row, now) == expected
