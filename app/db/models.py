"""Database tables. The database is the record of everything off chain; Redis only wakes workers.

Amounts are ``uint256`` base units stored as decimal strings (:class:`Uint256`), so SQLite and PostgreSQL
keep them exactly. Times are timezone-aware UTC datetimes; chain times are unix seconds (``int``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.logs import request_id


def utcnow() -> datetime:
    return datetime.now(UTC)


def current_request_id() -> str | None:
    """The id of the HTTP request this row is written for (:data:`app.logs.request_id`), if any: intents and
    timeline entries keep it, so an operator can follow a request into its intents and their transactions."""
    return request_id.get()


def new_id(prefix: str) -> str:
    """A sortable-enough random id with a type prefix (``ord_…``, ``evt_…``)."""
    return f"{prefix}_{uuid.uuid4().hex}"


class Uint256(TypeDecorator[int]):
    """A non-negative integer below 2**256, stored as its decimal string."""

    impl = String(78)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not 0 <= int(value) < 2**256:
            raise ValueError(f"uint256 out of range: {value}")
        return str(int(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime, dict[str, Any]: JSON}


# --- principals and access ---------------------------------------------------------------------------------


class Principal(Base):
    """Someone who calls the API: one role and (except admins) one chain address."""

    __tablename__ = "principals"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pr"))
    role: Mapped[str] = mapped_column(String(16), index=True)
    address: Mapped[str | None] = mapped_column(String(42), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKey(Base):
    """An API key, stored only as its SHA-256 (keys are 256-bit random, so a fast hash is enough)."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class IdempotencyRecord(Base):
    """The stored answer to a POST made with an ``Idempotency-Key`` (kept at least 24 h)."""

    __tablename__ = "idempotency_keys"
    principal_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


# --- orders -----------------------------------------------------------------------------------------------


class Order(Base):
    """An order: the buyer-signed terms, and the projection of its on-chain state (written by the indexer)."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("seller", "order_ref"),
        Index("ix_orders_sweep", "status", "release_at"),
    )
    id: Mapped[str] = mapped_column(String(66), primary_key=True)  # 0x + orderId hex
    order_ref: Mapped[str] = mapped_column(String(200))
    merchant_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    buyer: Mapped[str] = mapped_column(String(42), index=True)
    seller: Mapped[str] = mapped_column(String(42), index=True)
    token: Mapped[str] = mapped_column(String(42))
    currency: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Uint256)
    commission_bps: Mapped[int] = mapped_column(Integer)
    tax_bps: Mapped[int] = mapped_column(Integer)
    tax_recipient: Mapped[str] = mapped_column(String(42))
    destination_country: Mapped[str] = mapped_column(String(2))
    goods_category: Mapped[str] = mapped_column(String(40))
    ship_by: Mapped[int] = mapped_column(BigInteger)
    deliver_by: Mapped[int] = mapped_column(BigInteger)
    hold_seconds: Mapped[int] = mapped_column(Integer)
    valid_until: Mapped[int] = mapped_column(BigInteger)
    #: SPEC §4.1: the ERC-792 arbitrator the buyer signs (None: the platform's arbitrators), and the exact
    #: ``extraData`` its ``createDispute`` is given (its keccak is the signed ``arbitratorExtraDataHash``)
    arbitrator: Mapped[str | None] = mapped_column(String(42))
    arbitrator_extra_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(24), default="awaiting_funding", index=True)
    state_word: Mapped[int | None] = mapped_column(Uint256)
    funded_at: Mapped[int | None] = mapped_column(BigInteger)
    release_at: Mapped[int | None] = mapped_column(BigInteger)
    disputed_at: Mapped[int | None] = mapped_column(BigInteger)
    frozen_until: Mapped[int | None] = mapped_column(BigInteger)
    response_deadline: Mapped[int | None] = mapped_column(BigInteger)
    arbitration_deadline: Mapped[int | None] = mapped_column(BigInteger)
    seller_evidence: Mapped[bool] = mapped_column(Boolean, default=False)
    buyer_refund: Mapped[int | None] = mapped_column(Uint256)
    commission: Mapped[int | None] = mapped_column(Uint256)
    tax: Mapped[int | None] = mapped_column(Uint256)
    seller_net: Mapped[int | None] = mapped_column(Uint256)
    closed_at: Mapped[int | None] = mapped_column(BigInteger)
    #: ERC-792 (indexed): the arbitrator's dispute id, its ruling (0..10) and when it was recorded
    dispute_id: Mapped[int | None] = mapped_column(Uint256)
    ruling: Mapped[int | None] = mapped_column(Integer)
    ruled_at: Mapped[int | None] = mapped_column(BigInteger)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OrderColumns(Protocol):
    """What a view reads of an order: a loaded :class:`Order`, or a row of the ``orders`` table's columns
    (which has each column as an attribute). A view that only reads has no use for the ORM object, whose
    loading cost about as much again as the query (issue 8)."""

    id: str
    order_ref: str
    merchant_id: str
    buyer: str
    seller: str
    token: str
    currency: str
    amount: int
    commission_bps: int
    tax_bps: int
    tax_recipient: str
    destination_country: str
    goods_category: str
    ship_by: int
    deliver_by: int
    hold_seconds: int
    valid_until: int
    arbitrator: str | None
    arbitrator_extra_data: bytes | None
    status: str
    state_word: int | None
    funded_at: int | None
    release_at: int | None
    disputed_at: int | None
    frozen_until: int | None
    buyer_refund: int | None
    commission: int | None
    tax: int | None
    seller_net: int | None
    closed_at: int | None
    dispute_id: int | None
    ruling: int | None
    ruled_at: int | None
    needs_review: bool
    created_at: datetime


class Shipment(Base):
    """A shipment the merchant registered: how logistics events find their order."""

    __tablename__ = "shipments"
    __table_args__ = (UniqueConstraint("carrier", "tracking_number"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("shp"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(40))
    tracking_number: Mapped[str] = mapped_column(String(100))
    tracking_hash: Mapped[str] = mapped_column(String(66))
    sscc: Mapped[str | None] = mapped_column(String(18), index=True)
    destination: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TimelineEntry(Base):
    """An off-chain fact about an order (on-chain facts come from :class:`ChainEvent`)."""

    __tablename__ = "timeline"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(128), default=current_request_id)


class Evidence(Base):
    """An evidence file: the bytes are kept here; only their SHA-256 goes on chain."""

    __tablename__ = "evidence"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evd"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    party: Mapped[str] = mapped_column(String(42))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(66))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    intent_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- chain index ------------------------------------------------------------------------------------------


class ChainEvent(Base):
    """An escrow event as indexed (behind the confirmation depth); rows of orphaned blocks are deleted."""

    __tablename__ = "chain_events"
    __table_args__ = (
        UniqueConstraint("tx_hash", "log_index"),
        # an order's event of one kind, and an ERC-792 ruling's or evidence's dispute among the ``Dispute``
        # events: searches, not reads of every indexed event (name alone would be chosen for both: a scan)
        Index("ix_chain_events_name_order", "name", "order_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    block_hash: Mapped[str] = mapped_column(String(66))
    block_time: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66), index=True)
    log_index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str | None] = mapped_column(String(66), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: when the indexer stored it (wall clock; None for rows indexed before migration 0005): a timeline sorts
    #: every fact by when the service recorded it (block time and wall clock differ: a dev chain's moves)
    recorded_at: Mapped[datetime | None] = mapped_column(default=utcnow)


class IndexedBlock(Base):
    """Hash of each block the indexer has processed (recent ones), to notice a reorg."""

    __tablename__ = "indexed_blocks"
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))
    parent_hash: Mapped[str] = mapped_column(String(66))


class KeyValue(Base):
    """Small named values: the indexer cursor, the deployment record, the relayer nonce."""

    __tablename__ = "kv"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- logistics inbox --------------------------------------------------------------------------------------


class InboxItem(Base):
    """A logistics input exactly as received, stored before the service answers."""

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("source", "dedupe_key"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cap"))
    source: Mapped[str] = mapped_column(String(20))  # epcis | aftership | easypost | attestation
    dedupe_key: Mapped[str] = mapped_column(String(200))
    principal_id: Mapped[str | None] = mapped_column(String(40), index=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100), default="application/json")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="received", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column()


class LogisticsEvent(Base):
    """One event read out of an inbox item (an EPCIS event or a carrier status), with its content hash."""

    __tablename__ = "logistics_events"
    __table_args__ = (UniqueConstraint("source", "content_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inbox.id"), index=True)
    source: Mapped[str] = mapped_column(String(20))
    order_id: Mapped[str | None] = mapped_column(String(66), index=True)
    event_id: Mapped[str | None] = mapped_column(String(300), index=True)
    cbv_hash: Mapped[str | None] = mapped_column(String(120))
    content_hash: Mapped[str] = mapped_column(String(66))
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    event_time: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(60))  # bizStep or carrier status
    milestone: Mapped[int | None] = mapped_column(Integer)
    retracted: Mapped[bool] = mapped_column(Boolean, default=False)
    intent_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- relayer outbox ---------------------------------------------------------------------------------------


class Intent(Base):
    """Something the relayer must get on chain, exactly once (``intent_hash`` is unique).

    pending → sent (nonce + signed raw tx stored before broadcast) → confirmed | failed.
    """

    __tablename__ = "intents"
    #: a sender's nonces from a point on (the nonce allocator's look-up of the nonces its transactions hold):
    #: a search, not a read of every intent ever sent
    __table_args__ = (Index("ix_intents_sender_nonce", "sender", "nonce"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("int"))
    kind: Mapped[str] = mapped_column(String(24))
    order_id: Mapped[str | None] = mapped_column(String(66), index=True)
    intent_hash: Mapped[str] = mapped_column(String(66), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    sender: Mapped[str | None] = mapped_column(String(42))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66), index=True)
    raw_tx: Mapped[bytes | None] = mapped_column(LargeBinary)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    #: The gas limit (margin included) estimated when the intent was checked, before it was stored: a
    #: transaction of this intent alone goes out with it, without estimating again.
    gas_limit: Mapped[int | None] = mapped_column(BigInteger, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_name: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: when the recorded transaction (``tx_hash``) was signed: one stuck longer is replaced by fee
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    #: earlier transactions at the same nonce this one replaced (any of them may be the one mined)
    replaced_hashes: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    #: the X-Request-Id of the request that submitted it (None when a sweep wrote it on its own)
    request_id: Mapped[str | None] = mapped_column(String(128), default=current_request_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PermitClaim(Base):
    """An EIP-2612 permit nonce taken by a pending ``fund`` intent: a permit acts once, so a second funding
    signed at the same nonce is refused at submission instead of failing on chain later."""

    __tablename__ = "permit_claims"
    token: Mapped[str] = mapped_column(String(42), primary_key=True)
    owner: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    intent_id: Mapped[str] = mapped_column(String(40), index=True)
    order_id: Mapped[str] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- merchant webhooks ------------------------------------------------------------------------------------


class WebhookEndpoint(Base):
    """A merchant's webhook URL. The signing secret must be usable to sign, so it is stored as given."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("we"))
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    event_types: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """An event for a merchant (stable id), written in the same transaction as the change it reports."""

    __tablename__ = "webhook_events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    type: Mapped[str] = mapped_column(String(60))
    order_id: Mapped[str | None] = mapped_column(String(66))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event to one endpoint; retried with backoff until delivered or the retry horizon passes."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whd"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


# --- web console ------------------------------------------------------------------------------------------


class WebSession(Base):
    """A console sign-in: an API key exchanged for a session cookie (only the cookie's SHA-256 is stored).

    A row, not a signed cookie, so that signing out (or disabling the principal) ends the session at once
    on every server, whatever a copy of the cookie says.
    """

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of the cookie value
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column()
