"""Escrow events → order rows: the pure part of the indexer.

An order's on-chain columns are always the result of replaying *all* of its indexed events from scratch
(:func:`replay`), never of patching the row event by event. A reorg that removes events and a fresh index of
the new chain therefore give the same row by construction.

Events are handled in the JSON-safe form they are stored in (:func:`json_safe`): ``bytes`` as ``0x`` hex,
integers outside JavaScript's safe range (±(2**53 - 1)) as decimal strings, structs as dicts; :func:`as_int`
reads either form back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from eth_utils import keccak

from app.db.models import Order
from app.domain.encoding import hex32, rfc3339
from app.domain.money import ruling_share_bps
from app.domain.order_rules import ZERO_ADDRESS, OrderTerms
from app.domain.order_state import OrderState, RefundReason, Status

MAX_SAFE_INT = 2**53 - 1
ZERO_HASH = "0x" + "00" * 32
AWAITING_FUNDING = "awaiting_funding"
#: ERC-1497 events name the order by a uint256 argument rather than ``orderId``: the evidence group, which is
#: the order id (a ``Dispute``'s ``_disputeID`` is the order id only under platform arbitration; an ERC-792
#: arbitrator numbers its disputes itself).
_ORDER_ARG = {"Dispute": "_evidenceGroupID", "Evidence": "_evidenceGroupID"}
#: ERC-792 events that name the order only through the arbitrator's dispute id (``RulingRecorded``'s
#: ``orderId`` argument carries the escrow's order key, not the order id): the indexer maps them to their
#: order by the ``Dispute`` event of the same (arbitrator, dispute id).
BY_DISPUTE = {"Ruling": ("_arbitrator", "_disputeID"), "RulingRecorded": ("arbitrator", "disputeID")}
#: Events that only repeat another event of the same transaction (ERC-1497 mirrors): left out of timelines.
TIMELINE_DUPLICATES = frozenset({"Dispute", "Evidence", "Ruling"})
#: Event arguments that are token amounts: decimal strings wherever they are shown.
AMOUNT_ARGS = frozenset({"amount", "commission", "tax", "sellerNet", "buyerRefund"})


class EventRecord(Protocol):
    """What the projection reads of a stored event (a :class:`~app.db.models.ChainEvent` row)."""

    @property
    def name(self) -> str: ...
    @property
    def block_number(self) -> int: ...
    @property
    def block_hash(self) -> str: ...
    @property
    def block_time(self) -> int: ...
    @property
    def tx_hash(self) -> str: ...
    @property
    def log_index(self) -> int: ...
    @property
    def args(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------------------- stored form


def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it exactly: bytes → 0x hex, big ints → decimal strings, tuples → lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else str(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)


def as_int(value: Any) -> int:
    """An integer argument read back from its stored form (int or decimal string)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an integer argument")
    return int(value)


def event_order_id(name: str, args: Mapping[str, Any]) -> str | None:
    """The order an escrow event is about (``0x…``), None for platform events and for the ERC-792 events of
    :data:`BY_DISPUTE` (their order is found through the dispute, :func:`dispute_of`)."""
    if name in BY_DISPUTE:
        return None
    if "orderId" in args:
        value = args["orderId"]
        return hex32(bytes(value)) if isinstance(value, bytes | bytearray) else str(value).lower()
    arg = _ORDER_ARG.get(name)
    if arg is not None and arg in args:
        return hex32(as_int(args[arg]))
    return None


def dispute_of(name: str, args: Mapping[str, Any]) -> tuple[str, int] | None:
    """The (arbitrator, dispute id) an ERC-792 event names: a ``Dispute`` the escrow created, or one of the
    :data:`BY_DISPUTE` events (the arbitrator lowercased)."""
    keys = ("_arbitrator", "_disputeID") if name == "Dispute" else BY_DISPUTE.get(name)
    if keys is None or keys[0] not in args:
        return None
    return str(args[keys[0]]).lower(), as_int(args[keys[1]])


# --------------------------------------------------------------------------------------- projection


def terms_from_args(terms: Mapping[str, Any]) -> OrderTerms:
    """The order's terms from the stored (JSON-safe) ``terms`` argument of ``OrderFunded``."""
    return OrderTerms(
        buyer=str(terms["buyer"]),
        seller=str(terms["seller"]),
        token=str(terms["token"]),
        amount=as_int(terms["amount"]),
        commission_bps=as_int(terms["commissionBps"]),
        tax_bps=as_int(terms["taxBps"]),
        tax_recipient=str(terms["taxRecipient"]),
        ship_by=as_int(terms["shipBy"]),
        deliver_by=as_int(terms["deliverBy"]),
        hold_seconds=as_int(terms["holdSeconds"]),
        threshold=as_int(terms["threshold"]),
        response_seconds=as_int(terms["responseSeconds"]),
        arbitration_seconds=as_int(terms["arbitrationSeconds"]),
        funded_at=as_int(terms["fundedAt"]),
        arbitrator=str(terms.get("arbitrator", ZERO_ADDRESS)),
        arbitrator_extra_data_hash=_bytes32(terms.get("arbitratorExtraDataHash", ZERO_HASH)),
        meta_evidence_id=as_int(terms.get("metaEvidenceId", 0)),
    )


def _bytes32(value: Any) -> bytes:
    """A ``bytes32`` argument in its stored form (0x hex) or as decoded (bytes)."""
    return bytes(value) if isinstance(value, bytes | bytearray) else bytes.fromhex(str(value)[2:])


#: Order columns the indexer owns (everything else on the row is the API's).
PROJECTED_COLUMNS = (
    "status",
    "state_word",
    "funded_at",
    "release_at",
    "disputed_at",
    "frozen_until",
    "response_deadline",
    "arbitration_deadline",
    "seller_evidence",
    "buyer_refund",
    "commission",
    "tax",
    "seller_net",
    "closed_at",
    "dispute_id",
    "ruling",
    "ruled_at",
)


@dataclass(frozen=True)
class Projection:
    """An order's on-chain columns after some prefix of its events.

    ``release_at`` is set while the order is delivered, the dispute deadlines while it is disputed (both with
    every freeze added, as the contract counts them); ``disputed_at`` stays once set. ``seller_evidence`` is
    the state word's responded flag: the seller answered the dispute within its response window.

    On an order with an ERC-792 arbitrator (SPEC §4.1), ``dispute_id`` is the arbitrator's id of the dispute
    the escrow created (the ``Dispute`` event of the transaction that opened it), ``ruling`` (0..10) and
    ``ruled_at`` the ruling it gave through ``rule()`` (``RulingRecorded``), which ``executeRuling`` then
    settles.
    """

    status: str = AWAITING_FUNDING
    state_word: int | None = None
    funded_at: int | None = None
    release_at: int | None = None
    disputed_at: int | None = None
    frozen_until: int | None = None
    response_deadline: int | None = None
    arbitration_deadline: int | None = None
    seller_evidence: bool = False
    buyer_refund: int | None = None
    commission: int | None = None
    tax: int | None = None
    seller_net: int | None = None
    closed_at: int | None = None
    dispute_id: int | None = None
    ruling: int | None = None
    ruled_at: int | None = None
    terms: OrderTerms | None = field(default=None, compare=False)
    refund_reason: str | None = field(default=None, compare=False)
    #: the transaction whose ``DisputeOpened`` this order's is: its ``Dispute`` event carries the dispute id
    dispute_tx: str | None = field(default=None, compare=False)

    @property
    def external(self) -> bool:
        """Whether the order is arbitrated by an ERC-792 arbitrator (SPEC §4.1)."""
        return self.terms is not None and self.terms.arbitrator.lower() != ZERO_ADDRESS

    def columns(self) -> dict[str, Any]:
        """The projected columns by name (what :func:`apply` writes)."""
        return {name: getattr(self, name) for name in PROJECTED_COLUMNS}


@dataclass(frozen=True)
class Transition:
    """A change a merchant hears about: the event that caused it and the projection right after it."""

    type: str
    previous_status: str
    event: EventRecord
    after: Projection

    @property
    def webhook_id(self) -> str:
        """Stable webhook event id: the same log in the same block always gives the same id."""
        return webhook_event_id(self.event, self.type)


def stable_id(*parts: str) -> str:
    """A webhook event id derived from ``parts``: ``evt_`` + 32 hex digits of their SHA-256."""
    return "evt_" + hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def webhook_event_id(event: EventRecord, type_: str) -> str:
    """The stable id of the webhook for a transition: derived from (block hash, tx hash, log index, type).

    Replaying an order (after a reorg, or indexing twice) re-derives the same ids, so nothing is sent twice.
    The block hash is part of it on purpose: a transaction that a reorg drops and a later block re-includes
    is a new fact, announced again after the ``order.reorged`` that withdrew the first one.
    """
    return stable_id(event.block_hash, event.tx_hash, str(event.log_index), type_)


def _with_state(p: Projection, word: int) -> Projection:
    state = OrderState.unpack(word)
    disputed = state.status == Status.DISPUTED
    # disputed_at stays on a closed order (a fact); the dispute deadlines only while they run
    disputed_at = state.disputed_at if disputed else p.disputed_at
    response = arbitration = None
    if disputed and p.terms is not None and disputed_at is not None:
        response = disputed_at + p.terms.response_seconds
        arbitration = disputed_at + p.terms.arbitration_seconds
    return replace(
        p,
        status=state.status.name.lower(),
        state_word=word,
        release_at=state.release_at,
        disputed_at=disputed_at,
        frozen_until=state.frozen_until or None,
        response_deadline=response,
        arbitration_deadline=arbitration,
        seller_evidence=state.responded,
    )


def step(p: Projection, event: EventRecord) -> Projection:
    """The projection after one more event of the order."""
    args = event.args
    if event.name == "OrderFunded":
        terms = terms_from_args(args["terms"])
        p = replace(Projection(), terms=terms, funded_at=terms.funded_at)
    elif p.terms is None:
        return p  # nothing precedes funding on chain; ignore anything odd rather than invent an order
    if "state" in args:
        p = _with_state(p, as_int(args["state"]))
    if event.name in ("OrderReleased", "DisputeResolved"):
        p = replace(
            p,
            buyer_refund=as_int(args.get("buyerRefund", 0)),
            commission=as_int(args["commission"]),
            tax=as_int(args["tax"]),
            seller_net=as_int(args["sellerNet"]),
            closed_at=event.block_time,
        )
    elif event.name == "DisputeOpened":
        p = replace(p, dispute_tx=event.tx_hash)
    elif event.name == "Dispute" and p.external and event.tx_hash == p.dispute_tx and p.dispute_id is None:
        assert p.terms is not None
        if str(args["_arbitrator"]).lower() == p.terms.arbitrator.lower():
            p = replace(p, dispute_id=as_int(args["_disputeID"]))
    elif event.name == "RulingRecorded" and p.dispute_id is not None and p.ruling is None:
        assert p.terms is not None
        if (str(args["arbitrator"]).lower(), as_int(args["disputeID"])) == (
            p.terms.arbitrator.lower(),
            p.dispute_id,
        ):
            p = replace(p, ruling=as_int(args["ruling"]), ruled_at=event.block_time)
    elif event.name == "OrderRefunded":
        assert p.terms is not None
        reason = RefundReason(as_int(args["reason"])).name.lower()
        p = replace(
            p,
            buyer_refund=p.terms.amount,
            commission=0,
            tax=0,
            seller_net=0,
            closed_at=event.block_time,
            refund_reason=reason,
        )
    return p


def _transition_type(before: Projection, after: Projection, event: EventRecord) -> str | None:
    if after.status != before.status:
        return f"order.{after.status}"
    if event.name == "OrderFrozen":
        return "order.frozen"
    if event.name == "OrderUnfrozen":
        return "order.unfrozen"
    if after.ruling is not None and before.ruling is None:
        return "order.ruling_recorded"
    return None


def replay(events: Iterable[EventRecord]) -> tuple[Projection, list[Transition]]:
    """Replay an order's events (in chain order) from scratch: its projection and every transition."""
    p = Projection()
    transitions: list[Transition] = []
    for event in events:
        after = step(p, event)
        kind = _transition_type(p, after, event)
        if kind is not None:
            transitions.append(Transition(kind, p.status, event, after))
        p = after
    return p, transitions


def apply(order: Order, p: Projection) -> bool:
    """Write the projected columns onto ``order``; True if anything changed."""
    changed = False
    for name, value in p.columns().items():
        if getattr(order, name) != value:
            setattr(order, name, value)
            changed = True
    return changed


def terms_mismatch(order: Order, t: OrderTerms) -> list[str]:
    """Columns of an API-created row whose terms differ from what was funded on chain."""
    pairs = {
        "buyer": (order.buyer.lower(), t.buyer.lower()),
        "seller": (order.seller.lower(), t.seller.lower()),
        "token": (order.token.lower(), t.token.lower()),
        "amount": (order.amount, t.amount),
        "commission_bps": (order.commission_bps, t.commission_bps),
        "tax_bps": (order.tax_bps, t.tax_bps),
        "tax_recipient": (order.tax_recipient.lower(), t.tax_recipient.lower()),
        "ship_by": (order.ship_by, t.ship_by),
        "deliver_by": (order.deliver_by, t.deliver_by),
        "hold_seconds": (order.hold_seconds, t.hold_seconds),
        "arbitrator": ((order.arbitrator or ZERO_ADDRESS).lower(), t.arbitrator.lower()),
        "arbitrator_extra_data": (
            keccak(order.arbitrator_extra_data) if order.arbitrator else bytes(32),
            bytes(t.arbitrator_extra_data_hash),
        ),
    }
    return [name for name, (row, chain) in pairs.items() if row != chain]


def new_order_row(order_id: str, merchant_id: str, t: OrderTerms, currency: str) -> Order:
    """A row for an order funded directly on chain (the merchant's order reference is unknown: the id)."""
    return Order(
        id=order_id,
        order_ref=order_id,
        merchant_id=merchant_id,
        buyer=t.buyer,
        seller=t.seller,
        token=t.token,
        currency=currency,
        amount=t.amount,
        commission_bps=t.commission_bps,
        tax_bps=t.tax_bps,
        tax_recipient=t.tax_recipient,
        destination_country="",
        goods_category="",
        ship_by=t.ship_by,
        deliver_by=t.deliver_by,
        hold_seconds=t.hold_seconds,
        valid_until=t.funded_at,
        arbitrator=t.arbitrator if t.arbitrator.lower() != ZERO_ADDRESS else None,
        status=AWAITING_FUNDING,
    )


# --------------------------------------------------------------------------------------- presentation


def webhook_data(order_id: str, currency: str | None, t: Transition) -> dict[str, Any]:
    """The ``data`` of an order webhook: the order right after the transition (amounts as strings)."""
    p, ev = t.after, t.event
    data: dict[str, Any] = {
        "order_id": order_id,
        "status": p.status,
        "previous_status": t.previous_status,
        "tx_hash": ev.tx_hash,
        "block_number": ev.block_number,
        "block_time": rfc3339(ev.block_time),
        "currency": currency,
        "amount": None if p.terms is None else str(p.terms.amount),
        "release_at": rfc3339(p.release_at),
        "frozen_until": rfc3339(p.frozen_until),
    }
    if p.disputed_at is not None:
        data["disputed_at"] = rfc3339(p.disputed_at)
        data["response_deadline"] = rfc3339(p.response_deadline)
        data["arbitration_deadline"] = rfc3339(p.arbitration_deadline)
    if p.closed_at is not None:
        data["split"] = {
            "buyer_refund": str(p.buyer_refund or 0),
            "commission": str(p.commission or 0),
            "tax": str(p.tax or 0),
            "seller_net": str(p.seller_net or 0),
        }
        data["closed_at"] = rfc3339(p.closed_at)
    if p.refund_reason is not None:
        data["refund_reason"] = p.refund_reason
    if p.external:
        assert p.terms is not None
        data["arbitration"] = arbitration_data(p.terms.arbitrator, p.dispute_id, p.ruling, p.ruled_at)
    return data


def arbitration_data(
    arbitrator: str, dispute_id: int | None, ruling: int | None, ruled_at: int | None
) -> dict[str, Any]:
    """An ERC-792 order's dispute as the API and webhooks show it: the arbitrator, its dispute id (a decimal
    string: the arbitrator's own number), its ruling (0..10) and the buyer's share that ruling gives."""
    return {
        "arbitrator": arbitrator,
        "dispute_id": None if dispute_id is None else str(dispute_id),
        "ruling": ruling,
        "ruling_buyer_share_bps": None if ruling is None else ruling_share_bps(ruling),
        "ruled_at": rfc3339(ruled_at),
    }


def timeline_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of an event worth showing: no order id, no raw state word, amounts as strings."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key in ("orderId", "state", "terms") or key.startswith("_"):
            continue
        out[key] = str(as_int(value)) if key in AMOUNT_ARGS else value
    if "state" in args:
        out["status"] = OrderState.unpack(as_int(args["state"])).status.name.lower()
    if name == "OrderFunded":
        terms = terms_from_args(args["terms"])
        out.update(buyer=terms.buyer, seller=terms.seller, token=terms.token, amount=str(terms.amount))
    if name == "OrderRefunded":
        out["reason"] = RefundReason(as_int(args["reason"])).name.lower()
    if name == "RulingRecorded":
        out["disputeID"] = str(as_int(args["disputeID"]))
        out["buyer_share_bps"] = ruling_share_bps(as_int(args["ruling"]))
    return out
