"""The EIP-712 typed data of SPEC §4, checked against the text of the spec and against the deployed escrow."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain, hash_type
from eth_utils import keccak

from app.chain import eip712
from app.chain.escrow import Deployment, Escrow
from app.domain.ids import content_hash
from app.domain.order_state import Decision, Milestone, Status
from tests.factories import DAY, SECP256K1_N, Actors, OrderFactory, reverts

#: SPEC §4, verbatim.
SPEC_TYPES = {
    "OrderAuthorization": "OrderAuthorization(bytes32 orderId,address buyer,address seller,address token,"
    "uint256 amount,uint16 commissionBps,uint16 taxBps,address taxRecipient,uint64 shipBy,uint64 deliverBy,"
    "uint32 holdSeconds,uint64 validUntil,address arbitrator,bytes32 arbitratorExtraDataHash)",
    "DeliveryAttestation": "DeliveryAttestation(bytes32 orderId,uint8 milestone,uint64 eventTime,"
    "bytes32 trackingHash,bytes32 evidenceHash)",
    "BuyerDecision": "BuyerDecision(bytes32 orderId,uint8 decision,bytes32 evidenceHash,uint64 validUntil)",
    "EvidenceSubmission": "EvidenceSubmission(bytes32 orderId,address party,bytes32 evidenceHash,"
    "uint64 validUntil)",
    "Ruling": "Ruling(bytes32 orderId,uint16 buyerShareBps,bytes32 rationaleHash,uint64 validUntil)",
}
TYPEHASH_GETTERS = {
    "OrderAuthorization": "ORDER_AUTHORIZATION_TYPEHASH",
    "DeliveryAttestation": "DELIVERY_ATTESTATION_TYPEHASH",
    "BuyerDecision": "BUYER_DECISION_TYPEHASH",
    "EvidenceSubmission": "EVIDENCE_SUBMISSION_TYPEHASH",
    "Ruling": "RULING_TYPEHASH",
}
ESCROW = "0x" + "12" * 20


def encode_type(primary_type: str) -> str:
    fields = ",".join(f"{f['type']} {f['name']}" for f in eip712.TYPES[primary_type])
    return f"{primary_type}({fields})"


def sample(primary_type: str) -> dict[str, Any]:
    """A valid message of each type."""
    values = {"bytes32": b"\x01" * 32, "address": "0x" + "34" * 20, "uint8": 1}
    return {f["name"]: values.get(f["type"], 7) for f in eip712.TYPES[primary_type]}


# ------------------------------------------------------------------------------------------ the types


def test_the_five_types_are_exactly_those_of_the_spec() -> None:
    assert set(eip712.TYPES) == set(SPEC_TYPES)
    for name, spec in SPEC_TYPES.items():
        assert encode_type(name) == spec
        assert hash_type(name, {name: eip712.TYPES[name]}) == keccak(text=spec)  # what eth-account hashes


@pytest.mark.parametrize("primary_type", sorted(SPEC_TYPES))
def test_type_hash_equals_the_contracts(escrow: Escrow, primary_type: str) -> None:
    getter = getattr(escrow.contract.functions, TYPEHASH_GETTERS[primary_type])
    on_chain = bytes(escrow.chain.call(getter()))
    assert keccak(text=encode_type(primary_type)) == on_chain
    assert keccak(text=SPEC_TYPES[primary_type]) == on_chain


def test_domain_equals_the_contracts(escrow: Escrow) -> None:
    fields, name, version, chain_id, contract, salt, extensions = escrow.chain.call(
        escrow.contract.functions.eip712Domain()
    )
    assert bytes(fields) == b"\x0f"  # name, version, chainId, verifyingContract; no salt
    assert {"name": name, "version": version, "chainId": chain_id, "verifyingContract": contract} == (
        eip712.domain(escrow.chain.chain_id, escrow.address)
    )
    assert (bytes(salt), list(extensions)) == (b"\x00" * 32, [])
    assert [f["name"] for f in eip712.EIP712_DOMAIN] == ["name", "version", "chainId", "verifyingContract"]


def test_order_authorization_fields_are_in_the_contracts_struct_order(
    escrow: Escrow, factory: OrderFactory
) -> None:
    """The contract hashes ``abi.encode(TYPEHASH, auth)``: the struct order must be the type's order."""
    (fund,) = [i for i in escrow.contract.abi if i.get("name") == "fund"]
    struct = [(c["type"], c["name"]) for c in fund["inputs"][0]["components"]]
    assert struct == [(f["type"], f["name"]) for f in eip712.TYPES["OrderAuthorization"]]
    assert list(factory.auth().message()) == [f["name"] for f in eip712.TYPES["OrderAuthorization"]]


# ------------------------------------------------------------------------------------------ digests


def test_order_authorization_digest_equals_the_contracts(factory: OrderFactory, actors: Actors) -> None:
    escrow = factory.escrow
    auth = factory.auth()
    factory.prepare([auth])
    doc = escrow.typed_data("OrderAuthorization", auth.message())
    forged = eip712.sign_typed_data(actors.stranger.key, doc)
    # the contract recovers exactly the key that signed our digest, so its digest is ours
    with reverts("InvalidSignature", expected=actors.buyer.address, recovered=actors.stranger.address):
        escrow.fund([auth], [forged], actors.relayer)
    assert eip712.recover_signer(doc, forged) == actors.stranger.address
    escrow.fund([auth], [eip712.sign_typed_data(actors.buyer.key, doc)], actors.relayer)
    assert escrow.orders[auth.order_id].status == Status.FUNDED


def test_delivery_attestation_digest_equals_the_contracts(factory: OrderFactory, actors: Actors) -> None:
    order = factory.fund()
    message = {
        "orderId": order.order_id,
        "milestone": Milestone.SHIPPED,
        "eventTime": factory.chain.now(),
        "trackingHash": b"\x0a" * 32,
        "evidenceHash": b"\x0b" * 32,
    }
    doc = factory.escrow.typed_data("DeliveryAttestation", message)
    sig = eip712.sign_typed_data(actors.oracle3.key, doc)
    att = factory.escrow.sign_attestation(actors.oracle3.key, order.order_id, *list(message.values())[1:])
    assert att.signature == sig
    result = factory.escrow.attest([(order, [att])], actors.relayer)
    assert result.named("Attested")[0].args["oracle"] == actors.oracle3.address
    other = factory.fund()
    doc = factory.escrow.typed_data("DeliveryAttestation", {**message, "orderId": other.order_id})
    forged = replace(att, signature=eip712.sign_typed_data(actors.stranger.key, doc))
    with reverts("NotOracle", signer=actors.stranger.address):
        factory.escrow.attest([(other, [forged])], actors.relayer)


def test_buyer_decision_digest_equals_the_contracts(factory: OrderFactory, actors: Actors) -> None:
    escrow, order = factory.escrow, factory.fund()
    until = factory.chain.now() + DAY
    message = {
        "orderId": order.order_id,
        "decision": Decision.OPEN_DISPUTE,
        "evidenceHash": b"\x0c" * 32,
        "validUntil": until,
    }
    doc = escrow.typed_data("BuyerDecision", message)
    forged = eip712.sign_typed_data(actors.seller.key, doc)
    with reverts("InvalidSignature", expected=actors.buyer.address, recovered=actors.seller.address):
        escrow.submit_buyer_decision(
            order, Decision.OPEN_DISPUTE, b"\x0c" * 32, until, forged, actors.relayer
        )
    sig = eip712.sign_typed_data(actors.buyer.key, doc)
    assert sig == escrow.sign_buyer_decision(
        actors.buyer.key, order.order_id, Decision.OPEN_DISPUTE, b"\x0c" * 32, until
    )
    escrow.submit_buyer_decision(order, Decision.OPEN_DISPUTE, b"\x0c" * 32, until, sig, actors.relayer)
    assert factory.current(order).status == Status.DISPUTED


def test_evidence_submission_digest_equals_the_contracts(factory: OrderFactory, actors: Actors) -> None:
    """The escrow records the digest of each evidence signature: it is exactly ours."""
    escrow, order = factory.escrow, factory.fund()
    until = factory.chain.now() + DAY
    evidence = content_hash(b"packing list")
    message = {
        "orderId": order.order_id,
        "party": actors.seller.address,
        "evidenceHash": evidence,
        "validUntil": until,
    }
    doc = escrow.typed_data("EvidenceSubmission", message)
    digest = eip712.digest(doc)
    key = escrow.order_key(order.order_id, order.terms.buyer)
    assert not factory.chain.call(escrow.contract.functions.isDigestUsed(key, digest))
    sig = escrow.sign_evidence(actors.seller.key, order.order_id, actors.seller.address, evidence, until)
    escrow.submit_evidence_signed(order, actors.seller.address, evidence, until, sig, actors.relayer)
    assert factory.chain.call(escrow.contract.functions.isDigestUsed(key, digest))
    with reverts("SignatureReplayed", digest=digest):
        escrow.submit_evidence_signed(
            factory.current(order), actors.seller.address, evidence, until, sig, actors.relayer
        )


def test_ruling_digest_equals_the_contracts(factory: OrderFactory, actors: Actors) -> None:
    escrow = factory.escrow
    order = factory.dispute(factory.fund())
    until = factory.chain.now() + DAY
    rationale = content_hash(b"rationale")
    doc = escrow.typed_data(
        "Ruling",
        {"orderId": order.order_id, "buyerShareBps": 2_500, "rationaleHash": rationale, "validUntil": until},
    )
    with reverts("NotArbitrator", account=actors.stranger.address):
        escrow.submit_ruling(
            order, 2_500, rationale, until, eip712.sign_typed_data(actors.stranger.key, doc), actors.relayer
        )
    sig = escrow.sign_ruling(actors.arbitrator.key, order.order_id, 2_500, rationale, until)
    assert sig == eip712.sign_typed_data(actors.arbitrator.key, doc)
    result = escrow.submit_ruling(order, 2_500, rationale, until, sig, actors.relayer)
    (resolved,) = result.named("DisputeResolved")
    assert (resolved.args["arbitrator"], resolved.args["buyerShareBps"]) == (actors.arbitrator.address, 2_500)


@pytest.mark.parametrize("other", ["chain", "contract", "name", "version"])
def test_a_signature_for_another_domain_is_refused(factory: OrderFactory, actors: Actors, other: str) -> None:
    escrow = factory.escrow
    auth = factory.auth()
    factory.prepare([auth])
    doc = escrow.typed_data("OrderAuthorization", auth.message())
    changed = {
        "chain": {"chainId": doc["domain"]["chainId"] + 1},
        "contract": {"verifyingContract": str(factory.token.address)},
        "name": {"name": "TradeGuard "},
        "version": {"version": "1"},  # a v1 signature is void on the v2 escrow (SPEC §4.1)
    }[other]
    sig = eip712.sign_typed_data(actors.buyer.key, {**doc, "domain": {**doc["domain"], **changed}})
    with pytest.raises(Exception) as info:
        escrow.fund([auth], [sig], actors.relayer)
    assert getattr(info.value, "name", None) == "InvalidSignature"
    assert info.value.args_by_name["recovered"] != actors.buyer.address  # type: ignore[attr-defined]


def test_signatures_have_a_low_s(actors: Actors) -> None:
    """The contract refuses malleable (high-s) signatures; eth-account never makes one."""
    for i in range(16):
        doc = eip712.typed_data("Ruling", {**sample("Ruling"), "validUntil": i}, 1, ESCROW)
        sig = eip712.sign_typed_data(actors.arbitrator.key, doc)
        assert len(sig) == 65 and sig[64] in (27, 28)
        assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2


# ------------------------------------------------------------------------------------------ permit


def test_permit_domain_and_signature_match_tusd(deployment: Deployment, actors: Actors) -> None:
    escrow, token = deployment.escrow, deployment.token
    chain = escrow.chain
    doc = eip712.permit_typed_data(
        token_name=chain.call(token.functions.name()),
        chain_id=chain.chain_id,
        token=str(token.address),
        owner=actors.buyer.address,
        spender=escrow.address,
        value=5,
        nonce=0,
        deadline=chain.now() + DAY,
    )
    assert hash_domain(doc["domain"]) == bytes(chain.call(token.functions.DOMAIN_SEPARATOR()))
    value, deadline, v, r, s = escrow.sign_permit(actors.buyer, token, 5, chain.now() + DAY)
    chain.send(
        token.functions.permit(actors.buyer.address, escrow.address, value, deadline, v, r, s), actors.relayer
    )
    assert chain.call(token.functions.allowance(actors.buyer.address, escrow.address)) == 5
    assert chain.call(token.functions.nonces(actors.buyer.address)) == 1


# ------------------------------------------------------------------------------------------ refusals


def test_typed_data_builds_each_type() -> None:
    for name in SPEC_TYPES:
        doc = eip712.typed_data(name, sample(name), 31337, ESCROW)
        assert doc["primaryType"] == name
        assert doc["types"] == {"EIP712Domain": eip712.EIP712_DOMAIN, name: eip712.TYPES[name]}
        assert len(eip712.digest(doc)) == 32


@pytest.mark.parametrize("primary_type", ["Order", "EIP712Domain", "Permit", "ruling"])
def test_typed_data_refuses_unknown_types(primary_type: str) -> None:
    with pytest.raises(ValueError, match="unknown message type"):
        eip712.typed_data(primary_type, sample("Ruling"), 1, ESCROW)


@pytest.mark.parametrize("primary_type", sorted(SPEC_TYPES))
def test_typed_data_refuses_missing_and_unknown_fields(primary_type: str) -> None:
    message = sample(primary_type)
    first = next(iter(message))
    missing = {k: v for k, v in message.items() if k != first}
    for bad in (missing, {**message, "extra": 1}, {**missing, first.upper(): message[first]}, {}):
        with pytest.raises(ValueError, match="needs exactly the fields"):
            eip712.typed_data(primary_type, bad, 1, ESCROW)


@pytest.mark.parametrize(
    "value",
    [b"\x01" * 31, b"\x01" * 33, "0x" + "01" * 31, "01" * 32, 5, None],
    ids=["31-bytes", "33-bytes", "31-hex", "no-0x", "int", "none"],
)
def test_typed_data_refuses_bytes32_of_another_size(value: Any) -> None:
    """eth-account would pad a short value with zeros and sign something nobody meant."""
    with pytest.raises(ValueError, match="orderId"):
        eip712.typed_data("Ruling", {**sample("Ruling"), "orderId": value}, 1, ESCROW)


def test_typed_data_accepts_bytes32_as_hex_with_the_same_digest() -> None:
    as_bytes = eip712.typed_data("Ruling", sample("Ruling"), 1, ESCROW)
    as_hex = eip712.typed_data("Ruling", {**sample("Ruling"), "orderId": "0x" + "01" * 32}, 1, ESCROW)
    assert eip712.digest(as_bytes) == eip712.digest(as_hex)


@pytest.mark.parametrize(
    ("field", "value"), [("buyerShareBps", 65_536), ("buyerShareBps", -1), ("validUntil", 2**64)]
)
def test_out_of_range_integers_cannot_be_signed(field: str, value: int) -> None:
    doc = eip712.typed_data("Ruling", {**sample("Ruling"), field: value}, 1, ESCROW)
    with pytest.raises(Exception, match="bounded|encode"):
        eip712.sign_typed_data(Account.create().key, doc)
