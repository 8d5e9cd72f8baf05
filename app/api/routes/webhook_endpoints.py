"""Merchant webhook endpoints and their delivery log."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select

from app.api.deps import CurrentPrincipal, MerchantPrincipal, RuntimeDep
from app.api.openapi import AUTH, BAD_CURSOR, BODY, links, problems
from app.api.schemas import WebhookEndpointCreate, WebhookEndpointCreated, WebhookEndpointPublic
from app.db.models import WebhookEndpoint
from app.db.session import read_transaction, transaction
from app.errors import InvalidInput, NotFound
from app.services import webhooks
from app.services.orders import require_role

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])


def _public(ep: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": ep.id,
        "url": ep.url,
        "event_types": list(ep.event_types.get("types", [])),
        "enabled": ep.enabled,
        "created_at": ep.created_at,
    }


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    responses=problems(
        *AUTH,
        *BODY,
        403,
        valid={422: [("invalid_url", "refused: '10.0.0.7' resolves to the internal address 10.0.0.7")]},
    ),
    openapi_extra=links(
        201,
        ListDeliveries=(
            "/v1/webhook-endpoints/{endpoint_id}/deliveries",
            "get",
            {"endpoint_id": "$response.body#/id"},
        ),
    ),
)
def create_endpoint(
    body: WebhookEndpointCreate, rt: RuntimeDep, me: MerchantPrincipal, response: Response
) -> dict[str, Any]:
    """Merchant: register a URL for signed order events; the signing secret is in this answer only."""
    require_role(me, "register webhook endpoints", "merchant")
    refusal = webhooks.url_refusal(body.url) or (
        None if rt.is_dev else webhooks.private_address_refusal(body.url)
    )
    if refusal is not None:
        raise InvalidInput("invalid_url", refusal, errors=[{"field": "url", "message": refusal}])
    response.headers["Cache-Control"] = "no-store"
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction(rt.db) as s:
        ep = WebhookEndpoint(
            principal_id=me.id,
            url=body.url,
            secret=secret,
            event_types={"types": sorted(set(body.event_types))},
        )
        s.add(ep)
        s.flush()
        return {**_public(ep), "secret": secret}


@router.get("", response_model=list[WebhookEndpointPublic], responses=problems(*AUTH))
def list_endpoints(rt: RuntimeDep, me: CurrentPrincipal) -> list[dict[str, Any]]:
    """The caller's endpoints."""
    with read_transaction(rt.db) as s:
        rows = s.scalars(select(WebhookEndpoint).where(WebhookEndpoint.principal_id == me.id))
        return [_public(ep) for ep in rows]


@router.get("/{endpoint_id}/deliveries", responses=problems(*AUTH, 404, 422, valid={422: [BAD_CURSOR]}))
def deliveries(
    endpoint_id: Annotated[str, Path(max_length=40)],
    rt: RuntimeDep,
    me: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The delivery log of one endpoint: each event, its attempts, status codes and errors."""
    with read_transaction(rt.db) as s:
        ep = s.get(WebhookEndpoint, endpoint_id)
        if ep is None or ep.principal_id != me.id:
            raise NotFound("webhook endpoint", endpoint_id)
        return webhooks.delivery_log(s, ep.id, limit, cursor)
