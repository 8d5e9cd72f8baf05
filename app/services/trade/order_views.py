"""What a principal may read of orders: one order with its timeline, pages of orders, the answer to an
accepted action, the typed data to sign, and evidence (list and files).

Every read here runs in one read transaction (no write lock) and checks visibility there
(:func:`app.services.trade.orders.get_visible`: another party's order is a 404). Whatever asks the node (the
permit nonce of :func:`signing`) runs after that transaction has ended."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chain.escrow import TERMS_FIELDS
from app.db import pagination
from app.db.models import ChainEvent, Evidence, Intent, Order, Principal
from app.db.session import read_transaction
from app.errors import NotFound
from app.services.index import indexer
from app.services.runtime import Runtime
from app.services.trade import orders

#: The largest page a list answers.
MAX_PAGE = pagination.MAX_LIMIT


def detail(rt: Runtime, viewer: Principal, oid: str) -> dict[str, Any]:
    """One order as the API shows it: :func:`detail_in`, in a read transaction of its own."""
    with read_transaction(rt.db) as s:
        return detail_in(s, viewer, oid)


def detail_in(s: Session, viewer: Principal, oid: str) -> dict[str, Any]:
    """One order as the API shows it, with its timeline of on- and off-chain facts (with tx hashes), and,
    once funded, what the escrow's functions take as the order's reference (``onchain``): the ``Terms``
    tuple it was funded with (from the indexed ``OrderFunded`` event) and the packed state word. Read in
    ``s`` (a read transaction: the caller's, which may have authenticated the viewer in it)."""
    order = orders.read_visible(s, viewer, oid)
    # one read of the order's events serves the timeline and the funding terms
    events = indexer.order_facts(s, order)
    out = orders.public(order, indexer.timeline(s, order.id, events))
    # the order's own funding: another buyer may have funded the same order id (escrow v2 keys orders by
    # id and buyer), and that order is not this one
    funded = next(
        (
            e.args
            for e in reversed(events)
            if e.name == "OrderFunded" and str(e.args["terms"]["buyer"]).lower() == order.buyer.lower()
        ),
        None,
    )
    if funded is not None and order.state_word is not None:
        terms = funded["terms"]
        out["onchain"] = {
            "order_id": order.id,
            "terms": [str(terms[k]) if isinstance(terms[k], int) else terms[k] for k in TERMS_FIELDS],
            "terms_fields": list(TERMS_FIELDS),
            "state": str(order.state_word),
            "state_hex": "0x" + order.state_word.to_bytes(32, "big").hex(),
        }
    return out


def page(
    rt: Runtime, viewer: Principal, limit: int, cursor: str | None, status: str | None
) -> dict[str, Any]:
    """The orders ``viewer`` may see, newest first, optionally of one status; ``next_cursor`` continues."""
    query = orders.visible_query(viewer)
    if status:
        query = query.where(Order.status == status)
    query = pagination.after(query, Order.created_at, Order.id, cursor).limit(limit + 1)
    with read_transaction(rt.db) as s:
        rows, next_cursor = pagination.page(list(s.scalars(query)), limit)
        return {"items": [orders.public(o) for o in rows], "next_cursor": next_cursor}


def accepted(rt: Runtime, viewer: Principal, oid: str, intent_id: str) -> dict[str, Any]:
    """The answer to an accepted action: the order and its relayer intent as they are now (an eager relayer
    may have moved both since the action was stored)."""
    with read_transaction(rt.db) as s:
        fresh = s.get(Intent, intent_id)
        assert fresh is not None  # written by the action that returned it
        order = orders.get_visible(s, viewer, oid)
        return {"order": orders.public(order), "intent": orders.intent_public(fresh)}


def signing(rt: Runtime, viewer: Principal, oid: str) -> dict[str, Any]:
    """The typed data to sign for funding, again (e.g. after the buyer's permit nonce moved)."""
    with read_transaction(rt.db) as s:
        order = orders.get_visible(s, viewer, oid)
    return orders.signing_documents(rt, order)


def evidence_list(
    rt: Runtime, viewer: Principal, oid: str, limit: int | None = None, cursor: str | None = None
) -> dict[str, Any]:
    """An order's evidence, oldest first, with its SHA-256, its intent, the transaction that anchored it, and
    whether the stored bytes still hash to what the chain holds. With ``limit``, one page of it and the
    ``next_cursor`` that continues (each item re-hashes its file, so a page bounds the work)."""
    with read_transaction(rt.db) as s:
        order = orders.get_visible(s, viewer, oid)
        anchored = {
            (str(e.args.get("party", "")).lower(), str(e.args.get("evidenceHash", "")).lower()): e.tx_hash
            for e in s.scalars(
                select(ChainEvent).where(
                    ChainEvent.order_id == order.id, ChainEvent.name == "EvidenceSubmitted"
                )
            )
        }
        query = pagination.after(
            select(Evidence).where(Evidence.order_id == order.id),
            Evidence.created_at,
            Evidence.id,
            cursor,
            oldest_first=True,
        )
        rows = list(s.scalars(query if limit is None else query.limit(limit + 1)))
        rows, next_cursor = (rows, None) if limit is None else pagination.page(rows, limit)
        items = []
        for ev in rows:
            intent = s.get(Intent, ev.intent_id) if ev.intent_id else None
            recomputed = "0x" + hashlib.sha256(ev.data).hexdigest()
            tx = anchored.get((ev.party.lower(), ev.sha256.lower()))
            items.append(
                {
                    "id": ev.id,
                    "party": ev.party,
                    "filename": ev.filename,
                    "content_type": ev.content_type,
                    "size": ev.size,
                    "sha256": ev.sha256,
                    "intent": orders.intent_public(intent) if intent else None,
                    "anchor_tx": tx,
                    "anchored": tx is not None,
                    "matches_chain": tx is not None and recomputed == ev.sha256,
                    "created_at": ev.created_at,
                }
            )
        return {"items": items, "next_cursor": next_cursor}


def evidence_file(rt: Runtime, viewer: Principal, oid: str, evidence_id: str) -> Evidence:
    """One stored evidence file of an order ``viewer`` may see (404 for another order's evidence)."""
    with read_transaction(rt.db) as s:
        order = orders.get_visible(s, viewer, oid)
        ev = s.get(Evidence, evidence_id)
        if ev is None or ev.order_id != order.id:
            raise NotFound("evidence", evidence_id)
        return ev
