"""What the web console shows, read through the same rules as the API (object-level access included).

The console (``app/web``) is an API client of the services: it never opens a database session or talks to
the chain itself. Each function here opens its own read transaction (no network call inside a write one)
and answers plain data: amounts as ``int`` base units, times as unix seconds or RFC 3339 strings.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.db.models import ChainEvent, Evidence, InboxItem, Order, Principal, Shipment
from app.db.session import read_transaction
from app.errors import InvalidInput, NotFound
from app.services import chain_guard, dev_tools, principals
from app.services.inbox import ingestion
from app.services.runtime import Runtime
from app.services.settlement import settlements
from app.services.trade import corridors, order_views, orders, platform
from app.services.trade.orders import require_role

DAY = 86_400
#: The lifecycle as the order page draws it: the happy path, then where a dispute or refund ends.
HAPPY_PATH = ("awaiting_funding", "funded", "shipped", "delivered", "released")
STATUSES = (*HAPPY_PATH, "disputed", "refunded", "resolved")
#: Dashboard cards, in order.
CARDS = ("in_escrow", "due_24h", "released_week", "disputed", "refunded")
CALENDAR_DAYS = 14


# --- orders ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrdersPage:
    """One page of the caller's orders (API views) and the cursor of the next page."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def orders_page(
    rt: Runtime, me: Principal, *, status: str | None = None, cursor: str | None = None, limit: int = 20
) -> OrdersPage:
    """The orders ``me`` may list, newest first (the API's ``GET /v1/orders``)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput("invalid_status", f"status must be one of {', '.join(STATUSES)}")
    page = order_views.page(rt, me, max(1, min(limit, order_views.MAX_PAGE)), cursor, status)
    return OrdersPage(page["items"], page["next_cursor"])


def order_view(rt: Runtime, me: Principal, oid: str) -> dict[str, Any]:
    """An order as ``me`` may see it (others' are :class:`NotFound`): the API's view with its timeline
    (``GET /v1/orders/{id}``), its evidence (``GET …/evidence``, each item marked buyer or merchant side),
    shipments and dispute deadlines."""
    view = order_views.detail(rt, me, oid)
    evidence = order_views.evidence_list(rt, me, oid)["items"]
    for item in evidence:
        item["side"] = "buyer" if str(item["party"]).lower() == str(view["buyer"]).lower() else "merchant"
    view["evidence"] = evidence
    with read_transaction(rt.db) as s:
        order = orders.get_visible(s, me, oid)
        view["shipments"] = [
            {
                "carrier": sh.carrier,
                "tracking_number": sh.tracking_number,
                "sscc": sh.sscc,
                "destination": sh.destination,
            }
            for sh in s.scalars(select(Shipment).where(Shipment.order_id == order.id))
        ]
        view["response_deadline"] = order.response_deadline
        view["arbitration_deadline"] = order.arbitration_deadline
        view["release_at_unix"] = order.release_at
    return view


def evidence_file(rt: Runtime, me: Principal, oid: str, evidence_id: str) -> tuple[bytes, str, str]:
    """The stored bytes of one evidence file, its content type and its recorded SHA-256."""
    ev = order_views.evidence_file(rt, me, oid, evidence_id)
    return ev.data, ev.content_type, ev.sha256


def order_version(rt: Runtime, me: Principal, oid: str) -> str:
    """A short fingerprint of what the order page shows: live updates redraw the page when it changes."""
    with read_transaction(rt.db) as s:
        order = orders.get_visible(s, me, oid)
        events = s.scalars(select(ChainEvent.id).where(ChainEvent.order_id == order.id)).all()
        evidence = s.scalars(select(Evidence.id).where(Evidence.order_id == order.id)).all()
        basis = f"{order.status}|{order.updated_at.isoformat()}|{len(events)}|{len(evidence)}"
        return hashlib.sha256(basis.encode()).hexdigest()[:16]


# --- merchant settlement dashboard -----------------------------------------------------------------------


@dataclass
class Dashboard:
    """Per-currency cards (amounts in base units) and the 14-day release calendar."""

    as_of: int
    cards: dict[str, dict[str, int]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per currency, the amount due to release on each of the next 14 days (day 0 = the next 24 h).
    calendar: dict[str, list[int]] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=dict)


def dashboard(rt: Runtime, me: Principal, now: int) -> Dashboard:
    """The merchant's settlement dashboard at chain time ``now``.

    - in escrow: funded, shipped or delivered (not yet released), gross amounts;
    - due in the next 24 h: delivered with ``release_at`` within 24 h (or already due), seller net;
    - released this week: closed released or resolved in the last 7 days, seller net;
    - disputed, refunded: gross amounts (refunded: the last 7 days).
    The calendar sums the seller net of delivered orders by day of ``release_at`` over the next 14 days.
    """
    require_role(me, "read settlements", "merchant", "admin")
    board = Dashboard(as_of=now)
    query = select(Order)
    if me.role != "admin":
        query = query.where(Order.merchant_id == me.id)
    zero = dict.fromkeys(CARDS, 0)
    cards: dict[str, dict[str, int]] = defaultdict(lambda: dict(zero))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict(zero))
    calendar: dict[str, list[int]] = defaultdict(lambda: [0] * CALENDAR_DAYS)

    def add(currency: str, card: str, amount: int) -> None:
        cards[currency][card] += amount
        counts[currency][card] += 1

    week_ago = now - 7 * DAY
    with read_transaction(rt.db) as s:
        for order in s.scalars(query):
            split, _final = orders.split_of(order)
            c = order.currency
            if order.status in ("funded", "shipped", "delivered"):
                add(c, "in_escrow", order.amount)
            if order.status == "delivered" and order.release_at is not None:
                day = max(0, (order.release_at - now) // DAY)
                if order.release_at <= now + DAY:
                    add(c, "due_24h", split.seller_net)
                if day < CALENDAR_DAYS:
                    calendar[c][day] += split.seller_net
            if order.status in ("released", "resolved") and (order.closed_at or 0) >= week_ago:
                add(c, "released_week", split.seller_net)
            if order.status == "disputed":
                add(c, "disputed", order.amount)
            if order.status == "refunded" and (order.closed_at or 0) >= week_ago:
                add(c, "refunded", order.amount)
            cards[c]  # noqa: B018 - every currency with an order gets its cards, even all zero
            counts[c]  # noqa: B018
    board.cards = dict(cards)
    board.counts = dict(counts)
    board.calendar = {c: calendar[c] for c in cards}
    board.decimals = {t.symbol: t.decimals for t in rt.tokens.values()}
    return board


# --- arbitrator ------------------------------------------------------------------------------------------


def dispute_queue(rt: Runtime, me: Principal) -> list[dict[str, Any]]:
    """Open disputes, the nearest deadline first (the seller's response window, then arbitration)."""
    require_role(me, "rule on disputes", "arbitrator", "admin")
    with read_transaction(rt.db) as s:
        rows = list(s.scalars(select(Order).where(Order.status == "disputed")))
    far = 2**63

    def deadline(o: Order) -> int:
        return min(d for d in (o.arbitration_deadline, o.response_deadline, far) if d is not None)

    rows.sort(key=lambda o: (deadline(o), o.id))
    out = []
    for o in rows:
        view = orders.public(o)
        view["deadline"] = None if deadline(o) == far else deadline(o)
        view["seller_evidence"] = o.seller_evidence
        out.append(view)
    return out


# --- oracle ----------------------------------------------------------------------------------------------


def captures(rt: Runtime, me: Principal, limit: int = 50) -> list[dict[str, Any]]:
    """The caller's own logistics inputs (an admin sees all), newest first, with status and errors."""
    require_role(me, "read captures", "oracle", "admin")
    query = select(InboxItem).order_by(InboxItem.received_at.desc(), InboxItem.id.desc()).limit(limit)
    if me.role != "admin":
        query = query.where(InboxItem.principal_id == me.id)
    with read_transaction(rt.db) as s:
        return [ingestion.capture_public(item) for item in s.scalars(query)]


# --- admin -----------------------------------------------------------------------------------------------


def principal_list(rt: Runtime, me: Principal) -> list[dict[str, Any]]:
    """Every principal (admin only), newest first, with how many live API keys it has."""
    from app.db.models import ApiKey

    require_role(me, "list principals", "admin")
    with read_transaction(rt.db) as s:
        live: dict[str, int] = defaultdict(int)
        for key in s.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))):
            live[key.principal_id] += 1
        return [
            {
                "id": p.id,
                "role": p.role,
                "address": p.address,
                "name": p.name,
                "disabled": p.disabled,
                "live_keys": live[p.id],
                "created_at": p.created_at,
            }
            for p in s.scalars(select(Principal).order_by(Principal.created_at.desc(), Principal.id.desc()))
        ]


def create_principal(rt: Runtime, me: Principal, role: str, address: str | None, name: str) -> str:
    """A new principal and its API key (returned once, never stored)."""
    require_role(me, "create principals", "admin")
    return principals.register(rt, role, address or None, name).api_key


def disable_principal(rt: Runtime, me: Principal, principal_id: str) -> None:
    """Disable a principal and revoke its keys (which also ends its console sessions)."""
    require_role(me, "disable principals", "admin")
    if principal_id == me.id:
        raise InvalidInput("cannot_disable_self", "an admin cannot disable itself")
    principals.disable_by_id(rt, principal_id)


def corridor_list(rt: Runtime) -> list[dict[str, Any]]:
    return [c.as_json() for c in corridors.current(rt)]


def store_corridors(rt: Runtime, me: Principal, items: list[dict[str, Any]]) -> None:
    require_role(me, "configure corridors", "admin")
    corridors.replace_all(rt, items)


# --- dev chains only -------------------------------------------------------------------------------------


def _require_dev(rt: Runtime) -> None:
    if not rt.is_dev:
        raise NotFound("route", "dev tools (TRADEGUARD_DEV is off or this is not a dev chain)")


def dev_faucet(rt: Runtime, address: str, currency: str, amount: int) -> str:
    """Dev chains only: mint test tokens to ``address`` (the API's ``POST /v1/dev/faucet``); the tx hash."""
    _require_dev(rt)
    if not 0 < amount < 2**128:
        raise InvalidInput("invalid_amount", "amount must be 1..2^128-1 base units")
    return dev_tools.faucet(rt, currency, address, amount)


def dev_advance_time(rt: Runtime, me: Principal, seconds: int) -> int:
    """Dev chains only (admin): move the chain clock forward; the new chain time. The caller wakes the
    keeper, as the API's ``POST /v1/dev/advance-time`` does."""
    _require_dev(rt)
    require_role(me, "move the dev clock", "admin")
    if not 0 < seconds <= 365 * DAY:
        raise InvalidInput("invalid_seconds", "seconds must be 1 s..365 days")
    return dev_tools.advance_time(rt, seconds)


def chain_time(rt: Runtime) -> int:
    """The chain's current time (unix seconds)."""
    chain_guard.require(rt)
    return rt.chain.now(rt.settings.head_cache_seconds)


def chain_info(rt: Runtime) -> dict[str, Any]:
    """What a page needs to sign: the EIP-712 domain and types, tokens, chain time (``GET /v1/chain``)."""
    return platform.public_info(rt)


def settlements_csv(rt: Runtime, me: Principal) -> str:
    """The merchant's settlement pipeline as CSV (the API's ``GET /v1/settlements``, ``text/csv``)."""
    require_role(me, "read settlements", "merchant", "admin")
    now = chain_time(rt)
    with read_transaction(rt.db) as s:
        report = settlements.pipeline(s, me, now)
    return settlements.to_csv(report)


def signing_documents(rt: Runtime, me: Principal, oid: str) -> dict[str, Any]:
    """The typed data the buyer signs to fund ``oid`` (``GET /v1/orders/{id}/signing``)."""
    return order_views.signing(rt, me, oid)


def dev_sign_typed_data(rt: Runtime, me: Principal, address: str, document: dict[str, Any]) -> str:
    """Dev chains only: the console's dev wallet signs EIP-712 ``document`` for the caller's own address,
    when that address is one of the dev chain's well-known demo accounts (their keys are public: anvil
    unlocks the same accounts). Never available on another chain; never for another principal's address."""
    from app.chain import eip712

    _require_dev(rt)
    if me.address is None or address.lower() != me.address.lower():
        raise InvalidInput(
            "not_your_address", "the dev wallet signs only for the signed-in principal's address"
        )
    account = next((a for a in rt.dev_accounts.values() if a.address.lower() == address.lower()), None)
    if account is None:
        raise InvalidInput("not_a_dev_account", f"{address} is not one of the dev chain's demo accounts")
    if rt.chain.backend != "embedded":  # the dev node's own wallet (anvil unlocks these accounts)
        return rt.chain.sign_typed_data_v4(account.address, eip712.jsonable(document))
    # the in-process chain (eth-tester) has no wallet: the same well-known key, signed here
    return "0x" + eip712.sign_typed_data(account.key, document).hex()


def dev_send_transaction(rt: Runtime, me: Principal, tx: dict[str, Any]) -> str:
    """Dev chains only: the console's dev wallet sends a transaction the API answered for the caller's own
    wallet (a refund, a withdrawal, a freeze) from the caller's address, when that address is one of the
    dev chain's demo accounts: the dev node's own ``eth_sendTransaction`` (anvil unlocks those accounts;
    eth-tester holds the same keys). Only to the escrow, without value, on this chain. The hash; the
    indexer picks the result up like any other transaction's."""
    _require_dev(rt)
    sender, to = str(tx.get("from", "")), str(tx.get("to", ""))
    if me.address is None or sender.lower() != me.address.lower():
        raise InvalidInput(
            "not_your_address", "the dev wallet sends only from the signed-in principal's address"
        )
    if not any(a.address.lower() == sender.lower() for a in rt.dev_accounts.values()):
        raise InvalidInput("not_a_dev_account", f"{sender} is not one of the dev chain's demo accounts")
    if to.lower() != rt.escrow.address.lower():
        raise InvalidInput("not_the_escrow", "the dev wallet sends only the escrow's transactions")
    if int(str(tx.get("value", "0x0")), 16) != 0:
        raise InvalidInput("value_not_allowed", "the escrow's wallet transactions carry no value")
    chain_id = tx.get("chainId")  # an int as the API answers it, or EIP-1193's hex string
    if isinstance(chain_id, str):
        chain_id = int(chain_id, 16)
    if chain_id is not None and chain_id != rt.chain.chain_id:
        raise InvalidInput("wrong_chain", f"the transaction is for chain {chain_id}, not this one")
    fields: dict[str, Any] = {"from": sender, "to": to, "data": str(tx.get("data", "0x")), "value": 0}
    if tx.get("gas"):
        fields["gas"] = int(str(tx["gas"]), 16)
    return rt.chain.send_from_dev_account(fields)
