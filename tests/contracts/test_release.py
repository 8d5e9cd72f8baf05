"""release(): the T+N boundary, every revert path of `release`/`_release`, batches and aggregated credits."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from eth_account import Account

from app.chain.escrow import Order
from app.domain.ids import content_hash
from app.domain.money import release_split
from app.domain.order_state import Milestone, OrderState, Status
from tests.factories import DAY, OrderFactory, reverts, skipped


def _delivered(factory: OrderFactory, **overrides: object) -> Order:
    return factory.deliver(factory.fund(**overrides))


# ------------------------------------------------------------------ the hold window


def test_reverts_one_second_before_release_at(factory: OrderFactory) -> None:
    order = _delivered(factory)
    release_at = order.decoded.release_at
    assert release_at is not None
    factory.chain.set_next_block_time(release_at - 1)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=release_at):
        factory.escrow.release([order], factory.actors.relayer)


def test_releases_at_exactly_release_at_with_exact_split(factory: OrderFactory) -> None:
    a = factory.actors
    order = _delivered(factory, amount=987_654_321)
    release_at = order.decoded.release_at
    assert release_at is not None
    factory.chain.set_next_block_time(release_at)
    res = factory.escrow.release([order], a.stranger)

    split = release_split(987_654_321, 200, 1000)
    (ev,) = res.named("OrderReleased")
    assert ev.args == {
        "orderId": order.order_id,
        "state": OrderState(Status.RELEASED, anchor=release_at, buyer_tag=order.decoded.buyer_tag).pack(),
        "commission": split.commission,
        "tax": split.tax,
        "sellerNet": split.seller_net,
    }
    token = factory.token.address
    assert factory.escrow.credit(token, a.seller.address) == split.seller_net
    assert factory.escrow.credit(token, a.treasury.address) == split.commission
    assert factory.escrow.credit(token, a.tax.address) == split.tax
    assert factory.balance(factory.escrow.address) == 987_654_321  # credited, not paid out


def test_releases_long_after_release_at(factory: OrderFactory) -> None:
    order = _delivered(factory)
    factory.chain.advance_time(365 * DAY)
    factory.escrow.release([order], factory.actors.relayer)
    assert factory.current(order).status == Status.RELEASED


@pytest.mark.parametrize("caller", ["buyer", "seller", "stranger", "relayer", "oracle1"])
def test_anyone_can_release(factory: OrderFactory, caller: str) -> None:
    order = _delivered(factory)
    factory.chain.advance_time(order.terms.hold_seconds)
    factory.escrow.release([order], getattr(factory.actors, caller))
    assert factory.current(order).status == Status.RELEASED


# ------------------------------------------------------------------ reverts


@pytest.mark.parametrize(
    "status",
    [
        Status.FUNDED,
        Status.SHIPPED,
        Status.DISPUTED,
        Status.RELEASED,
        Status.REFUNDED,
        Status.RESOLVED,
    ],
)
def test_reverts_when_not_delivered(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    factory.chain.advance_time(10 * DAY)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.release([order], factory.actors.relayer)


def test_reverts_when_frozen_and_extends_release_at_by_the_freeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = _delivered(factory)
    release_at = order.decoded.release_at
    assert release_at is not None
    factory.escrow.freeze(order, a.regulator, 2 * DAY, content_hash(b"sanctions check"))
    order = factory.current(order)
    frozen_until = order.decoded.frozen_until
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=frozen_until):
        factory.escrow.release([order], a.relayer)
    factory.chain.set_next_block_time(release_at + 2 * DAY - 1)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=release_at + 2 * DAY):
        factory.escrow.release([order], a.relayer)
    factory.chain.set_next_block_time(release_at + 2 * DAY)
    factory.escrow.release([order], a.relayer)
    assert factory.current(order).status == Status.RELEASED


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = _delivered(factory)
    ghost = replace(order, order_id=b"\x99" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.release([ghost], factory.actors.relayer)


@pytest.mark.parametrize("field", ["terms", "state"])
def test_reverts_when_order_data_mismatch(factory: OrderFactory, field: str) -> None:
    a = factory.actors
    order = _delivered(factory)
    factory.chain.advance_time(order.terms.hold_seconds)
    if field == "terms":  # e.g. a relayer redirecting the net to itself
        wrong = replace(order, terms=replace(order.terms, seller=a.relayer.address))
    else:  # e.g. an earlier releaseAt
        wrong = replace(order, state=replace(order.decoded, anchor=1).pack())
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.release([wrong], a.relayer)


@pytest.mark.parametrize("n", [0, 501])
def test_reverts_when_batch_size_invalid(factory: OrderFactory, n: int) -> None:
    order = _delivered(factory)
    with reverts("InvalidBatch", length=n):
        factory.escrow.release([order] * n, factory.actors.relayer)


# ------------------------------------------------------------------ batches


def test_strict_batch_reverts_with_first_failing_entry(factory: OrderFactory) -> None:
    due, early = _delivered(factory), None
    factory.chain.advance_time(due.terms.hold_seconds)
    early = _delivered(factory)
    with reverts("DeadlineNotReached", orderId=early.order_id, deadline=early.decoded.release_at):
        factory.escrow.release([due, early], factory.actors.relayer, strict=True)
    assert factory.current(due).status == Status.DELIVERED
    assert factory.escrow.credit(factory.token.address, factory.actors.seller.address) == 0


def test_same_order_twice_in_a_batch_is_credited_once(factory: OrderFactory) -> None:
    a = factory.actors
    order = _delivered(factory, amount=1_000_000)
    factory.chain.advance_time(order.terms.hold_seconds)
    res = factory.escrow.release([order, order], a.relayer, strict=False)
    reason = skipped(factory.chain, res)[order.order_id]
    assert (reason.name, reason.args_by_name) == ("OrderDataMismatch", {"orderId": order.order_id})
    split = release_split(1_000_000, 200, 1000)
    assert factory.escrow.credit(factory.token.address, a.seller.address) == split.seller_net


def test_batch_aggregates_credits_exactly_across_sellers_tax_recipients_and_tokens(
    factory: OrderFactory,
) -> None:
    a = factory.actors
    tax2 = Account.create().address
    factory.admin("setTaxRecipient", tax2, 3000)
    token2 = factory.chain.deploy("TestUSD", sender=a.admin)
    factory.admin("setToken", token2.address, True)
    factory2 = replace(factory, token=token2)

    specs1 = [  # (amount, seller, taxBps, taxRecipient) in tUSD #1
        (1_000_000_007, a.seller, 1000, a.tax.address),
        (999_999_999, a.seller2, 1000, a.tax.address),
        (333_333_333, a.seller, 1000, a.tax.address),
        (12_345, a.seller, 2500, tax2),
        (77_777_777, a.seller2, 0, None),
        (1, a.seller2, 5000, a.tax.address),
        (49_999, a.seller2, 3000, tax2),
    ]
    specs2 = [(55_555_555, a.seller, 1000, a.tax.address), (10_001, a.seller, 3000, tax2)]

    def auths(f: OrderFactory, specs: list[tuple[int, object, int, str | None]]) -> list:
        out = []
        for amount, seller, bps, recipient in specs:
            kw = {"tax_recipient": recipient} if recipient else {}
            out.append(f.auth(amount=amount, seller=seller, tax_bps=bps, **kw))
        return out

    auths1, auths2 = auths(factory, specs1), auths(factory2, specs2)
    pending1, pending2 = factory.auth(amount=4_000), factory.auth(amount=5_000)  # not released
    factory.fund_batch([*auths1, pending1, pending2])
    factory2.fund_batch(auths2)
    orders = {x.order_id: factory.escrow.orders[x.order_id] for x in [*auths1, *auths2]}
    release_now = list(orders.values())
    factory.escrow.attest(
        [(o, [factory.attestation(o, Milestone.DELIVERED)]) for o in release_now], a.relayer
    )
    factory.chain.advance_time(3 * 86_400)
    early = factory.deliver(factory.escrow.orders[pending2.order_id])
    funded = factory.escrow.orders[pending1.order_id]

    cur = [factory.current(o) for o in release_now]
    # interleave tokens, sellers and tax recipients so every pending leg is flushed mid-batch
    batch = [cur[0], cur[7], cur[1], funded, cur[3], cur[2], cur[8], cur[4], early, cur[5], cur[6]]
    res = factory.escrow.release(batch, a.stranger, strict=False)

    reasons = {k: (v.name, v.args_by_name) for k, v in skipped(factory.chain, res).items()}
    assert reasons == {
        funded.order_id: ("InvalidStatus", {"orderId": funded.order_id, "status": Status.FUNDED}),
        early.order_id: (
            "DeadlineNotReached",
            {"orderId": early.order_id, "deadline": early.decoded.release_at},
        ),
    }
    expected: Counter[tuple[str, str]] = Counter()
    released = {bytes(e.args["orderId"]): e.args for e in res.named("OrderReleased")}
    assert set(released) == set(orders)
    for o in orders.values():
        t = o.terms
        split = release_split(t.amount, t.commission_bps, t.tax_bps)
        ev = released[o.order_id]
        assert (ev["commission"], ev["tax"], ev["sellerNet"]) == (
            split.commission,
            split.tax,
            split.seller_net,
        )
        expected[(t.token, a.treasury.address)] += split.commission
        expected[(t.token, t.tax_recipient)] += split.tax
        expected[(t.token, t.seller)] += split.seller_net
    accounts = [a.treasury.address, a.tax.address, tax2, a.seller.address, a.seller2.address]
    accounts += [a.buyer.address, a.stranger.address]
    for tok in (factory.token.address, token2.address):
        for acct in accounts:
            assert factory.escrow.credit(tok, acct) == expected[(tok, acct)], (tok, acct)

    # conservation: the escrow's balance is open amounts plus unpaid credits
    open1 = 4_000 + 5_000
    credits1 = sum(amount for amount, *_ in specs1)
    assert factory.balance(factory.escrow.address) == open1 + credits1
    bal2 = factory.chain.call(token2.functions.balanceOf(factory.escrow.address))
    assert bal2 == sum(amount for amount, *_ in specs2)
