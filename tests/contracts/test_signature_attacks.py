"""Signature attacks on each EIP-712 message of SPEC §4: forged, wrong domain, expired, replayed, malleable,
malformed, wrong signer role, and one oracle counted twice toward k."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from app.chain import eip712
from app.chain.escrow import Attestation, Order, TxResult
from app.domain.ids import content_hash, tracking_hash
from app.domain.order_state import Decision, Milestone, Status
from tests.factories import DAY, OrderFactory, malleable, recover, reverts

EVIDENCE = content_hash(b"evidence")
TRACKING = tracking_hash("DHL", "JD014600006101234567")


@dataclass
class Ctx:
    """One message about to be signed, and what it acts on."""

    message: dict[str, Any]
    order: Order | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    """How to build, submit and judge one EIP-712 message type."""

    primary: str
    signer: Callable[[OrderFactory], LocalAccount]
    setup: Callable[[OrderFactory, int | None], Ctx]
    submit: Callable[[OrderFactory, Ctx, bytes], TxResult]
    wrong_signer: Callable[[OrderFactory, Ctx, str], tuple[str, dict[str, Any]]]
    replayed: Callable[[OrderFactory, Ctx, bytes], tuple[str, dict[str, Any]]]
    expires: bool = True


def _current(factory: OrderFactory, ctx: Ctx) -> Order:
    assert ctx.order is not None
    return factory.current(ctx.order)


# ------------------------------------------------------------------ OrderAuthorization


def _auth_setup(factory: OrderFactory, valid_until: int | None) -> Ctx:
    auth = factory.auth() if valid_until is None else factory.auth(valid_until=valid_until)
    factory.prepare([auth])
    return Ctx(auth.message(), extra={"auth": auth})


def _auth_submit(factory: OrderFactory, ctx: Ctx, sig: bytes) -> TxResult:
    return factory.escrow.fund([ctx.extra["auth"]], [sig], factory.actors.relayer)


AUTH = Kind(
    "OrderAuthorization",
    signer=lambda f: f.actors.buyer,
    setup=_auth_setup,
    submit=_auth_submit,
    wrong_signer=lambda f, c, rec: (
        "InvalidSignature",
        {"expected": f.actors.buyer.address, "recovered": rec},
    ),
    replayed=lambda f, c, sig: ("OrderAlreadyExists", {"orderId": c.message["orderId"]}),
)


# ------------------------------------------------------------------ DeliveryAttestation (k = 2)


def _att_setup(factory: OrderFactory, valid_until: int | None) -> Ctx:
    factory.admin("setThreshold", 2)
    order = factory.fund()
    msg = {
        "orderId": order.order_id,
        "milestone": int(Milestone.SHIPPED),
        "eventTime": factory.chain.now(),
        "trackingHash": TRACKING,
        "evidenceHash": EVIDENCE,
    }
    return Ctx(msg, order)


def _att(ctx: Ctx, sig: bytes) -> Attestation:
    m = ctx.message
    return Attestation(m["milestone"], m["eventTime"], m["trackingHash"], m["evidenceHash"], sig)


def _att_submit(factory: OrderFactory, ctx: Ctx, sig: bytes) -> TxResult:
    return factory.escrow.attest([(_current(factory, ctx), [_att(ctx, sig)])], factory.actors.relayer)


ATTESTATION = Kind(
    "DeliveryAttestation",
    signer=lambda f: f.actors.oracle1,
    setup=_att_setup,
    submit=_att_submit,
    wrong_signer=lambda f, c, rec: ("NotOracle", {"signer": rec}),
    replayed=lambda f, c, sig: (
        "DuplicateAttestation",
        {"orderId": c.message["orderId"], "oracle": f.actors.oracle1.address},
    ),
    expires=False,
)


# ------------------------------------------------------------------ BuyerDecision


def _decision_setup(factory: OrderFactory, valid_until: int | None) -> Ctx:
    order = factory.in_status(Status.SHIPPED)
    vu = factory.chain.now() + DAY if valid_until is None else valid_until
    msg = {
        "orderId": order.order_id,
        "decision": int(Decision.OPEN_DISPUTE),
        "evidenceHash": EVIDENCE,
        "validUntil": vu,
    }
    return Ctx(msg, order)


def _decision_submit(factory: OrderFactory, ctx: Ctx, sig: bytes) -> TxResult:
    m = ctx.message
    return factory.escrow.submit_buyer_decision(
        _current(factory, ctx), m["decision"], m["evidenceHash"], m["validUntil"], sig, factory.actors.relayer
    )


DECISION = Kind(
    "BuyerDecision",
    signer=lambda f: f.actors.buyer,
    setup=_decision_setup,
    submit=_decision_submit,
    wrong_signer=lambda f, c, rec: (
        "InvalidSignature",
        {"expected": f.actors.buyer.address, "recovered": rec},
    ),
    replayed=lambda f, c, sig: (
        "InvalidStatus",
        {"orderId": c.message["orderId"], "status": Status.DISPUTED},
    ),
)


# ------------------------------------------------------------------ EvidenceSubmission


def _evidence_setup(factory: OrderFactory, valid_until: int | None) -> Ctx:
    order = factory.fund()
    vu = factory.chain.now() + DAY if valid_until is None else valid_until
    msg = {
        "orderId": order.order_id,
        "party": factory.actors.buyer.address,
        "evidenceHash": EVIDENCE,
        "validUntil": vu,
    }
    return Ctx(msg, order)


def _evidence_submit(factory: OrderFactory, ctx: Ctx, sig: bytes) -> TxResult:
    m = ctx.message
    return factory.escrow.submit_evidence_signed(
        _current(factory, ctx), m["party"], m["evidenceHash"], m["validUntil"], sig, factory.actors.relayer
    )


EVIDENCE_SUBMISSION = Kind(
    "EvidenceSubmission",
    signer=lambda f: f.actors.buyer,
    setup=_evidence_setup,
    submit=_evidence_submit,
    wrong_signer=lambda f, c, rec: (
        "InvalidSignature",
        {"expected": f.actors.buyer.address, "recovered": rec},
    ),
    replayed=lambda f, c, sig: ("SignatureReplayed", {"digest": f.digest("EvidenceSubmission", c.message)}),
)


# ------------------------------------------------------------------ Ruling


def _ruling_setup(factory: OrderFactory, valid_until: int | None) -> Ctx:
    order = factory.in_status(Status.DISPUTED)
    vu = factory.chain.now() + DAY if valid_until is None else valid_until
    msg = {
        "orderId": order.order_id,
        "buyerShareBps": 2_500,
        "rationaleHash": content_hash(b"rationale"),
        "validUntil": vu,
    }
    return Ctx(msg, order)


def _ruling_submit(factory: OrderFactory, ctx: Ctx, sig: bytes) -> TxResult:
    m = ctx.message
    return factory.escrow.submit_ruling(
        _current(factory, ctx),
        m["buyerShareBps"],
        m["rationaleHash"],
        m["validUntil"],
        sig,
        factory.actors.relayer,
    )


RULING = Kind(
    "Ruling",
    signer=lambda f: f.actors.arbitrator,
    setup=_ruling_setup,
    submit=_ruling_submit,
    wrong_signer=lambda f, c, rec: ("NotArbitrator", {"account": rec}),
    replayed=lambda f, c, sig: (
        "InvalidStatus",
        {"orderId": c.message["orderId"], "status": Status.RESOLVED},
    ),
)

KINDS = [AUTH, ATTESTATION, DECISION, EVIDENCE_SUBMISSION, RULING]
EXPIRING = [k for k in KINDS if k.expires]


def _ids(kinds: list[Kind]) -> list[str]:
    return [k.primary for k in kinds]


def _sign(factory: OrderFactory, kind: Kind, ctx: Ctx, key: bytes, **domain: Any) -> bytes:
    """Sign ``ctx.message`` with ``key``; ``domain`` overrides fields of the escrow's EIP-712 domain."""
    doc = factory.escrow.typed_data(kind.primary, ctx.message)
    doc["domain"] = {**doc["domain"], **domain}
    return eip712.sign_typed_data(key, doc)


def _expect(factory: OrderFactory, kind: Kind, ctx: Ctx, sig: bytes, name: str, args: dict[str, Any]) -> None:
    with reverts(name, **args):
        kind.submit(factory, ctx, sig)


# ------------------------------------------------------------------ the valid signature works


@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
def test_valid_signature_is_accepted(factory: OrderFactory, kind: Kind) -> None:
    ctx = kind.setup(factory, None)
    res = kind.submit(factory, ctx, _sign(factory, kind, ctx, kind.signer(factory).key))
    assert res.receipt["status"] == 1


# ------------------------------------------------------------------ attacks


@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
def test_reverts_when_forged_with_another_key(factory: OrderFactory, kind: Kind) -> None:
    ctx = kind.setup(factory, None)
    forger = factory.actors.stranger
    sig = _sign(factory, kind, ctx, forger.key)
    _expect(factory, kind, ctx, sig, *kind.wrong_signer(factory, ctx, forger.address))


@pytest.mark.parametrize(
    "domain",
    [
        pytest.param({"chainId": 1}, id="chain_id"),
        pytest.param({"verifyingContract": "0x000000000000000000000000000000000000dEaD"}, id="contract"),
        pytest.param({"name": "TradeGuard2"}, id="name"),
        pytest.param({"version": "1"}, id="version"),
    ],
)
@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
def test_reverts_when_signed_for_another_domain(
    factory: OrderFactory, kind: Kind, domain: dict[str, Any]
) -> None:
    ctx = kind.setup(factory, None)
    signer = kind.signer(factory)
    sig = _sign(factory, kind, ctx, signer.key, **domain)
    recovered = recover(factory.digest(kind.primary, ctx.message), sig)
    assert recovered != signer.address
    _expect(factory, kind, ctx, sig, *kind.wrong_signer(factory, ctx, recovered))


def test_reverts_when_signed_for_another_escrow_deployment(factory: OrderFactory) -> None:
    """The same message signed for the token's address (a real contract on the same chain) is refused."""
    kind = AUTH
    ctx = kind.setup(factory, None)
    buyer = factory.actors.buyer
    sig = _sign(factory, kind, ctx, buyer.key, verifyingContract=factory.token.address)
    recovered = recover(factory.digest(kind.primary, ctx.message), sig)
    _expect(factory, kind, ctx, sig, "InvalidSignature", {"expected": buyer.address, "recovered": recovered})


@pytest.mark.parametrize("kind", EXPIRING, ids=_ids(EXPIRING))
def test_reverts_when_valid_until_passed(factory: OrderFactory, kind: Kind) -> None:
    t = factory.chain.now() + 1_000
    ctx = kind.setup(factory, t - 1)
    sig = _sign(factory, kind, ctx, kind.signer(factory).key)
    factory.chain.set_next_block_time(t)
    _expect(factory, kind, ctx, sig, "SignatureExpired", {"validUntil": t - 1, "nowTime": t})


@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
def test_reverts_when_replayed(factory: OrderFactory, kind: Kind) -> None:
    ctx = kind.setup(factory, None)
    sig = _sign(factory, kind, ctx, kind.signer(factory).key)
    kind.submit(factory, ctx, sig)
    _expect(factory, kind, ctx, sig, *kind.replayed(factory, ctx, sig))


@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
def test_reverts_when_s_is_malleable(factory: OrderFactory, kind: Kind) -> None:
    ctx = kind.setup(factory, None)
    sig = malleable(_sign(factory, kind, ctx, kind.signer(factory).key))
    _expect(factory, kind, ctx, sig, "MalformedSignature", {"reason": 3})  # ECDSA InvalidSignatureS


@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
@pytest.mark.parametrize("length", [64, 66, 130])
def test_reverts_when_signature_length_wrong(factory: OrderFactory, kind: Kind, length: int) -> None:
    ctx = kind.setup(factory, None)
    sig = _sign(factory, kind, ctx, kind.signer(factory).key)
    sig = (sig * 2)[:length]
    _expect(factory, kind, ctx, sig, "MalformedSignature", {"reason": 2})  # InvalidSignatureLength


@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
@pytest.mark.parametrize("v", [0, 1, 29])
def test_reverts_when_v_invalid(factory: OrderFactory, kind: Kind, v: int) -> None:
    ctx = kind.setup(factory, None)
    sig = _sign(factory, kind, ctx, kind.signer(factory).key)
    _expect(factory, kind, ctx, sig[:64] + bytes([v]), "MalformedSignature", {"reason": 1})


@pytest.mark.parametrize("kind", KINDS, ids=_ids(KINDS))
def test_reverts_when_message_altered_after_signing(factory: OrderFactory, kind: Kind) -> None:
    ctx = kind.setup(factory, None)
    sig = _sign(factory, kind, ctx, kind.signer(factory).key)
    key = next(k for k in ("evidenceHash", "rationaleHash", "amount") if k in ctx.message)
    if key == "amount":
        auth = ctx.extra["auth"]
        ctx.extra["auth"] = replace(auth, amount=auth.amount - 1)
        ctx.message = ctx.extra["auth"].message()
    else:
        ctx.message = {**ctx.message, key: content_hash(b"swapped")}
    recovered = recover(factory.digest(kind.primary, ctx.message), sig)
    _expect(factory, kind, ctx, sig, *kind.wrong_signer(factory, ctx, recovered))


# ------------------------------------------------------------------ signer roles


@pytest.mark.parametrize("who", ["buyer", "seller", "arbitrator", "admin", "relayer"])
def test_reverts_when_attestation_signer_is_not_an_oracle(factory: OrderFactory, who: str) -> None:
    account = getattr(factory.actors, who)
    ctx = ATTESTATION.setup(factory, None)
    sig = _sign(factory, ATTESTATION, ctx, account.key)
    _expect(factory, ATTESTATION, ctx, sig, "NotOracle", {"signer": account.address})


@pytest.mark.parametrize("who", ["oracle1", "buyer", "seller", "admin"])
def test_reverts_when_ruling_signer_is_not_an_arbitrator(factory: OrderFactory, who: str) -> None:
    account = getattr(factory.actors, who)
    ctx = RULING.setup(factory, None)
    sig = _sign(factory, RULING, ctx, account.key)
    _expect(factory, RULING, ctx, sig, "NotArbitrator", {"account": account.address})


def test_reverts_when_ruling_signed_by_a_removed_arbitrator(factory: OrderFactory) -> None:
    arbitrator = factory.actors.arbitrator
    ctx = RULING.setup(factory, None)
    sig = _sign(factory, RULING, ctx, arbitrator.key)
    factory.admin("removeArbitrator", arbitrator.address)
    _expect(factory, RULING, ctx, sig, "NotArbitrator", {"account": arbitrator.address})


# ------------------------------------------------------------------ one oracle counted twice toward k


def _two(factory: OrderFactory, ctx: Ctx, first: Attestation, second: Attestation) -> None:
    order = _current(factory, ctx)
    with reverts("DuplicateAttestation", orderId=order.order_id, oracle=factory.actors.oracle1.address):
        factory.escrow.attest([(order, [first, second])], factory.actors.relayer)


def test_reverts_when_same_signature_twice_in_one_call(factory: OrderFactory) -> None:
    ctx = ATTESTATION.setup(factory, None)
    att = _att(ctx, _sign(factory, ATTESTATION, ctx, factory.actors.oracle1.key))
    _two(factory, ctx, att, att)


def test_reverts_when_same_oracle_signs_two_different_events(factory: OrderFactory) -> None:
    oracle1 = factory.actors.oracle1
    ctx = ATTESTATION.setup(factory, None)
    first = _att(ctx, _sign(factory, ATTESTATION, ctx, oracle1.key))
    other = Ctx({**ctx.message, "eventTime": ctx.message["eventTime"] - 60}, ctx.order)
    second = _att(other, _sign(factory, ATTESTATION, other, oracle1.key))
    _two(factory, ctx, first, second)


def test_reverts_when_oracle_attests_directly_and_by_signature(factory: OrderFactory) -> None:
    oracle1 = factory.actors.oracle1
    ctx = ATTESTATION.setup(factory, None)
    signed = _att(ctx, _sign(factory, ATTESTATION, ctx, oracle1.key))
    order = _current(factory, ctx)
    with reverts("DuplicateAttestation", orderId=order.order_id, oracle=oracle1.address):
        factory.escrow.attest([(order, [replace(signed, signature=b""), signed])], oracle1)


def test_malleable_twin_cannot_count_as_a_second_attestation(factory: OrderFactory) -> None:
    ctx = ATTESTATION.setup(factory, None)
    sig = _sign(factory, ATTESTATION, ctx, factory.actors.oracle1.key)
    order = _current(factory, ctx)
    with reverts("MalformedSignature", reason=3):
        factory.escrow.attest([(order, [_att(ctx, sig), _att(ctx, malleable(sig))])], factory.actors.relayer)
    assert factory.partial(order, Milestone.SHIPPED) == 0
    assert factory.current(order).status == Status.FUNDED
