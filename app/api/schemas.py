"""Request and response bodies, one family per resource. Amounts are decimal strings, never JSON numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic import Strict as StrictMode

from app.domain.order_rules import MAX_HOLD_SECONDS, MIN_HOLD_SECONDS
from app.services.trade.arbitration import MAX_EXTRA_DATA_BYTES


def _json_integer(value: Any) -> Any:
    """A JSON Schema ``integer``: a number with no fraction (``5`` or ``5.0``), never ``true`` or ``"5"``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # strict mode then refuses booleans, strings and fractions


def _checksummed(value: str) -> str:
    """EIP-55: an all-lower or all-upper address is taken as is; a mixed-case one needs a valid checksum."""
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ValueError("mixed-case address with an invalid EIP-55 checksum")
    return str(to_checksum_address(value))


Address = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$"), AfterValidator(_checksummed)]
Hex32 = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{64}$")]
Signature = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{130}$")]
#: 1 .. 10^39-1 as a decimal string (the escrow takes up to 2^128-1; the rules refuse the rest by name)
Amount = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,38}$")]
OrderId = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{64}$")]
#: Bytes as 0x hex, an even number of digits, at most :data:`MAX_EXTRA_DATA_BYTES` bytes
HexBytes = Annotated[
    str, StringConstraints(pattern=r"^0x([0-9a-fA-F]{2})*$", max_length=2 + 2 * MAX_EXTRA_DATA_BYTES)
]
#: Free text holds no control characters (PostgreSQL cannot store a NUL; logs and CSV should not see them).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
#: Integers are strict everywhere: a JSON ``true`` or ``"5"`` is not an integer.
#: The bound is 2^53-1, not 2^63-1: the OpenAPI publishes bounds as floats, and 2^63-1 would read as 2^63,
#: admitting in the document values the service refuses. (Times in seconds: 2^53 s is far enough.)
UINT64_MAX = 2**53 - 1


#: Integer fields as JSON Schema means them (see :func:`_json_integer`), with their bounds
_JSON_INT = BeforeValidator(_json_integer)
Uint64 = Annotated[int, StrictMode(), Field(ge=0, le=UINT64_MAX), _JSON_INT]
HoldSeconds = Annotated[int, StrictMode(), Field(ge=MIN_HOLD_SECONDS, le=MAX_HOLD_SECONDS), _JSON_INT]
ValidForSeconds = Annotated[int, StrictMode(), Field(ge=60, le=30 * 86_400), _JSON_INT]
ShareBps = Annotated[int, StrictMode(), Field(ge=0, le=10_000), _JSON_INT]
TaxBps = Annotated[int, StrictMode(), Field(ge=0, le=5000), _JSON_INT]
AdvanceSeconds = Annotated[int, StrictMode(), Field(ge=1, le=365 * 86_400), _JSON_INT]
Milestone = Annotated[
    int,
    StrictMode(),
    Field(ge=1, le=2, json_schema_extra={"enum": [1, 2]}, description="1 SHIPPED, 2 DELIVERED"),
    _JSON_INT,
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None


# --- principals -----------------------------------------------------------------------------------


class PrincipalCreate(Strict):
    role: Literal["admin", "merchant", "buyer", "oracle", "arbitrator", "regulator"]
    address: Address | None = None
    name: Annotated[str, StringConstraints(max_length=200, pattern=PRINTABLE)] = ""


class PrincipalPublic(BaseModel):
    id: str
    role: str
    address: str | None
    name: str
    created_at: datetime


class PrincipalCreated(PrincipalPublic):
    api_key: str = Field(description="shown once; store it now")


# --- orders ---------------------------------------------------------------------------------------


class OrderCreate(Strict):
    order_ref: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
    buyer: Address
    amount: Amount = Field(description="token base units, as a decimal string")
    currency: Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9._-]+$")]
    destination_country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]
    goods_category: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")]
    ship_by: AwareDatetime | None = Field(None, description="RFC 3339 with an offset; default now + 5 days")
    deliver_by: AwareDatetime | None = Field(
        None, description="RFC 3339 with an offset, within 365 days; default ship_by + 25 days"
    )
    hold_seconds: HoldSeconds | None = None
    valid_for_seconds: ValidForSeconds = 86_400
    arbitrator: Address | None = Field(
        None,
        description="SPEC §4.1: an ERC-792 arbitrator contract appointed on the escrow and active now; the "
        "buyer signs it, and opening a dispute then pays its arbitrationCost. Absent: the platform's "
        "arbitrators",
    )
    arbitrator_extra_data: HexBytes | None = Field(
        None,
        description="the extraData the arbitrator's createDispute is given (0x hex, at most "
        f"{MAX_EXTRA_DATA_BYTES} bytes; only with an arbitrator); the buyer signs its keccak256",
    )


class Split(BaseModel):
    final: bool
    buyer_refund: str
    commission: str
    tax: str
    seller_net: str


class TimelineItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: str
    kind: str
    source: Literal["chain", "offchain"]
    tx_hash: str | None = None


class ArbitrationPublic(BaseModel):
    """Who decides the order's dispute: the platform's arbitrators, or an ERC-792 arbitrator (SPEC §4.1) with
    its dispute id, ruling (0..10) and the buyer's share that ruling gives once it has ruled."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["platform", "erc792"]
    arbitrator: str | None
    extra_data: str | None = None
    extra_data_hash: str | None = None
    ruling_choices: int | None = None
    dispute_id: str | None = Field(None, description="the arbitrator's dispute id (decimal string)")
    ruling: int | None = None
    ruling_buyer_share_bps: int | None = None
    ruled_at: str | None = None


class OrderPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    order_ref: str
    status: str
    buyer: str
    seller: str
    currency: str
    token: str
    amount: str
    split: Split
    release_at: str | None
    ship_by: str | None
    deliver_by: str | None
    arbitration: ArbitrationPublic | None = None
    timeline: list[dict[str, Any]] | None = None


class OrderCreated(BaseModel):
    order: OrderPublic
    sign: dict[str, Any] = Field(description="EIP-712 typed data: `authorization` and `permit` for the buyer")


class OrdersPage(BaseModel):
    items: list[OrderPublic]
    next_cursor: str | None


class PermitIn(Strict):
    deadline: Uint64
    signature: Signature


class FundingCreate(Strict):
    signature: Signature = Field(description="the buyer's OrderAuthorization signature")
    permit: PermitIn | None = Field(
        None, description="EIP-2612 permit; without it the escrow needs an allowance"
    )


class CartSigningRequest(Strict):
    order_ids: list[OrderId] = Field(
        min_length=1, max_length=50, description="the buyer's orders, in one token"
    )


class CartItemIn(Strict):
    order_id: OrderId
    signature: Signature = Field(description="the buyer's OrderAuthorization signature for this order")


class CartFundingCreate(Strict):
    items: list[CartItemIn] = Field(min_length=1, max_length=50)
    permit: PermitIn = Field(
        description="one EIP-2612 permit for the cart's total (from POST /v1/carts/signing)"
    )


class IntentPublic(BaseModel):
    id: str
    kind: str
    status: str
    tx_hash: str | None
    error: str | None
    error_code: str | None = Field(
        None, description="a failed intent's error as a stable code (the README's table of contract errors)"
    )
    request_id: str | None = Field(None, description="the X-Request-Id of the request that submitted it")


class ActionAccepted(BaseModel):
    order: OrderPublic
    intent: IntentPublic


class BuyerDecisionCreate(Strict):
    signature: Signature
    valid_until: Uint64
    evidence_hash: Hex32 = "0x" + "00" * 32


class RulingCreate(Strict):
    buyer_share_bps: ShareBps
    rationale_hash: Hex32
    valid_until: Uint64
    signature: Signature


class ShipmentCreate(Strict):
    carrier: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
    tracking_number: Annotated[
        str, StringConstraints(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")
    ]
    sscc: Annotated[str, StringConstraints(pattern=r"^[0-9]{18}$")] | None = None
    destination: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)] | None = (
        Field(
            None,
            description="the destination's location id as EPCIS events name it (SGLN URI or GS1 Digital "
            "Link); when set, only a receiving event there counts as DELIVERED",
        )
    )


class ShipmentPublic(BaseModel):
    id: str
    order_id: str
    carrier: str
    tracking_number: str
    tracking_hash: str
    sscc: str | None
    destination: str | None


class EvidencePublic(BaseModel):
    id: str
    party: str
    filename: str
    content_type: str
    size: int
    sha256: str
    intent: IntentPublic | None
    anchor_tx: str | None
    anchored: bool
    matches_chain: bool
    created_at: datetime


class EvidenceList(BaseModel):
    items: list[EvidencePublic]
    next_cursor: str | None


# --- logistics ------------------------------------------------------------------------------------


class CaptureAccepted(BaseModel):
    capture_id: str
    status: str
    duplicate: bool = False


class CapturePublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    capture_id: str
    source: str
    status: str
    received_at: datetime
    raw_sha256: str
    outcome: dict[str, Any] | None
    error: str | None


class AttestationCreate(Strict):
    order_id: OrderId
    milestone: Milestone
    event_time: Uint64
    tracking_hash: Hex32
    evidence_hash: Hex32
    signature: Signature


# --- merchant webhooks ----------------------------------------------------------------------------


class WebhookEndpointCreate(Strict):
    url: Annotated[str, StringConstraints(min_length=8, max_length=2000, pattern=r"^https?://[\x21-\x7e]+$")]
    event_types: list[Annotated[str, StringConstraints(max_length=60, pattern=r"^[a-z0-9_.*-]+$")]] = Field(
        default_factory=list, max_length=50
    )


class WebhookEndpointPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    enabled: bool
    created_at: datetime


class WebhookEndpointsPage(BaseModel):
    items: list[WebhookEndpointPublic]
    next_cursor: str | None


class WebhookEndpointCreated(WebhookEndpointPublic):
    secret: str = Field(description="signing secret, shown once")


# --- dev ------------------------------------------------------------------------------------------


class FaucetRequest(Strict):
    address: Address
    amount: Amount
    currency: str = "tUSD"


class AdvanceTime(Strict):
    seconds: AdvanceSeconds


class CorridorIn(Strict):
    country: Annotated[str, StringConstraints(pattern=r"^([A-Za-z]{2}|\*)$")]
    category: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^([A-Za-z0-9_-]+|\*)$")]
    tax_bps: TaxBps
    recipient: Address


class CorridorsPut(Strict):
    items: list[CorridorIn] = Field(max_length=500)
