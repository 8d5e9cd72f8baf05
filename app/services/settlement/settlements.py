"""A merchant's T+N settlement pipeline: what is in escrow, due (with ``release_at``), released, disputed,
refunded, with totals per currency. Amounts are summed as ``int`` and shown as decimal strings."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import defaultdict
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.db.models import Order, Principal
from app.db.session import read_transaction
from app.domain.encoding import rfc3339
from app.errors import InvalidInput
from app.services.runtime import Runtime
from app.services.trade.orders import split_of

#: Pipeline stage of each order status.
STAGES = {
    "awaiting_funding": "awaiting_funding",
    "funded": "in_escrow",
    "shipped": "in_escrow",
    "delivered": "due",
    "disputed": "disputed",
    "released": "released",
    "resolved": "released",
    "refunded": "refunded",
}
CSV_FIELDS = [
    "order_id",
    "order_ref",
    "status",
    "stage",
    "currency",
    "amount",
    "commission",
    "tax",
    "seller_net",
    "buyer_refund",
    "release_at",
    "closed_at",
]


def _row(order: Order) -> dict[str, Any]:
    split, _final = split_of(order)
    return {
        "order_id": order.id,
        "order_ref": order.order_ref,
        "status": order.status,
        "stage": STAGES.get(order.status, order.status),
        "currency": order.currency,
        "amount": str(order.amount),
        "commission": str(split.commission),
        "tax": str(split.tax),
        "seller_net": str(split.seller_net),
        "buyer_refund": str(split.buyer_refund),
        "release_at": rfc3339(order.release_at),
        "closed_at": rfc3339(order.closed_at),
    }


def _orders_query(merchant: Principal) -> Select[Order]:
    """The orders in ``merchant``'s pipeline (an admin's: every order)."""
    query = select(Order)
    return query if merchant.role == "admin" else query.where(Order.merchant_id == merchant.id)


def pipeline(session: Session, merchant: Principal, now: int) -> dict[str, Any]:
    """Items (due first) and totals per currency and stage; ``due_now`` counts what beat will release."""
    return _summarise(_pipeline_orders(session, merchant), now)


def _pipeline_orders(session: Session, merchant: Principal) -> list[Order]:
    return list(session.scalars(_orders_query(merchant).order_by(Order.created_at.desc(), Order.id.desc())))


def _summarise(orders: list[Order], now: int) -> dict[str, Any]:
    totals: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: {"count": 0, "amount": 0, "commission": 0, "tax": 0, "seller_net": 0})
    )
    due_now = 0
    for order in orders:
        stage = STAGES.get(order.status, order.status)
        split, _final = split_of(order)
        t = totals[order.currency][stage]
        t["count"] += 1
        t["amount"] += order.amount
        t["commission"] += split.commission
        t["tax"] += split.tax
        t["seller_net"] += split.seller_net
        if stage == "due" and order.release_at is not None and order.release_at <= now:
            due_now += 1
    rows = [_row(o) for o in orders]
    rows.sort(key=lambda r: (r["stage"] != "due", r["release_at"] or ""))
    return {
        "as_of": rfc3339(now),
        "due_now": due_now,
        "totals": {
            currency: {
                stage: {k: (v if k == "count" else str(v)) for k, v in t.items()}
                for stage, t in stages.items()
            }
            for currency, stages in totals.items()
        },
        "items": rows,
    }


def _position(row: dict[str, Any], order: Order) -> tuple[int, int, int, str]:
    """Where an item sits in the pipeline's order, as a total order: due first, then by ``release_at``
    (none first), newest first, then by id. A cursor is the position of the last item it showed."""
    micros = int(order.created_at.timestamp() * 1_000_000)
    return (0 if row["stage"] == "due" else 1, order.release_at or -1, -micros, order.id)


def _encode(position: tuple[int, int, int, str]) -> str:
    raw = json.dumps(list(position), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, int, int, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        rank, release, created, ident = value
        if not (
            all(isinstance(v, int) and not isinstance(v, bool) for v in (rank, release, created))
            and isinstance(ident, str)
            and len(ident) <= 100
        ):
            raise ValueError("not a cursor of ours")
        return rank, release, created, ident
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "invalid_cursor",
            "cursor is not one this API returned",
            errors=[{"field": "cursor", "message": "bad"}],
        ) from exc


def page(rt: Runtime, merchant: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    """:func:`report` with one page of its items (in the pipeline's order) and the ``next_cursor`` that
    continues; ``totals`` and ``due_now`` always cover every order. Items that moved since the last page
    are shown where they are now (a cursor is a position, not an offset: nothing is shown twice in a row)."""
    after = _decode(cursor) if cursor else None
    now = rt.chain.now(rt.settings.head_cache_seconds)  # the node first: never inside the transaction
    with read_transaction(rt.db) as s:
        orders = _pipeline_orders(s, merchant)
    full = _summarise(orders, now)
    by_id = {o.id: o for o in orders}
    positioned = sorted(
        ((_position(row, by_id[row["order_id"]]), row) for row in full["items"]), key=lambda pair: pair[0]
    )
    if after is not None:
        positioned = [pair for pair in positioned if pair[0] > after]
    shown = positioned[:limit]
    next_cursor = _encode(shown[-1][0]) if len(positioned) > limit else None
    return {**full, "items": [row for _, row in shown], "next_cursor": next_cursor}


def report(rt: Runtime, merchant: Principal) -> dict[str, Any]:
    """:func:`pipeline` as of the chain's clock (``due_now`` is what the keeper would release at this block
    time), read in one read transaction: the node is asked before the database, never inside it."""
    now = rt.chain.now(rt.settings.head_cache_seconds)
    with read_transaction(rt.db) as s:
        return pipeline(s, merchant, now)


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(report: dict[str, Any]) -> str:
    """The pipeline's items as CSV (RFC 4180, header row)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for row in report["items"]:
        writer.writerow({k: _cell(row[k]) for k in CSV_FIELDS})
    return out.getvalue()
