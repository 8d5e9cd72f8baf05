"""fund(): every check of `_open` and `fund`, the token pulls (allowance, permit, runs), all or nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from app.chain.escrow import ZERO_ADDRESS, OrderAuthorization, Terms
from app.domain.order_state import OrderState, Status
from app.errors import ContractRevert
from tests.factories import DAY, HOLD, OrderFactory, reverts

U128_MAX = 2**128 - 1
TERMS_ABI = (
    "(address,address,address,uint256,uint16,uint16,address,uint64,uint64,uint32,uint8,uint32,uint32,uint64,"
    "address,bytes32,uint64)"
)


def _sign(factory: OrderFactory, *auths: OrderAuthorization) -> list[bytes]:
    return [factory.escrow.sign_authorization(factory.account(a.buyer).key, a) for a in auths]


def _fund(factory: OrderFactory, *auths: OrderAuthorization, at: int | None = None) -> None:
    """Mint, approve and sign, then fund (in a block pinned to ``at`` when given)."""
    factory.prepare(auths)
    sigs = _sign(factory, *auths)
    if at is not None:
        factory.chain.set_next_block_time(at)
    factory.escrow.fund(auths, sigs, factory.actors.relayer)


def _allowance(factory: OrderFactory, owner: str) -> int:
    return int(factory.chain.call(factory.token.functions.allowance(owner, factory.escrow.address)))


# ------------------------------------------------------------------ success paths


def test_funds_relayed_order_and_commits_terms(factory: OrderFactory) -> None:
    a = factory.actors
    auth = factory.auth(amount=123_456_789)
    factory.prepare([auth])
    before = factory.balance(a.buyer.address)
    res = factory.escrow.fund([auth], _sign(factory, auth), a.relayer)

    (ev,) = res.named("OrderFunded")
    now = factory.chain.now()
    assert ev.args["orderId"] == auth.order_id
    assert ev.args["terms"] == {
        "buyer": a.buyer.address,
        "seller": a.seller.address,
        "token": factory.token.address,
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
        "fundedAt": now,
        "arbitrator": "0x0000000000000000000000000000000000000000",
        "arbitratorExtraDataHash": bytes(32),
        "metaEvidenceId": 0,
    }
    assert OrderState.unpack(ev.args["state"]) == OrderState(Status.FUNDED)
    assert ev.args["state"] == OrderState.funded(a.buyer.address).pack()
    terms = Terms.from_event(ev.args["terms"])
    commitment = keccak(encode([TERMS_ABI, "uint256"], [terms.as_tuple(), ev.args["state"]]))
    assert factory.escrow.commitment(auth.order_id, auth.buyer) == commitment
    assert factory.balance(a.buyer.address) == before - 123_456_789
    assert factory.balance(factory.escrow.address) == 123_456_789


def test_funds_when_buyer_calls_with_empty_signature(factory: OrderFactory) -> None:
    buyer = factory.actors.buyer
    auth = factory.auth()
    factory.prepare([auth])
    factory.escrow.fund([auth], [b""], buyer)
    assert factory.escrow.orders[auth.order_id].status == Status.FUNDED
    assert factory.balance(factory.escrow.address) == auth.amount


def test_funds_with_prior_allowance(factory: OrderFactory) -> None:
    buyer = factory.actors.buyer
    auth = factory.auth(amount=700)
    factory.mint(buyer, 1_000)
    factory.approve(buyer, 1_000)
    factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)
    assert _allowance(factory, buyer.address) == 300
    assert factory.balance(buyer.address) == 300


def test_funds_with_permit_and_no_prior_allowance(factory: OrderFactory) -> None:
    buyer = factory.actors.buyer
    auth = factory.auth(amount=5_000)
    factory.mint(buyer, 5_000)
    permit = factory.escrow.sign_permit(buyer, factory.token, 5_000, factory.chain.now() + DAY)
    factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer, permit)
    assert factory.escrow.orders[auth.order_id].status == Status.FUNDED
    assert _allowance(factory, buyer.address) == 0
    assert factory.chain.call(factory.token.functions.nonces(buyer.address)) == 1
    assert factory.balance(factory.escrow.address) == 5_000


def test_funds_when_permit_was_front_run(factory: OrderFactory) -> None:
    buyer, stranger = factory.actors.buyer, factory.actors.stranger
    auth = factory.auth(amount=5_000)
    factory.mint(buyer, 5_000)
    value, deadline, v, r, s = factory.escrow.sign_permit(
        buyer, factory.token, 5_000, factory.chain.now() + DAY
    )
    # someone submits the permit to the token first: the escrow's own permit call then fails
    factory.chain.send(
        factory.token.functions.permit(buyer.address, factory.escrow.address, value, deadline, v, r, s),
        stranger,
    )
    factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer, (value, deadline, v, r, s))
    assert factory.escrow.orders[auth.order_id].status == Status.FUNDED
    assert factory.balance(factory.escrow.address) == 5_000


def test_batch_pulls_once_per_run_of_same_buyer(factory: OrderFactory) -> None:
    a = factory.actors
    auths = [
        factory.auth(buyer=a.buyer, amount=100),
        factory.auth(buyer=a.buyer, amount=200, seller=a.seller2),
        factory.auth(buyer=a.buyer2, amount=300),
        factory.auth(buyer=a.buyer2, amount=400),
        factory.auth(buyer=a.buyer, amount=500),
    ]
    factory.prepare(auths)
    res = factory.escrow.fund(auths, _sign(factory, *auths), a.relayer)

    pulls = [(e.args["from"], e.args["to"], e.args["value"]) for e in res.named("Transfer")]
    escrow = factory.escrow.address
    assert pulls == [
        (a.buyer.address, escrow, 300),
        (a.buyer2.address, escrow, 700),
        (a.buyer.address, escrow, 500),
    ]
    assert len(res.named("OrderFunded")) == 5
    assert factory.balance(escrow) == 1_500
    assert factory.balance(a.buyer.address) == 0
    assert factory.balance(a.buyer2.address) == 0


def test_funds_at_exact_bounds(factory: OrderFactory) -> None:
    t = factory.chain.now() + 100
    auth = factory.auth(valid_until=t, ship_by=t + 1, deliver_by=t + 365 * DAY, hold_seconds=3600)
    other = factory.auth(ship_by=t + 1, deliver_by=t + 2, hold_seconds=90 * DAY, valid_until=t)
    _fund(factory, auth, other, at=t)
    assert factory.escrow.orders[auth.order_id].terms.funded_at == t
    assert factory.escrow.orders[other.order_id].status == Status.FUNDED


def test_funds_tax_at_recipient_cap_and_zero_tax_with_zero_recipient(factory: OrderFactory) -> None:
    at_cap = factory.auth(tax_bps=5000)
    no_tax = factory.auth(tax_bps=0)
    assert no_tax.tax_recipient == ZERO_ADDRESS
    _fund(factory, at_cap, no_tax)
    assert factory.escrow.orders[at_cap.order_id].terms.tax_bps == 5000
    assert factory.escrow.orders[no_tax.order_id].terms.tax_recipient == ZERO_ADDRESS


def test_accepts_amount_of_two_pow_128_minus_one(factory: OrderFactory) -> None:
    # minting 2^128-1 tUSD is impractical: the amount check passes when the next check is the one to fail
    auth = factory.auth(amount=U128_MAX, commission_bps=201)
    with reverts("CommissionMismatch", signed=201, expected=200):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


# ------------------------------------------------------------------ reverts of _open


def test_reverts_when_order_already_exists(factory: OrderFactory) -> None:
    order = factory.fund()
    auth = factory.auth(order_ref="again")
    auth = replace(auth, order_id=order.order_id)
    factory.prepare([auth])
    with reverts("OrderAlreadyExists", orderId=order.order_id):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_another_buyer_cannot_squat_an_order_id(factory: OrderFactory) -> None:
    """Escrow v2: orders are keyed by (order id, buyer). Another buyer funding the same order id first gets an
    order of its own under another key; the real buyer's funding still goes through."""
    a = factory.actors
    squat = factory.auth(order_ref="squatted", buyer=a.buyer2)
    real = factory.auth(order_ref="real")
    squat = replace(squat, order_id=real.order_id)
    factory.prepare([squat, real])
    factory.escrow.fund([squat], _sign(factory, squat), a.relayer)
    factory.escrow.fund([real], _sign(factory, real), a.relayer)
    assert factory.escrow.commitment(real.order_id, a.buyer.address) != bytes(32)
    assert factory.escrow.commitment(real.order_id, a.buyer2.address) != bytes(32)
    assert factory.escrow.order_key(real.order_id, a.buyer.address) != factory.escrow.order_key(
        real.order_id, a.buyer2.address
    )


def test_reverts_when_same_order_twice_in_one_batch(factory: OrderFactory) -> None:
    auth = factory.auth(amount=10)
    factory.prepare([auth, auth])
    with reverts("OrderAlreadyExists", orderId=auth.order_id):
        factory.escrow.fund([auth, auth], _sign(factory, auth, auth), factory.actors.relayer)


def test_reverts_when_signature_expired(factory: OrderFactory) -> None:
    t = factory.chain.now() + 100
    auth = factory.auth(valid_until=t - 1)
    factory.prepare([auth])
    sigs = _sign(factory, auth)
    factory.chain.set_next_block_time(t)
    with reverts("SignatureExpired", validUntil=t - 1, nowTime=t):
        factory.escrow.fund([auth], sigs, factory.actors.relayer)


def test_reverts_when_token_not_allowed(factory: OrderFactory) -> None:
    other = factory.actors.stranger.address
    auth = factory.auth(token=other)
    with reverts("TokenNotAllowed", token=other):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_token_was_disallowed(factory: OrderFactory) -> None:
    token = factory.token.address
    factory.admin("setToken", token, False)
    auth = factory.auth()
    with reverts("TokenNotAllowed", token=token):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


@pytest.mark.parametrize("amount", [0, U128_MAX + 1, 2**256 - 1])
def test_reverts_when_amount_invalid(factory: OrderFactory, amount: int) -> None:
    auth = factory.auth(amount=amount)
    with reverts("InvalidAmount", amount=amount):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_buyer_is_zero(factory: OrderFactory) -> None:
    auth = replace(factory.auth(), buyer=ZERO_ADDRESS)
    seller = factory.actors.seller.address
    with reverts("InvalidParties", buyer=ZERO_ADDRESS, seller=seller):
        factory.escrow.fund([auth], [b"\x01" * 65], factory.actors.relayer)


def test_reverts_when_seller_is_zero(factory: OrderFactory) -> None:
    auth = replace(factory.auth(), seller=ZERO_ADDRESS)
    buyer = factory.actors.buyer.address
    with reverts("InvalidParties", buyer=buyer, seller=ZERO_ADDRESS):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_buyer_is_seller(factory: OrderFactory) -> None:
    buyer = factory.actors.buyer
    auth = factory.auth(seller=buyer)
    with reverts("InvalidParties", buyer=buyer.address, seller=buyer.address):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_commission_differs_from_platform_rate(factory: OrderFactory) -> None:
    auth = factory.auth(commission_bps=199)
    with reverts("CommissionMismatch", signed=199, expected=200):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_platform_rate_changed_after_signing(factory: OrderFactory) -> None:
    auth = factory.auth()
    factory.admin("setCommission", 300)
    with reverts("CommissionMismatch", signed=200, expected=300):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_tax_has_zero_recipient(factory: OrderFactory) -> None:
    auth = factory.auth(tax_bps=1000, tax_recipient=ZERO_ADDRESS)
    with reverts("TaxNotAllowed", taxRecipient=ZERO_ADDRESS, taxBps=1000):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_tax_recipient_unregistered(factory: OrderFactory) -> None:
    stranger = factory.actors.stranger.address
    auth = factory.auth(tax_recipient=stranger)
    with reverts("TaxNotAllowed", taxRecipient=stranger, taxBps=1000):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_tax_above_recipient_cap(factory: OrderFactory) -> None:
    tax = factory.actors.tax.address
    auth = factory.auth(tax_bps=5001)
    with reverts("TaxNotAllowed", taxRecipient=tax, taxBps=5001):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_tax_above_lowered_cap(factory: OrderFactory) -> None:
    tax = factory.actors.tax.address
    factory.admin("setTaxRecipient", tax, 800)
    auth = factory.auth(tax_bps=801)
    with reverts("TaxNotAllowed", taxRecipient=tax, taxBps=801):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)
    _fund(factory, factory.auth(tax_bps=800))


def test_reverts_when_zero_tax_names_a_recipient(factory: OrderFactory) -> None:
    tax = factory.actors.tax.address
    auth = factory.auth(tax_bps=0, tax_recipient=tax)
    with reverts("TaxNotAllowed", taxRecipient=tax, taxBps=0):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


@pytest.mark.parametrize(
    ("ship", "deliver", "hold"),
    [
        pytest.param(0, 10 * DAY, HOLD, id="ship_by_is_now"),
        pytest.param(-1, 10 * DAY, HOLD, id="ship_by_in_past"),
        pytest.param(5 * DAY, 5 * DAY, HOLD, id="deliver_by_equals_ship_by"),
        pytest.param(5 * DAY, 5 * DAY - 1, HOLD, id="deliver_by_before_ship_by"),
        pytest.param(5 * DAY, 365 * DAY + 1, HOLD, id="deliver_by_beyond_a_year"),
        pytest.param(5 * DAY, 10 * DAY, 3599, id="hold_below_one_hour"),
        pytest.param(5 * DAY, 10 * DAY, 90 * DAY + 1, id="hold_above_ninety_days"),
    ],
)
def test_reverts_when_schedule_out_of_bounds(
    factory: OrderFactory, ship: int, deliver: int, hold: int
) -> None:
    t = factory.chain.now() + 100
    auth = factory.auth(ship_by=t + ship, deliver_by=t + deliver, hold_seconds=hold, valid_until=t)
    sigs = _sign(factory, auth)
    factory.chain.set_next_block_time(t)
    with reverts("InvalidSchedule", shipBy=t + ship, deliverBy=t + deliver, holdSeconds=hold):
        factory.escrow.fund([auth], sigs, factory.actors.relayer)


def test_reverts_when_threshold_above_active_oracles(factory: OrderFactory) -> None:
    factory.admin("setThreshold", 3)
    factory.admin("removeOracle", factory.actors.oracle3.address)
    auth = factory.auth()
    with reverts("InvalidThreshold", threshold=3, activeOracles=2):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_threshold_counts_oracles_not_yet_active(factory: OrderFactory) -> None:
    """A pending oracle (inside ROLE_DELAY) can never count for an order funded now (fundedAt <
    activeFrom), so an order locked at k=4 with three counting oracles can never ship or deliver.
    Funding must refuse it like any other unreachable threshold."""
    factory.admin("addOracle", Account.create().address)  # pending for ROLE_DELAY
    factory.admin("setThreshold", 4)
    auth = factory.auth()
    factory.prepare([auth])
    with reverts("InvalidThreshold", threshold=4, activeOracles=3):
        factory.escrow.fund([auth], _sign(factory, auth), factory.actors.relayer)


def test_reverts_when_signed_by_another_key(factory: OrderFactory) -> None:
    a = factory.actors
    auth = factory.auth()
    sig = factory.escrow.sign_authorization(a.stranger.key, auth)
    with reverts("InvalidSignature", expected=a.buyer.address, recovered=a.stranger.address):
        factory.escrow.fund([auth], [sig], a.relayer)


def test_reverts_when_relayer_sends_empty_signature(factory: OrderFactory) -> None:
    auth = factory.auth()
    with reverts("MalformedSignature", reason=2):
        factory.escrow.fund([auth], [b""], factory.actors.relayer)


def test_reverts_when_signature_truncated(factory: OrderFactory) -> None:
    auth = factory.auth()
    with reverts("MalformedSignature", reason=2):
        factory.escrow.fund([auth], [_sign(factory, auth)[0][:64]], factory.actors.relayer)


# ------------------------------------------------------------------ reverts of fund


def test_reverts_when_batch_empty(factory: OrderFactory) -> None:
    with reverts("InvalidBatch", length=0):
        factory.escrow.fund([], [], factory.actors.relayer)


def test_reverts_when_batch_above_500(factory: OrderFactory) -> None:
    auth = factory.auth()
    with reverts("InvalidBatch", length=501):
        factory.escrow.fund([auth] * 501, [b""] * 501, factory.actors.relayer)


def test_reverts_when_signature_count_differs(factory: OrderFactory) -> None:
    auths = [factory.auth(), factory.auth()]
    with reverts("InvalidBatch", length=2):
        factory.escrow.fund(auths, _sign(factory, auths[0]), factory.actors.relayer)


def test_reverts_when_paused_and_funds_after_unpause(factory: OrderFactory) -> None:
    auth = factory.auth()
    factory.prepare([auth])
    sigs = _sign(factory, auth)
    factory.admin("pause")
    with reverts("EnforcedPause"):
        factory.escrow.fund([auth], sigs, factory.actors.relayer)
    factory.admin("unpause")
    factory.escrow.fund([auth], sigs, factory.actors.relayer)
    assert factory.escrow.orders[auth.order_id].status == Status.FUNDED


def test_reverts_when_permit_belongs_to_a_later_run(factory: OrderFactory) -> None:
    """Only the first run of the batch may use the permit: it was signed by that run's buyer."""
    a = factory.actors
    first, second = factory.auth(buyer=a.buyer, amount=10), factory.auth(buyer=a.buyer2, amount=20)
    factory.prepare([first])
    factory.mint(a.buyer2, 20)
    permit = factory.escrow.sign_permit(a.buyer2, factory.token, 20, factory.chain.now() + DAY)
    with reverts("ERC20InsufficientAllowance", spender=factory.escrow.address, allowance=0, needed=20):
        factory.escrow.fund([first, second], _sign(factory, first, second), a.relayer, permit)


def test_failed_funding_changes_nothing(factory: OrderFactory) -> None:
    """A batch whose last pull fails is mined and reverted: no commitment, no balance moved."""
    a = factory.actors
    good, short = factory.auth(buyer=a.buyer, amount=10), factory.auth(buyer=a.buyer2, amount=20)
    factory.prepare([good])
    factory.mint(a.buyer2, 20)
    factory.approve(a.buyer2, 19)
    balances = {x: factory.balance(x) for x in (a.buyer.address, a.buyer2.address, factory.escrow.address)}
    with reverts(
        "ERC20InsufficientAllowance", spender=factory.escrow.address, allowance=19, needed=20
    ) as err:
        factory.escrow.fund([good, short], _sign(factory, good, short), a.relayer, gas=3_000_000)
    assert err.value.tx_hash is not None  # mined with status 0, not just refused by estimation
    assert factory.escrow.commitment(good.order_id, good.buyer) == b"\x00" * 32
    assert factory.escrow.commitment(short.order_id, short.buyer) == b"\x00" * 32
    assert {x: factory.balance(x) for x in balances} == balances
    assert good.order_id not in factory.escrow.orders


def test_failed_check_in_later_entry_records_no_earlier_order(factory: OrderFactory) -> None:
    good, bad = factory.auth(amount=10), factory.auth(amount=0)
    factory.prepare([good])
    with pytest.raises(ContractRevert) as err:
        factory.escrow.fund([good, bad], _sign(factory, good, bad), factory.actors.relayer, gas=3_000_000)
    assert (err.value.name, err.value.args_by_name) == ("InvalidAmount", {"amount": 0})
    assert factory.escrow.commitment(good.order_id, good.buyer) == b"\x00" * 32
    assert factory.balance(factory.escrow.address) == 0


def test_reverts_when_token_delivers_less_than_pulled(factory: OrderFactory) -> None:
    a = factory.actors
    fot = factory.chain.deploy("FeeOnTransferToken", sender=a.admin)
    factory.admin("setToken", fot.address, True)
    factory.chain.send(fot.functions.mint(a.buyer.address, 10_000), a.admin)
    factory.chain.send(fot.functions.approve(factory.escrow.address, 10_000), a.buyer)
    auth = factory.auth(token=fot.address, amount=10_000)
    with reverts("TokenShortfall", token=fot.address, expected=10_000, received=9_900):
        factory.escrow.fund([auth], _sign(factory, auth), a.relayer)


def test_token_cannot_reenter_fund_during_the_pull(factory: OrderFactory) -> None:
    a = factory.actors
    rnt = factory.chain.deploy("ReentrantToken", sender=a.admin)
    factory.admin("setToken", rnt.address, True)
    outer = factory.auth(token=rnt.address, amount=1_000)
    inner = factory.auth(token=rnt.address, amount=2_000, buyer=a.buyer2)
    for buyer, amount in ((a.buyer, 1_000), (a.buyer2, 2_000)):
        factory.chain.send(rnt.functions.mint(buyer.address, amount), a.admin)
        factory.chain.send(rnt.functions.approve(factory.escrow.address, amount), buyer)
    reentry = factory.escrow.contract.functions.fund(
        [inner.as_tuple()], _sign(factory, inner), (0, 0, 0, b"\x00" * 32, b"\x00" * 32)
    )._encode_transaction_data()
    factory.chain.send(rnt.functions.configure(factory.escrow.address, reentry, 2), a.admin)  # OnTransferFrom

    res = factory.escrow.fund([outer], _sign(factory, outer), a.relayer)
    (hook,) = res.named("Reentered")
    assert hook.args["success"] is False
    err = factory.chain.abis.decode_error(bytes(hook.args["returnData"]))
    assert err is not None and err.name == "ReentrancyGuardReentrantCall"
    assert factory.escrow.commitment(inner.order_id, inner.buyer) == b"\x00" * 32
    assert factory.escrow.orders[outer.order_id].status == Status.FUNDED


def test_batch_starts_a_new_pull_when_the_token_changes(factory: OrderFactory) -> None:
    a = factory.actors
    token2 = factory.chain.deploy("TestUSD", sender=a.admin)
    factory.admin("setToken", token2.address, True)
    other = replace(factory, token=token2)
    auths = [factory.auth(amount=100), other.auth(amount=200), factory.auth(amount=300)]
    factory.prepare([auths[0], auths[2]])
    other.prepare([auths[1]])
    res = factory.escrow.fund(auths, _sign(factory, *auths), a.relayer)
    pulls = [(e.address, e.args["from"], e.args["value"]) for e in res.named("Transfer")]
    assert pulls == [
        (factory.token.address, a.buyer.address, 100),
        (token2.address, a.buyer.address, 200),
        (factory.token.address, a.buyer.address, 300),
    ]
