"""submitEvidence() and submitEvidenceSigned(): anchoring, the seller's response bit, replay, every revert."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account.signers.local import LocalAccount

from app.chain.escrow import ZERO_HASH, Order, TxResult
from app.domain.ids import content_hash
from app.domain.order_state import Status
from tests.factories import DAY, OrderFactory, recover, reverts

EVIDENCE = content_hash(b"invoice.pdf bytes")


def _signed(
    factory: OrderFactory,
    order: Order,
    party: LocalAccount,
    evidence: bytes = EVIDENCE,
    valid_until: int | None = None,
    key: bytes | None = None,
) -> tuple[int, bytes]:
    valid_until = factory.chain.now() + DAY if valid_until is None else valid_until
    sig = factory.escrow.sign_evidence(key or party.key, order.order_id, party.address, evidence, valid_until)
    return valid_until, sig


def _relay(
    factory: OrderFactory, order: Order, party: LocalAccount, vu: int, sig: bytes, evidence: bytes = EVIDENCE
) -> TxResult:
    return factory.escrow.submit_evidence_signed(
        order, party.address, evidence, vu, sig, factory.actors.relayer
    )


def _digest(factory: OrderFactory, order: Order, party: str, vu: int, evidence: bytes = EVIDENCE) -> bytes:
    msg = {"orderId": order.order_id, "party": party, "evidenceHash": evidence, "validUntil": vu}
    return factory.digest("EvidenceSubmission", msg)


def _response_deadline(order: Order) -> int:
    disputed_at = order.decoded.disputed_at
    assert disputed_at is not None
    return disputed_at + order.terms.response_seconds


# ------------------------------------------------------------------ anchoring


@pytest.mark.parametrize("status", [Status.FUNDED, Status.SHIPPED, Status.DELIVERED, Status.DISPUTED])
@pytest.mark.parametrize("who", ["buyer", "seller"])
def test_party_anchors_evidence_in_any_open_status(factory: OrderFactory, status: Status, who: str) -> None:
    party = getattr(factory.actors, who)
    order = factory.in_status(status)
    before = factory.escrow.commitment(order.order_id)
    res = factory.escrow.submit_evidence(order, party, EVIDENCE)
    (ev,) = res.named("EvidenceSubmitted")
    assert ev.args["orderId"] == order.order_id
    assert ev.args["party"] == party.address
    assert ev.args["evidenceHash"] == EVIDENCE
    # Platform arbitration: no ERC-1497 Evidence (SPEC §4.1 scopes it to ERC-792 orders; forge covers those).
    assert [e.name for e in res.events] == ["EvidenceSubmitted"]
    if not (who == "seller" and status == Status.DISPUTED):
        assert ev.args["state"] == order.state  # nothing changes but the log
        assert factory.escrow.commitment(order.order_id) == before


def _key(factory: OrderFactory, order: Order) -> bytes:
    """The escrow's key of the order: used digests are kept per order (escrow v2)."""
    return factory.escrow.order_key(order.order_id, order.terms.buyer)


def test_relayed_signed_evidence_is_anchored_and_digest_marked_used(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    vu, sig = _signed(factory, order, a.buyer)
    digest = _digest(factory, order, a.buyer.address, vu)
    res = _relay(factory, order, a.buyer, vu, sig)
    assert res.named("EvidenceSubmitted")[0].args["party"] == a.buyer.address
    assert res.named("EvidenceSubmitted")[0].args["evidenceHash"] == EVIDENCE
    assert (
        factory.chain.call(factory.escrow.contract.functions.isDigestUsed(_key(factory, order), digest))
        is True
    )


# ------------------------------------------------------------------ the seller's response


def test_seller_response_inside_window_sets_responded_bit(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DISPUTED)
    factory.chain.set_next_block_time(_response_deadline(order))
    res = factory.escrow.submit_evidence(order, a.seller, EVIDENCE)
    now = factory.current(order)
    assert now.decoded == replace(order.decoded, responded=True)
    assert res.named("EvidenceSubmitted")[0].args["state"] == now.state
    # the committed state is the new one: acting with it works, with the old one does not
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.submit_evidence(order, a.buyer, EVIDENCE)
    factory.escrow.submit_evidence(now, a.buyer, EVIDENCE)


def test_seller_response_after_window_does_not_set_the_bit(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DISPUTED)
    factory.chain.set_next_block_time(_response_deadline(order) + 1)
    res = factory.escrow.submit_evidence(order, a.seller, EVIDENCE)
    assert res.named("EvidenceSubmitted")[0].args["state"] == order.state
    assert factory.current(order).decoded.responded is False


def test_signed_seller_response_inside_window_sets_the_bit(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DISPUTED)
    vu, sig = _signed(factory, order, a.seller)
    _relay(factory, order, a.seller, vu, sig)
    assert factory.current(order).decoded.responded is True


def test_buyer_evidence_in_dispute_does_not_set_the_bit(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DISPUTED)
    factory.escrow.submit_evidence(order, factory.actors.buyer, EVIDENCE)
    assert factory.current(order).decoded.responded is False


def test_second_seller_response_keeps_the_state(factory: OrderFactory) -> None:
    seller = factory.actors.seller
    order = factory.in_status(Status.DISPUTED)
    factory.escrow.submit_evidence(order, seller, EVIDENCE)
    responded = factory.current(order)
    res = factory.escrow.submit_evidence(responded, seller, content_hash(b"more"))
    assert res.named("EvidenceSubmitted")[0].args["state"] == responded.state


def test_response_window_extends_by_a_freeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DISPUTED)
    deadline = _response_deadline(order)
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"hold"))
    order = factory.current(order)
    assert _response_deadline(order) == deadline + DAY
    factory.chain.set_next_block_time(deadline + DAY)
    factory.escrow.submit_evidence(order, a.seller, EVIDENCE)
    assert factory.current(order).decoded.responded is True


# ------------------------------------------------------------------ reverts


def test_reverts_when_signed_evidence_replayed(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    vu, sig = _signed(factory, order, a.buyer)
    _relay(factory, order, a.buyer, vu, sig)
    digest = _digest(factory, order, a.buyer.address, vu)
    with reverts("SignatureReplayed", digest=digest):
        _relay(factory, order, a.buyer, vu, sig)


@pytest.mark.parametrize("who", ["buyer", "seller"])
def test_reverts_when_hash_empty(factory: OrderFactory, who: str) -> None:
    party = getattr(factory.actors, who)
    order = factory.fund()
    with reverts("EmptyHash"):
        factory.escrow.submit_evidence(order, party, ZERO_HASH)
    vu, sig = _signed(factory, order, party, evidence=ZERO_HASH)
    with reverts("EmptyHash"):
        _relay(factory, order, party, vu, sig, evidence=ZERO_HASH)


@pytest.mark.parametrize("who", ["stranger", "relayer", "arbitrator", "oracle1"])
def test_reverts_when_sender_is_not_a_party(factory: OrderFactory, who: str) -> None:
    account = getattr(factory.actors, who)
    order = factory.fund()
    with reverts("Unauthorized", caller=account.address):
        factory.escrow.submit_evidence(order, account, EVIDENCE)


def test_reverts_when_signed_party_is_not_a_party(factory: OrderFactory) -> None:
    stranger = factory.actors.stranger
    order = factory.fund()
    vu, sig = _signed(factory, order, stranger)
    with reverts("Unauthorized", caller=stranger.address):
        _relay(factory, order, stranger, vu, sig)


def test_reverts_when_signed_by_the_other_party(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    vu, sig = _signed(factory, order, a.buyer, key=a.seller.key)  # the seller signs "party: buyer"
    with reverts("InvalidSignature", expected=a.buyer.address, recovered=a.seller.address):
        _relay(factory, order, a.buyer, vu, sig)


def test_reverts_when_party_differs_from_signed_one(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    vu, sig = _signed(factory, order, a.seller)  # the seller signs "party: seller", relayed as the buyer's
    recovered = recover(_digest(factory, order, a.buyer.address, vu), sig)
    assert recovered not in (a.buyer.address, a.seller.address)
    with reverts("InvalidSignature", expected=a.buyer.address, recovered=recovered):
        _relay(factory, order, a.buyer, vu, sig)


def test_reverts_when_signed_evidence_expired(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    t = factory.chain.now() + 100
    _, sig = _signed(factory, order, a.seller, valid_until=t - 1)
    factory.chain.set_next_block_time(t)
    with reverts("SignatureExpired", validUntil=t - 1, nowTime=t):
        _relay(factory, order, a.seller, t - 1, sig)


@pytest.mark.parametrize("status", [Status.RELEASED, Status.REFUNDED, Status.RESOLVED])
def test_reverts_when_order_is_final(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = factory.in_status(status)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.submit_evidence(order, a.seller, EVIDENCE)
    vu, sig = _signed(factory, order, a.buyer)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        _relay(factory, order, a.buyer, vu, sig)
    digest = _digest(factory, order, a.buyer.address, vu)
    assert (
        factory.chain.call(factory.escrow.contract.functions.isDigestUsed(_key(factory, order), digest))
        is False
    )


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = factory.fund()
    ghost = replace(order, order_id=b"\x04" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.submit_evidence(ghost, factory.actors.buyer, EVIDENCE)


def test_reverts_when_state_is_stale(factory: OrderFactory) -> None:
    order = factory.fund()
    factory.ship(order)
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.submit_evidence(order, factory.actors.seller, EVIDENCE)
