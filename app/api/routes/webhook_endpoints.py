"""Merchant webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import CurrentPrincipal, MerchantPrincipal, RuntimeDep
from app.api.openapi import AUTH, BAD_CURSOR, BODY, links, problems
from app.api.schemas import WebhookEndpointCreate, WebhookEndpointCreated, WebhookEndpointsPage
from app.services.outbox import webhook_endpoints
from app.services.trade.orders import require_role

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])


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
    response.headers["Cache-Control"] = "no-store"
    registered = webhook_endpoints.register(rt, me, body.url, body.event_types)
    return {**webhook_endpoints.public(registered.endpoint), "secret": registered.secret}


@router.get(
    "", response_model=WebhookEndpointsPage, responses=problems(*AUTH, 422, valid={422: [BAD_CURSOR]})
)
def list_endpoints(
    rt: RuntimeDep,
    me: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The caller's endpoints, newest first; ``next_cursor`` continues."""
    return webhook_endpoints.page(rt, me, limit, cursor)


@router.get("/{endpoint_id}/deliveries", responses=problems(*AUTH, 404, 422, valid={422: [BAD_CURSOR]}))
def deliveries(
    endpoint_id: Annotated[str, Path(max_length=40)],
    rt: RuntimeDep,
    me: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The delivery log of one endpoint: each event, its attempts, status codes and errors."""
    return webhook_endpoints.deliveries(rt, me, endpoint_id, limit, cursor)
