"""Orders: create, fund, ship, confirm, dispute, evidence, ruling; lists and details with a timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response

from app.api.deps import (
    ArbitratorPrincipal,
    Bearer,
    BuyerPrincipal,
    CurrentPrincipal,
    MerchantPrincipal,
    PartyPrincipal,
    RuntimeDep,
    read_as_caller,
    run_read,
)
from app.api.openapi import (
    AUTH,
    BAD_CURSOR,
    BAD_SIGNATURE,
    BODY,
    CHECKSUM,
    REVERT,
    REVERT_INPUT,
    WRONG_STATE,
    links,
    problems,
)
from app.api.schemas import (
    UINT64_MAX,
    ActionAccepted,
    BuyerDecisionCreate,
    EvidenceList,
    FundingCreate,
    OrderCreate,
    OrderCreated,
    OrderPublic,
    OrdersPage,
    RulingCreate,
    ShipmentCreate,
    ShipmentPublic,
)
from app.domain.order_state import Decision
from app.errors import InvalidInput
from app.services.trade import order_views, orders
from app.services.wake import wake

router = APIRouter(prefix="/v1/orders", tags=["orders"])
OrderIdPath = Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{64}$", description="orderId, 0x + 64 hex")]
STATUSES = (
    "awaiting_funding",
    "funded",
    "shipped",
    "delivered",
    "disputed",
    "released",
    "refunded",
    "resolved",
)


#: What an order read answers besides 200: not yours or unknown, a malformed id.
READ = problems(*AUTH, 404, 422)
#: The largest page of evidence: as every list's (each item re-hashes its stored file: the page bounds it).
EVIDENCE_PAGE = order_views.MAX_PAGE
#: What a signed action on an order answers besides 202.
ACTION = problems(
    *AUTH, *BODY, 403, 404, valid={422: [BAD_SIGNATURE, REVERT_INPUT], 409: [WRONG_STATE, REVERT]}
)
CREATE = problems(
    *AUTH,
    *BODY,
    403,
    valid={
        422: [
            ("unknown_currency", "currency 'EUR' is not a settlement token here"),
            (
                "invalid_schedule",
                "the escrow would refuse to fund this order: deliver_by must be after ship_by",
                {"error": "InvalidSchedule"},
            ),
            (
                "invalid_amount",
                "the escrow would refuse to fund this order: amount is above the token's total supply",
                {"error": "AmountAboveSupply"},
            ),
            (
                "invalid_parties",
                "the escrow would refuse to fund this order: buyer must not be the zero address",
                {"error": "InvalidParties"},
            ),
            (
                "corridor_not_allowed",
                "the escrow would refuse to fund this order: tax_bps is above the recipient's cap",
                {"error": "TaxNotAllowed"},
            ),
            CHECKSUM,
            (
                "invalid_arbitrator",
                "the escrow would refuse to fund this order: 0x5FbDB2315678afecb367f032d93F642f64180aa3 "
                "is not an arbitrator appointed on the escrow",
                {"error": "InvalidArbitration"},
            ),
            (
                "not_erc792_arbitrator",
                "0x70997970C51812dc3A010C7d01b50e0d17dc79C8 does not answer the ERC-792 "
                "arbitrationCost(extraData) call",
            ),
            ("extra_data_too_large", "extraData is limited to 1024 bytes (got 2000)"),
            ("extra_data_without_arbitrator", "extraData is for an ERC-792 arbitrator: name one"),
        ],
        409: [
            ("order_exists", "order_ref 'A-1001' already exists"),
            ("platform_state", "the escrow cannot fund new orders now: paused", {"error": "EnforcedPause"}),
        ],
    },
)


def _ts(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _signature(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text[2:])


def _accepted(rt: RuntimeDep, me: CurrentPrincipal, oid: str, intent_id: str) -> dict[str, Any]:
    wake("relay")
    return order_views.accepted(rt, me, oid, intent_id)


_ORDER = {"order_id": "$response.body#/order/id"}


@router.post(
    "",
    status_code=201,
    response_model=OrderCreated,
    responses=CREATE,
    openapi_extra=links(
        201,
        GetOrder=("/v1/orders/{order_id}", "get", _ORDER),
        GetSigning=("/v1/orders/{order_id}/signing", "get", _ORDER),
        AddShipment=("/v1/orders/{order_id}/shipments", "post", _ORDER),
        ListEvidence=("/v1/orders/{order_id}/evidence", "get", _ORDER),
        SubmitEvidence=("/v1/orders/{order_id}/evidence", "post", _ORDER),
    ),
)
def create_order(body: OrderCreate, rt: RuntimeDep, me: MerchantPrincipal) -> dict[str, Any]:
    """Merchant: create an order. The answer carries the EIP-712 typed data the buyer signs (and a permit)."""
    order, documents = orders.create(
        rt,
        me,
        orders.NewOrder(
            order_ref=body.order_ref,
            buyer=body.buyer,
            amount=int(body.amount),
            currency=body.currency,
            destination_country=body.destination_country,
            goods_category=body.goods_category,
            ship_by=_ts(body.ship_by),
            deliver_by=_ts(body.deliver_by),
            hold_seconds=body.hold_seconds,
            valid_for_seconds=body.valid_for_seconds,
            arbitrator=body.arbitrator,
            arbitrator_extra_data=(
                None if body.arbitrator_extra_data is None else bytes.fromhex(body.arbitrator_extra_data[2:])
            ),
        ),
    )
    return {"order": orders.public(order), "sign": documents}


@router.get("", response_model=OrdersPage, responses=problems(*AUTH, 422, valid={422: [BAD_CURSOR]}))
async def list_orders(
    rt: RuntimeDep,
    me: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=order_views.MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")] = None,
) -> dict[str, Any]:
    """The caller's orders, newest first (merchant, buyer: their own; arbitrator: disputed ones)."""
    return await run_read(order_views.page, rt, me, limit, cursor, status)


@router.get("/{order_id}", response_model=OrderPublic, responses=READ)
async def get_order(order_id: OrderIdPath, rt: RuntimeDep, request: Request, creds: Bearer) -> dict[str, Any]:
    """Status, split, ``release_at`` and the timeline of on- and off-chain facts (with tx hashes)."""
    return await read_as_caller(request, rt, creds, order_views.detail_in, order_id)


@router.get("/{order_id}/signing", responses=READ)
def signing_documents(order_id: OrderIdPath, rt: RuntimeDep, me: CurrentPrincipal) -> dict[str, Any]:
    """The typed data to sign for funding (again), e.g. after the permit nonce changed."""
    return order_views.signing(rt, me, order_id)


@router.post("/{order_id}/funding", status_code=202, response_model=ActionAccepted, responses=ACTION)
def fund_order(
    order_id: OrderIdPath, body: FundingCreate, rt: RuntimeDep, me: BuyerPrincipal
) -> dict[str, Any]:
    """Buyer: submit the signed OrderAuthorization (and permit); the relayer funds the order on chain."""
    permit = None
    if body.permit is not None:
        permit = orders.Permit(_signature(body.permit.signature), body.permit.deadline)
    intent = orders.fund(rt, me, order_id, _signature(body.signature), permit)
    return _accepted(rt, me, order_id, intent.id)


@router.post(
    "/{order_id}/shipments",
    status_code=201,
    response_model=ShipmentPublic,
    responses=problems(
        *AUTH,
        *BODY,
        403,
        404,
        valid={409: [WRONG_STATE, ("shipment_exists", "ups:1Z999AA10123456784 is already registered")]},
    ),
)
def add_shipment(order_id: OrderIdPath, body: ShipmentCreate, rt: RuntimeDep, me: MerchantPrincipal) -> Any:
    """Merchant: register the shipment (carrier + tracking number, or SSCC) that logistics events match."""
    return orders.add_shipment(
        rt, me, order_id, body.carrier, body.tracking_number, body.sscc, body.destination
    )


def _decision(
    rt: RuntimeDep, me: CurrentPrincipal, order_id: str, body: BuyerDecisionCreate, decision: Decision
) -> dict[str, Any]:
    intent = orders.buyer_decision(
        rt,
        me,
        order_id,
        decision,
        _signature(body.signature),
        body.valid_until,
        bytes.fromhex(body.evidence_hash[2:]),
    )
    return _accepted(rt, me, order_id, intent.id)


@router.post("/{order_id}/confirm-receipt", status_code=202, response_model=ActionAccepted, responses=ACTION)
def confirm_receipt(
    order_id: OrderIdPath, body: BuyerDecisionCreate, rt: RuntimeDep, me: BuyerPrincipal
) -> dict[str, Any]:
    """Buyer: confirm receipt with a signed BuyerDecision (decision 1): the order releases now."""
    return _decision(rt, me, order_id, body, Decision.CONFIRM_RECEIPT)


@router.post(
    "/{order_id}/disputes",
    status_code=202,
    response_model=ActionAccepted,
    responses=problems(
        *AUTH,
        *BODY,
        403,
        404,
        valid={
            422: [BAD_SIGNATURE, REVERT_INPUT],
            409: [
                WRONG_STATE,
                REVERT,
                (
                    "erc792_dispute_conflict",
                    "order 0x5e1f… is arbitrated by ERC-792 arbitrator 0x5FbD…, whose fee the buyer pays: "
                    "send the transaction GET /v1/orders/{id}/dispute-transaction answers",
                ),
            ],
        },
    ),
)
def open_dispute(
    order_id: OrderIdPath, body: BuyerDecisionCreate, rt: RuntimeDep, me: BuyerPrincipal
) -> dict[str, Any]:
    """Buyer: open a dispute with a signed BuyerDecision (decision 2), before ``release_at``. Platform
    arbitration only: on an order with an ERC-792 arbitrator the buyer pays its fee, from its own wallet, with
    the transaction ``GET /v1/orders/{id}/dispute-transaction`` answers (a 409 here)."""
    return _decision(rt, me, order_id, body, Decision.OPEN_DISPUTE)


@router.post(
    "/{order_id}/evidence",
    status_code=202,
    response_model=ActionAccepted,
    responses=problems(
        *AUTH,
        *BODY,
        403,
        404,
        valid={
            422: [BAD_SIGNATURE, ("empty_file", "the evidence file is empty")],
            409: [("invalid_state", "order 0x5e1f… is released: evidence is closed")],
        },
    ),
)
def submit_evidence(
    order_id: OrderIdPath,
    rt: RuntimeDep,
    me: PartyPrincipal,
    file: Annotated[UploadFile, File(description="the evidence file; its SHA-256 is anchored on chain")],
    signature: Annotated[str, Form(pattern=r"^0x[0-9a-fA-F]{130}$")],
    valid_until: Annotated[int, Form(ge=0, le=UINT64_MAX)],
) -> dict[str, Any]:
    """Buyer or merchant: upload evidence with a signed EvidenceSubmission over the file's SHA-256."""
    data = file.file.read(rt.settings.max_upload_bytes + 1)
    if len(data) > rt.settings.max_upload_bytes:
        raise InvalidInput("too_large", f"evidence files are limited to {rt.settings.max_upload_bytes} bytes")
    if not data:
        raise InvalidInput(
            "empty_file", "the evidence file is empty", errors=[{"field": "file", "message": "empty"}]
        )
    _evidence, intent = orders.add_evidence(
        rt,
        me,
        order_id,
        filename=file.filename or "evidence",
        content_type=file.content_type or "application/octet-stream",
        data=data,
        signature=_signature(signature),
        valid_until=valid_until,
    )
    return _accepted(rt, me, order_id, intent.id)


@router.get(
    "/{order_id}/evidence",
    response_model=EvidenceList,
    responses=problems(*AUTH, 404, 422, valid={422: [BAD_CURSOR]}),
)
def list_evidence(
    order_id: OrderIdPath,
    rt: RuntimeDep,
    me: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=EVIDENCE_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """Evidence, oldest first, with its SHA-256, anchor tx, and whether the stored file still matches the hash
    on chain; ``next_cursor`` continues."""
    return order_views.evidence_list(rt, me, order_id, limit, cursor)


@router.get("/{order_id}/evidence/{evidence_id}/content", response_class=Response, responses=READ)
def evidence_content(
    order_id: OrderIdPath,
    evidence_id: Annotated[str, Path(max_length=40)],
    rt: RuntimeDep,
    me: CurrentPrincipal,
) -> Response:
    """The stored evidence file, byte for byte (re-hash it to check it against the chain)."""
    ev = order_views.evidence_file(rt, me, order_id, evidence_id)
    return Response(
        ev.data,
        media_type=ev.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{ev.id}"',
            "X-Content-Type-Options": "nosniff",
            "X-Content-SHA256": ev.sha256,
        },
    )


@router.post("/{order_id}/ruling", status_code=202, response_model=ActionAccepted, responses=ACTION)
def submit_ruling(
    order_id: OrderIdPath, body: RulingCreate, rt: RuntimeDep, me: ArbitratorPrincipal
) -> dict[str, Any]:
    """Arbitrator: rule on a dispute with a signed Ruling (10000 = full refund, 0 = full release). Platform
    arbitration only: an ERC-792 arbitrator rules through its own ``rule()`` call (a 409 here)."""
    intent = orders.rule(
        rt,
        me,
        order_id,
        body.buyer_share_bps,
        bytes.fromhex(body.rationale_hash[2:]),
        body.valid_until,
        _signature(body.signature),
    )
    return _accepted(rt, me, order_id, intent.id)
