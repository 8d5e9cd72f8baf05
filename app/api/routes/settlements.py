"""A merchant's T+N settlement pipeline, as JSON or CSV."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import CurrentPrincipal, RuntimeDep
from app.api.openapi import AUTH, problems
from app.services import settlements
from app.services.orders import require_role

router = APIRouter(prefix="/v1/settlements", tags=["settlements"])


@router.get(
    "",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}, "description": "the pipeline"},
        **problems(*AUTH, 403),
    },
    response_model=None,
)
def get_settlements(request: Request, rt: RuntimeDep, me: CurrentPrincipal) -> Any:
    """Due (with ``release_at``), released, disputed and refunded orders with totals per currency.

    ``Accept: text/csv`` gives the items as CSV.
    """
    require_role(me, "read settlements", "merchant", "admin")
    report = settlements.report(rt, me)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(
            settlements.to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="settlements.csv"'},
        )
    return report
