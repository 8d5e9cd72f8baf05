"""Intent payloads (validation, normalisation, hashing), the calls built from them, every signed kind relayed
end to end, and ``Escrow.load_order`` reading one order's events from the chain."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app.db.session import transaction
from app.domain.ids import content_hash
from app.domain.order_state import Decision, Milestone, Status
from app.errors import ContractRevert, InvalidInput
from app.services.outbox import intents, relayer
from app.services.outbox.intents import build_call
from app.services.outbox.relayer import CONFIRMED, FAILED, preflight, relay, submit
from app.services.runtime import Runtime
from tests.services.test_relayer_support import DAY, Svc, hex32

OID = "0x" + "ab" * 32


def put(rt: Runtime, kind: str, payload: dict[str, Any]) -> str:
    with transaction(rt.db) as s:
        intent = submit(s, kind, payload)
        s.flush()
        return intent.id


# ---------------------------------------------------------------------------------------- payloads


def test_every_kind_has_a_payload_model() -> None:
    assert set(intents.INTENT_KINDS) == set(intents.PAYLOADS)


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("release", {"orderId": "0x1234"}, "orderId"),
        ("release", {"orderId": OID, "extra": 1}, "extra"),
        ("attest", {"orderId": OID, "milestone": 1}, "eventTime"),
        (
            "ruling",
            {
                **dict.fromkeys(("rationaleHash",), OID),
                "orderId": OID,
                "buyerShareBps": 70_000,
                "validUntil": 1,
                "signature": "0x" + "11" * 65,
            },
            "buyerShareBps",
        ),
        (
            "evidence",
            {
                "orderId": OID,
                "party": "0xnope",
                "evidenceHash": OID,
                "validUntil": 1,
                "signature": "0x" + "11" * 65,
            },
            "party",
        ),
        (
            "confirm_receipt",
            {
                "orderId": OID,
                "decision": 2,
                "evidenceHash": OID,
                "validUntil": 1,
                "signature": "0x" + "11" * 65,
            },
            "decision",
        ),
        (
            "open_dispute",
            {
                "orderId": OID,
                "decision": 2,
                "evidenceHash": OID,
                "validUntil": 1.5,
                "signature": "0x" + "11" * 65,
            },
            "validUntil",
        ),
    ],
)
def test_bad_payloads_are_refused_with_the_field(kind: str, payload: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        intents.parse_payload(kind, payload)
    assert field in {e["field"].split(".")[0] for e in info.value.errors}


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown intent kind"):
        intents.compute_intent_hash("withdraw", {"orderId": OID})


def test_the_hash_is_of_the_canonical_normalised_payload() -> None:
    a = {"orderId": OID.upper().replace("0X", "0x")}
    assert intents.normalize_payload("release", a) == {"orderId": OID}
    assert intents.compute_intent_hash("release", a) == intents.compute_intent_hash(
        "release", {"orderId": OID}
    )
    assert intents.compute_intent_hash("release", a) != intents.compute_intent_hash("timeout_refund", a)


def test_uint256_is_a_decimal_string_and_large_uint64_survive_canonical_json() -> None:
    permit = {"value": 2**200, "deadline": "7", "v": 27, "r": OID, "s": OID}
    assert intents.PermitIn.model_validate(permit).model_dump(mode="json")["value"] == str(2**200)
    payload = {
        "orderId": OID,
        "party": "0x" + "ab" * 20,
        "evidenceHash": OID,
        "validUntil": 2**64 - 1,
        "signature": "0x" + "11" * 65,
    }
    normal = intents.normalize_payload("evidence", payload)
    assert (
        normal["validUntil"] == str(2**64 - 1)
        and normal["party"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    )
    assert intents.compute_intent_hash("evidence", payload) == intents.compute_intent_hash("evidence", normal)


def test_a_batch_is_only_for_attestations_and_releases(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match="attest/release payloads"):
        build_call(runtime, "timeout_refund", [{"orderId": OID}])
    with pytest.raises(InvalidInput, match="attest/release payloads"):
        build_call(runtime, "release", [])


def test_submit_refuses_an_intent_filed_under_another_order(runtime: Runtime) -> None:
    with transaction(runtime.db) as s, pytest.raises(InvalidInput, match="filed under"):
        submit(s, "release", {"orderId": OID}, order_id="0x" + "cd" * 32)


def test_concurrent_submits_of_the_same_intent_make_one_row(runtime: Runtime) -> None:
    """Two API workers take the same intent at once: one row (unique hash; the loser reads the winner's)."""
    ids: list[str] = []
    errors: list[BaseException] = []
    first_in, second_going = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction(runtime.db) as s:
                ids.append(submit(s, "release", {"orderId": OID}).id)
                first_in.set()
                second_going.wait(10)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            first_in.set()

    def second() -> None:
        try:
            first_in.wait(10)
            second_going.set()
            with transaction(runtime.db) as s:
                ids.append(submit(s, "release", {"orderId": OID}).id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(ids) == 2 and ids[0] == ids[1]
    assert Svc(runtime).count() == 1


# ---------------------------------------------------------------------------------------- load_order


def test_load_order_follows_one_order_through_its_events(runtime: Runtime) -> None:
    svc = Svc(runtime)
    first, other = svc.fund(), svc.fund(amount=1_000_000)
    assert runtime.escrow.load_order(first.order_id) == first
    shipped = svc.attest(first, Milestone.SHIPPED)
    loaded = runtime.escrow.load_order(first.order_id)
    assert loaded == shipped and loaded.status == Status.SHIPPED
    assert runtime.escrow.load_order(other.order_id) == other and other.terms.amount == 1_000_000
    assert runtime.escrow.load_order(bytes(32)) is None
    assert runtime.escrow.load_order(first.order_id, from_block=runtime.chain.block_number() + 1) is None


def test_preflight_reads_an_order_again_when_it_moved_before_the_estimate(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check a request makes before it stores an intent: a transaction mined between its read of the
    order and its estimate (``OrderDataMismatch``) makes it read the order again, not refuse the request."""
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.escrow.open_dispute(order, svc["buyer"])
    disputed = svc.order(order.order_id)
    payload = svc.ruling_payload(order.order_id)
    estimate_from, calls = runtime.chain.estimate_from, []

    def seller_answers_first(fn: Any, sender: str, **kw: Any) -> int:
        calls.append(fn)
        if len(calls) == 1:  # the seller's evidence is mined after the order was read
            runtime.escrow.submit_evidence(disputed, svc["merchant"], content_hash(b"packing list"))
        return estimate_from(fn, sender, **kw)

    monkeypatch.setattr(runtime.chain, "estimate_from", seller_answers_first)
    assert preflight(runtime, "ruling", payload) > 0
    assert len(calls) == 2 and calls[0].args != calls[1].args  # built again, against the new state word

    def always_moved(fn: Any, sender: str, **kw: Any) -> int:
        calls.append(fn)
        raise ContractRevert("OrderDataMismatch", {"orderId": order.order_id}, b"")

    calls.clear()
    monkeypatch.setattr(runtime.chain, "estimate_from", always_moved)
    with pytest.raises(ContractRevert) as info:  # an order that keeps moving: the error, after a bound
        preflight(runtime, "ruling", payload)
    assert info.value.name == "OrderDataMismatch" and len(calls) == relayer.STALE_READS


def test_preflight_names_the_contract_error_for_an_order_the_chain_does_not_have(runtime: Runtime) -> None:
    with pytest.raises(ContractRevert) as info:
        preflight(runtime, "release", {"orderId": OID})
    assert info.value.name == "UnknownOrder"


# ---------------------------------------------------------------------------------------- every kind


def decision(svc: Svc, order_id: bytes, value: Decision, evidence: bytes = bytes(32)) -> dict[str, Any]:
    valid = svc.rt.chain.now() + DAY
    sig = svc.rt.escrow.sign_buyer_decision(svc["buyer"].key, order_id, value, evidence, valid)
    return {
        "orderId": hex32(order_id),
        "decision": int(value),
        "evidenceHash": hex32(evidence),
        "validUntil": str(valid),
        "signature": hex32(sig),
    }


def test_confirm_receipt_is_relayed(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.attest(svc.fund(), Milestone.SHIPPED)
    payload = decision(svc, order.order_id, Decision.CONFIRM_RECEIPT)
    preflight(runtime, "confirm_receipt", payload)
    iid = put(runtime, "confirm_receipt", payload)
    relay(runtime)
    assert svc.intent(iid).status == CONFIRMED
    assert svc.order(order.order_id).status == Status.RELEASED


def test_a_dispute_with_evidence_and_a_ruling_is_relayed(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.delivered()
    chain, escrow, oid = runtime.chain, runtime.escrow, order.order_id
    evidence = content_hash(b"photo of a broken vase")
    ids = [put(runtime, "open_dispute", decision(svc, oid, Decision.OPEN_DISPUTE, evidence))]
    valid = chain.now() + DAY
    seller = svc["merchant"]
    answer = content_hash(b"packing list")
    sig = escrow.sign_evidence(seller.key, oid, seller.address, answer, valid)
    ids.append(
        put(
            runtime,
            "evidence",
            {
                "orderId": hex32(oid),
                "party": seller.address,
                "evidenceHash": hex32(answer),
                "validUntil": valid,
                "signature": hex32(sig),
            },
        )
    )
    rationale = content_hash(b"half each")
    sig = escrow.sign_ruling(svc["arbitrator"].key, oid, 5_000, rationale, valid)
    ids.append(
        put(
            runtime,
            "ruling",
            {
                "orderId": hex32(oid),
                "buyerShareBps": 5_000,
                "rationaleHash": hex32(rationale),
                "validUntil": valid,
                "signature": hex32(sig),
            },
        )
    )
    states = []
    for _ in ids:  # one transaction per order at a time: three passes
        relay(runtime)
        states.append(svc.order(oid).decoded)
    assert [svc.intent(i).status for i in ids] == [CONFIRMED] * 3
    assert [(s.status, s.responded) for s in states] == [
        (Status.DISPUTED, False),
        (Status.DISPUTED, True),
        (Status.RESOLVED, True),
    ]


def test_a_timeout_refund_is_relayed(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.fund()
    runtime.chain.advance_time(5 * DAY + 1)
    iid = put(runtime, "timeout_refund", {"orderId": hex32(order.order_id)})
    relay(runtime)
    assert svc.intent(iid).status == CONFIRMED
    assert svc.order(order.order_id).status == Status.REFUNDED


def test_a_fund_without_permit_needs_the_buyers_allowance(runtime: Runtime) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    payload = svc.fund_payload(auth, permit=False)
    with pytest.raises(ContractRevert) as info:
        preflight(runtime, "fund", payload)
    assert info.value.name == "ERC20InsufficientAllowance"
    runtime.chain.send(svc.token.functions.approve(runtime.escrow.address, auth.amount), svc["buyer"])
    iid = put(runtime, "fund", payload)
    relay(runtime)
    assert svc.intent(iid).status == CONFIRMED


def test_the_same_oracle_twice_in_one_pass_goes_out_once(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.fund()
    first = svc.attest_payload(order.order_id, Milestone.SHIPPED)
    second = {**first, "eventTime": first["eventTime"] - 1}
    resigned = runtime.escrow.sign_attestation(
        svc["oracle"].key,
        order.order_id,
        1,
        second["eventTime"],
        bytes.fromhex(first["trackingHash"][2:]),
        bytes.fromhex(first["evidenceHash"][2:]),
    )
    second["signature"] = hex32(resigned.signature)
    ids = [put(runtime, "attest", first), put(runtime, "attest", second)]
    report = relay(runtime)
    assert report.deferred == 1 and [svc.intent(i).status for i in ids] == [CONFIRMED, "pending"]
    relay(runtime)
    assert (svc.intent(ids[1]).status, svc.intent(ids[1]).error_name) == (FAILED, "InvalidStatus")
