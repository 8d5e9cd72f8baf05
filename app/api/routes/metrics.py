"""``GET /metrics``: the Prometheus text exposition (app/services/metrics.py says what each series is)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from app.api.deps import RuntimeDep
from app.api.openapi import problems
from app.errors import AuthError
from app.services import metrics

router = APIRouter(tags=["system"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {metrics.CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}},
        **problems(401, 503),
    },
)
def get_metrics(rt: RuntimeDep, request: Request) -> Response:
    """Prometheus metrics: request latency by route and status, intents, relayer, inbox, webhook and keeper
    backlogs, indexer lag, gas wallet balance. Computed at scrape time from one read transaction and at most
    one probe of the node (bounded wait). With ``TRADEGUARD_METRICS_TOKEN`` set, it needs
    ``Authorization: Bearer <token>``."""
    expected = rt.settings.metrics_token
    if expected is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise AuthError("GET /metrics needs Authorization: Bearer <TRADEGUARD_METRICS_TOKEN>")
    return Response(metrics.scrape(rt), media_type=metrics.CONTENT_TYPE)
