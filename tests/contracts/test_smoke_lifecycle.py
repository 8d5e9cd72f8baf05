"""The three-step happy path, end to end, with the exact split."""

from __future__ import annotations

import pytest

from app.domain.money import release_split
from app.domain.order_state import Status
from app.errors import ContractRevert
from tests.factories import HOLD, OrderFactory


def test_fund_deliver_release_credits_exact_split(factory: OrderFactory) -> None:
    order = factory.fund(amount=123_456_789)
    order = factory.deliver(order)
    assert order.status == Status.DELIVERED
    with pytest.raises(ContractRevert) as err:
        factory.escrow.release([order], factory.actors.relayer)
    assert err.value.name == "DeadlineNotReached"
    assert err.value.args_by_name["deadline"] == order.decoded.release_at

    factory.chain.advance_time(HOLD)
    factory.escrow.release([order], factory.actors.stranger)
    split = release_split(123_456_789, 200, 1000)
    token = str(factory.token.address)
    assert factory.current(order).status == Status.RELEASED
    assert factory.escrow.credit(token, factory.actors.seller.address) == split.seller_net
    assert factory.escrow.credit(token, factory.actors.treasury.address) == split.commission
    assert factory.escrow.credit(token, factory.actors.tax.address) == split.tax
