"""Logistics inputs (SPEC §5): EPCIS capture, carrier webhooks, independent oracles' attestations."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from app.api.deps import CapturePrincipal, CurrentPrincipal, OraclePrincipal, RuntimeDep
from app.api.openapi import AUTH, BAD_SIGNATURE, BODY, Example, links, problems
from app.api.schemas import AttestationCreate, CaptureAccepted, CapturePublic
from app.services.idempotency import Answer
from app.services.inbox import ingestion
from app.services.principals import Principal
from app.services.runtime import Runtime
from app.services.trade.orders import intent_public
from app.services.wake import wake

router = APIRouter(tags=["logistics"])

#: A document that is JSON but not an EPCIS document or carrier webhook the service reads; too deep a nesting.
_FEED_RULES: dict[int, list[Example]] = {
    422: [
        ("malformed", "epcisBody.eventList must be a list", {"field": "epcisBody.eventList"}),
        ("unsupported_document", "expected type EPCISDocument or EPCISQueryDocument, got None"),
        ("unsupported_event", "event 0 has unknown type 'TransformationEvent'", {"index": 0}),
    ],
    413: [("too_large", "body nests deeper than 64 levels", {"limit": 64})],
}


@router.post(
    "/v1/epcis/capture",
    status_code=202,
    response_model=CaptureAccepted,
    responses=problems(*AUTH, *BODY, 403, valid=_FEED_RULES),
    openapi_extra={
        **links(
            202,
            GetCapture=(
                "/v1/epcis/capture/{capture_id}",
                "get",
                {"capture_id": "$response.body#/capture_id"},
            ),
        ),
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/ld+json": {"schema": {"type": "object"}},
            },
        },
    },
)
async def capture_epcis(request: Request, me: CapturePrincipal, rt: RuntimeDep) -> JSONResponse:
    """Oracle: capture an EPCISDocument, or an EPCISQueryDocument (a SimpleEventQuery's answer: its
    ``queryResults.resultsBody.eventList`` is read alike), stored before the 202
    (``GET /v1/epcis/capture/{id}``: outcome).

    The same document again answers with the original capture (``duplicate: true``).
    """
    body = await request.body()
    ctype = request.headers.get("content-type", "application/json")
    answer = await anyio.to_thread.run_sync(_capture, rt, me, body, ctype)
    return _accepted(answer)


def _accepted(answer: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        answer, status_code=202, headers={"Location": f"/v1/epcis/capture/{answer['capture_id']}"}
    )


def _capture(rt: Runtime, me: Principal, body: bytes, ctype: str) -> dict[str, Any]:
    return _answer(rt, ingestion.accept_epcis(rt, me, body, ctype, _fresh))


def _fresh(capture_id: str, status: str) -> Answer:
    """The 202 of a new capture that no sweep ran on in the request (:func:`_answer`), as sent: kept with the
    capture for its ``Idempotency-Key`` (an eager sweep's answer differs, and is kept after it instead)."""
    sent = _accepted({"capture_id": capture_id, "status": status, "duplicate": False})
    return sent.status_code, sent.media_type or "application/json", bytes(sent.body)


def _carrier(rt: Runtime, carrier: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return _answer(rt, ingestion.accept_carrier(rt, carrier, body, headers))


def _answer(rt: Runtime, accepted: ingestion.Accepted) -> dict[str, Any]:
    """Wake the inbox worker for a new input; answer with the input's id and current status: as stored, for
    a new input that no sweep ran on in this request (a read of it again cost a read transaction per ack,
    issue 8), else as read now."""
    ran_here = not accepted.duplicate and wake("inbox")
    fresh = not accepted.duplicate and not ran_here
    return {
        "capture_id": accepted.item.id,
        "status": accepted.item.status if fresh else ingestion.inbox_status(rt, accepted.item.id),
        "duplicate": accepted.duplicate,
    }


@router.get(
    "/v1/epcis/capture/{capture_id}", response_model=CapturePublic, responses=problems(*AUTH, 404, 422)
)
def get_capture(
    capture_id: Annotated[str, Path(max_length=40)], rt: RuntimeDep, me: CurrentPrincipal
) -> dict[str, Any]:
    """The outcome of a capture: status, events read, orders matched, attestations queued."""
    return ingestion.capture_public(ingestion.capture_for(rt, me, capture_id))


@router.post(
    "/v1/carriers/{carrier}/webhooks",
    response_model=CaptureAccepted,
    responses={
        202: {"model": CaptureAccepted, "description": "stored"},
        **problems(
            *BODY,
            503,
            valid={
                **_FEED_RULES,
                401: [("bad_signature", "aftership-hmac-sha256 does not match the body")],
                404: [("not_configured", "no webhook secret is configured for easypost")],
            },
        ),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
async def carrier_webhook(
    carrier: Annotated[str, Path(pattern="^(aftership|easypost)$")], request: Request, rt: RuntimeDep
) -> JSONResponse:
    """Carrier webhooks, each verified by its own scheme (AfterShip ``aftership-hmac-sha256``; EasyPost
    ``X-Hmac-Signature-v2`` over ``X-Timestamp``, method, ``X-Path`` and body, within 5 minutes of our clock,
    else the body-only ``X-Hmac-Signature``). Stored before the answer; a redelivery answers with the original
    outcome (200)."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    answer = await anyio.to_thread.run_sync(_carrier, rt, carrier, body, headers)
    return JSONResponse(answer, status_code=200 if answer["duplicate"] else 202)


@router.post(
    "/v1/attestations", status_code=202, responses=problems(*AUTH, *BODY, 403, valid={422: [BAD_SIGNATURE]})
)
def post_attestation(body: AttestationCreate, rt: RuntimeDep, me: OraclePrincipal) -> dict[str, Any]:
    """Oracle: post your own signed DeliveryAttestation; it counts towards the order's k-of-n threshold."""
    payload = {
        "orderId": body.order_id.lower(),
        "milestone": body.milestone,
        "eventTime": body.event_time,
        "trackingHash": body.tracking_hash.lower(),
        "evidenceHash": body.evidence_hash.lower(),
        "signature": body.signature.lower(),
    }
    accepted, intent = ingestion.accept_attestation(rt, me, payload)
    if intent is not None and not accepted.duplicate:
        wake("relay")
    return {
        "capture_id": accepted.item.id,
        "duplicate": accepted.duplicate,
        "intent": intent_public(intent) if intent is not None else None,
    }
