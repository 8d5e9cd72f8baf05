"""withdraw(): paying out credits, to oneself or another address; every revert path; events and balances."""

from __future__ import annotations

import pytest

from app.chain.escrow import ZERO_ADDRESS
from app.domain.money import release_split
from app.domain.order_state import Status
from tests.factories import OrderFactory, reverts


def _released(factory: OrderFactory, amount: int = 1_000_000_007) -> int:
    """Release one order; returns the seller's net credit."""
    factory.in_status(Status.RELEASED, amount=amount)
    return release_split(amount, 200, 1000).seller_net


def test_withdraws_full_credit_with_event_and_transfer(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    net = _released(factory)
    escrow_before = factory.balance(factory.escrow.address)
    res = factory.escrow.withdraw(token, a.seller, net)

    names = [e.name for e in res.events]
    assert names == ["Withdrawn", "Transfer"]  # effects and event before the interaction
    assert res.events[0].args == {
        "token": token,
        "account": a.seller.address,
        "to": a.seller.address,
        "amount": net,
    }
    assert res.events[1].args == {"from": factory.escrow.address, "to": a.seller.address, "value": net}
    assert factory.escrow.credit(token, a.seller.address) == 0
    assert factory.balance(a.seller.address) == net
    assert factory.balance(factory.escrow.address) == escrow_before - net


def test_withdraws_to_another_address(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    net = _released(factory)
    res = factory.escrow.withdraw(token, a.seller, net, to=a.stranger.address)
    (ev,) = res.named("Withdrawn")
    assert ev.args == {"token": token, "account": a.seller.address, "to": a.stranger.address, "amount": net}
    assert factory.balance(a.stranger.address) == net
    assert factory.balance(a.seller.address) == 0
    assert factory.escrow.credit(token, a.seller.address) == 0
    assert factory.escrow.credit(token, a.stranger.address) == 0  # paid out, never credited


def test_withdraws_leaving_one_unit(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    net = _released(factory)
    factory.escrow.withdraw(token, a.seller, net - 1)
    assert factory.escrow.credit(token, a.seller.address) == 1
    assert factory.balance(a.seller.address) == net - 1
    res = factory.escrow.withdraw(token, a.seller, 1)
    assert res.named("Withdrawn")[0].args["amount"] == 1
    assert factory.escrow.credit(token, a.seller.address) == 0
    assert factory.balance(a.seller.address) == net


def test_every_payee_withdraws_and_the_escrow_ends_empty(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    amount = 1_000_000_007
    factory.in_status(Status.RELEASED, amount=amount)
    split = release_split(amount, 200, 1000)
    for payee, owed in ((a.seller, split.seller_net), (a.treasury, split.commission), (a.tax, split.tax)):
        factory.escrow.withdraw(token, payee, owed)
        assert factory.balance(payee.address) == owed
    assert factory.balance(factory.escrow.address) == 0


def test_buyer_withdraws_a_refund(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    order = factory.in_status(Status.REFUNDED, amount=555)
    factory.escrow.withdraw(token, a.buyer, 555)
    assert factory.balance(a.buyer.address) == 555
    assert factory.escrow.credit(token, a.buyer.address) == 0
    assert factory.current(order).status == Status.REFUNDED


def test_withdrawal_does_not_touch_open_orders_funds(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    open_order = factory.fund(buyer=a.buyer2, seller=a.seller2, amount=5_000)
    net = _released(factory)
    factory.escrow.withdraw(token, a.seller, net)
    assert factory.balance(factory.escrow.address) == 5_000 + (1_000_000_007 - net)
    with reverts("InsufficientCredit", token=token, account=a.seller.address, available=0, requested=1):
        factory.escrow.withdraw(token, a.seller, 1)
    assert factory.current(open_order).status == Status.FUNDED


# ------------------------------------------------------------------ reverts


def test_reverts_for_zero_amount(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    net = _released(factory)
    with reverts("InsufficientCredit", token=token, account=a.seller.address, available=net, requested=0):
        factory.escrow.withdraw(token, a.seller, 0)


def test_reverts_for_zero_amount_without_credit(factory: OrderFactory) -> None:
    s = factory.actors.stranger
    token = factory.token.address
    with reverts("InsufficientCredit", token=token, account=s.address, available=0, requested=0):
        factory.escrow.withdraw(token, s, 0)


def test_reverts_above_credit(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    net = _released(factory)
    with reverts(
        "InsufficientCredit", token=token, account=a.seller.address, available=net, requested=net + 1
    ):
        factory.escrow.withdraw(token, a.seller, net + 1)
    assert factory.escrow.credit(token, a.seller.address) == net


def test_reverts_after_full_withdrawal(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    net = _released(factory)
    factory.escrow.withdraw(token, a.seller, net)
    with reverts("InsufficientCredit", token=token, account=a.seller.address, available=0, requested=net):
        factory.escrow.withdraw(token, a.seller, net)


@pytest.mark.parametrize("caller", ["stranger", "admin", "relayer", "buyer"])
def test_reverts_when_withdrawing_someone_elses_credit(factory: OrderFactory, caller: str) -> None:
    token = factory.token.address
    net = _released(factory)
    acct = getattr(factory.actors, caller)
    with reverts("InsufficientCredit", token=token, account=acct.address, available=0, requested=net):
        factory.escrow.withdraw(token, acct, net, to=factory.actors.seller.address)


def test_reverts_for_zero_recipient(factory: OrderFactory) -> None:
    a = factory.actors
    token = factory.token.address
    net = _released(factory)
    with reverts("ZeroAddress"):
        factory.escrow.withdraw(token, a.seller, net, to=ZERO_ADDRESS)
    with reverts("ZeroAddress"):  # checked before the credit
        factory.escrow.withdraw(token, a.stranger, 0, to=ZERO_ADDRESS)
    assert factory.escrow.credit(token, a.seller.address) == net


def test_reverts_for_a_token_without_credit(factory: OrderFactory) -> None:
    a = factory.actors
    _released(factory)
    other = a.stranger.address  # any address that is not a token the seller was paid in
    with reverts("InsufficientCredit", token=other, account=a.seller.address, available=0, requested=1):
        factory.escrow.withdraw(other, a.seller, 1)
