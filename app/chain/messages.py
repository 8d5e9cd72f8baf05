"""The five signed messages of SPEC §4, each defined once.

One frozen dataclass a message, holding exactly the signed fields (Python names; SPEC names in
:meth:`SignedMessage.message`). Each gives, from that one definition:

- :meth:`~SignedMessage.message`: the EIP-712 message (bytes as bytes, addresses checksummed);
- :meth:`~SignedMessage.typed_data`, :meth:`~SignedMessage.sign`, :meth:`~SignedMessage.recover`: the document
  a wallet signs for an escrow, and the signer of a signature over it;
- :meth:`~SignedMessage.payload`: the JSON form the service stores in a relayer intent (0x-hex, ``uint256``
  as a decimal string), with the signature; :meth:`~SignedMessage.from_payload` reads it back;
- :meth:`~SignedMessage.call_args`: what the escrow's relay function takes after the order's
  ``(orderId, terms, state)``; :data:`RELAY_FUNCTIONS` names that function for the three relayed alone. The
  escrow v2 folds the direct and the signed form of each action into one function: the same arguments with
  an empty signature mean the sender acts itself (``submitBuyerDecision`` also takes the ERC-792 ``extraData``
  after the signature).

The field lists themselves are :data:`app.chain.eip712.TYPES`; ``tests/chain/test_messages.py`` checks that
every class here names the same fields in the same order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from eth_utils import to_checksum_address

from app.chain import eip712

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_HASH = b"\x00" * 32


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _bytes(value: str | bytes) -> bytes:
    """A ``bytesN`` field of a payload (0x-hex) or already bytes."""
    return value if isinstance(value, bytes) else bytes.fromhex(value[2:])


class SignedMessage(ABC):
    """What the five messages share: typed data, signing, recovery and the JSON payload, all from
    :meth:`message`. Subclasses are frozen dataclasses naming :attr:`PRIMARY_TYPE`."""

    PRIMARY_TYPE: ClassVar[str]

    @abstractmethod
    def message(self) -> dict[str, Any]:
        """The EIP-712 message, SPEC §4 field names in the type's order."""

    def typed_data(self, chain_id: int, escrow: str) -> dict[str, Any]:
        """The EIP-712 document for the escrow at ``escrow`` on ``chain_id``."""
        return eip712.typed_data(self.PRIMARY_TYPE, self.message(), chain_id, escrow)

    def sign(self, key: bytes | str, chain_id: int, escrow: str) -> bytes:
        """The 65-byte signature ``r || s || v`` of ``key`` over this message."""
        return eip712.sign_typed_data(key, self.typed_data(chain_id, escrow))

    def recover(self, signature: bytes, chain_id: int, escrow: str) -> str:
        """The checksummed address that signed this message (raises on a malformed signature)."""
        return eip712.recover_signer(self.typed_data(chain_id, escrow), signature)

    def payload(self, signature: bytes | None = None) -> dict[str, Any]:
        """The message as JSON (0x-hex bytes, ``uint256`` as decimal strings), plus ``signature`` if given."""
        uint256 = {f["name"] for f in eip712.TYPES[self.PRIMARY_TYPE] if f["type"] == "uint256"}
        out: dict[str, Any] = {
            k: _hex(v) if isinstance(v, bytes) else str(v) if k in uint256 else v
            for k, v in self.message().items()
        }
        if signature is not None:
            out["signature"] = _hex(signature)
        return out

    def call_args(self) -> tuple[Any, ...]:
        """The relay function's arguments after the order's ``(orderId, terms, state)``, signature aside."""
        return tuple(v for k, v in self.message().items() if k != "orderId")


@dataclass(frozen=True)
class OrderAuthorization(SignedMessage):
    """The buyer's OrderAuthorization: the order's terms, signed once, relayed by ``fund``."""

    PRIMARY_TYPE: ClassVar[str] = "OrderAuthorization"

    order_id: bytes
    buyer: str
    seller: str
    token: str
    amount: int
    commission_bps: int
    tax_bps: int
    tax_recipient: str
    ship_by: int
    deliver_by: int
    hold_seconds: int
    valid_until: int
    #: SPEC §4.1: an ERC-792 arbitrator, or the zero address for the platform's arbitrators and Ruling message
    arbitrator: str = ZERO_ADDRESS
    #: keccak256 of the extraData for the arbitrator's createDispute (zero bytes without an arbitrator)
    arbitrator_extra_data_hash: bytes = ZERO_HASH

    def message(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "buyer": to_checksum_address(self.buyer),
            "seller": to_checksum_address(self.seller),
            "token": to_checksum_address(self.token),
            "amount": self.amount,
            "commissionBps": self.commission_bps,
            "taxBps": self.tax_bps,
            "taxRecipient": to_checksum_address(self.tax_recipient),
            "shipBy": self.ship_by,
            "deliverBy": self.deliver_by,
            "holdSeconds": self.hold_seconds,
            "validUntil": self.valid_until,
            "arbitrator": to_checksum_address(self.arbitrator),
            "arbitratorExtraDataHash": self.arbitrator_extra_data_hash,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> OrderAuthorization:
        """From :meth:`payload` (the ``authorization`` of a ``fund`` intent)."""
        return cls(
            _bytes(p["orderId"]), p["buyer"], p["seller"], p["token"], int(p["amount"]),
            int(p["commissionBps"]), int(p["taxBps"]), p["taxRecipient"], int(p["shipBy"]),
            int(p["deliverBy"]), int(p["holdSeconds"]), int(p["validUntil"]),
            p.get("arbitrator", ZERO_ADDRESS), _bytes(p.get("arbitratorExtraDataHash", ZERO_HASH)),
        )  # fmt: skip

    def as_tuple(self) -> tuple[Any, ...]:
        """The contract's ``OrderAuthorization`` ABI tuple (every field, the order id included)."""
        return tuple(self.message().values())


@dataclass(frozen=True)
class DeliveryAttestation(SignedMessage):
    """An oracle's vote that an order reached a milestone (1 shipped, 2 delivered); relayed by ``attest``."""

    PRIMARY_TYPE: ClassVar[str] = "DeliveryAttestation"

    order_id: bytes
    milestone: int
    event_time: int
    tracking_hash: bytes
    evidence_hash: bytes

    def message(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "milestone": self.milestone,
            "eventTime": self.event_time,
            "trackingHash": self.tracking_hash,
            "evidenceHash": self.evidence_hash,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> DeliveryAttestation:
        """From :meth:`payload` (an ``attest`` intent, or an oracle's ``POST /v1/attestations``)."""
        return cls(
            _bytes(p["orderId"]),
            int(p["milestone"]),
            int(p["eventTime"]),
            _bytes(p["trackingHash"]),
            _bytes(p["evidenceHash"]),
        )

    def attestation(self, signature: bytes = b"") -> Attestation:
        """The ``attest`` call's entry for this vote (an empty signature: the sender attests itself)."""
        return Attestation(self.milestone, self.event_time, self.tracking_hash, self.evidence_hash, signature)


@dataclass(frozen=True)
class BuyerDecision(SignedMessage):
    """The buyer confirms receipt (decision 1) or opens a dispute (2); relayed by ``submitBuyerDecision``."""

    PRIMARY_TYPE: ClassVar[str] = "BuyerDecision"

    order_id: bytes
    decision: int
    evidence_hash: bytes
    valid_until: int

    def message(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "decision": self.decision,
            "evidenceHash": self.evidence_hash,
            "validUntil": self.valid_until,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> BuyerDecision:
        """From :meth:`payload` (a ``confirm_receipt`` or ``open_dispute`` intent)."""
        return cls(_bytes(p["orderId"]), int(p["decision"]), _bytes(p["evidenceHash"]), int(p["validUntil"]))


@dataclass(frozen=True)
class EvidenceSubmission(SignedMessage):
    """A party anchors the SHA-256 of an evidence file; relayed by ``submitEvidenceSigned``."""

    PRIMARY_TYPE: ClassVar[str] = "EvidenceSubmission"

    order_id: bytes
    party: str
    evidence_hash: bytes
    valid_until: int

    def message(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "party": to_checksum_address(self.party),
            "evidenceHash": self.evidence_hash,
            "validUntil": self.valid_until,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> EvidenceSubmission:
        """From :meth:`payload` (an ``evidence`` intent)."""
        return cls(_bytes(p["orderId"]), p["party"], _bytes(p["evidenceHash"]), int(p["validUntil"]))


@dataclass(frozen=True)
class Ruling(SignedMessage):
    """An arbitrator's split of a disputed order (``buyer_share_bps`` back to the buyer); relayed by
    ``submitRuling``."""

    PRIMARY_TYPE: ClassVar[str] = "Ruling"

    order_id: bytes
    buyer_share_bps: int
    rationale_hash: bytes
    valid_until: int

    def message(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "buyerShareBps": self.buyer_share_bps,
            "rationaleHash": self.rationale_hash,
            "validUntil": self.valid_until,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> Ruling:
        """From :meth:`payload` (a ``ruling`` intent)."""
        return cls(
            _bytes(p["orderId"]), int(p["buyerShareBps"]), _bytes(p["rationaleHash"]), int(p["validUntil"])
        )


#: Every message class by its EIP-712 primary type.
MESSAGES: dict[str, type[SignedMessage]] = {
    cls.PRIMARY_TYPE: cls
    for cls in (OrderAuthorization, DeliveryAttestation, BuyerDecision, EvidenceSubmission, Ruling)
}
#: The escrow function that relays one signed message of each kind that goes on chain alone.
RELAY_FUNCTIONS: dict[type[SignedMessage], str] = {
    BuyerDecision: "submitBuyerDecision",
    EvidenceSubmission: "submitEvidence",
    Ruling: "submitRuling",
}


@dataclass(frozen=True)
class Attestation:
    """One entry of the escrow's ``attest`` call: a DeliveryAttestation without its order id, and the
    oracle's signature over it (empty: the sender attests itself)."""

    milestone: int
    event_time: int
    tracking_hash: bytes
    evidence_hash: bytes
    signature: bytes = b""

    def as_tuple(self) -> tuple[Any, ...]:
        """ABI tuple for the contract."""
        return (
            self.milestone,
            self.event_time,
            self.tracking_hash,
            self.evidence_hash,
            self.signature,
        )
