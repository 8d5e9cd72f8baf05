"""A merchant's T+N settlement pipeline: what is in escrow, due (with ``release_at``), released, disputed,
refunded, with totals per currency. Amounts are summed as ``int`` and shown as decimal strings."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Order, Principal
from app.db.session import read_transaction
from app.domain.encoding import rfc3339
from app.services.orders import split_of
from app.services.runtime import Runtime

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


def pipeline(session: Session, merchant: Principal, now: int) -> dict[str, Any]:
    """Items (due first) and totals per currency and stage; ``due_now`` counts what beat will release."""
    query = select(Order)
    if merchant.role != "admin":
        query = query.where(Order.merchant_id == merchant.id)
    orders = list(session.scalars(query.order_by(Order.created_at.desc(), Order.id.desc())))
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


def report(rt: Runtime, merchant: Principal) -> dict[str, Any]:
    """:func:`pipeline` as of the chain's clock (``due_now`` is what the keeper would release at this block
    time), read in one read transaction: the node is asked before the database, never inside it."""
    now = rt.chain.now()
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
