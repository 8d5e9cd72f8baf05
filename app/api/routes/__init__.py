"""One router module per resource."""

from __future__ import annotations

from typing import Any

from app.api.schemas import Problem

_P = {"model": Problem, "content": {"application/problem+json": {}}}
#: Problem responses every route may give (documented so that clients and schemathesis know them).
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {**_P, "description": desc}
    for code, desc in {
        400: "malformed request",
        401: "missing or unknown API key",
        403: "the principal's role may not do this",
        404: "not found (or not yours)",
        409: "conflict with the order's state or an Idempotency-Key in flight",
        413: "body too large",
        422: "invalid input, or a contract revert caused by it",
        503: "the chain or the database is unavailable",
    }.items()
}
