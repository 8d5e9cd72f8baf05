"""SPEC §1, the trust promise, as tests: the platform's keys alone cannot move escrowed money.

With only the relayer key, or only the admin key, every escrow function is called directly on an existing
order in each open status (funded, shipped, delivered, disputed): each call reverts with its exact custom
error and no order is released or refunded, no credit appears and the escrow's balance is unchanged. The admin
may appoint itself oracle, arbitrator or regulator: a self-appointed oracle never counts for an order funded
earlier, a self-appointed arbitrator waits ROLE_DELAY, and a regulator can only delay (freeze), never pay. The
admin cannot withdraw anyone else's credit. Pausing stops new orders only: every exit of a funded order still
works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from app.chain.escrow import Order
from app.domain.ids import content_hash
from app.domain.money import release_split
from app.domain.order_state import Decision, Milestone, RefundReason, Status
from tests.factories import DAY, HOLD, OrderFactory, reverts, skipped

OPEN = [Status.FUNDED, Status.SHIPPED, Status.DELIVERED, Status.DISPUTED]
REGULATOR_ROLE = keccak(text="REGULATOR_ROLE")
ADMIN_ROLE = b"\x00" * 32
H = content_hash(b"platform says so")


@dataclass
class Attempt:
    """One direct call by the platform key, with the exact custom error it must revert with."""

    label: str
    call: Callable[[], Any]
    error: str
    args: dict[str, Any]


def _deadline_of(order: Order) -> tuple[str, dict[str, Any]]:
    """What timeoutRefund says for an order that has no missed deadline yet."""
    d, t, oid = order.decoded, order.terms, order.order_id
    if d.status == Status.FUNDED:
        return "DeadlineNotReached", {"orderId": oid, "deadline": t.ship_by + d.frozen_seconds}
    if d.status == Status.SHIPPED:
        return "DeadlineNotReached", {"orderId": oid, "deadline": t.deliver_by + d.frozen_seconds}
    if d.status == Status.DISPUTED:
        assert d.disputed_at is not None and not d.responded
        return "DeadlineNotReached", {"orderId": oid, "deadline": d.disputed_at + t.response_seconds}
    return "InvalidStatus", {"orderId": oid, "status": d.status}


def _attempts(factory: OrderFactory, order: Order, key: LocalAccount) -> list[Attempt]:
    """Every way ``key`` alone could try to move ``order``'s money, with the error each must give."""
    a, esc, f = factory.actors, factory.escrow, factory.escrow.contract.functions
    oid, st, who = order.order_id, order.status, key.address
    vu = factory.chain.now() + DAY
    token = factory.token.address

    if st == Status.DELIVERED:
        release_err = ("DeadlineNotReached", {"orderId": oid, "deadline": order.decoded.release_at})
    else:
        release_err = ("InvalidStatus", {"orderId": oid, "status": st})
    if st in (Status.FUNDED, Status.SHIPPED):
        attest_err: tuple[str, dict[str, Any]] = ("NotOracle", {"signer": who})
    else:
        attest_err = ("InvalidStatus", {"orderId": oid, "status": st})
    signed_att = factory.attestation(order, Milestone.DELIVERED, key)
    direct_att = replace(signed_att, signature=b"")

    def decision(d: int) -> Callable[[], Any]:
        sig = esc.sign_buyer_decision(key.key, oid, d, H, vu)
        return lambda: esc.submit_buyer_decision(order, d, H, vu, sig, key)

    ruling_sig = esc.sign_ruling(key.key, oid, 0, H, vu)
    as_buyer = replace(order, terms=replace(order.terms, buyer=who))
    as_seller = replace(order, terms=replace(order.terms, seller=who))
    as_delivered = replace(order, state=(order.state & ~0xFF) | Status.DELIVERED)

    return [
        Attempt("release", lambda: esc.release([order], key), *release_err),
        Attempt("confirmReceipt", lambda: esc.confirm_receipt(order, key), "Unauthorized", {"caller": who}),
        Attempt("openDispute", lambda: esc.open_dispute(order, key, H), "Unauthorized", {"caller": who}),
        Attempt(
            "signed confirm",
            decision(Decision.CONFIRM_RECEIPT),
            "InvalidSignature",
            {"expected": a.buyer.address, "recovered": who},
        ),
        Attempt(
            "signed dispute",
            decision(Decision.OPEN_DISPUTE),
            "InvalidSignature",
            {"expected": a.buyer.address, "recovered": who},
        ),
        Attempt("rule", lambda: esc.rule(order, key, 0, H), "NotArbitrator", {"account": who}),
        Attempt(
            "submitRuling",
            lambda: esc.submit_ruling(order, 0, H, vu, ruling_sig, key),
            "NotArbitrator",
            {"account": who},
        ),
        Attempt("refundBySeller", lambda: esc.refund_by_seller(order, key), "Unauthorized", {"caller": who}),
        Attempt("timeoutRefund", lambda: esc.timeout_refund(order, key), *_deadline_of(order)),
        Attempt("attest signed", lambda: esc.attest([(order, [signed_att])], key), *attest_err),
        Attempt("attest direct", lambda: esc.attest([(order, [direct_att])], key), *attest_err),
        Attempt(
            "freeze",
            lambda: factory.chain.send(f.freeze(*order.ref(), DAY, H), key),
            "AccessControlUnauthorizedAccount",
            {"account": who, "neededRole": REGULATOR_ROLE},
        ),
        Attempt(
            "withdraw the order's amount",
            lambda: esc.withdraw(token, key, order.terms.amount),
            "InsufficientCredit",
            {"token": token, "account": who, "available": 0, "requested": order.terms.amount},
        ),
        Attempt(  # the buyer is part of the order's storage key (escrow v2): a forged one finds no order
            "confirm with forged buyer",
            lambda: esc.confirm_receipt(as_buyer, key),
            "UnknownOrder",
            {"orderId": oid},
        ),
        Attempt(
            "seller refund with forged seller",
            lambda: esc.refund_by_seller(as_seller, key),
            "OrderDataMismatch",
            {"orderId": oid},
        ),
        Attempt(
            "release with forged status",
            lambda: esc.release([as_delivered], key),
            *(
                ("DeadlineNotReached", {"orderId": oid, "deadline": order.decoded.release_at})
                if st == Status.DELIVERED
                else ("OrderDataMismatch", {"orderId": oid})
            ),
        ),
    ]


def _money(factory: OrderFactory, orders: list[Order]) -> tuple[Any, ...]:
    """Everything that would change if money moved: commitments, the escrow's balance, every credit."""
    token = factory.token.address
    names = list(factory.actors.__dataclass_fields__)
    credits = tuple(factory.escrow.credit(token, getattr(factory.actors, n).address) for n in names)
    commitments = tuple(factory.escrow.commitment(o.order_id, o.terms.buyer) for o in orders)
    return commitments, factory.balance(factory.escrow.address), credits


def _open_orders(factory: OrderFactory) -> list[Order]:
    return [factory.in_status(s) for s in OPEN]


def _assert_all_refused(
    factory: OrderFactory,
    orders: list[Order],
    key: LocalAccount,
    *,
    non_strict: bool = True,
    skip: frozenset[str] = frozenset(),
) -> None:
    """Every attempt reverts exactly (none is mined, so all run at the same pending block time).

    With ``non_strict``, a mined non-strict release of all the orders then skips each with the strict error.
    """
    before = _money(factory, orders)
    expected: dict[bytes, tuple[str, dict[str, Any]]] = {}
    for order in orders:
        for attempt in _attempts(factory, order, key):
            if attempt.label in skip:
                continue
            with reverts(attempt.error, **attempt.args):
                attempt.call()
            if attempt.label == "release":
                expected[order.order_id] = (attempt.error, attempt.args)
    if non_strict:
        res = factory.escrow.release(orders, key, strict=False)
        assert not res.named("OrderReleased")
        got = skipped(factory.chain, res)
        assert {oid: (e.name, e.args_by_name) for oid, e in got.items()} == expected
    assert _money(factory, orders) == before
    assert [factory.current(o).status for o in orders] == OPEN


# ------------------------------------------------------------------ the relayer key alone


def test_relayer_key_alone_moves_no_money(factory: OrderFactory) -> None:
    _assert_all_refused(factory, _open_orders(factory), factory.actors.relayer)


def test_relayer_key_alone_moves_no_money_one_second_before_the_rules_allow(factory: OrderFactory) -> None:
    orders = _open_orders(factory)
    delivered = orders[2]
    release_at = delivered.decoded.release_at
    assert release_at is not None
    # the earliest rule-based exit of any of the four; nothing is mined, so every attempt runs at this second
    factory.chain.set_next_block_time(release_at - 1)
    _assert_all_refused(factory, orders, factory.actors.relayer, non_strict=False)


def test_relayer_has_no_admin_power(factory: OrderFactory) -> None:
    r = factory.actors.relayer
    f = factory.escrow.contract.functions
    for fn in (
        f.addOracle(r.address),
        f.addArbitrator(r.address),
        f.grantRole(REGULATOR_ROLE, r.address),
        f.setThreshold(1),
        f.pause(),
    ):
        with reverts("AccessControlUnauthorizedAccount", account=r.address, neededRole=ADMIN_ROLE):
            factory.chain.send(fn, r)


# ------------------------------------------------------------------ the admin key alone


def test_admin_key_alone_moves_no_money(factory: OrderFactory) -> None:
    _assert_all_refused(factory, _open_orders(factory), factory.actors.admin)


def test_admin_as_self_appointed_oracle_never_counts_for_existing_orders(factory: OrderFactory) -> None:
    admin = factory.actors.admin
    orders = _open_orders(factory)
    before = _money(factory, orders)
    factory.admin("addOracle", admin.address)
    factory.admin("removeOracle", factory.actors.oracle2.address)
    factory.chain.advance_time(DAY + 1)  # long past ROLE_DELAY
    funded, shipped = orders[0], orders[1]
    for order in (funded, shipped):
        att = factory.attestation(order, Milestone.DELIVERED, admin)
        with reverts("NotOracle", signer=admin.address):
            factory.escrow.attest([(order, [att])], admin)
        with reverts("NotOracle", signer=admin.address):
            factory.escrow.attest([(order, [replace(att, signature=b"")])], admin)
    assert _money(factory, orders) == before


def test_admin_as_self_appointed_arbitrator_waits_role_delay(factory: OrderFactory) -> None:
    admin = factory.actors.admin
    orders = _open_orders(factory)
    before = _money(factory, orders)
    res = factory.admin("addArbitrator", admin.address)
    active_from = res.named("ArbitratorAdded")[0].args["activeFrom"]
    factory.chain.set_next_block_time(active_from - 1)
    _assert_all_refused(factory, orders, admin, non_strict=False)
    # even once active, it never counts for these orders: they were funded before it became active
    factory.chain.set_next_block_time(active_from)
    for order in orders[:3]:
        with reverts("NotArbitrator", account=admin.address):
            factory.escrow.rule(order, admin, 0, H)
    assert _money(factory, orders) == before


def test_admin_as_self_appointed_arbitrator_never_rules_on_an_open_dispute(factory: OrderFactory) -> None:
    """Escrow v2 (issue 11, "no admin path to disputed money"): arbitrators, like oracles, are bound to orders
    funded after they became active, so an arbitrator appointed while a dispute is open cannot rule on it."""
    admin = factory.actors.admin
    order = factory.in_status(Status.DISPUTED)
    before = _money(factory, [order])
    res = factory.admin("addArbitrator", admin.address)
    factory.chain.set_next_block_time(res.named("ArbitratorAdded")[0].args["activeFrom"] + DAY)
    with reverts("NotArbitrator", account=admin.address):
        factory.escrow.rule(order, admin, 0, H)
    assert _money(factory, [order]) == before


def test_admin_as_self_appointed_regulator_can_only_delay(factory: OrderFactory) -> None:
    admin = factory.actors.admin
    orders = _open_orders(factory)
    before = _money(factory, orders)
    factory.admin("grantRole", REGULATOR_ROLE, admin.address)
    for order in orders:
        factory.escrow.freeze(order, admin, DAY, H)
        factory.escrow.unfreeze(factory.current(order), admin)
    orders = [factory.current(o) for o in orders]
    assert _money(factory, orders)[1:] == before[1:]  # only the freeze fields of the commitments changed
    _assert_all_refused(factory, orders, admin, skip=frozenset({"freeze"}))
    # frozen, the orders refuse every money movement to everyone, the admin included
    for order in orders:
        frozen = factory.escrow.freeze(factory.current(order), admin, DAY, H)
        assert frozen.named("OrderFrozen")
    assert [factory.current(o).decoded.frozen_seconds > DAY for o in orders] == [True] * 4


def test_admin_settings_changes_move_no_money(factory: OrderFactory) -> None:
    a = factory.actors
    orders = _open_orders(factory)
    before = _money(factory, orders)
    factory.admin("setCommission", 3000)
    factory.admin("setTaxRecipient", a.tax.address, 0)
    factory.admin("setDisputeWindows", 3600, 7200)
    factory.admin("setThreshold", 3)
    factory.admin("setToken", factory.token.address, False)
    factory.admin("removeArbitrator", a.arbitrator.address)
    factory.admin("revokeRole", REGULATOR_ROLE, a.regulator.address)
    factory.admin("pause")
    assert _money(factory, orders) == before
    _assert_all_refused(factory, orders, a.admin)


def test_admin_cannot_withdraw_others_credits(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    amount = 1_000_000_007
    factory.in_status(Status.RELEASED, amount=amount)
    factory.in_status(Status.REFUNDED, amount=5_000)
    split = release_split(amount, 200, 1000)
    for owed in (split.seller_net, split.commission, split.tax, 5_000, 1):
        for to in (a.admin.address, a.seller.address):
            with reverts(
                "InsufficientCredit", token=token, account=a.admin.address, available=0, requested=owed
            ):
                factory.escrow.withdraw(token, a.admin, owed, to=to)
    assert factory.escrow.credit(token, a.seller.address) == split.seller_net
    assert factory.escrow.credit(token, a.treasury.address) == split.commission
    assert factory.escrow.credit(token, a.buyer.address) == 5_000


# ------------------------------------------------------------------ pause never traps a funded order


def _paused(factory: OrderFactory, status: Status, **overrides: Any) -> Order:
    order = factory.in_status(status, **overrides)
    factory.admin("pause")
    return order


def _exit_release(factory: OrderFactory) -> Status:
    order = _paused(factory, Status.DELIVERED)
    factory.chain.advance_time(HOLD)
    factory.escrow.release([order], factory.actors.stranger)
    return factory.current(order).status


def _exit_confirm(factory: OrderFactory) -> Status:
    order = _paused(factory, Status.SHIPPED)
    factory.escrow.confirm_receipt(order, factory.actors.buyer)
    return factory.current(order).status


def _exit_signed_confirm(factory: OrderFactory) -> Status:
    a = factory.actors
    order = _paused(factory, Status.DELIVERED)
    vu = factory.chain.now() + DAY
    sig = factory.escrow.sign_buyer_decision(a.buyer.key, order.order_id, Decision.CONFIRM_RECEIPT, H, vu)
    factory.escrow.submit_buyer_decision(order, Decision.CONFIRM_RECEIPT, H, vu, sig, a.relayer)
    return factory.current(order).status


def _exit_ship_deliver_release(factory: OrderFactory) -> Status:
    order = _paused(factory, Status.FUNDED)
    order = factory.deliver(factory.ship(order))
    factory.chain.advance_time(HOLD)
    factory.escrow.release([order], factory.actors.stranger)
    return factory.current(order).status


def _exit_dispute_and_rule(factory: OrderFactory) -> Status:
    order = _paused(factory, Status.DELIVERED)
    order = factory.dispute(order)
    factory.escrow.submit_evidence(order, factory.actors.seller, H)
    factory.escrow.rule(factory.current(order), factory.actors.arbitrator, 5_000, H)
    return factory.current(order).status


def _exit_seller_refund(factory: OrderFactory) -> Status:
    order = _paused(factory, Status.DISPUTED)
    factory.escrow.refund_by_seller(order, factory.actors.seller)
    return factory.current(order).status


def _exit_timeout(reason: RefundReason) -> Callable[[OrderFactory], Status]:
    def run(factory: OrderFactory) -> Status:
        a = factory.actors
        if reason == RefundReason.SHIP_TIMEOUT:
            order = _paused(factory, Status.FUNDED)
            deadline = order.terms.ship_by
        elif reason == RefundReason.DELIVERY_TIMEOUT:
            order = _paused(factory, Status.SHIPPED)
            deadline = order.terms.deliver_by
        else:
            order = factory.in_status(Status.DISPUTED)
            if reason == RefundReason.ARBITRATION_TIMEOUT:
                factory.escrow.submit_evidence(order, a.seller, H)
                order = factory.current(order)
            factory.admin("pause")
            assert order.decoded.disputed_at is not None
            window = (
                order.terms.response_seconds
                if reason == RefundReason.RESPONSE_TIMEOUT
                else order.terms.arbitration_seconds
            )
            deadline = order.decoded.disputed_at + window
        factory.chain.set_next_block_time(deadline + 1)
        res = factory.escrow.timeout_refund(order, a.stranger)
        assert res.named("OrderRefunded")[0].args["reason"] == reason
        return factory.current(order).status

    return run


def _exit_freeze_then_release(factory: OrderFactory) -> Status:
    a = factory.actors
    order = _paused(factory, Status.DELIVERED)
    factory.escrow.freeze(order, a.regulator, DAY, H)
    factory.escrow.unfreeze(factory.current(order), a.regulator)
    factory.chain.advance_time(HOLD + DAY)
    factory.escrow.release([factory.current(order)], a.stranger)
    return factory.current(order).status


EXITS: dict[str, tuple[Callable[[OrderFactory], Status], Status]] = {
    "release": (_exit_release, Status.RELEASED),
    "confirm": (_exit_confirm, Status.RELEASED),
    "signed-confirm": (_exit_signed_confirm, Status.RELEASED),
    "ship-deliver-release": (_exit_ship_deliver_release, Status.RELEASED),
    "dispute-rule": (_exit_dispute_and_rule, Status.RESOLVED),
    "seller-refund": (_exit_seller_refund, Status.REFUNDED),
    "freeze-unfreeze-release": (_exit_freeze_then_release, Status.RELEASED),
    **{
        f"timeout-{r.name.lower()}": (_exit_timeout(r), Status.REFUNDED)
        for r in (
            RefundReason.SHIP_TIMEOUT,
            RefundReason.DELIVERY_TIMEOUT,
            RefundReason.RESPONSE_TIMEOUT,
            RefundReason.ARBITRATION_TIMEOUT,
        )
    },
}


@pytest.mark.parametrize("name", list(EXITS))
def test_pause_never_traps_a_funded_order(factory: OrderFactory, name: str) -> None:
    run, final = EXITS[name]
    assert run(factory) == final
    assert factory.chain.call(factory.escrow.contract.functions.paused()) is True
    with reverts("EnforcedPause"):
        factory.fund()


def test_withdrawals_work_while_paused(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    factory.in_status(Status.RELEASED, amount=1_000_000)
    factory.in_status(Status.REFUNDED, amount=777)
    factory.admin("pause")
    split = release_split(1_000_000, 200, 1000)
    for acct, owed in (
        (a.seller, split.seller_net),
        (a.treasury, split.commission),
        (a.tax, split.tax),
        (a.buyer, 777),
    ):
        factory.escrow.withdraw(token, acct, owed)
        assert factory.balance(acct.address) == owed
    assert factory.balance(factory.escrow.address) == 0
