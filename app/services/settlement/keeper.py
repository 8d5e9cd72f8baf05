"""The keeper: submits the releases and timeout refunds that the chain's clock has made due (SPEC §2).

Celery beat runs :func:`sweep` every few seconds (business timers never ride on ETA messages). It reads the
``orders`` table as the indexer keeps it and, at the chain's time, submits a ``release`` intent for every
delivered order past its release time and a ``timeout_refund`` intent for every order whose current timer ran
out, exactly as the contract's ``release`` and ``timeoutRefund`` decide:

- no action while a regulator freeze is in force (``now < frozen_until``);
- delivered: release once ``now >= release_at`` (the hold counts from after any freeze in force at delivery,
  and every later freeze moves it: ``release_at = anchor + frozen_seconds`` of the state word);
- funded: refund once ``now > ship_by + frozen_seconds``; shipped: once ``now > deliver_by + frozen_seconds``;
- disputed: refund once ``now > response_deadline`` if the seller has not answered in time, else once
  ``now > arbitration_deadline`` (both move with freezes, like ``disputed_at``);
- disputed before an ERC-792 arbitrator that has ruled (SPEC §4.1, indexed as ``ruling``): an
  ``execute_ruling`` intent at once (anyone may settle by a recorded ruling; it wins over a timeout refund
  not executed first).

When the row carries the packed ``state_word`` the keeper takes status, freeze, anchor and the responded flag
from it (the chain's own data); otherwise it uses the projected columns. It only submits intents, idempotent
per (kind, order): sweeping twice submits nothing new. An intent that failed earlier (say the order was
frozen just before it went out) is revived once the order is due again and the failure is older than
:data:`REVIVE_AFTER_SECONDS`. Each sweep also removes a batch of expired ``Idempotency-Key`` records
(:func:`app.services.idempotency.purge_expired`), so requests never have to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Select, and_, or_, select

from app.db.models import Intent, Order, utcnow
from app.db.session import transaction
from app.domain.order_state import OrderState
from app.services import chain_guard, idempotency
from app.services.outbox import relayer
from app.services.outbox.intents import compute_intent_hash
from app.services.runtime import Runtime

OPEN_STATUSES = ("funded", "shipped", "delivered", "disputed")
#: A failed keeper intent is put back to pending at most this often while its order stays due.
REVIVE_AFTER_SECONDS = 300


@dataclass
class KeeperReport:
    """What one sweep did: intents submitted (new or revived), and which."""

    now: int
    checked: int = 0
    submitted: int = 0
    revived: int = 0
    already: int = 0
    intents: list[tuple[str, str]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    #: expired Idempotency-Key records removed (wall clock; see app/services/idempotency.py)
    purged_idempotency_keys: int = 0


def due_action(order: Order, now: int) -> str | None:
    """``"release"``, ``"timeout_refund"``, ``"execute_ruling"`` or None: what anyone may do to ``order`` at
    chain time ``now``."""
    state = OrderState.unpack(order.state_word) if order.state_word is not None else None
    status = state.status.name.lower() if state is not None else order.status
    frozen_until = state.frozen_until if state is not None else order.frozen_until or 0
    if now < frozen_until:
        return None
    frozen = state.frozen_seconds if state is not None else 0
    if status == "delivered":
        release_at = state.release_at if state is not None else order.release_at
        return "release" if release_at is not None and now >= release_at else None
    if status == "funded":
        return "timeout_refund" if now > order.ship_by + frozen else None
    if status == "shipped":
        return "timeout_refund" if now > order.deliver_by + frozen else None
    if status != "disputed" or order.disputed_at is None:
        return None
    if order.ruling is not None:
        return "execute_ruling"
    # The deadlines count from disputed_at; the state word has its current value (freezes included).
    shift = (state.disputed_at or order.disputed_at) - order.disputed_at if state is not None else 0
    responded = state.responded if state is not None else order.seller_evidence
    deadlines = [d + shift for d in (order.arbitration_deadline,) if d is not None]
    if not responded and order.response_deadline is not None:
        deadlines.append(order.response_deadline + shift)
    return "timeout_refund" if deadlines and now > min(deadlines) else None


def candidates(now: int) -> Select[Order]:
    """The open orders that may be due at chain time ``now``: necessary conditions only (every timer is at
    least its column), for the exact rule of :func:`due_action` to decide."""
    return select(Order).where(
        Order.status.in_(OPEN_STATUSES),
        or_(
            and_(Order.status == "delivered", or_(Order.release_at.is_(None), Order.release_at <= now)),
            and_(Order.status == "funded", Order.ship_by < now),
            and_(Order.status == "shipped", Order.deliver_by < now),
            and_(Order.status == "disputed", or_(Order.disputed_at < now, Order.ruling.is_not(None))),
        ),
    )


def sweep(rt: Runtime, now: int | None = None) -> KeeperReport:
    """Submit the ``release`` / ``timeout_refund`` / ``execute_ruling`` intents due at chain time ``now``
    (default: the latest
    block's timestamp). Only writes intents; the relayer sends them. Refuses
    (:class:`~app.errors.ChainHalted`) while the chain guard halts chain work."""
    chain_guard.require(rt)  # a halted chain touches nothing, housekeeping included
    # housekeeping in its own short transaction, on the wall clock (keys expire in real time)
    purged = idempotency.purge_expired(rt)
    # the node's clock itself, never a cached reading: a dev clock moved by another process (an API process
    # of --workers N) must be seen by the sweep its move woke
    now = rt.chain.now() if now is None else now
    report = KeeperReport(now, purged_idempotency_keys=purged)
    revive_before = utcnow() - timedelta(seconds=REVIVE_AFTER_SECONDS)
    with transaction(rt.db) as s:
        for order in s.scalars(candidates(now).order_by(Order.id)):
            report.checked += 1
            kind = due_action(order, now)
            if kind is None:
                continue
            if kind == "release" and order.needs_review:
                # a retracted delivery or mismatched terms: the platform does not push the money out itself
                # (anyone still may, on chain; an operator clears the flag after review)
                report.held.append(order.id)
                continue
            payload = {"orderId": order.id}
            digest = compute_intent_hash(kind, payload)
            existing = s.scalar(select(Intent).where(Intent.intent_hash == digest))
            if existing is None:
                intent = relayer.submit(s, kind, payload, order_id=order.id)
            elif existing.status == relayer.FAILED and existing.updated_at <= revive_before:
                relayer.revive(existing)
                intent = existing
                report.revived += 1
            else:
                report.already += 1
                continue
            report.submitted += 1
            report.intents.append((kind, intent.order_id or order.id))
    return report


__all__ = ["KeeperReport", "OPEN_STATUSES", "REVIVE_AFTER_SECONDS", "candidates", "due_action", "sweep"]
