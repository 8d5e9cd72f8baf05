"""A merchant's T+N settlement pipeline, as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.deps import CurrentPrincipal, RuntimeDep
from app.api.openapi import AUTH, BAD_CURSOR, problems
from app.services.settlement import settlements
from app.services.trade.orders import require_role

router = APIRouter(prefix="/v1/settlements", tags=["settlements"])


@router.get(
    "",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}, "description": "the pipeline"},
        **problems(*AUTH, 403, 422, valid={422: [BAD_CURSOR]}),
    },
    response_model=None,
)
def get_settlements(
    request: Request,
    rt: RuntimeDep,
    me: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Any:
    """Due (with ``release_at``), released, disputed and refunded orders with totals per currency.

    The items come a page at a time (due first, by ``release_at``; ``next_cursor`` continues); ``totals`` and
    ``due_now`` always cover every order. ``Accept: text/csv`` gives every item as CSV (an export, unpaged).
    """
    require_role(me, "read settlements", "merchant", "admin")
    if "text/csv" in request.headers.get("accept", ""):
        return Response(
            settlements.to_csv(settlements.report(rt, me)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="settlements.csv"'},
        )
    return settlements.page(rt, me, limit, cursor)
