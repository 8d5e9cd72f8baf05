"""The five SPEC §4 message classes agree with the EIP-712 types, the escrow's relay functions and themselves:
field order, typed data, signing and recovery, the intent payload round trip, and the relay call arguments."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account

from app.chain import eip712
from app.chain.compiler import load_artifact
from app.chain.messages import (
    MESSAGES,
    RELAY_FUNCTIONS,
    BuyerDecision,
    DeliveryAttestation,
    EvidenceSubmission,
    OrderAuthorization,
    Ruling,
    SignedMessage,
)

CHAIN_ID = 31337
ESCROW = "0x" + "12" * 20
OID = bytes.fromhex("ab" * 32)
H1, H2 = bytes(range(32)), bytes(range(32, 64))
SIGNER = Account.from_key("0x" + "4c" * 32)
ADDR = SIGNER.address

EXAMPLES: list[SignedMessage] = [
    OrderAuthorization(
        OID,
        ADDR,
        "0x" + "5" * 40,
        "0x" + "7" * 40,
        2**200,
        200,
        1900,
        "0x" + "a" * 40,
        1_800_000_000,
        1_800_100_000,
        259_200,
        1_799_999_000,
    ),
    DeliveryAttestation(OID, 2, 1_800_000_500, H1, H2),
    BuyerDecision(OID, 2, H1, 1_800_000_900),
    EvidenceSubmission(OID, ADDR.lower(), H2, 1_800_000_900),
    Ruling(OID, 4_000, H1, 1_800_000_900),
]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_every_spec_type_has_one_class() -> None:
    assert set(MESSAGES) == set(eip712.TYPES)
    assert {type(m).PRIMARY_TYPE for m in EXAMPLES} == set(eip712.TYPES)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).PRIMARY_TYPE)
def test_fields_are_the_spec_fields_in_the_spec_order(msg: SignedMessage) -> None:
    spec = [f["name"] for f in eip712.TYPES[msg.PRIMARY_TYPE]]
    assert [_camel(f.name) for f in dataclasses.fields(msg)] == spec  # type: ignore[arg-type]
    assert list(msg.message()) == spec


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).PRIMARY_TYPE)
def test_typed_data_is_the_spec_document_and_recovers_its_signer(msg: SignedMessage) -> None:
    doc = msg.typed_data(CHAIN_ID, ESCROW)
    assert doc == eip712.typed_data(msg.PRIMARY_TYPE, msg.message(), CHAIN_ID, ESCROW)
    signature = msg.sign(SIGNER.key, CHAIN_ID, ESCROW)
    assert signature == eip712.sign_typed_data(SIGNER.key, doc)
    assert msg.recover(signature, CHAIN_ID, ESCROW) == ADDR
    # bound to the domain: another escrow's signature recovers to someone else
    assert msg.recover(signature, CHAIN_ID, "0x" + "34" * 20) != ADDR


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).PRIMARY_TYPE)
def test_the_intent_payload_reads_back_as_the_same_message(msg: SignedMessage) -> None:
    payload = msg.payload(b"\x01" * 65)
    assert payload["signature"] == "0x" + "01" * 65
    assert all(isinstance(v, str) for k, v in payload.items() if k.endswith("Hash") or k == "orderId")
    again = type(msg).from_payload(payload)  # type: ignore[attr-defined]
    assert again.message() == msg.message()


def test_uint256_travels_as_a_decimal_string() -> None:
    payload = EXAMPLES[0].payload()
    assert payload["amount"] == str(2**200)
    assert "signature" not in payload


@pytest.mark.parametrize("cls", list(RELAY_FUNCTIONS), ids=lambda c: c.PRIMARY_TYPE)
def test_call_args_follow_the_relay_functions_inputs(cls: type[SignedMessage]) -> None:
    abi = load_artifact("TradeGuardEscrow")["abi"]
    (fn,) = [f for f in abi if f.get("type") == "function" and f["name"] == RELAY_FUNCTIONS[cls]]
    names = [i["name"] for i in fn["inputs"]]
    if cls is BuyerDecision:  # escrow v2: the ERC-792 arbitrator's extraData follows the signature
        assert names[-1] == "extraData"
        names = names[:-1]
    assert names[:3] == ["orderId", "terms", "state"] and names[-1] == "signature"
    msg = next(m for m in EXAMPLES if type(m) is cls)
    assert names[3:-1] == [k for k in msg.message() if k != "orderId"]
    assert list(msg.call_args()) == [v for k, v in msg.message().items() if k != "orderId"]


def test_an_attestation_entry_is_the_message_without_its_order_id() -> None:
    msg = EXAMPLES[1]
    assert isinstance(msg, DeliveryAttestation)
    entry = msg.attestation(b"\x02" * 65)
    assert entry.as_tuple() == (*msg.call_args(), b"\x02" * 65)
