"""Relayer intents: what each kind of signed message carries, and the contract call it becomes.

An intent is a ``kind`` (one of :data:`INTENT_KINDS`) and a JSON payload in the SPEC §4 field names. Payloads
are validated by one pydantic model per kind (:data:`PAYLOADS`) and stored normalised: checksummed addresses,
lowercase hex, ``uint256`` as decimal strings (smaller integers as JSON numbers while they fit a double). The
intent's identity, ``intent_hash``, is the keccak of the RFC 8785 canonical JSON of the normalised intent, so
the same message filed twice is the same intent.

:func:`build_call` turns one payload, or a batch of ``attest`` / ``release`` payloads (:data:`BATCHED`), into
the escrow call the relayer estimates and sends, built against each order's current on-chain state.
:func:`fund_call` turns 1..:data:`MAX_FUND_BATCH` ``fund`` payloads into one all-or-nothing ``fund`` call
(a permit only on the first: the contract lets only the first run of buyer and token use it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import rfc8785
from eth_utils import keccak, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
)

from app.chain.client import ContractCall
from app.chain.escrow import NO_PERMIT, ZERO_ADDRESS, Order, Terms
from app.chain.messages import (
    Attestation,
    BuyerDecision,
    DeliveryAttestation,
    EvidenceSubmission,
    OrderAuthorization,
    Ruling,
)
from app.errors import InvalidInput
from app.services.index.order_gateway import OrderGateway
from app.services.runtime import Runtime

INTENT_KINDS = (
    "fund",
    "attest",
    "confirm_receipt",
    "open_dispute",
    "evidence",
    "ruling",
    "release",
    "timeout_refund",
    "execute_ruling",
)
#: Kinds that go out together in one non-strict transaction.
BATCHED = frozenset({"attest", "release"})
MAX_BATCH = 50
#: The contract's own bound on ``fund`` batches (``TradeGuardEscrow.MAX_BATCH``).
MAX_FUND_BATCH = 500
_MAX_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers are hashed as strings


# ---------------------------------------------------------------------------------------- payloads


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be an integer or a decimal string")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 78:
            raise ValueError("must be a decimal string")
        return int(value)
    return value


def _small(value: int) -> int | str:
    return value if value <= _MAX_SAFE_INT else str(value)


def _checksum(value: str) -> str:
    return str(to_checksum_address(value))


# Unsigned integers come as JSON numbers or decimal strings; uint256 is stored as a decimal string.
_INT, _AS_STR, _AS_NUM = BeforeValidator(_to_int), PlainSerializer(str), PlainSerializer(_small)
Uint8 = Annotated[int, _INT, Field(ge=0, le=2**8 - 1), _AS_NUM]
Uint16 = Annotated[int, _INT, Field(ge=0, le=2**16 - 1), _AS_NUM]
Uint32 = Annotated[int, _INT, Field(ge=0, le=2**32 - 1), _AS_NUM]
Uint64 = Annotated[int, _INT, Field(ge=0, le=2**64 - 1), _AS_NUM]
Uint256 = Annotated[int, _INT, Field(ge=0, le=2**256 - 1), _AS_STR]
Bytes32 = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{64}$"), AfterValidator(str.lower)]
Signature = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{130}$"), AfterValidator(str.lower)]
Address = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$"), AfterValidator(_checksum)]


def hex_bytes(hex_str: str) -> bytes:
    """A ``0x``-hex payload field (already validated) as bytes."""
    return bytes.fromhex(hex_str[2:])


class IntentPayload(BaseModel):
    """Base of the payload models: unknown fields refused, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def order_id(self) -> str:
        """The order this payload acts on (0x-hex)."""
        return str(getattr(self, "orderId"))  # noqa: B009 (every payload but fund has the field)


class AuthorizationIn(IntentPayload):
    """The buyer's OrderAuthorization (SPEC §4.1 field names; the two arbitration fields default to platform
    arbitration, so an intent stored before escrow v2 reads back unchanged)."""

    orderId: Bytes32
    buyer: Address
    seller: Address
    token: Address
    amount: Uint256
    commissionBps: Uint16
    taxBps: Uint16
    taxRecipient: Address
    shipBy: Uint64
    deliverBy: Uint64
    holdSeconds: Uint32
    validUntil: Uint64
    arbitrator: Address = "0x0000000000000000000000000000000000000000"
    arbitratorExtraDataHash: Bytes32 = "0x" + "00" * 32

    def to_authorization(self) -> OrderAuthorization:
        """As the chain package's :class:`~app.chain.messages.OrderAuthorization`."""
        return OrderAuthorization.from_payload(self.model_dump())


class PermitIn(IntentPayload):
    """An EIP-2612 permit for the escrow."""

    value: Uint256
    deadline: Uint256
    v: Uint8
    r: Bytes32
    s: Bytes32


class FundPayload(IntentPayload):
    """``fund``: the authorization, the buyer's signature and an optional permit (else a prior allowance)."""

    authorization: AuthorizationIn
    signature: Signature
    permit: PermitIn | None = None

    @property
    def order_id(self) -> str:
        return self.authorization.orderId


class AttestPayload(IntentPayload):
    """``attest``: one oracle's signed DeliveryAttestation."""

    orderId: Bytes32
    milestone: Uint8
    eventTime: Uint64
    trackingHash: Bytes32
    evidenceHash: Bytes32
    signature: Signature

    def message(self) -> DeliveryAttestation:
        """The signed message (:class:`~app.chain.messages.DeliveryAttestation`)."""
        return DeliveryAttestation.from_payload(self.model_dump())


class BuyerDecisionPayload(IntentPayload):
    """``confirm_receipt`` / ``open_dispute``: the buyer's signed BuyerDecision."""

    orderId: Bytes32
    decision: Uint8
    evidenceHash: Bytes32
    validUntil: Uint64
    signature: Signature

    def message(self) -> BuyerDecision:
        """The signed message (:class:`~app.chain.messages.BuyerDecision`)."""
        return BuyerDecision.from_payload(self.model_dump())


class EvidencePayload(IntentPayload):
    """``evidence``: a party's signed EvidenceSubmission."""

    orderId: Bytes32
    party: Address
    evidenceHash: Bytes32
    validUntil: Uint64
    signature: Signature

    def message(self) -> EvidenceSubmission:
        """The signed message (:class:`~app.chain.messages.EvidenceSubmission`)."""
        return EvidenceSubmission.from_payload(self.model_dump())


class RulingPayload(IntentPayload):
    """``ruling``: an arbitrator's signed Ruling."""

    orderId: Bytes32
    buyerShareBps: Uint16
    rationaleHash: Bytes32
    validUntil: Uint64
    signature: Signature

    def message(self) -> Ruling:
        """The signed message (:class:`~app.chain.messages.Ruling`)."""
        return Ruling.from_payload(self.model_dump())


class OrderPayload(IntentPayload):
    """``release`` / ``timeout_refund`` / ``execute_ruling``: just the order."""

    orderId: Bytes32


PAYLOADS: dict[str, type[IntentPayload]] = {
    "fund": FundPayload,
    "attest": AttestPayload,
    "confirm_receipt": BuyerDecisionPayload,
    "open_dispute": BuyerDecisionPayload,
    "evidence": EvidencePayload,
    "ruling": RulingPayload,
    "release": OrderPayload,
    "timeout_refund": OrderPayload,
    "execute_ruling": OrderPayload,
}
_DECISION = {"confirm_receipt": 1, "open_dispute": 2}


def parse_payload(kind: str, payload: Mapping[str, Any] | IntentPayload) -> IntentPayload:
    """Validate an intent payload; raises :class:`InvalidInput` (with field errors) when it is refused."""
    model = PAYLOADS.get(kind)
    if model is None:
        raise InvalidInput("unknown_intent_kind", f"unknown intent kind {kind!r}; one of {INTENT_KINDS}")
    if isinstance(payload, model):
        return payload
    try:
        parsed = model.model_validate(payload.model_dump() if isinstance(payload, IntentPayload) else payload)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise InvalidInput("invalid_payload", f"invalid {kind} payload", errors=errors) from exc
    if kind in _DECISION and getattr(parsed, "decision", None) != _DECISION[kind]:
        raise InvalidInput(
            "invalid_payload",
            f"{kind} needs decision {_DECISION[kind]}",
            errors=[{"field": "decision", "message": f"must be {_DECISION[kind]}"}],
        )
    return parsed


def normalize_payload(kind: str, payload: Mapping[str, Any] | IntentPayload) -> dict[str, Any]:
    """The payload as stored and hashed: checksummed addresses, lowercase hex, uint256 as decimal strings."""
    return parse_payload(kind, payload).model_dump(mode="json")


def compute_intent_hash(kind: str, payload: Mapping[str, Any] | IntentPayload) -> str:
    """``keccak256`` of the RFC 8785 canonical JSON of ``{"kind", "payload"}`` (payload normalised)."""
    doc: dict[str, Any] = {"kind": kind, "payload": normalize_payload(kind, payload)}
    return "0x" + keccak(rfc8785.dumps(doc)).hex()


# ---------------------------------------------------------------------------------------- calls


def _placeholder(order_id: bytes) -> Order:
    """An order the chain does not have: the contract answers ``UnknownOrder`` for it."""
    z = ZERO_ADDRESS
    return Order(order_id, Terms(z, z, z, 0, 0, 0, z, 0, 0, 0, 0, 0, 0, 0), 0)


def _order(oid: str, orders: Mapping[str, Order | None]) -> Order:
    found = orders.get(oid)
    return found if found is not None else _placeholder(hex_bytes(oid))


def fund_call(rt: Runtime, payloads: Sequence[Mapping[str, Any] | IntentPayload]) -> ContractCall:
    """``fund`` for 1..:data:`MAX_FUND_BATCH` payloads in one all-or-nothing transaction, in the given order.

    The contract pulls once per run of consecutive orders with the same buyer and token, and only the first
    run may use a permit: so only the first payload may carry one. Raises :class:`InvalidInput` otherwise.
    """
    ps = [parse_payload("fund", p) for p in payloads]
    if not ps or len(ps) > MAX_FUND_BATCH:
        raise InvalidInput("invalid_batch", f"fund: 1..{MAX_FUND_BATCH} payloads")
    funds = [p for p in ps if isinstance(p, FundPayload)]
    if any(p.permit is not None for p in funds[1:]):
        raise InvalidInput("invalid_batch", "fund: only the first payload of a batch may carry a permit")
    permit, first = NO_PERMIT, funds[0].permit
    if first is not None:
        permit = (first.value, first.deadline, first.v, hex_bytes(first.r), hex_bytes(first.s))
    auths = [p.authorization.to_authorization() for p in funds]
    return rt.escrow.fund_call(auths, [hex_bytes(p.signature) for p in funds], permit)


def build_call(
    rt: Runtime,
    kind: str,
    payload_or_payloads: Mapping[str, Any] | IntentPayload | Sequence[Mapping[str, Any] | IntentPayload],
    *,
    orders: Mapping[str, Order | None] | None = None,
) -> ContractCall:
    """The contract call for one payload (strict) or a list of ``attest``/``release`` payloads (a non-strict
    batch), built against each order's current on-chain state: ``orders`` may supply it (by 0x order id),
    the rest comes from the :class:`~app.services.index.order_gateway.OrderGateway` (the index, caught up).

    Raises :class:`InvalidInput` for a bad payload; nothing is sent or written.
    """
    raw: list[Mapping[str, Any] | IntentPayload]
    if isinstance(payload_or_payloads, Mapping | IntentPayload):
        raw, batch = [payload_or_payloads], False
    else:
        raw, batch = list(payload_or_payloads), True
    if not raw or len(raw) > MAX_BATCH or (batch and kind not in BATCHED):
        raise InvalidInput("invalid_batch", f"{kind}: one payload, or 1..{MAX_BATCH} attest/release payloads")
    ps = [parse_payload(kind, p) for p in raw]
    esc, p = rt.escrow, ps[0]
    if not isinstance(p, FundPayload):
        wanted = [q.order_id for q in ps if orders is None or q.order_id not in orders]
        if wanted:  # one index read and one bounded log query for the whole batch
            orders = {**(orders or {}), **OrderGateway.of(rt).current_many(wanted)}
    orders = orders or {}
    if isinstance(p, FundPayload):
        return fund_call(rt, [p])
    if kind == "attest":
        items: dict[tuple[str, int], list[Attestation]] = {}
        for a in ps:
            assert isinstance(a, AttestPayload)
            att: Attestation = a.message().attestation(hex_bytes(a.signature))
            items.setdefault((a.orderId, a.milestone), []).append(att)
        pairs = [(_order(oid, orders), atts) for (oid, _), atts in items.items()]
        return esc.attest_call(pairs, not batch)
    if kind == "release":
        return esc.release_call([_order(q.order_id, orders) for q in ps], not batch)
    order = _order(p.order_id, orders)
    if isinstance(p, BuyerDecisionPayload | EvidencePayload | RulingPayload):
        return esc.relay_call(order, p.message(), hex_bytes(p.signature))
    if kind == "execute_ruling":
        return esc.execute_ruling_call(order)
    return esc.timeout_refund_call(order)


__all__ = [
    "BATCHED",
    "INTENT_KINDS",
    "MAX_BATCH",
    "MAX_FUND_BATCH",
    "PAYLOADS",
    "AttestPayload",
    "AuthorizationIn",
    "BuyerDecisionPayload",
    "EvidencePayload",
    "FundPayload",
    "IntentPayload",
    "OrderPayload",
    "PermitIn",
    "RulingPayload",
    "build_call",
    "compute_intent_hash",
    "fund_call",
    "hex_bytes",
    "normalize_payload",
    "parse_payload",
]
