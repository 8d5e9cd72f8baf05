"""Logistics ingestion: inputs are validated, stored durably (raw bytes, hash, time) and acknowledged; a
worker later maps them to milestones, signs the platform oracle's DeliveryAttestation and queues it.

Duplicates (same document hash, carrier event id or attestation signature) answer with the original item and
change nothing. An EPCIS ``errorDeclaration`` retracts the event it names: the record stays; an attestation
not yet sent is cancelled and one already on chain flags the order for review (SPEC §5).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from eth_utils import to_checksum_address
from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chain.escrow import Order as ChainOrder
from app.chain.messages import DeliveryAttestation
from app.db.models import (
    InboxItem,
    Intent,
    LogisticsEvent,
    Order,
    Principal,
    Shipment,
    TimelineEntry,
    new_id,
    utcnow,
)
from app.db.session import read_transaction, transaction, write
from app.domain.order_state import Milestone
from app.errors import ConfigError, FeedError, InvalidInput, NotFound
from app.feeds import carriers, epcis
from app.feeds.hashing import canonical_bytes
from app.services import idempotency
from app.services.index.order_gateway import OrderGateway
from app.services.outbox import relayer
from app.services.runtime import Runtime
from app.services.trade.orders import require_role

log = logging.getLogger(__name__)

CARRIERS = ("aftership", "easypost")
MAX_ATTEMPTS = 5
#: Order statuses in which a milestone can still count (SHIPPED from funded; DELIVERED from funded/shipped).
ACCEPTS = {Milestone.SHIPPED: ("funded",), Milestone.DELIVERED: ("funded", "shipped")}
ZERO32 = b"\x00" * 32
#: How far an event's time may be off the chain's clock (ahead of now, or before the funding).
CLOCK_SKEW_SECONDS = 300


@dataclass
class Accepted:
    """An input as stored; ``duplicate`` when it had been received before."""

    item: InboxItem
    duplicate: bool


@dataclass
class IngestReport:
    """What one :func:`process_pending` pass did."""

    processed: int = 0
    events: int = 0
    intents: int = 0
    retracted: int = 0
    failed: list[str] = field(default_factory=list)


#: The answer a request gives for a new input (its id, its status as stored), known in the transaction that
#: stores it, so that it is kept with it for the request's ``Idempotency-Key``
#: (:func:`app.services.idempotency.keep_answer`).
AnswerOf = Callable[[str, str], idempotency.Answer]


_INSERT_INBOX = insert(cast(Table, InboxItem.__table__))


def _store(
    rt: Runtime,
    source: str,
    dedupe_key: str,
    raw: bytes,
    principal_id: str | None,
    ctype: str,
    answer_of: AnswerOf | None = None,
) -> Accepted:
    """Insert the inbox row, or return the existing one for the same key (answering with its outcome)."""
    row = {
        "id": new_id("cap"),
        "source": source,
        "dedupe_key": dedupe_key[:200],
        "principal_id": principal_id,
        "raw": raw,
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
        "content_type": ctype[:100],
        "received_at": utcnow(),
        "status": "received",
        "attempts": 0,
    }
    item = InboxItem(**row)  # as stored (no session holds it)

    def store(s: Session) -> None:
        # one Core INSERT on the transaction's connection: the ORM's flush of one new row was a tenth of an
        # API process's CPU during a burst of captures (py-spy, issue 8)
        s.connection().execute(_INSERT_INBOX, row)
        if answer_of is not None:
            idempotency.keep_answer(s, *answer_of(item.id, item.status))

    try:
        write(rt.db, store)  # durable before the 202, committed with concurrent requests' writes
        return Accepted(item, False)
    except IntegrityError:
        with transaction(rt.db) as s:
            existing = s.scalar(
                select(InboxItem).where(InboxItem.source == source, InboxItem.dedupe_key == dedupe_key[:200])
            )
            assert existing is not None
            return Accepted(existing, True)


def accept_epcis(
    rt: Runtime, principal: Principal, body: bytes, content_type: str, answer_of: AnswerOf | None = None
) -> Accepted:
    """Validate an EPCISDocument (malformed → 4xx, nothing stored) and store it before answering (with
    ``answer_of``'s answer for a new capture, kept in the same transaction)."""
    require_role(principal, "capture EPCIS events", "oracle", "admin")
    epcis.parse_document(body, with_cbv_hash=False)
    # the same document from two oracles is two captures (each sees, and may retract, only its own)
    digest = hashlib.sha256(body).hexdigest()
    return _store(rt, "epcis", f"{principal.id}:{digest}", body, principal.id, content_type, answer_of)


def accept_carrier(rt: Runtime, carrier: str, body: bytes, headers: dict[str, str]) -> Accepted:
    """Verify a carrier webhook by the carrier's own scheme, parse it, and store it before answering."""
    if carrier not in CARRIERS:
        raise NotFound("carrier", carrier)
    secret = rt.settings.aftership_secret if carrier == "aftership" else rt.settings.easypost_secret
    if secret is None:
        raise FeedError("not_configured", f"no webhook secret is configured for {carrier}")
    try:
        if carrier == "aftership":
            carriers.verify_aftership(body, headers.get("aftership-hmac-sha256"), secret.get_secret_value())
        else:
            carriers.verify_easypost_request(body, headers, secret.get_secret_value(), now=int(time.time()))
    except ConfigError as exc:
        raise FeedError("not_configured", str(exc)) from exc
    try:
        event = carriers.parse_aftership(body) if carrier == "aftership" else carriers.parse_easypost(body)
    except FeedError as exc:
        if exc.code != "unsupported_event":
            raise
        # A genuine, signed event of a kind we do not use (an AfterShip "tracking_created", say): kept, and
        # answered 2xx so the carrier stops retrying, but never mapped to a milestone.
        accepted = _store(
            rt,
            carrier,
            f"{carrier}:sha256:{hashlib.sha256(body).hexdigest()}",
            body,
            None,
            "application/json",
        )
        if not accepted.duplicate:
            with transaction(rt.db) as s:
                item = s.get(InboxItem, accepted.item.id)
                assert item is not None
                item.status = "ignored"
                item.outcome = {"ignored": str(exc)}
                item.processed_at = utcnow()
                accepted.item = item
        return accepted
    return _store(rt, carrier, f"{carrier}:{event.event_id}", body, None, "application/json")


def accept_attestation(
    rt: Runtime, oracle: Principal, payload: dict[str, Any]
) -> tuple[Accepted, Intent | None]:
    """An independent oracle's signed DeliveryAttestation: checked, stored, and queued for the relayer."""
    require_role(oracle, "post attestations", "oracle")
    assert oracle.address is not None
    message = DeliveryAttestation.from_payload(payload)
    try:
        signer = rt.escrow.signer_of(message, bytes.fromhex(payload["signature"][2:]))
    except Exception as exc:  # eth-account raises several types for malformed signatures
        raise InvalidInput("invalid_signature", f"the signature cannot be recovered: {exc}") from exc
    if signer != to_checksum_address(oracle.address):
        raise InvalidInput(
            "invalid_signature",
            f"signed by {signer}, not by this oracle ({oracle.address})",
            recovered=signer,
        )
    raw = canonical_bytes(payload)
    dedupe_key = payload["signature"].lower()
    with transaction(rt.db) as s:  # the same signature again answers with the original outcome
        existing = s.scalar(
            select(InboxItem).where(InboxItem.source == "attestation", InboxItem.dedupe_key == dedupe_key)
        )
        if existing is not None:
            first = s.get(Intent, (existing.outcome or {}).get("intents", [""])[0])
            return Accepted(existing, True), first
    relayer.preflight(rt, "attest", payload)
    oid = payload["orderId"].lower()
    try:
        with transaction(rt.db) as s:  # the input and its intent are stored together, or not at all
            item = InboxItem(
                source="attestation",
                dedupe_key=dedupe_key,
                principal_id=oracle.id,
                raw=raw,
                raw_sha256=hashlib.sha256(raw).hexdigest(),
                content_type="application/json",
                status="processed",
                processed_at=utcnow(),
            )
            s.add(item)
            s.flush()
            intent = relayer.submit(s, "attest", payload, order_id=oid)
            item.outcome = {"intents": [intent.id], "order_id": oid}
            if s.get(Order, oid) is not None:  # an order funded straight on chain may have no row
                s.add(
                    TimelineEntry(
                        order_id=oid,
                        kind="attestation.received",
                        data={
                            "oracle": oracle.address,
                            "milestone": message.milestone,
                            "intent_id": intent.id,
                        },
                    )
                )
    except IntegrityError:  # a concurrent post of the same signature won
        return accept_attestation(rt, oracle, payload)
    return Accepted(item, False), intent


def capture(session: Session, principal: Principal, capture_id: str) -> InboxItem:
    """An EPCIS capture as its poster (or an admin) may see it."""
    item = session.get(InboxItem, capture_id)
    if (
        item is None
        or item.source != "epcis"
        or (principal.role != "admin" and item.principal_id != principal.id)
    ):
        raise NotFound("capture", capture_id)
    return item


def capture_for(rt: Runtime, principal: Principal, capture_id: str) -> InboxItem:
    """:func:`capture` in a read transaction of its own (``GET /v1/epcis/capture/{id}``)."""
    with read_transaction(rt.db) as s:
        return capture(s, principal, capture_id)


def inbox_status(rt: Runtime, item_id: str) -> str:
    """An input's status now, for the answer to whoever sent it: an eager worker may have processed it
    already; ``received`` while its row is not visible to this reader."""
    with read_transaction(rt.db) as s:
        item = s.get(InboxItem, item_id)
        return item.status if item else "received"


# --- the worker side ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fact:
    """One logistics event, whatever its source, as the mapper needs it."""

    source: str
    event_id: str | None
    kind: str
    milestone: Milestone | None
    event_time: int
    canonical: bytes
    content_hash: bytes
    cbv_hash: str | None
    retracted: bool
    sscc: tuple[str, ...] = ()
    order_refs: tuple[str, ...] = ()
    carrier: str | None = None
    tracking_number: str | None = None
    test_mode: bool = False
    locations: tuple[str, ...] = ()


def _facts(item: InboxItem) -> list[_Fact]:
    if item.source == "epcis":
        return [
            _Fact(
                "epcis",
                ev.event_id,
                ev.biz_step or ev.event_type,
                ev.milestone if ev.event_type in epcis.MILESTONE_EVENT_TYPES else None,
                ev.event_time,
                ev.canonical,
                ev.content_hash,
                ev.cbv_hash,
                ev.retracted,
                sscc=ev.sscc,
                order_refs=epcis.order_refs(ev),
                locations=tuple(
                    v for v in (ev.read_point, ev.biz_location, *(d for _, d in ev.destinations)) if v
                ),
            )
            for ev in epcis.parse_document(item.raw)
        ]
    parse = carriers.parse_aftership if item.source == "aftership" else carriers.parse_easypost
    ev = parse(item.raw)
    return [
        _Fact(
            item.source,
            f"{item.source}:{ev.event_id}",
            ev.status,
            ev.milestone,
            ev.event_time,
            ev.canonical,
            ev.content_hash,
            None,
            False,
            carrier=ev.carrier,
            tracking_number=ev.tracking_number,
            test_mode=ev.test_mode,
        )
    ]


def order_reference(seller: str, order_ref: str) -> str:
    """The bizTransaction value that names an order: namespaced by the seller, so no other merchant's
    reference (nor a short number that happens to match) can reach it."""
    return f"urn:tradeguard:order:{to_checksum_address(seller).lower()}:{order_ref}"


def _one(rows: list[Shipment]) -> Shipment | None:
    """The shipment if exactly one matches; an ambiguous match moves no order (it stays a fact)."""
    return rows[0] if len(rows) == 1 else None


def _match(session: Session, fact: _Fact) -> tuple[Order, Shipment | None] | None:
    """The order a fact belongs to: the registered shipment (carrier + tracking number, or SSCC), or a
    bizTransaction naming the order exactly (its orderId, or :func:`order_reference`)."""
    shipment: Shipment | None = None
    if fact.carrier and fact.tracking_number:
        shipment = _one(
            list(
                session.scalars(
                    select(Shipment).where(
                        Shipment.carrier == carriers.normalise_carrier(fact.carrier),
                        Shipment.tracking_number == carriers.normalise_tracking_number(fact.tracking_number),
                    )
                )
            )
        )
    elif fact.sscc:
        shipment = _one(list(session.scalars(select(Shipment).where(Shipment.sscc.in_(fact.sscc)).limit(2))))
    if shipment is not None:
        order = session.get(Order, shipment.order_id)
        return (order, shipment) if order else None
    for ref in fact.order_refs:
        order = None
        if ref.lower().startswith("0x") and len(ref) == 66:
            order = session.get(Order, ref.lower())
        elif ref.startswith("urn:tradeguard:order:0x"):
            seller, _, order_ref = ref.removeprefix("urn:tradeguard:order:").partition(":")
            if order_ref and len(seller) == 42:
                order = session.scalar(
                    select(Order).where(
                        Order.seller == to_checksum_address(seller), Order.order_ref == order_ref
                    )
                )
        if order is not None:
            return order, session.scalar(select(Shipment).where(Shipment.order_id == order.id).limit(1))
    return None


def _at_destination(fact: _Fact, shipment: Shipment | None) -> bool:
    """DELIVERED counts at the destination only: where the merchant registered one, the event's business
    location, read point or destination list must name it; without one, any receiving event counts."""
    if shipment is None or not shipment.destination:
        return True
    return shipment.destination in fact.locations


def _retract(session: Session, fact: _Fact, poster: str | None, is_admin: bool) -> int:
    """Mark the events the declaration names as retracted (only the poster's own, or any for an admin);
    cancel an attestation not yet sent, flag the order when one may be on chain."""
    if not fact.event_id:
        return 0
    count = 0
    query = (
        select(LogisticsEvent)
        .join(InboxItem, InboxItem.id == LogisticsEvent.inbox_id)
        .where(LogisticsEvent.event_id == fact.event_id, LogisticsEvent.retracted.is_(False))
    )
    if not is_admin:
        query = query.where(InboxItem.principal_id == poster)
    for prior in session.scalars(query):
        prior.retracted = True
        count += 1
        cancelled = False
        if prior.intent_id:
            # guarded: the relayer may be sending it right now (then it is on its way: flag instead)
            result: Any = session.execute(
                update(Intent)
                .where(Intent.id == prior.intent_id, Intent.status == "pending")
                .values(
                    status="failed",
                    error_name="Retracted",
                    error=f"EPCIS errorDeclaration retracted event {fact.event_id}",
                )
            )
            cancelled = result.rowcount == 1
        flagged = bool(prior.intent_id) and not cancelled
        if flagged and prior.order_id:
            order = session.get(Order, prior.order_id)
            if order is not None:
                order.needs_review = True
        if prior.order_id:
            session.add(
                TimelineEntry(
                    order_id=prior.order_id,
                    kind="logistics.retracted",
                    data={
                        "event_id": fact.event_id,
                        "attestation_cancelled": cancelled,
                        "needs_review": flagged,
                    },
                )
            )
    return count


def _tombstoned(session: Session, fact: _Fact) -> bool:
    """An event whose id was already retracted (the declaration arrived first) never counts."""
    if not fact.event_id:
        return False
    return (
        session.scalar(
            select(LogisticsEvent.id)
            .where(LogisticsEvent.event_id == fact.event_id, LogisticsEvent.retracted.is_(True))
            .limit(1)
        )
        is not None
    )


@dataclass(frozen=True)
class _ChainView:
    """The chain as read just before an item's write transaction (no network call happens inside it): its
    time, and the current order of each matched order whose row did not accept the fact's milestone."""

    now: int
    orders: dict[str, ChainOrder | None]
    #: The oracle's signatures of the attestations the facts will most likely become, made before the write
    #: transaction (signing is CPU the write lock need not wait for); one is used only for the very message
    #: built inside it, else that message is signed there.
    signed: dict[DeliveryAttestation, bytes] = field(default_factory=dict)


def _chain_view(
    rt: Runtime, parsed: dict[str, list[_Fact]], signed: dict[DeliveryAttestation, bytes] | None = None
) -> _ChainView:
    """Read the orders the items' facts name; ask the gateway (index + a catch-up from its cursor, never a
    scan from the deployment) about those whose row lags: the row waits for confirmations, the chain does not.
    One read transaction, one gateway call and one look at the node's clock for the whole batch. Then sign
    the attestations of the facts that may be attested, as they stand in that read (``signed``: signatures
    made for an earlier view of the same sweep, kept)."""
    lagging: set[str] = set()
    candidates: list[tuple[_Fact, Order, Shipment | None]] = []
    with read_transaction(rt.db) as s:
        for facts in parsed.values():
            for fact in facts:
                if fact.retracted or fact.milestone is None:
                    continue
                matched = _match(s, fact)
                if matched is None:
                    continue
                candidates.append((fact, *matched))
                if matched[0].status not in ACCEPTS[fact.milestone]:
                    lagging.add(matched[0].id)
    orders = OrderGateway.of(rt).current_many(lagging) if lagging else {}
    # the node's clock: an event time is checked against it
    view = _ChainView(rt.chain.now(), orders, dict(signed or {}))
    for fact, order, shipment in candidates:
        if _why_not(rt, view, fact, order, shipment, view.now) is None:
            message = _attestation(fact, order, shipment, view.now)
            if message not in view.signed:
                assert rt.oracle is not None  # _why_not refuses without the key
                view.signed[message] = rt.escrow.sign(rt.oracle.key, message)
    return view


def _attestation(fact: _Fact, order: Order, shipment: Shipment | None, now: int) -> DeliveryAttestation:
    """The DeliveryAttestation the platform oracle signs for ``fact`` on ``order``."""
    assert fact.milestone is not None
    return DeliveryAttestation(
        bytes.fromhex(order.id[2:]),
        int(fact.milestone),
        min(fact.event_time, now),  # within the allowed clock skew
        bytes.fromhex(shipment.tracking_hash[2:]) if shipment else ZERO32,
        fact.content_hash,
    )


def _why_not(
    rt: Runtime, view: _ChainView, fact: _Fact, order: Order, shipment: Shipment | None, now: int
) -> str | None:
    """Why this fact must not be attested (``None``: it may be)."""
    assert fact.milestone is not None
    if rt.oracle is None:
        return "no platform oracle key"
    if fact.test_mode and not rt.is_dev:  # a carrier's simulated parcel never moves real money
        return "carrier test mode"
    if order.status not in ACCEPTS[fact.milestone]:
        # the row may lag the chain (the indexer waits for confirmations): the chain has the last word (a row
        # that stopped accepting since the view was read is newer than the view: it stands)
        on_chain = view.orders.get(order.id)
        status = on_chain.status.name.lower() if on_chain is not None else order.status
        if status not in ACCEPTS[fact.milestone]:
            return f"order is {status}"
    if fact.event_time > now + CLOCK_SKEW_SECONDS:
        return "event time is in the future"
    if order.funded_at is not None and fact.event_time < order.funded_at - CLOCK_SKEW_SECONDS:
        return "event happened before the order was funded"
    if fact.milestone == Milestone.DELIVERED and not _at_destination(fact, shipment):
        return "received somewhere other than the registered destination"
    return None


def _process_item(
    rt: Runtime,
    session: Session,
    item: InboxItem,
    facts: list[_Fact],
    report: IngestReport,
    view: _ChainView,
) -> dict[str, Any]:
    outcome: dict[str, Any] = {
        "events": 0,
        "matched": [],
        "intents": [],
        "retracted": 0,
        "unmatched": 0,
        "not_attested": [],
    }
    now = view.now
    poster = session.get(Principal, item.principal_id) if item.principal_id else None
    for fact in facts:
        digest = "0x" + fact.content_hash.hex()
        if fact.retracted:
            outcome["retracted"] += _retract(
                session, fact, item.principal_id, bool(poster and poster.role == "admin")
            )
        same = select(LogisticsEvent.id).where(LogisticsEvent.source == fact.source)
        if session.scalar(same.where(LogisticsEvent.content_hash == digest).limit(1)) is not None:
            continue  # the same bytes again
        if (
            not fact.retracted
            and fact.event_id
            and session.scalar(same.where(LogisticsEvent.event_id == fact.event_id).limit(1)) is not None
        ):
            continue  # the same event id again (other bytes): the first one stands
        matched = _match(session, fact)
        order, shipment = matched if matched else (None, None)
        row = LogisticsEvent(
            inbox_id=item.id,
            source=fact.source,
            order_id=order.id if order else None,
            event_id=fact.event_id,
            cbv_hash=fact.cbv_hash,
            content_hash=digest,
            canonical=fact.canonical,
            event_time=fact.event_time,
            kind=fact.kind[:60],
            milestone=int(fact.milestone) if fact.milestone else None,
            retracted=fact.retracted or _tombstoned(session, fact),
        )
        session.add(row)
        outcome["events"] += 1
        report.events += 1
        if order is None:
            outcome["unmatched"] += 1
            continue
        outcome["matched"].append(order.id)
        session.add(
            TimelineEntry(
                order_id=order.id,
                kind=f"logistics.{fact.kind}"[:40],
                data={
                    "source": fact.source,
                    "event_id": fact.event_id,
                    "event_time": fact.event_time,
                    "content_hash": digest,
                    "cbv_hash": fact.cbv_hash,
                    "milestone": int(fact.milestone) if fact.milestone else None,
                    "retracted": row.retracted,
                },
            )
        )
        if row.retracted or fact.milestone is None:
            continue
        reason = _why_not(rt, view, fact, order, shipment, now)
        if reason is not None:
            outcome["not_attested"].append({"order_id": order.id, "reason": reason})
            continue
        assert rt.oracle is not None
        message = _attestation(fact, order, shipment, now)
        signature = view.signed.get(message)
        if signature is None:  # the row moved since the view was read: sign what stands now
            signature = rt.escrow.sign(rt.oracle.key, message)
        payload = message.payload(signature)
        intent = relayer.submit(session, "attest", payload, order_id=order.id)
        session.flush()
        row.intent_id = intent.id
        outcome["intents"].append(intent.id)
        report.intents += 1
    report.retracted += outcome["retracted"]
    return outcome


#: Items one write transaction processes (each in its own savepoint): one disk sync for them all, and the
#: write lock held briefly enough that the intake's inserts (the 202s) do not queue long behind it.
PROCESS_BATCH = 8
#: A transaction takes no further item once it has held the write lock this long: on SQLite the intake's
#: inserts (the 202s) wait for it, and an item costs milliseconds on a loaded machine.
PROCESS_HOLD_SECONDS = 0.02


def process_pending(rt: Runtime, limit: int = 50) -> IngestReport:
    """Process stored inputs that are still ``received``, oldest first.

    Each document is parsed once, outside any write transaction, and the chain is read for the batch before
    it (no network call under the write lock). Up to :data:`PROCESS_BATCH` items then share one write
    transaction (one disk sync), fewer once it has held the lock :data:`PROCESS_HOLD_SECONDS`; each item in
    its own savepoint: an item that fails rolls back alone and is recorded as failed (permanently for a
    document the parser now refuses, else retried by a later sweep)."""
    report = IngestReport()
    with read_transaction(rt.db) as s:
        items = list(
            s.scalars(
                select(InboxItem)
                .where(InboxItem.status == "received", InboxItem.source != "attestation")
                .order_by(InboxItem.received_at)
                .limit(limit)
            )
        )
    parsed: dict[str, list[_Fact]] = {}
    failures: list[tuple[str, str, bool]] = []  # (item id, error, permanent)
    for item in items:
        try:
            parsed[item.id] = _facts(item)
        except FeedError as exc:  # validated at intake, so only a parser change could get here
            failures.append((item.id, f"{exc.code}: {exc}", True))
    pending = list(parsed)
    signed: dict[DeliveryAttestation, bytes] = {}
    while pending:
        chunk = {i: parsed[i] for i in pending[:PROCESS_BATCH]}
        done: list[tuple[str, IngestReport | None]] = []
        failed_here: list[tuple[str, str, bool]] = []
        try:
            view = _chain_view(rt, chunk, signed)
            signed = view.signed  # a chunk cut short by the hold time leaves its rest signed for the next
            with transaction(rt.db) as s:
                began = time.monotonic()
                for item_id, facts in chunk.items():
                    done.append((item_id, _process_one(rt, s, item_id, facts, view, failed_here)))
                    if time.monotonic() - began >= PROCESS_HOLD_SECONDS:
                        break  # the rest in the next transaction: the intake waits no longer than this
        except Exception as exc:  # transient (chain, database): retried by the next sweep
            tried = [i for i, _ in done] or list(chunk)
            log.warning("inbox batch of %d: %s", len(tried), exc)
            failures += [(i, f"{type(exc).__name__}: {exc}", False) for i in tried]
            pending = pending[len(tried) :]
            continue
        failures += failed_here
        pending = pending[len(done) :]
        for _, one in done:  # counted once the transaction that holds them is committed
            if one is not None:
                report.processed += 1
                report.events += one.events
                report.intents += one.intents
                report.retracted += one.retracted
    for item_id, error, permanent in failures:
        _record_failure(rt, item_id, error, permanent=permanent)
        report.failed.append(item_id)
    return report


def _process_one(
    rt: Runtime,
    s: Session,
    item_id: str,
    facts: list[_Fact],
    view: _ChainView,
    failures: list[tuple[str, str, bool]],
) -> IngestReport | None:
    """Process one item in a savepoint of the batch's transaction; what it did, or None (already processed
    by another sweep, or failed: then rolled back alone and added to ``failures``)."""
    mine = IngestReport()
    try:
        with s.begin_nested():
            # locked: a second sweep (a lapsed sweep lock) waits here, then sees it processed
            item = s.get(InboxItem, item_id, with_for_update=True)
            if item is None or item.status != "received":
                return None
            item.outcome = _process_item(rt, s, item, facts, mine, view)
            item.status = "processed"
            item.processed_at = utcnow()
    except Exception as exc:  # this item only: the others in the transaction go on
        log.warning("inbox %s: %s", item_id, exc)
        failures.append((item_id, f"{type(exc).__name__}: {exc}", isinstance(exc, FeedError)))
        return None
    return mine


def _record_failure(rt: Runtime, item_id: str, error: str, *, permanent: bool) -> None:
    with transaction(rt.db) as s:
        item = s.get(InboxItem, item_id)
        if item is None:
            return
        item.attempts += 1
        item.error = error[:2000]
        if permanent or item.attempts >= MAX_ATTEMPTS:
            item.status = "failed"


def capture_public(item: InboxItem) -> dict[str, Any]:
    return {
        "capture_id": item.id,
        "source": item.source,
        "status": item.status,
        "received_at": item.received_at,
        "raw_sha256": item.raw_sha256,
        "outcome": item.outcome,
        "error": item.error,
    }
