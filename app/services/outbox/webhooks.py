"""Merchant webhooks: an outbox of events, delivered at least once, signed, retried with backoff.

:func:`emit` writes a :class:`~app.db.models.WebhookEvent` and one pending
:class:`~app.db.models.WebhookDelivery` per matching endpoint in the caller's transaction, so an event exists
exactly when the change it reports was committed. :func:`deliver_due` sends what is due:

1. **claim** one due delivery in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
   ``BEGIN IMMEDIATE`` serialises): it becomes ``sending`` with a lease (``next_attempt_at = now + lease``)
   and its attempt counter, which fences the outcome, goes up;
2. **POST** it with no transaction open: JSON body ``{"id", "type", "created", "data"}``, headers
   ``TradeGuard-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`` and ``TradeGuard-Event-Id``;
   5 s timeouts, redirects not followed, only ``http``/``https`` URLs; off a dev chain the host is resolved
   again at send time and the POST goes to that checked public address (DNS rebinding cannot aim it inside);
3. **record** the outcome in a second transaction, with one :class:`~app.db.models.WebhookAttempt` row per
   attempt: a 2xx is ``delivered``; anything else is retried after 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h,
   then every 8 h, the last try exactly ``webhook_retry_hours`` (≥ 72 h) after the event; a failure at or past
   that horizon makes the delivery ``exhausted``.

Delivery is **at least once**: a worker that dies between sending and recording leaves the delivery
``sending``; once its lease runs out another worker sends it again (and logs the lost attempt). Receivers must
deduplicate by the event id (``id`` in the body, ``TradeGuard-Event-Id`` header), which never changes across
retries. Statuses: ``pending`` → ``sending`` → ``delivered`` | ``pending`` (retry) | ``exhausted``; ``failed``
for an endpoint URL that is not http(s) (never sent), ``cancelled`` when the endpoint was disabled meanwhile.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import pagination
from app.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent, new_id, utcnow
from app.db.session import transaction
from app.domain.encoding import rfc3339
from app.feeds.outbound import SIGNATURE_HEADER, sign_webhook
from app.services.runtime import Runtime

log = logging.getLogger(__name__)

EVENT_ID_HEADER = "TradeGuard-Event-Id"
#: Seconds to wait after the n-th failed attempt (the last value repeats).
BACKOFF_SECONDS = (30, 120, 600, 1800, 3600, 7200, 14400, 28800)
#: How long a claimed delivery belongs to its worker before another may send it again: longer than a normal
#: POST under TIMEOUT, short enough that a killed worker's delivery goes out again within half a minute (a
#: very slow receiver may then get it twice; the attempt counter fences the outcome, receivers dedupe by id).
CLAIM_LEASE = timedelta(seconds=15)
TIMEOUT = httpx.Timeout(5.0)
USER_AGENT = "TradeGuard-Webhooks/1"
#: Payload keys holding token amounts: always decimal strings in JSON.
AMOUNT_KEYS = frozenset({"amount", "buyer_refund", "commission", "tax", "seller_net"})
MAX_LOG_LIMIT = 100
_ERROR_CHARS = 500


def seconds(at: datetime) -> str:
    """RFC 3339 UTC with second precision (``2025-01-02T03:04:05Z``), as webhooks and the log show times."""
    return rfc3339(at.replace(microsecond=0))


def _amounts_as_strings(value: Any, key: str = "") -> Any:
    if isinstance(value, Mapping):
        return {str(k): _amounts_as_strings(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_amounts_as_strings(v, key) for v in value]
    if key in AMOUNT_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def endpoint_types(endpoint: WebhookEndpoint) -> list[str]:
    """The endpoint's event-type filter (a JSON list, or ``{"types": [...]}``); empty means every type."""
    raw: Any = endpoint.event_types
    if isinstance(raw, Mapping):
        raw = raw.get("types", [])
    return [str(t) for t in raw] if isinstance(raw, list) else []


def wants(endpoint: WebhookEndpoint, type_: str) -> bool:
    """Whether ``endpoint`` subscribes to ``type_`` (exact names, ``order.*`` prefixes or ``*``)."""
    types = endpoint_types(endpoint)
    if not types:
        return True
    for t in types:
        if t in ("*", type_) or (t.endswith(".*") and type_.startswith(t[:-1])):
            return True
    return False


def emit(
    session: Session,
    principal_id: str,
    type: str,
    order_id: str | None,
    payload: Mapping[str, Any],
    event_id: str | None = None,
    *,
    now: datetime | None = None,
    new: bool = False,
) -> WebhookEvent:
    """Record an event for a merchant and queue it for each enabled endpoint that wants it.

    Runs in the caller's transaction. With ``event_id`` the call is idempotent: an event that already exists
    is returned as it is and queued nowhere again. Amount fields of ``payload`` become decimal strings.
    ``new``: the caller knows (in this transaction) that ``event_id`` does not exist: it is not looked up.
    """
    if event_id is not None and not new:
        existing = session.get(WebhookEvent, event_id)
        if existing is not None:
            return existing
    created = now or utcnow()
    event = WebhookEvent(
        id=event_id or new_id("evt"),
        principal_id=principal_id,
        type=type,
        order_id=order_id,
        payload=_amounts_as_strings(dict(payload)),
        created_at=created,
    )
    session.add(event)
    session.flush()
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.principal_id == principal_id, WebhookEndpoint.enabled.is_(True))
        .order_by(WebhookEndpoint.id)
    )
    for endpoint in endpoints:
        if wants(endpoint, type):
            session.add(
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    event_id=event.id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=created,
                    created_at=created,
                )
            )
    session.flush()
    return event


def event_body(event: WebhookEvent) -> bytes:
    """The exact bytes POSTed for ``event`` (the same on every retry)."""
    doc = {"id": event.id, "type": event.type, "created": seconds(event.created_at), "data": event.payload}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def backoff(failed_attempts: int) -> timedelta:
    """Wait after the ``failed_attempts``-th failure (1-based)."""
    index = min(max(failed_attempts, 1), len(BACKOFF_SECONDS)) - 1
    return timedelta(seconds=BACKOFF_SECONDS[index])


def url_refusal(url: str) -> str | None:
    """Why ``url`` may not receive webhooks, or None when it may (absolute http or https URL with a host)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"malformed URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"refused: URL scheme {parts.scheme or '(none)'!r} is not http or https"
    if not parts.hostname:
        return "refused: URL has no host"
    return None


@dataclass(frozen=True)
class PinnedTarget:
    """Where a webhook is POSTed: the URL aimed at an address checked just now, with the original host kept
    for the ``Host`` header and TLS (server name and certificate check)."""

    url: str
    host_header: str
    server_name: str


def pin_public_address(url: str) -> PinnedTarget | str:
    """Resolve ``url``'s host now and aim the URL at one of its addresses, if every one is public; else why
    not. Checked at send time as well as at registration: a name that resolved to a public address then may
    resolve to an internal one now (DNS rebinding), and connecting to the address checked (one lookup) leaves
    no second lookup to race."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    addresses = _public_addresses(host)
    if isinstance(addresses, str):
        return addresses
    address = addresses[0]
    userinfo, at, host_port = parts.netloc.rpartition("@")
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = userinfo + at + (literal if parts.port is None else f"{literal}:{parts.port}")
    return PinnedTarget(parts._replace(netloc=netloc).geturl(), host_port, host)


def _public_addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | str:
    """Every address ``host`` resolves to, if all are public; else why not."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        return f"refused: {host!r} does not resolve ({exc})"
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if not address.is_global:
            return f"refused: {host!r} resolves to the internal address {address}"
    return addresses or f"refused: {host!r} does not resolve"


def private_address_refusal(url: str) -> str | None:
    """Why ``url`` must not be registered outside a dev chain: its host resolves to a loopback, private,
    link-local or otherwise internal address (the delivery log would make the service an internal port
    scanner). ``None`` when every address it resolves to is public."""
    found = _public_addresses(urlsplit(url).hostname or "")
    return found if isinstance(found, str) else None


# ---------------------------------------------------------------------------------------------- delivery


@dataclass
class DeliveryReport:
    """What one :func:`deliver_due` pass did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    exhausted: int = 0
    failed: int = 0
    cancelled: int = 0
    delivery_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    attempt: int
    url: str
    secret: str
    event_id: str
    body: bytes
    horizon: datetime
    #: off a dev chain the receiver's address is checked (and pinned) at send time, not only at registration
    check_address: bool = True


def _claim(rt: Runtime, now: datetime, report: DeliveryReport) -> _Claim | Literal["none_due", "settled"]:
    """Take the next due delivery to send, or say that none is due or that this one was settled unsent."""
    with transaction(rt.db) as s:
        delivery = s.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status.in_(("pending", "sending")), WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if delivery is None:
            return "none_due"
        if delivery.status == "sending":
            # its worker took it and never said how it went: it may have been sent, so this is a re-send
            s.add(WebhookAttempt(delivery_id=delivery.id, at=now, error="no outcome recorded (worker lost)"))
        endpoint = s.get(WebhookEndpoint, delivery.endpoint_id)
        event = s.get(WebhookEvent, delivery.event_id)
        assert endpoint is not None and event is not None  # foreign keys
        report.delivery_ids.append(delivery.id)
        if not endpoint.enabled:
            delivery.status, delivery.last_error = "cancelled", "endpoint disabled"
            report.cancelled += 1
            return "settled"
        refusal = url_refusal(endpoint.url)
        if refusal is not None:
            delivery.status, delivery.last_error = "failed", refusal
            s.add(WebhookAttempt(delivery_id=delivery.id, at=now, error=refusal))
            report.failed += 1
            return "settled"
        delivery.status = "sending"
        delivery.attempts += 1
        delivery.next_attempt_at = now + CLAIM_LEASE
        horizon = event.created_at + timedelta(hours=rt.settings.webhook_retry_hours)
        return _Claim(
            delivery.id,
            delivery.attempts,
            endpoint.url,
            endpoint.secret,
            event.id,
            event_body(event),
            horizon,
            check_address=not rt.is_dev,
        )


def _post(client: httpx.Client, claim: _Claim, now: datetime) -> tuple[int | None, str | None, int]:
    """POST one delivery; (status code, error, duration in ms). Never raises for the receiver's faults."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign_webhook(claim.secret, claim.body, int(now.timestamp())),
        EVENT_ID_HEADER: claim.event_id,
    }
    started = time.monotonic()
    code: int | None = None
    error: str | None = None
    target, extensions = claim.url, {}
    if claim.check_address:
        pinned = pin_public_address(claim.url)
        if isinstance(pinned, str):  # an internal address now: not sent, retried like any failure
            return None, pinned[:_ERROR_CHARS], int((time.monotonic() - started) * 1000)
        target, headers["Host"], extensions = (
            pinned.url,
            pinned.host_header,
            {"sni_hostname": pinned.server_name},
        )
    try:
        # stream: only the status line and headers are read, never a body the receiver may make huge
        with client.stream(
            "POST",
            target,
            content=claim.body,
            headers=headers,
            timeout=TIMEOUT,
            follow_redirects=False,
            extensions=extensions,
        ) as response:
            code = response.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
    except (ValueError, OSError) as exc:  # a URL httpx cannot use, a socket-level failure
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
    duration = int((time.monotonic() - started) * 1000)
    if code is not None and not 200 <= code < 300:
        error = f"HTTP {code}"
    return code, error, duration


def _record(
    rt: Runtime,
    claim: _Claim,
    at: datetime,
    result: tuple[int | None, str | None, int],
    report: DeliveryReport,
) -> None:
    code, error, duration = result
    with transaction(rt.db) as s:
        s.add(
            WebhookAttempt(
                delivery_id=claim.delivery_id, at=at, status_code=code, error=error, duration_ms=duration
            )
        )
        delivery = s.get(WebhookDelivery, claim.delivery_id, with_for_update=True)
        if delivery is None or delivery.status != "sending" or delivery.attempts != claim.attempt:
            # our lease ran out and another worker re-claimed it: its outcome is the one that counts
            log.warning("webhook delivery %s: outcome of a lapsed claim only logged", claim.delivery_id)
            return
        delivery.last_status_code = code
        delivery.last_error = error
        if error is None:
            delivery.status, delivery.delivered_at = "delivered", at
            report.delivered += 1
        elif at >= claim.horizon:
            delivery.status = "exhausted"
            report.exhausted += 1
        else:
            delivery.status = "pending"
            delivery.next_attempt_at = min(at + backoff(delivery.attempts), claim.horizon)
            report.retrying += 1


def deliver_due(
    rt: Runtime, client: httpx.Client | None = None, now: datetime | None = None, limit: int = 100
) -> DeliveryReport:
    """Send up to ``limit`` due deliveries, one at a time: claim, POST (no transaction open), record.

    ``now`` fixes the clock (tests); by default each step reads the wall clock.
    """
    report = DeliveryReport()
    http = client  # our own is made for the first delivery: building one loads the CA store (~20 ms CPU)
    try:
        for _ in range(limit):
            claim = _claim(rt, now or utcnow(), report)
            if claim == "none_due":
                break
            if not isinstance(claim, _Claim):
                continue
            report.attempted += 1
            if http is None:
                http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
            sent_at = now or utcnow()
            result = _post(http, claim, sent_at)
            _record(rt, claim, now or utcnow(), result, report)
    finally:
        if client is None and http is not None:
            http.close()
    return report


# --------------------------------------------------------------------------------------------- the log


def _iso(at: datetime | None) -> str | None:
    return None if at is None else seconds(at)


def delivery_log(
    session: Session, endpoint_id: str, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """One page of an endpoint's deliveries, newest first, each with its attempts (oldest first), for the API.

    Returns ``{"items": [...], "next_cursor": str | None}``; pass ``next_cursor`` back as ``cursor`` for the
    next page. Each item: ``id``, ``event_id``, ``event_type``, ``order_id``, ``status``, ``attempts``,
    ``next_attempt_at`` (while pending), ``last_status_code``, ``last_error``, ``delivered_at``,
    ``created_at`` and ``log`` (``at``, ``status_code``, ``error``, ``duration_ms`` per attempt); times
    RFC 3339 UTC. The caller checks that the endpoint belongs to whoever asks.
    """
    limit = max(1, min(limit, MAX_LOG_LIMIT))
    query = pagination.after(
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id),
        WebhookDelivery.created_at,
        WebhookDelivery.id,
        cursor,
    )
    rows = [(d, e) for d, e in session.execute(query.limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    attempts: dict[str, list[dict[str, Any]]] = {d.id: [] for d, _ in rows}
    if rows:
        for a in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.id)
        ):
            attempts[a.delivery_id].append(
                {
                    "at": _iso(a.at),
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                }
            )
    items = [
        {
            "id": d.id,
            "event_id": e.id,
            "event_type": e.type,
            "order_id": e.order_id,
            "status": d.status,
            "attempts": d.attempts,
            "next_attempt_at": _iso(d.next_attempt_at) if d.status == "pending" else None,
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "delivered_at": _iso(d.delivered_at),
            "created_at": _iso(d.created_at),
            "log": attempts[d.id],
        }
        for d, e in rows
    ]
    next_cursor = pagination.encode(rows[-1][0].created_at, rows[-1][0].id) if more else None
    return {"items": items, "next_cursor": next_cursor}


__all__ = [
    "BACKOFF_SECONDS",
    "DeliveryReport",
    "PinnedTarget",
    "backoff",
    "deliver_due",
    "delivery_log",
    "emit",
    "event_body",
    "pin_public_address",
    "url_refusal",
    "wants",
]
