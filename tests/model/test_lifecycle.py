"""The pure lifecycle model (SPEC §2-§3): timers at their edges (W-1, W, W+1), freezes, k-of-n votes, money.

The same model is checked against the contract in tests/contracts/test_model_stateful.py; here it is checked
against the spec on its own, quickly and over many more examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.domain.money import BPS, release_split
from app.domain.order_rules import DAY, HOUR, MAX_AMOUNT, ZERO_ADDRESS
from app.domain.order_state import Decision, Milestone, RefundReason, Status
from app.errors import DomainError
from tests.model.escrow_model import EscrowModel
from tests.model.lifecycle import (
    MAX_FREEZE_SECONDS,
    Attestation,
    FundingRequest,
    OrderModel,
    open_order,
)
from tests.model.registry import Registry

T0 = 1_800_000_000
BUYER, SELLER, TOKEN, TAX, TREASURY = "0xB", "0x5", "0x70", "0x7A", "0x7E"
ORACLES = ("0x01", "0x02", "0x03")
ARBITRATOR, REGULATOR, ADMIN = "0xA1", "0xF1", "0xAD"
EDGES = st.sampled_from([-1, 0, 1])
AMOUNTS = st.one_of(
    st.sampled_from([1, 9_999, 10_000, 10_001, 2**64, MAX_AMOUNT]), st.integers(1, MAX_AMOUNT)
)
HOLDS = st.one_of(st.sampled_from([HOUR, 3 * DAY, 90 * DAY]), st.integers(HOUR, 90 * DAY))
FREEZES = st.one_of(st.sampled_from([1, DAY, MAX_FREEZE_SECONDS]), st.integers(1, MAX_FREEZE_SECONDS))


def registry(threshold: int = 1) -> Registry:
    """Three oracles and an arbitrator, all active by T0; tUSD allowed; a 50% tax corridor."""
    reg = Registry.initial(
        treasury=TREASURY,
        commission_bps=200,
        role_delay=DAY,
        response_seconds=3 * DAY,
        arbitration_seconds=14 * DAY,
    )
    for oracle in ORACLES:
        reg = reg.add_oracle(oracle, T0 - 2 * DAY)
    reg = reg.add_arbitrator(ARBITRATOR, T0 - 2 * DAY).set_token(TOKEN, True).set_tax_recipient(TAX, 5_000)
    return reg.set_threshold(threshold)


def request(**changes: int | str) -> FundingRequest:
    base = FundingRequest(
        buyer=BUYER,
        seller=SELLER,
        token=TOKEN,
        amount=1_000_000,
        commission_bps=200,
        tax_bps=1_000,
        tax_recipient=TAX,
        ship_by=T0 + 5 * DAY,
        deliver_by=T0 + 30 * DAY,
        hold_seconds=3 * DAY,
        valid_until=T0 + DAY,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def funded(reg: Registry | None = None, **changes: int | str) -> OrderModel:
    return open_order(b"\x01" * 32, request(**changes), reg or registry(), T0)


def votes(milestone: int, *oracles: str, at: int = T0) -> list[Attestation]:
    return [Attestation(o, milestone, at) for o in oracles]


def code(call: Callable[[], object]) -> str:
    """The DomainError code a zero-argument callable raises."""
    with pytest.raises(DomainError) as err:
        call()
    return err.value.code


# ---------------------------------------------------------------------- funding


@given(AMOUNTS, st.sampled_from([0, 1, 5_000]), HOLDS)
def test_funding_locks_terms_and_starts_the_ship_and_deliver_timers(
    amount: int, tax_bps: int, hold: int
) -> None:
    order = funded(
        amount=amount, tax_bps=tax_bps, tax_recipient=TAX if tax_bps else ZERO_ADDRESS, hold_seconds=hold
    )
    assert order.status == Status.FUNDED
    assert (order.ship_deadline, order.deliver_deadline) == (T0 + 5 * DAY, T0 + 30 * DAY)
    assert (order.terms.threshold, order.terms.funded_at, order.terms.amount) == (1, T0, amount)
    assert order.deadlines() == {"ship_by": T0 + 5 * DAY}


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"valid_until": T0 - 1}, "SignatureExpired"),
        ({"token": "0xBAD"}, "TokenNotAllowed"),
        ({"amount": 0}, "InvalidAmount"),
        ({"amount": MAX_AMOUNT + 1}, "InvalidAmount"),
        ({"seller": BUYER}, "InvalidParties"),
        ({"commission_bps": 201}, "CommissionMismatch"),
        ({"tax_bps": 5_001}, "TaxNotAllowed"),
        ({"tax_bps": 0}, "TaxNotAllowed"),
        ({"tax_recipient": ZERO_ADDRESS}, "TaxNotAllowed"),
        ({"ship_by": T0}, "InvalidSchedule"),
        ({"deliver_by": T0 + 5 * DAY}, "InvalidSchedule"),
        ({"deliver_by": T0 + 365 * DAY + 1}, "InvalidSchedule"),
        ({"hold_seconds": HOUR - 1}, "InvalidSchedule"),
        ({"hold_seconds": 90 * DAY + 1}, "InvalidSchedule"),
        # Several problems at once: the contract's first check names the error.
        ({"amount": 0, "seller": BUYER, "ship_by": T0}, "InvalidAmount"),
    ],
)
def test_funding_refuses_with_the_contract_error(changes: dict[str, int | str], error: str) -> None:
    assert code(lambda: funded(**changes)) == error


def test_funding_needs_k_oracles_that_already_count() -> None:
    reg = registry(threshold=3).remove_oracle(ORACLES[0], T0)
    assert code(lambda: funded(reg)) == "InvalidThreshold"
    # Re-added: active again but inside its role delay, so it cannot count for an order funded now.
    reg = reg.add_oracle(ORACLES[0], T0)
    assert code(lambda: funded(reg)) == "InvalidThreshold"
    assert open_order(b"\x02" * 32, request(valid_until=T0 + 2 * DAY), reg, T0 + DAY).status == Status.FUNDED


# ---------------------------------------------------------------------- the hold window W


@given(HOLDS, EDGES, st.integers(0, 4 * DAY))
def test_release_and_dispute_split_the_hold_window_edge(hold: int, edge: int, delivered_after: int) -> None:
    t = T0 + delivered_after
    order = funded(hold_seconds=hold).attest(votes(Milestone.DELIVERED, ORACLES[0], at=t), registry(), t)
    assert order.status == Status.DELIVERED and order.release_at == t + hold
    when = t + hold + edge
    if edge < 0:
        assert code(lambda: order.release(when)) == "DeadlineNotReached"
        assert order.open_dispute(BUYER, when).status == Status.DISPUTED
    else:
        assert order.release(when).split == release_split(order.terms.amount, 200, 1_000)
        assert code(lambda: order.open_dispute(BUYER, when)) == "DeadlinePassed"


@given(EDGES)
def test_ship_by_edge_for_attesting_disputing_and_timing_out(edge: int) -> None:
    order, reg = funded(), registry()
    when = order.ship_deadline + edge
    if edge <= 0:
        assert order.attest(votes(Milestone.SHIPPED, ORACLES[1], at=when), reg, when).status == Status.SHIPPED
        assert order.open_dispute(BUYER, when).status == Status.DISPUTED
        assert code(lambda: order.timeout_refund(when)) == "DeadlineNotReached"
    else:
        assert code(lambda: order.attest(votes(Milestone.SHIPPED, ORACLES[1], at=when), reg, when)) == (
            "DeadlinePassed"
        )
        assert code(lambda: order.open_dispute(BUYER, when)) == "DeadlinePassed"
        refunded = order.timeout_refund(when)
        assert (refunded.status, refunded.refund_reason) == (Status.REFUNDED, RefundReason.SHIP_TIMEOUT)


@given(EDGES, st.booleans())
def test_dispute_response_window_edge(edge: int, seller_answers: bool) -> None:
    order = funded().open_dispute(BUYER, T0)
    assert order.disputed_at == T0
    response = T0 + 3 * DAY
    if seller_answers:
        order = order.submit_evidence(SELLER, b"\x11" * 32, response + edge)
        assert order.responded == (edge <= 0)
    when = response + 1
    if order.responded:
        assert code(lambda: order.timeout_refund(when)) == "DeadlineNotReached"
        assert order.timeout_refund(T0 + 14 * DAY + 1).refund_reason == RefundReason.ARBITRATION_TIMEOUT
    else:
        assert code(lambda: order.timeout_refund(response)) == "DeadlineNotReached"
        assert order.timeout_refund(when).refund_reason == RefundReason.RESPONSE_TIMEOUT


@given(EDGES, st.integers(0, BPS))
def test_ruling_deadline_edge_and_split(edge: int, share: int) -> None:
    order, reg = funded(amount=10**18).open_dispute(BUYER, T0), registry()
    when = T0 + 14 * DAY + edge
    if edge > 0:
        assert code(lambda: order.rule(ARBITRATOR, share, reg, when)) == "DeadlinePassed"
        return
    ruled = order.rule(ARBITRATOR, share, reg, when)
    assert ruled.status == Status.RESOLVED and ruled.split is not None
    assert ruled.split.total == 10**18 and ruled.split.buyer_refund == 10**18 * share // BPS


# ---------------------------------------------------------------------- freezes


@given(FREEZES, st.data())
def test_freeze_moves_every_timer_and_an_early_unfreeze_gives_back_the_rest(
    d: int, data: st.DataObject
) -> None:
    order = funded(ship_by=T0 + DAY).attest(votes(Milestone.DELIVERED, ORACLES[0]), registry(), T0)
    frozen = order.freeze(d, b"\x22" * 32, T0 + 10)
    assert frozen.frozen_until == T0 + 10 + d
    assert frozen.release_at == order.release_at + d  # type: ignore[operator]
    assert frozen.ship_deadline == order.ship_deadline + d
    assert code(lambda: frozen.release(T0 + 10 + d - 1)) == "OrderIsFrozen"
    used = data.draw(st.integers(0, d - 1), label="used")
    thawed = frozen.unfreeze(T0 + 10 + used)
    assert thawed.frozen_seconds == used and thawed.frozen_until == T0 + 10 + used
    assert thawed.release_at == order.release_at + used  # type: ignore[operator]
    assert thawed.deliver_deadline == order.deliver_deadline + used
    assert code(lambda: thawed.unfreeze(T0 + 10 + used)) == "OrderNotFrozen"


def test_freezes_total_at_most_30_days() -> None:
    order = funded().freeze(MAX_FREEZE_SECONDS - 5, b"\x22" * 32, T0)
    later = T0 + MAX_FREEZE_SECONDS
    assert order.freeze(5, b"\x22" * 32, later).frozen_seconds == MAX_FREEZE_SECONDS
    assert code(lambda: order.freeze(6, b"\x22" * 32, later)) == "FreezeTooLong"
    assert code(lambda: order.freeze(0, b"\x22" * 32, later)) == "FreezeTooLong"
    assert code(lambda: order.freeze(5, b"\x00" * 32, later)) == "EmptyHash"


@given(FREEZES, st.integers(0, DAY))
def test_delivery_during_a_freeze_starts_the_hold_when_the_freeze_ends(d: int, into: int) -> None:
    order = funded().freeze(d, b"\x22" * 32, T0)
    when = T0 + min(into, d - 1)
    # Frozen orders take no attestation; once the freeze is over the hold starts at once.
    assert code(lambda: order.attest(votes(Milestone.DELIVERED, ORACLES[0], at=when), registry(), when)) == (
        "OrderIsFrozen"
    )
    after = T0 + d
    delivered = order.attest(votes(Milestone.DELIVERED, ORACLES[0], at=after), registry(), after)
    assert delivered.release_at == after + 3 * DAY
    disputed = order.open_dispute(BUYER, when)
    assert disputed.disputed_at == T0 + d


def test_a_freeze_never_reopens_a_closed_dispute_or_response_window() -> None:
    delivered = funded().attest(votes(Milestone.DELIVERED, ORACLES[0]), registry(), T0)
    late = delivered.release_at + HOUR  # type: ignore[operator]
    frozen = delivered.freeze(DAY, b"\x22" * 32, late)
    assert code(lambda: frozen.open_dispute(BUYER, late + 1)) == "DeadlinePassed"
    # A freeze begun before the window closed still extends it by the time that went by.
    early = delivered.freeze(DAY, b"\x22" * 32, T0 + HOUR)
    assert early.open_dispute(BUYER, delivered.release_at + HOUR).status == Status.DISPUTED  # type: ignore[operator]
    disputed = funded().open_dispute(BUYER, T0)
    silent = disputed.freeze(DAY, b"\x22" * 32, T0 + 3 * DAY + 1)
    assert not silent.submit_evidence(SELLER, b"\x11" * 32, T0 + 3 * DAY + 2).responded


def test_usable_oracles_floor_at_zero() -> None:
    reg = registry().remove_oracle(ORACLES[0], T0).add_oracle(ORACLES[0], T0)
    later = T0 + DAY // 2
    reg = reg.remove_oracle(ORACLES[1], later).add_oracle(ORACLES[1], later)  # two pending now
    reg = reg.remove_oracle(ORACLES[2], T0 + DAY).remove_oracle(ORACLES[0], T0 + DAY)  # 0 is active by then
    assert reg.active_oracles == 1 and reg.pending_oracles == 2
    assert reg.usable_oracles(T0 + DAY) == 0
    assert reg.usable_oracles(later + DAY) == 1


def test_a_freeze_after_a_missed_deadline_does_not_reopen_attestation() -> None:
    order, reg = funded(), registry()
    late = order.ship_deadline + 10
    frozen = order.freeze(DAY, b"\x22" * 32, late)
    assert (
        code(lambda: frozen.attest(votes(Milestone.SHIPPED, ORACLES[0], at=late), reg, late))
        == "OrderIsFrozen"
    )
    thawed = frozen.unfreeze(late + 100)
    after = late + 100
    assert code(lambda: thawed.attest(votes(Milestone.SHIPPED, ORACLES[0], at=after), reg, after)) == (
        "DeadlinePassed"
    )
    assert thawed.timeout_refund(after).status == Status.REFUNDED


# ---------------------------------------------------------------------- k of n


def test_two_of_three_counts_each_oracle_once_and_drops_removed_votes() -> None:
    reg = registry(threshold=2)
    order = funded(reg)
    half = order.attest(votes(Milestone.SHIPPED, ORACLES[0]), reg, T0)
    assert half.status == Status.FUNDED and half.votes(Milestone.SHIPPED) == {0}
    assert code(lambda: half.attest(votes(Milestone.SHIPPED, ORACLES[0]), reg, T0)) == "DuplicateAttestation"
    assert code(lambda: order.attest(votes(Milestone.SHIPPED, ORACLES[1], ORACLES[1]), reg, T0)) == (
        "DuplicateAttestation"
    )
    assert half.attest(votes(Milestone.SHIPPED, ORACLES[2]), reg, T0).status == Status.SHIPPED
    # Oracle 0 removed: its recorded vote no longer counts, and it cannot vote.
    reg = reg.remove_oracle(ORACLES[0], T0)
    still = half.attest(votes(Milestone.SHIPPED, ORACLES[1]), reg, T0)
    assert still.status == Status.FUNDED and still.votes(Milestone.SHIPPED) == {0, 1}
    assert still.attest(votes(Milestone.SHIPPED, ORACLES[2]), reg, T0).status == Status.SHIPPED
    assert code(lambda: half.attest(votes(Milestone.SHIPPED, ORACLES[0]), reg, T0)) == "NotOracle"


def test_attestation_refusals_in_contract_order() -> None:
    order, reg = funded(), registry()
    assert code(lambda: order.attest([], reg, T0)) == "NoAttestations"
    assert code(lambda: order.attest(votes(3, ORACLES[0]), reg, T0)) == "InvalidMilestone"
    mixed = [Attestation(ORACLES[0], 1, T0), Attestation(ORACLES[1], 2, T0)]
    assert code(lambda: order.attest(mixed, reg, T0)) == "InvalidMilestone"
    assert code(lambda: order.attest(votes(1, ORACLES[0], at=T0 + 1), reg, T0)) == "EventInFuture"
    assert code(lambda: order.attest(votes(1, "0xNOT"), reg, T0)) == "NotOracle"
    shipped = order.attest(votes(1, ORACLES[0]), reg, T0)
    assert code(lambda: shipped.attest(votes(1, ORACLES[1]), reg, T0)) == "InvalidStatus"


# ---------------------------------------------------------------------- the whole escrow, fast


class PureEscrowMachine(RuleBasedStateMachine):
    """Random calls on the pure model alone: money is conserved and no open order is a trap."""

    def __init__(self) -> None:
        super().__init__()
        self.model = EscrowModel(
            registry=registry(), admins=frozenset({ADMIN}), regulators=frozenset({REGULATOR})
        )
        self.now = T0
        self.ids: list[bytes] = []
        self.finals: dict[bytes, OrderModel] = {}

    def _try(self, call: Callable[[], object]) -> None:
        try:
            call()
        except DomainError:
            pass  # refused calls must change nothing; checked by the invariants

    @rule(amount=AMOUNTS, k=st.sampled_from([1, 2, 3]), ship_in=st.integers(1, 10 * DAY), hold=HOLDS)
    def fund(self, amount: int, k: int, ship_in: int, hold: int) -> None:
        self.model.admin(ADMIN, lambda r: r.set_threshold(k))
        oid = len(self.ids).to_bytes(32, "big")
        req = request(
            amount=amount,
            ship_by=self.now + ship_in,
            deliver_by=self.now + ship_in + DAY,
            hold_seconds=hold,
            valid_until=self.now,
        )
        self.model.fund([(oid, req, BUYER)], BUYER, self.now)
        self.ids.append(oid)

    @rule(seconds=st.one_of(st.sampled_from([1, HOUR, DAY]), st.integers(1, 40 * DAY)))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def act(self, data: st.DataObject) -> None:
        oid = data.draw(st.sampled_from(self.ids))
        m, now = self.model, self.now
        action = data.draw(
            st.sampled_from(
                ["ship", "deliver", "release", "confirm", "dispute", "answer", "rule", "refund", "timeout"]
                + ["freeze", "unfreeze", "decide"]
            )
        )
        k = m.orders[oid].terms.threshold
        calls = {
            "ship": lambda: m.attest([(oid, votes(1, *ORACLES[:k], at=now), None)], True, now),
            "deliver": lambda: m.attest([(oid, votes(2, *ORACLES[:k], at=now), None)], True, now),
            "release": lambda: m.release([(oid, None)], True, now),
            "confirm": lambda: m.confirm_receipt(oid, BUYER, now),
            "dispute": lambda: m.open_dispute(oid, BUYER, now),
            "answer": lambda: m.submit_evidence(oid, SELLER, b"\x33" * 32, now),
            "rule": lambda: m.rule(oid, ARBITRATOR, data.draw(st.integers(0, BPS)), now),
            "refund": lambda: m.refund_by_seller(oid, SELLER, now),
            "timeout": lambda: m.timeout_refund(oid, now),
            "freeze": lambda: m.freeze(oid, REGULATOR, data.draw(FREEZES), b"\x44" * 32, now),
            "unfreeze": lambda: m.unfreeze(oid, REGULATOR, now),
            "decide": lambda: m.buyer_decision(oid, Decision.CONFIRM_RECEIPT, BUYER, now, now),
        }
        self._try(calls[action])

    @precondition(lambda self: self.model.ledger.credits)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        (token, account), credit = data.draw(st.sampled_from(sorted(self.model.ledger.credits.items())))
        self._try(lambda: self.model.withdraw(token, account, account, data.draw(st.integers(0, credit + 1))))

    @invariant()
    def money_is_conserved(self) -> None:
        assert self.model.ledger.is_conserved(TOKEN)
        assert all(v >= 0 for v in self.model.ledger.credits.values())

    @invariant()
    def final_orders_never_change(self) -> None:
        for oid, order in self.model.orders.items():
            if oid in self.finals:
                assert order == self.finals[oid]
            elif order.is_final:
                assert order.split is not None and order.split.total == order.terms.amount
                self.finals[oid] = order

    @invariant()
    def no_open_order_is_a_trap(self) -> None:
        """Someone other than the platform can end every open order: a timeout refund, or anyone's release."""
        for order in self.model.orders.values():
            if order.is_final:
                continue
            later = max(self.now, order.frozen_until)
            if order.status == Status.DELIVERED:
                assert order.release(max(later, order.release_eligible_at() or 0)).is_final
            else:
                eligible = order.timeout_refund_eligible_at()
                assert eligible is not None
                assert order.timeout_refund(max(later, eligible)).is_final


def test_pure_model_conserves_money_and_has_no_traps() -> None:
    run_state_machine_as_test(PureEscrowMachine)
