"""Adversarial settlement tokens (contracts/test/): fee-on-transfer, blacklisting and reentrant.

SPEC §3: a token that delivers less than asked is refused at funding; one recipient whose transfer fails never
blocks other orders or other recipients; and a hostile token cannot re-enter `fund` or `withdraw`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from app.chain.escrow import Order, OrderAuthorization
from app.domain.money import release_split
from app.domain.order_state import Status
from tests.factories import OrderFactory, reverts

AMOUNT = 1_000_000_007
REENTRANCY_SELECTOR = bytes.fromhex("3ee5aeb5")  # ReentrancyGuardReentrantCall()


def _token(factory: OrderFactory, name: str) -> Contract:
    """Deploy a test double and allowlist it."""
    token = factory.chain.deploy(name, sender=factory.actors.admin)
    factory.admin("setToken", token.address, True)
    return token


def _bal(factory: OrderFactory, token: Contract, address: str) -> int:
    return int(factory.chain.call(token.functions.balanceOf(address)))


def _auth(
    factory: OrderFactory, token: Contract, buyer: LocalAccount, amount: int, **kw: Any
) -> OrderAuthorization:
    """An authorization in ``token``, with the buyer minted and approved for it."""
    a = factory.actors
    auth = factory.auth(buyer=buyer, token=token.address, amount=amount, **kw)
    factory.chain.send(token.functions.mint(buyer.address, amount), a.admin)
    factory.chain.send(token.functions.approve(factory.escrow.address, amount), buyer)
    return auth


def _fund(
    factory: OrderFactory, token: Contract, buyer: LocalAccount | None = None, amount: int = AMOUNT, **kw: Any
) -> Order:
    buyer = buyer or factory.actors.buyer
    auth = _auth(factory, token, buyer, amount, **kw)
    factory.escrow.fund([auth], [factory.escrow.sign_authorization(buyer.key, auth)], factory.actors.relayer)
    return factory.escrow.orders[auth.order_id]


def _conserved(factory: OrderFactory, token: Contract, orders: list[Order], accounts: Sequence[str]) -> None:
    """SPEC §3 conservation: balance == open order amounts + unpaid credits."""
    open_amounts = sum(o.terms.amount for o in (factory.current(o) for o in orders) if not o.status.is_final)
    credits = sum(factory.escrow.credit(token.address, acct) for acct in set(accounts))
    assert _bal(factory, token, factory.escrow.address) == open_amounts + credits


# ------------------------------------------------------------------ fee-on-transfer


def test_fee_on_transfer_token_is_refused_at_funding(factory: OrderFactory) -> None:
    a = factory.actors
    fot = _token(factory, "FeeOnTransferToken")
    auth = _auth(factory, fot, a.buyer, AMOUNT)
    sig = factory.escrow.sign_authorization(a.buyer.key, auth)
    fee = AMOUNT * 100 // 10_000
    with reverts("TokenShortfall", token=fot.address, expected=AMOUNT, received=AMOUNT - fee):
        factory.escrow.fund([auth], [sig], a.relayer)
    # nothing changed
    assert factory.escrow.commitment(auth.order_id, auth.buyer) == b"\x00" * 32
    assert auth.order_id not in factory.escrow.orders
    assert _bal(factory, fot, a.buyer.address) == AMOUNT
    assert _bal(factory, fot, factory.escrow.address) == 0
    allowance = factory.chain.call(fot.functions.allowance(a.buyer.address, factory.escrow.address))
    assert allowance == AMOUNT


def test_fee_on_transfer_refused_when_the_buyer_funds_directly(factory: OrderFactory) -> None:
    a = factory.actors
    fot = _token(factory, "FeeOnTransferToken")
    auth = _auth(factory, fot, a.buyer, 10_000)
    with reverts("TokenShortfall", token=fot.address, expected=10_000, received=9_900):
        factory.escrow.fund([auth], [b""], a.buyer)


def test_fee_on_transfer_refused_for_a_pulled_run_and_the_whole_batch_rolls_back(
    factory: OrderFactory,
) -> None:
    a = factory.actors
    fot = _token(factory, "FeeOnTransferToken")
    good = factory.auth(amount=5_000)  # tUSD, another run
    factory.prepare([good])
    x = _auth(factory, fot, a.buyer2, 30_000)
    y = _auth(factory, fot, a.buyer2, 20_000)
    factory.chain.send(fot.functions.approve(factory.escrow.address, 50_000), a.buyer2)
    sigs = [factory.escrow.sign_authorization(factory.account(o.buyer).key, o) for o in (good, x, y)]
    with reverts("TokenShortfall", token=fot.address, expected=50_000, received=49_500):  # one pull per run
        factory.escrow.fund([good, x, y], sigs, a.relayer)
    for o in (good, x, y):
        assert factory.escrow.commitment(o.order_id, o.buyer) == b"\x00" * 32
    assert factory.balance(factory.escrow.address) == 0
    assert _bal(factory, fot, factory.escrow.address) == 0


# ------------------------------------------------------------------ blacklisting token


@pytest.fixture
def blt(factory: OrderFactory) -> Contract:
    return _token(factory, "BlacklistToken")


def _blacklist(factory: OrderFactory, token: Contract, account: str) -> None:
    factory.chain.send(token.functions.setBlacklisted(account, True), factory.actors.admin)


def test_blacklisted_seller_is_credited_and_blocks_nobody_else(factory: OrderFactory, blt: Contract) -> None:
    a = factory.actors
    mine = factory.deliver(_fund(factory, blt))
    other = factory.deliver(_fund(factory, blt, buyer=a.buyer2, seller=a.seller2, amount=2 * AMOUNT))
    refunded = _fund(factory, blt, amount=777)
    _blacklist(factory, blt, a.seller.address)

    # a release batch credits both sellers; no transfer happens in it, so the blacklist cannot block it
    factory.chain.advance_time(mine.terms.hold_seconds)
    res = factory.escrow.release([mine, other], a.stranger)
    assert len(res.named("OrderReleased")) == 2
    factory.escrow.refund_by_seller(refunded, a.seller)  # the blacklisted seller can still give an order up

    token = blt.address
    s1, s2 = release_split(AMOUNT, 200, 1000), release_split(2 * AMOUNT, 200, 1000)
    assert factory.escrow.credit(token, a.seller.address) == s1.seller_net
    accounts = [a.seller.address, a.seller2.address, a.treasury.address, a.tax.address, a.buyer.address]
    _conserved(factory, blt, [mine, other, refunded], accounts)

    # the blacklisted seller's own withdrawal fails, and its credit stays
    with reverts("Blacklisted", account=a.seller.address):
        factory.escrow.withdraw(token, a.seller, s1.seller_net)
    assert factory.escrow.credit(token, a.seller.address) == s1.seller_net

    # everyone else withdraws as usual
    factory.escrow.withdraw(token, a.seller2, s2.seller_net)
    factory.escrow.withdraw(token, a.treasury, s1.commission + s2.commission)
    factory.escrow.withdraw(token, a.tax, s1.tax + s2.tax)
    factory.escrow.withdraw(token, a.buyer, 777)
    assert _bal(factory, blt, a.seller2.address) == s2.seller_net
    assert _bal(factory, blt, a.treasury.address) == s1.commission + s2.commission
    assert _bal(factory, blt, a.tax.address) == s1.tax + s2.tax
    assert _bal(factory, blt, a.buyer.address) == 777

    # and the seller gets its money out to another address
    res = factory.escrow.withdraw(token, a.seller, s1.seller_net, to=a.stranger.address)
    assert res.named("Withdrawn")[0].args == {
        "token": token,
        "account": a.seller.address,
        "to": a.stranger.address,
        "amount": s1.seller_net,
    }
    assert _bal(factory, blt, a.stranger.address) == s1.seller_net
    assert _bal(factory, blt, factory.escrow.address) == 0
    _conserved(factory, blt, [mine, other, refunded], accounts)


def test_blacklisted_seller_confirm_receipt_and_ruling_still_settle(
    factory: OrderFactory, blt: Contract
) -> None:
    a = factory.actors
    confirmed = factory.ship(_fund(factory, blt))
    disputed = factory.dispute(_fund(factory, blt, amount=10_001))
    _blacklist(factory, blt, a.seller.address)
    factory.escrow.confirm_receipt(confirmed, a.buyer)
    factory.escrow.rule(disputed, a.arbitrator, 3_333, b"\x01" * 32)
    assert factory.current(confirmed).status == Status.RELEASED
    assert factory.current(disputed).status == Status.RESOLVED
    refund = 10_001 * 3_333 // 10_000
    factory.escrow.withdraw(blt.address, a.buyer, refund)  # the buyer's share is not held up by the seller
    assert _bal(factory, blt, a.buyer.address) == refund


def test_blacklisted_buyer_refund_is_credited_and_withdrawn_elsewhere(
    factory: OrderFactory, blt: Contract
) -> None:
    a = factory.actors
    order = _fund(factory, blt)
    _blacklist(factory, blt, a.buyer.address)
    factory.chain.set_next_block_time(order.terms.ship_by + 1)
    factory.escrow.timeout_refund(order, a.stranger)
    with reverts("Blacklisted", account=a.buyer.address):
        factory.escrow.withdraw(blt.address, a.buyer, AMOUNT)
    factory.escrow.withdraw(blt.address, a.buyer, AMOUNT, to=a.buyer2.address)
    assert _bal(factory, blt, a.buyer2.address) == AMOUNT


def test_blacklisted_recipient_address_fails_only_that_withdrawal(
    factory: OrderFactory, blt: Contract
) -> None:
    a = factory.actors
    factory.escrow.confirm_receipt(factory.ship(_fund(factory, blt)), a.buyer)
    net = release_split(AMOUNT, 200, 1000).seller_net
    _blacklist(factory, blt, a.stranger.address)
    with reverts("Blacklisted", account=a.stranger.address):
        factory.escrow.withdraw(blt.address, a.seller, net, to=a.stranger.address)
    factory.escrow.withdraw(blt.address, a.seller, net)
    assert _bal(factory, blt, a.seller.address) == net


# ------------------------------------------------------------------ reentrant token


@pytest.fixture
def rnt(factory: OrderFactory) -> Contract:
    return _token(factory, "ReentrantToken")


ON_TRANSFER, ON_TRANSFER_FROM = 1, 2


def _arm(factory: OrderFactory, token: Contract, calldata: bytes, hook: int) -> None:
    fn = token.functions.configure(factory.escrow.address, calldata, hook)
    factory.chain.send(fn, factory.actors.stranger)


def _recorded(factory: OrderFactory, token: Contract) -> tuple[int, bool, bytes]:
    f = token.functions
    return (
        int(factory.chain.call(f.reentryCount())),
        bool(factory.chain.call(f.lastCallSucceeded())),
        bytes(factory.chain.call(f.lastReturnData())),
    )


def _inner_fund_calldata(factory: OrderFactory, token: Contract) -> tuple[bytes, OrderAuthorization]:
    """A valid order of buyer2 (minted, approved, signed): without the guard the token could fund it."""
    a = factory.actors
    inner = _auth(factory, token, a.buyer2, 4_242)
    sig = factory.escrow.sign_authorization(a.buyer2.key, inner)
    fn = factory.escrow.contract.functions.fund(
        [inner.as_tuple()], [sig], (0, 0, 0, b"\x00" * 32, b"\x00" * 32)
    )
    return bytes.fromhex(fn._encode_transaction_data()[2:]), inner


def _token_as_seller_credit(factory: OrderFactory, token: Contract) -> int:
    """Release an order whose seller is the token contract itself, so the token has a credit to withdraw."""
    a = factory.actors
    order = _fund(factory, token, seller=SimpleNamespace(address=token.address), amount=50_000)
    factory.escrow.confirm_receipt(factory.ship(order), a.buyer)
    net = release_split(50_000, 200, 1000).seller_net
    assert factory.escrow.credit(token.address, token.address) == net
    return net


def _inner_withdraw_calldata(factory: OrderFactory, token: Contract, amount: int) -> bytes:
    fn = factory.escrow.contract.functions.withdraw(token.address, factory.actors.stranger.address, amount)
    return bytes.fromhex(fn._encode_transaction_data()[2:])


@pytest.mark.parametrize("inner", ["fund", "withdraw"])
def test_reentrant_token_cannot_reenter_during_fund(factory: OrderFactory, rnt: Contract, inner: str) -> None:
    a = factory.actors
    token_credit = _token_as_seller_credit(factory, rnt)
    if inner == "fund":
        calldata, inner_auth = _inner_fund_calldata(factory, rnt)
    else:
        calldata = _inner_withdraw_calldata(factory, rnt, token_credit)
    escrow_before = _bal(factory, rnt, factory.escrow.address)
    _arm(factory, rnt, calldata, ON_TRANSFER_FROM)

    outer = _auth(factory, rnt, a.buyer, AMOUNT)
    res = factory.escrow.fund([outer], [factory.escrow.sign_authorization(a.buyer.key, outer)], a.relayer)

    count, ok, ret = _recorded(factory, rnt)
    assert (count, ok, ret) == (1, False, REENTRANCY_SELECTOR)
    decoded = factory.chain.abis.decode_error(ret)
    assert decoded is not None and (decoded.name, decoded.args_by_name) == (
        "ReentrancyGuardReentrantCall",
        {},
    )
    (ev,) = res.named("Reentered")
    assert ev.args == {"target": factory.escrow.address, "success": False, "returnData": REENTRANCY_SELECTOR}
    # the outer funding went through, the inner call changed nothing
    assert factory.current(factory.escrow.orders[outer.order_id]).status == Status.FUNDED
    if inner == "fund":
        assert factory.escrow.commitment(inner_auth.order_id, inner_auth.buyer) == b"\x00" * 32
    assert factory.escrow.credit(rnt.address, rnt.address) == token_credit
    assert _bal(factory, rnt, a.stranger.address) == 0
    assert _bal(factory, rnt, factory.escrow.address) == escrow_before + AMOUNT


@pytest.mark.parametrize("inner", ["fund", "withdraw"])
def test_reentrant_token_cannot_reenter_during_withdraw(
    factory: OrderFactory, rnt: Contract, inner: str
) -> None:
    a = factory.actors
    token_credit = _token_as_seller_credit(factory, rnt)
    refunded = _fund(factory, rnt, amount=9_000)
    factory.escrow.refund_by_seller(refunded, a.seller)
    if inner == "fund":
        calldata, inner_auth = _inner_fund_calldata(factory, rnt)
    else:
        calldata = _inner_withdraw_calldata(factory, rnt, token_credit)
    escrow_before = _bal(factory, rnt, factory.escrow.address)
    _arm(factory, rnt, calldata, ON_TRANSFER)

    res = factory.escrow.withdraw(rnt.address, a.buyer, 9_000)

    assert _recorded(factory, rnt) == (1, False, REENTRANCY_SELECTOR)
    assert res.named("Reentered")[0].args["returnData"] == REENTRANCY_SELECTOR
    assert _bal(factory, rnt, a.buyer.address) == 9_000
    assert factory.escrow.credit(rnt.address, a.buyer.address) == 0
    assert factory.escrow.credit(rnt.address, rnt.address) == token_credit  # the token's own credit untouched
    assert _bal(factory, rnt, a.stranger.address) == 0
    if inner == "fund":
        assert factory.escrow.commitment(inner_auth.order_id, inner_auth.buyer) == b"\x00" * 32
    assert _bal(factory, rnt, factory.escrow.address) == escrow_before - 9_000


def test_reentrant_token_balances_stay_conserved(factory: OrderFactory, rnt: Contract) -> None:
    a = factory.actors
    token_credit = _token_as_seller_credit(factory, rnt)
    _arm(factory, rnt, _inner_withdraw_calldata(factory, rnt, token_credit), 3)  # Hook.Both
    open_order = _fund(factory, rnt, buyer=a.buyer2, seller=a.seller2, amount=31_337)
    released = _fund(factory, rnt, amount=1_000_003)
    factory.escrow.confirm_receipt(factory.ship(released), a.buyer)
    split = release_split(1_000_003, 200, 1000)
    factory.escrow.withdraw(rnt.address, a.seller, split.seller_net)
    factory.escrow.withdraw(rnt.address, a.treasury, 1)
    assert _recorded(factory, rnt)[1:] == (False, REENTRANCY_SELECTOR)
    assert _recorded(factory, rnt)[0] == 4  # two pulls, two payouts: every one tried to re-enter
    accounts = [a.seller.address, a.treasury.address, a.tax.address, rnt.address, a.buyer.address]
    _conserved(factory, rnt, [open_order, released], accounts)
    # the hostile token's own credit is still withdrawable the ordinary way, by itself only
    with reverts(
        "InsufficientCredit", token=rnt.address, account=a.stranger.address, available=0, requested=1
    ):
        factory.escrow.withdraw(rnt.address, a.stranger, 1)
    assert factory.escrow.credit(rnt.address, rnt.address) == token_credit


@pytest.mark.parametrize("inner", ["fund", "withdraw"])
def test_control_the_same_reentrant_call_succeeds_outside_the_escrow(
    factory: OrderFactory, rnt: Contract, inner: str
) -> None:
    """The reentrant calls above are valid on their own: only the escrow's guard stops them."""
    a = factory.actors
    token_credit = _token_as_seller_credit(factory, rnt)
    if inner == "fund":
        calldata, inner_auth = _inner_fund_calldata(factory, rnt)
    else:
        calldata = _inner_withdraw_calldata(factory, rnt, token_credit)
    _arm(factory, rnt, calldata, ON_TRANSFER)
    factory.chain.send(rnt.functions.mint(a.stranger.address, 1), a.admin)
    factory.chain.send(
        rnt.functions.transfer(a.buyer.address, 1), a.stranger
    )  # a transfer outside the escrow

    count, ok, _ = _recorded(factory, rnt)
    assert (count, ok) == (1, True)
    if inner == "fund":
        assert factory.escrow.commitment(inner_auth.order_id, inner_auth.buyer) != b"\x00" * 32
    else:
        assert factory.escrow.credit(rnt.address, rnt.address) == 0
        assert _bal(factory, rnt, a.stranger.address) == token_credit
