"""Orders: creation (with the exact typed data the buyer signs), the buyer's, merchant's and arbitrator's
signed actions, and what each principal may see.

Every action that reaches the chain is checked off chain first (the signer must be the right party), then
simulated from the relayer (a revert answers 409/422 at once and nothing is stored), then written as a relayer
intent in the same transaction as its off-chain facts (evidence bytes, timeline). The relayer sends it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

from eth_utils import to_checksum_address
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chain import eip712
from app.chain.messages import ZERO_ADDRESS, BuyerDecision, EvidenceSubmission, OrderAuthorization, Ruling
from app.db.models import (
    Evidence,
    Intent,
    Order,
    OrderColumns,
    PermitClaim,
    Principal,
    Shipment,
    TimelineEntry,
)
from app.db.session import insert_new, read_transaction, transaction, write
from app.domain import contract_errors, order_rules
from app.domain.encoding import hex32, rfc3339
from app.domain.ids import content_hash, order_id, tracking_hash
from app.domain.money import Split, release_split, ruling_share_bps, ruling_split
from app.domain.order_state import Decision
from app.errors import DomainError, Forbidden, InvalidInput, NotFound
from app.feeds.carriers import normalise_carrier, normalise_tracking_number
from app.services.outbox import relayer
from app.services.runtime import Runtime
from app.services.trade import arbitration, corridors, platform

DAY = 86_400
FINAL = frozenset({"released", "refunded", "resolved"})
ZERO32 = "0x" + "00" * 32


# --- access -----------------------------------------------------------------------------------------------


def can_see(principal: Principal, order: OrderColumns) -> bool:
    """Object-level access: others' orders answer 404, never 403. A regulator supervises every order."""
    if principal.role in ("admin", "regulator"):
        return True
    if principal.role == "merchant":
        return order.merchant_id == principal.id
    if principal.role == "buyer":
        return order.buyer == principal.address
    if principal.role == "arbitrator":
        return order.disputed_at is not None
    return False


#: Built once (``Session.get`` builds its select on every call: 150 µs of CPU against 110, issue 8). Without
#: autoflush, as ``get``: a row already in the session comes back as the object it is, changes included.
_ORDER_BY_ID = select(Order).where(Order.id == bindparam("id")).execution_options(autoflush=False)


def get_visible(session: Session, principal: Principal, oid: str) -> Order:
    order = session.scalars(_ORDER_BY_ID, {"id": oid.lower()}).first()
    if order is None or not can_see(principal, order):
        raise NotFound("order", oid)
    return order


#: An order's columns by id, for views that only read (no ORM object: 35 µs of CPU against 75-95, issue 8).
_ORDER_COLUMNS = select(*Order.__table__.columns).where(Order.__table__.c.id == bindparam("id"))


def read_visible(session: Session, principal: Principal, oid: str) -> OrderColumns:
    """:func:`get_visible` for a view that only reads: the order's columns, read on the session's connection
    (a change made to the order in ``session`` and not flushed is not seen)."""
    row = session.connection().execute(_ORDER_COLUMNS, {"id": oid.lower()}).first()
    # a row has each column as an attribute, as OrderColumns says
    order = cast("OrderColumns | None", row)
    if order is None or not can_see(principal, order):
        raise NotFound("order", oid)
    return order


def visible_query(principal: Principal) -> Any:
    """A select of the orders ``principal`` may list."""
    q = select(Order)
    if principal.role == "merchant":
        return q.where(Order.merchant_id == principal.id)
    if principal.role == "buyer":
        return q.where(Order.buyer == principal.address)
    if principal.role == "arbitrator":
        return q.where(Order.disputed_at.is_not(None))
    if principal.role in ("admin", "regulator"):
        return q
    return q.where(Order.id == "")  # oracles see only what they posted (logistics inputs), no orders


def require_role(principal: Principal, action: str, *roles: str) -> None:
    if principal.role not in roles:
        raise Forbidden(principal.role, action)


# --- creation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewOrder:
    """What a merchant asks for; times are unix seconds (``None`` = defaults from chain time)."""

    order_ref: str
    buyer: str
    amount: int
    currency: str
    destination_country: str
    goods_category: str
    ship_by: int | None = None
    deliver_by: int | None = None
    hold_seconds: int | None = None
    valid_for_seconds: int = DAY
    #: SPEC §4.1: an ERC-792 arbitrator (None: the platform's arbitrators) and its createDispute extraData
    arbitrator: str | None = None
    arbitrator_extra_data: bytes | None = None


def authorization(order: Order) -> OrderAuthorization:
    """The OrderAuthorization (SPEC §4.1) the buyer signs for ``order``, its arbitration included."""
    choice = arbitration.Choice(order.arbitrator, order.arbitrator_extra_data)
    return OrderAuthorization(
        bytes.fromhex(order.id[2:]), order.buyer, order.seller, order.token, order.amount,
        order.commission_bps, order.tax_bps, order.tax_recipient, order.ship_by, order.deliver_by,
        order.hold_seconds, order.valid_until, choice.arbitrator or ZERO_ADDRESS, choice.extra_data_hash,
    )  # fmt: skip


#: The permit nonce each buyer was last served with, per token: a funding signed at it is checked without
#: asking the node again (bounded; a miss reads the chain, as the first time).
_served_nonces: dict[tuple[str, str], int] = {}
_served_lock = threading.Lock()
_SERVED_SIZE = 10_000


def _permit_document(
    rt: Runtime, order: Order, deadline: int, value: int | None = None, nonce: int | None = None
) -> tuple[dict[str, Any], int]:
    """The EIP-2612 permit typed data for the order's amount (or ``value``: a cart's total) at ``nonce``,
    by default the buyer's current one (read from the token), and that nonce."""
    token = rt.chain.contract("TestUSD", order.token)
    key = (to_checksum_address(order.token), to_checksum_address(order.buyer))
    if nonce is None:
        nonce = int(rt.chain.call(token.functions.nonces(key[1])))
        with _served_lock:
            if len(_served_nonces) >= _SERVED_SIZE:
                _served_nonces.clear()
            _served_nonces[key] = nonce
    known = rt.tokens.get(key[0])
    name = known.name if known is not None else str(rt.chain.call(token.functions.name()))
    document = eip712.permit_typed_data(
        token_name=name,
        chain_id=rt.chain.chain_id,
        token=order.token,
        owner=order.buyer,
        spender=rt.escrow.address,
        value=order.amount if value is None else value,
        nonce=nonce,
        deadline=deadline,
    )
    return document, nonce


def served_nonce(order: Order) -> int | None:
    """The permit nonce the buyer of ``order`` was last served with for its token (None if not known)."""
    with _served_lock:
        return _served_nonces.get((to_checksum_address(order.token), to_checksum_address(order.buyer)))


@dataclass(frozen=True)
class NonceUse:
    """Whether another of our fundings, now mined, used permit ``nonce``: the order it funded, else None."""

    nonce: int
    spent_by: str | None


def nonce_use(s: Session, order: Order, nonce: int) -> NonceUse:
    """:class:`NonceUse` of the buyer's permit ``nonce`` for ``order``, read in the caller's transaction."""
    claim = s.get(PermitClaim, (order.token, order.buyer, nonce))
    holder = None if claim is None or claim.order_id == order.id else s.get(Intent, claim.intent_id)
    spent = holder is not None and holder.status == "confirmed"
    return NonceUse(nonce, holder.order_id if spent and holder is not None else None)


def signed_permit(
    rt: Runtime, order: Order, permit: Permit, value: int | None = None, known: NonceUse | None = None
) -> int:
    """Check the buyer's permit signature; the nonce it was signed at.

    The nonce the buyer was served with (:func:`signing_documents`) is tried first, without a call; a
    signature that does not recover at it is checked at the token's current nonce. A nonce used meanwhile
    is not refused here: the funding's simulation decides (the escrow takes a spent permit when the
    allowance is there), and the permit claim keeps two fundings off one nonce. ``known``: what the caller
    read of a nonce's use in its own read transaction (not read again when the signature is at that nonce).
    """
    key = (to_checksum_address(order.token), to_checksum_address(order.buyer))
    with _served_lock:
        served = _served_nonces.get(key)
    if served is not None:
        document, nonce = _permit_document(rt, order, permit.deadline, value, nonce=served)
        try:
            signed_here = eip712.recover_signer(document, permit.signature) == key[1]
        except Exception:  # malformed: the check below names it
            signed_here = False
        if signed_here:
            _refuse_spent_permit(rt, order, known if known is not None and known.nonce == nonce else nonce)
            return nonce
    document, nonce = _permit_document(rt, order, permit.deadline, value)
    _check_signer(document, permit.signature, order.buyer, field="permit.signature")
    return nonce


def _refuse_spent_permit(rt: Runtime, order: Order, use: NonceUse | int) -> None:
    """A permit signed at a nonce that another of our fundings used, now mined, acts no more: refused as the
    token would refuse it (a funding still in flight at it is the claim's 409, :func:`_claim_permit`).
    ``use``: the nonce's use as read already, or the nonce (then read here)."""
    if isinstance(use, int):
        with read_transaction(rt.db) as s:
            use = nonce_use(s, order, use)
    nonce, used_by = use.nonce, use.spent_by
    if used_by is not None:
        raise InvalidInput(
            "invalid_signature",
            f"the permit is signed at nonce {nonce}, which the funding of order {used_by} used up: fetch the "
            "signing documents again (GET /v1/orders/{id}/signing) and sign the new permit",
            errors=[{"field": "permit.signature", "message": "signed at a used nonce"}],
        )


def signing_documents(rt: Runtime, order: Order) -> dict[str, Any]:
    """The typed data the buyer signs: the OrderAuthorization and an EIP-2612 permit for the amount."""
    auth = rt.escrow.document(authorization(order))
    permit, _nonce = _permit_document(rt, order, order.valid_until)
    return {"authorization": eip712.jsonable(auth), "permit": eip712.jsonable(permit)}


def create(rt: Runtime, merchant: Principal, req: NewOrder) -> tuple[Order, dict[str, Any]]:
    """Create an order awaiting the buyer's signature. Terms are fixed here and signed by the buyer."""
    require_role(merchant, "create orders", "merchant")
    assert merchant.address is not None
    token = rt.token_by_symbol(req.currency)
    if token is None:
        raise InvalidInput(
            "unknown_currency",
            f"currency {req.currency!r} is not a settlement token here",
            errors=[
                {"field": "currency", "message": f"one of {sorted(t.symbol for t in rt.tokens.values())}"}
            ],
        )
    buyer = to_checksum_address(req.buyer)
    now = rt.chain.now(rt.settings.head_cache_seconds)
    ship_by, deliver_by = order_rules.default_schedule(now, req.ship_by, req.deliver_by)
    hold = req.hold_seconds if req.hold_seconds is not None else rt.settings.hold_seconds
    oid = hex32(order_id(merchant.address, req.order_ref))
    with read_transaction(rt.db) as s:  # reads: no write lock (the insert below checks again)
        corridor = corridors.resolve(s, req.destination_country, req.goods_category)
        if s.get(Order, oid) is not None:
            raise DomainError("order_exists", f"order_ref {req.order_ref!r} already exists", order_id=oid)
    limits = platform.limits(rt, token.address, corridor.recipient, now)
    terms = order_rules.FundingTerms(
        buyer=buyer,
        seller=merchant.address,
        token=token.address,
        amount=req.amount,
        commission_bps=limits.commission_bps,
        tax_bps=corridor.tax_bps,
        tax_recipient=corridor.recipient,
        ship_by=ship_by,
        deliver_by=deliver_by,
        hold_seconds=hold,
    )
    broken = order_rules.funding_violations(terms, limits, now)
    broken += order_rules.signing_window_violations(now, ship_by)
    if req.deliver_by is None:  # a default deliver-by is only out of bounds when ship-by is: name that one
        broken = [v for v in broken if v.field != "deliver_by"] or broken
    _refuse_unfundable(broken)
    # the arbitrator is checked once the order is otherwise fundable (two node calls, only then)
    choice = arbitration.check_choice(rt, req.arbitrator, req.arbitrator_extra_data, now)
    commission_bps = limits.commission_bps
    order = Order(
        id=oid,
        order_ref=req.order_ref,
        merchant_id=merchant.id,
        buyer=buyer,
        seller=merchant.address,
        token=token.address,
        currency=token.symbol,
        amount=req.amount,
        commission_bps=commission_bps,
        tax_bps=corridor.tax_bps,
        tax_recipient=corridor.recipient,
        destination_country=req.destination_country.upper(),
        goods_category=req.goods_category.lower(),
        ship_by=ship_by,
        deliver_by=deliver_by,
        hold_seconds=hold,
        valid_until=order_rules.authorization_deadline(now, req.valid_for_seconds, ship_by),
        arbitrator=choice.arbitrator,
        arbitrator_extra_data=choice.extra_data if choice.arbitrator else None,
        status="awaiting_funding",
    )
    # the chain calls (permit nonce, token name) come before the commit: a node failure then leaves nothing
    # behind, so the merchant's retry with the same Idempotency-Key creates the order instead of a 409
    documents = signing_documents(rt, order)
    created: dict[str, Any] = {"order_ref": req.order_ref}
    if choice.arbitrator:
        created["arbitrator"] = choice.arbitrator

    def insert(s: Session) -> None:
        s.add(order)
        s.add(TimelineEntry(order_id=oid, kind="order.created", data=created))
        try:
            s.flush()
        except IntegrityError as exc:
            raise DomainError("order_exists", f"order_ref {req.order_ref!r} already exists") from exc

    write(rt.db, insert)  # committed with concurrent requests' writes (group commit on SQLite)
    return order, documents


#: Funding rules that fail because of the platform's state, not the merchant's input (409, not 422).
_PLATFORM_STATE = frozenset({"EnforcedPause", "InvalidThreshold"})


def _refuse_unfundable(broken: list[order_rules.Violation]) -> None:
    """Refuse an order the escrow would refuse at funding, naming every broken rule (nothing is stored)."""
    if not broken:
        return
    state = [v for v in broken if v.code in _PLATFORM_STATE]
    if state:
        raise DomainError(
            "platform_state",
            f"the escrow cannot fund new orders now: {state[0].message}",
            error=state[0].code,
            **state[0].details,
        )
    first = broken[0]
    code = {
        "InvalidSchedule": "invalid_schedule",
        "InvalidAmount": "invalid_amount",
        "AmountAboveSupply": "invalid_amount",
        "InvalidParties": "invalid_parties",
        "TaxNotAllowed": "corridor_not_allowed",
        "TokenNotAllowed": "unknown_currency",
        "CommissionMismatch": "invalid_commission",
    }.get(first.code, "order_not_fundable")
    raise InvalidInput(
        code,
        "the escrow would refuse to fund this order: " + "; ".join(f"{v.field} {v.message}" for v in broken),
        errors=[v.as_error() for v in broken],
        error=first.code,
    )


# --- actions that go on chain ------------------------------------------------------------------------------


def _check_signer(
    document: dict[str, Any], signature: bytes, expected: str, field: str = "signature"
) -> None:
    try:
        signer = eip712.recover_signer(document, signature)
    except Exception as exc:  # eth-account raises several types for malformed signatures
        raise InvalidInput(
            "invalid_signature",
            f"the signature cannot be recovered: {exc}",
            errors=[{"field": field, "message": "bad"}],
        ) from exc
    if signer != to_checksum_address(expected):
        raise InvalidInput(
            "invalid_signature",
            f"signed by {signer}, expected {to_checksum_address(expected)}",
            errors=[{"field": field, "message": "wrong signer"}],
            expected=to_checksum_address(expected),
            recovered=signer,
        )


def _submit(rt: Runtime, kind: str, payload: dict[str, Any], oid: str, fact: dict[str, Any]) -> Intent:
    relayer.preflight(rt, kind, payload)
    with transaction(rt.db) as s:
        intent = relayer.submit(s, kind, payload, order_id=oid)
        s.add(TimelineEntry(order_id=oid, kind=f"{kind}.submitted", data={"intent_id": intent.id, **fact}))
    return intent


@dataclass(frozen=True)
class Permit:
    """The buyer's EIP-2612 permit for the order's amount: its 65-byte signature and deadline."""

    signature: bytes
    deadline: int

    def payload(self, amount: int) -> dict[str, Any]:
        """The ``permit`` of a ``fund`` intent (the contract's ``Permit`` tuple, as JSON)."""
        sig = self.signature
        return {
            "value": str(amount),
            "deadline": self.deadline,
            "v": sig[64] if sig[64] >= 27 else sig[64] + 27,
            "r": hex32(sig[:32]),
            "s": hex32(sig[32:64]),
        }


def fund(rt: Runtime, buyer: Principal, oid: str, signature: bytes, permit: Permit | None) -> Intent:
    """The buyer's signed authorization (and optional permit) → a ``fund`` intent."""
    require_role(buyer, "fund orders", "buyer")
    known = None
    with read_transaction(rt.db) as s:
        order = get_visible(s, buyer, oid)
        # the use of the nonce the buyer was most likely served with, in this read: not a second one later
        served = served_nonce(order) if permit is not None else None
        if served is not None and order.status == "awaiting_funding":
            known = nonce_use(s, order, served)
    if order.status != "awaiting_funding":
        raise DomainError("invalid_state", f"order {oid} is {order.status}, not awaiting_funding")
    message = authorization(order)
    _check_signer(rt.escrow.document(message), signature, order.buyer)
    permit_nonce = None if permit is None else signed_permit(rt, order, permit, known=known)
    payload = {
        "authorization": message.payload(),
        "signature": hex32(signature),
        "permit": permit.payload(order.amount) if permit is not None else None,
    }
    gas = relayer.preflight(rt, "fund", payload)

    def record(s: Session) -> Intent:
        intent = relayer.submit(s, "fund", payload, order_id=order.id, gas_limit=gas)
        if permit_nonce is not None:
            _claim_permit(s, order, permit_nonce, intent)
        s.add(TimelineEntry(order_id=order.id, kind="fund.submitted", data={"intent_id": intent.id}))
        return intent

    return write(rt.db, record)  # committed with concurrent requests' writes (group commit on SQLite)


def _claim_permit(s: Session, order: Order, nonce: int, intent: Intent) -> None:
    """Take the buyer's permit nonce for ``intent``; a live claim by another funding is a 409.

    A permit acts once: two fundings signed at the same nonce both pass the simulation while neither is
    mined, and the second would fail on chain. A claim whose intent failed is taken over.
    """
    values = {"token": order.token, "owner": order.buyer, "nonce": nonce}
    if insert_new(s, PermitClaim, {**values, "intent_id": intent.id, "order_id": order.id}) is not None:
        return  # one INSERT, no look-up before it: the nonce was free
    claim = s.get(PermitClaim, (order.token, order.buyer, nonce), with_for_update=True)
    if claim is None:  # taken and let go again meanwhile: nothing to take over here
        raise DomainError(
            "permit_nonce_conflict",
            f"the buyer's permit nonce {nonce} was just used by another funding",
            nonce=nonce,
        )
    if claim.intent_id == intent.id:
        return  # the same intent again
    holder = s.get(Intent, claim.intent_id)
    if holder is not None and holder.status != "failed":
        raise DomainError(
            "permit_nonce_conflict",
            f"the buyer's permit nonce {nonce} is already used by the pending funding of order "
            f"{claim.order_id}; fund this order once that one is mined (re-fetch its signing documents),"
            " or fund it from an allowance without a permit",
            nonce=nonce,
            order_id=claim.order_id,
        )
    claim.intent_id, claim.order_id = intent.id, order.id  # the failed funding's claim is taken over


def buyer_decision(
    rt: Runtime,
    buyer: Principal,
    oid: str,
    decision: Decision,
    signature: bytes,
    valid_until: int,
    evidence_hash: bytes,
) -> Intent:
    """Confirm receipt or open a dispute with the buyer's signed BuyerDecision."""
    require_role(buyer, "confirm receipt or dispute", "buyer")
    with read_transaction(rt.db) as s:  # a read: no write lock
        order = get_visible(s, buyer, oid)
    if decision == Decision.OPEN_DISPUTE and order.arbitrator:
        raise DomainError(
            "erc792_dispute_conflict",
            f"order {oid} is arbitrated by ERC-792 arbitrator {order.arbitrator}, whose fee the buyer pays "
            "when the dispute opens: the relayer cannot send it. Send the transaction GET "
            "/v1/orders/{id}/dispute-transaction answers from the buyer's wallet",
            arbitrator=order.arbitrator,
        )
    message = BuyerDecision(bytes.fromhex(order.id[2:]), int(decision), evidence_hash, valid_until)
    _check_signer(rt.escrow.document(message), signature, order.buyer)
    kind = "confirm_receipt" if decision == Decision.CONFIRM_RECEIPT else "open_dispute"
    return _submit(rt, kind, message.payload(signature), order.id, {})


def _printable(text: str) -> str:
    """``text`` without control characters (a client's file name is stored, listed and put in CSV)."""
    return "".join(ch for ch in text if ch.isprintable())


def add_evidence(
    rt: Runtime,
    party: Principal,
    oid: str,
    *,
    filename: str,
    content_type: str,
    data: bytes,
    signature: bytes,
    valid_until: int,
) -> tuple[Evidence, Intent]:
    """Store an evidence file and anchor its SHA-256 with the party's signed EvidenceSubmission."""
    require_role(party, "submit evidence", "buyer", "merchant")
    assert party.address is not None
    with read_transaction(rt.db) as s:  # a read: no write lock
        order = get_visible(s, party, oid)
    if order.status in FINAL or order.status == "awaiting_funding":
        raise DomainError("invalid_state", f"order {oid} is {order.status}: evidence is closed")
    digest = content_hash(data)
    message = EvidenceSubmission(bytes.fromhex(order.id[2:]), party.address, digest, valid_until)
    _check_signer(rt.escrow.document(message), signature, party.address)
    payload = message.payload(signature)
    relayer.preflight(rt, "evidence", payload)
    with transaction(rt.db) as s:
        intent = relayer.submit(s, "evidence", payload, order_id=order.id)
        evidence = Evidence(
            order_id=order.id,
            principal_id=party.id,
            party=party.address,
            filename=_printable(filename)[:255] or "evidence",
            content_type=_printable(content_type)[:100] or "application/octet-stream",
            size=len(data),
            sha256=hex32(digest),
            data=data,
            intent_id=intent.id,
        )
        s.add(evidence)
        s.add(
            TimelineEntry(
                order_id=order.id,
                kind="evidence.submitted",
                data={"party": party.address, "sha256": hex32(digest), "intent_id": intent.id},
            )
        )
    return evidence, intent


def rule(
    rt: Runtime,
    arbitrator: Principal,
    oid: str,
    share_bps: int,
    rationale_hash: bytes,
    valid_until: int,
    signature: bytes,
) -> Intent:
    """The arbitrator's signed Ruling → a ``ruling`` intent."""
    require_role(arbitrator, "rule on disputes", "arbitrator")
    assert arbitrator.address is not None
    with read_transaction(rt.db) as s:  # a read: no write lock
        order = get_visible(s, arbitrator, oid)
    if order.arbitrator:
        raise DomainError(
            "erc792_ruling_conflict",
            f"order {oid} is arbitrated by ERC-792 arbitrator {order.arbitrator}: its ruling comes through "
            "that arbitrator's rule() call, not a platform Ruling",
            arbitrator=order.arbitrator,
        )
    message = Ruling(bytes.fromhex(order.id[2:]), share_bps, rationale_hash, valid_until)
    _check_signer(rt.escrow.document(message), signature, arbitrator.address)
    return _submit(rt, "ruling", message.payload(signature), order.id, {"buyer_share_bps": share_bps})


def add_shipment(
    rt: Runtime,
    merchant: Principal,
    oid: str,
    carrier: str,
    tracking_number: str,
    sscc: str | None,
    destination: str | None = None,
) -> Shipment:
    """Register the shipment through which logistics events find the order."""
    require_role(merchant, "register shipments", "merchant")
    # the same normalisation carrier webhooks get, so that both sides meet (and trackingHash is stable)
    carrier = normalise_carrier(carrier)
    tracking_number = normalise_tracking_number(tracking_number)
    with transaction(rt.db) as s:
        order = get_visible(s, merchant, oid)
        if order.status in FINAL:
            raise DomainError("invalid_state", f"order {oid} is {order.status}")
        taken = s.scalar(
            select(Shipment.id).where(
                Shipment.carrier == carrier, Shipment.tracking_number == tracking_number
            )
        )
        if taken is not None:  # (which order holds it is not the caller's business)
            raise DomainError("shipment_exists", f"{carrier}:{tracking_number} is already registered")
        if sscc is not None:
            # one open shipment per SSCC: otherwise one merchant's scans could move another merchant's order
            open_holder = s.scalar(
                select(Shipment.id)
                .join(Order, Order.id == Shipment.order_id)
                .where(Shipment.sscc == sscc, Order.status.not_in(FINAL))
                .limit(1)
            )
            if open_holder is not None:
                raise DomainError("shipment_exists", f"SSCC {sscc} is already registered on an open order")
        shipment = Shipment(
            order_id=order.id,
            carrier=carrier,
            tracking_number=tracking_number,
            tracking_hash=hex32(tracking_hash(carrier, tracking_number)),
            sscc=sscc,
            destination=destination,
        )
        s.add(shipment)
        s.add(
            TimelineEntry(
                order_id=order.id,
                kind="shipment.registered",
                data={"carrier": carrier, "tracking_number": tracking_number, "sscc": sscc},
            )
        )
        s.flush()
    return shipment


# --- views ------------------------------------------------------------------------------------------------


def split_of(order: OrderColumns) -> tuple[Split, bool]:
    """The actual split of a closed order, else the split a release would make, or on a disputed order whose
    ERC-792 arbitrator has ruled the split ``executeRuling`` will make (``final`` False)."""
    if order.status in FINAL and order.seller_net is not None:
        return (
            Split(order.buyer_refund or 0, order.commission or 0, order.tax or 0, order.seller_net or 0),
            True,
        )
    if order.status == "disputed" and order.ruling is not None:  # ERC-792: what executeRuling will pay
        share = ruling_share_bps(order.ruling)
        return ruling_split(order.amount, share, order.commission_bps, order.tax_bps), False
    return release_split(order.amount, order.commission_bps, order.tax_bps), False


def public(order: OrderColumns, timeline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The API's view of an order (amounts as decimal strings, times RFC 3339 UTC)."""
    split, final = split_of(order)
    out: dict[str, Any] = {
        "id": order.id,
        "order_ref": order.order_ref,
        "status": order.status,
        "buyer": order.buyer,
        "seller": order.seller,
        "currency": order.currency,
        "token": order.token,
        "amount": str(order.amount),
        "split": {
            "final": final,
            "buyer_refund": str(split.buyer_refund),
            "commission": str(split.commission),
            "tax": str(split.tax),
            "seller_net": str(split.seller_net),
        },
        "commission_bps": order.commission_bps,
        "tax_bps": order.tax_bps,
        "tax_recipient": order.tax_recipient,
        "destination_country": order.destination_country,
        "goods_category": order.goods_category,
        "ship_by": rfc3339(order.ship_by),
        "deliver_by": rfc3339(order.deliver_by),
        "hold_seconds": order.hold_seconds,
        "valid_until": rfc3339(order.valid_until),
        "funded_at": rfc3339(order.funded_at),
        "release_at": rfc3339(order.release_at),
        "disputed_at": rfc3339(order.disputed_at),
        "frozen_until": rfc3339(order.frozen_until),
        "closed_at": rfc3339(order.closed_at),
        "needs_review": order.needs_review,
        "arbitration": arbitration.view(order),
        "created_at": rfc3339(order.created_at),
    }
    if timeline is not None:
        out["timeline"] = timeline
    return out


def intent_public(intent: Intent) -> dict[str, Any]:
    return {
        "id": intent.id,
        "kind": intent.kind,
        "status": intent.status,
        "tx_hash": intent.tx_hash,
        "error": intent.error_name,
        "error_code": None if intent.error_name is None else contract_errors.code_of(intent.error_name),
        "request_id": intent.request_id,
    }
