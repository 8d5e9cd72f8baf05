"""Cursor pagination over ``(created_at, id)``: stable under inserts, opaque to clients."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidInput

MAX_LIMIT = 100


def encode(created_at: datetime, ident: str | int) -> str:
    raw = json.dumps([created_at.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None or not isinstance(ident, str) or len(ident) > 100:
            raise ValueError("not a cursor of ours")
        return at, ident
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "invalid_cursor",
            "cursor is not one this API returned",
            errors=[{"field": "cursor", "message": "bad"}],
        ) from exc


def after(
    query: Any,
    created_col: InstrumentedAttribute[Any],
    id_col: InstrumentedAttribute[Any],
    cursor: str | None,
    *,
    oldest_first: bool = False,
) -> Any:
    """``query`` ordered newest first (or oldest first), continuing after ``cursor``."""
    if oldest_first:
        query = query.order_by(created_col.asc(), id_col.asc())
    else:
        query = query.order_by(created_col.desc(), id_col.desc())
    if cursor:
        created, ident = decode(cursor)
        if oldest_first:
            query = query.where(or_(created_col > created, and_(created_col == created, id_col > ident)))
        else:
            query = query.where(or_(created_col < created, and_(created_col == created, id_col < ident)))
    return query


def page(
    rows: list[Any], limit: int, created_attr: str = "created_at", id_attr: str = "id"
) -> tuple[list[Any], str | None]:
    """The first ``limit`` rows and the cursor of the next page (``None`` at the end); fetch ``limit + 1``."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode(getattr(last, created_attr), getattr(last, id_attr))
