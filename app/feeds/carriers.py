"""Carrier webhooks (SPEC §5): AfterShip and EasyPost, each verified by its own signature scheme.

Verify first, on the raw body exactly as received (re-serialised JSON would not match), then parse. Both
parsers give a :class:`CarrierEvent` whose statuses are mapped onto the attestation milestones:

====================  ==========================================  ====================================
milestone             AfterShip ``msg.tag``                       EasyPost ``result.status``
====================  ==========================================  ====================================
SHIPPED               InTransit, OutForDelivery, AttemptFail,     in_transit, out_for_delivery,
                      AvailableForPickup                          available_for_pickup
DELIVERED             Delivered                                   delivered
none (timeline fact)  InfoReceived, Pending, Exception, Expired,  pre_transit, return_to_sender, failure,
                      any other tag                               cancelled, error, unknown
====================  ==========================================  ====================================

A failed attempt or a parcel waiting at a pickup point has left the merchant, so it proves SHIPPED (and keeps
a ship-by timeout from refunding an order that did ship); only ``Delivered`` / ``delivered`` proves DELIVERED.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import rfc8785

from app.domain.order_state import Milestone
from app.errors import ConfigError, FeedError
from app.feeds.epcis import parse_timestamp
from app.feeds.hashing import canonical_bytes, load_json

MAX_BODY_BYTES = 1024 * 1024

AFTERSHIP_SIGNATURE_HEADER = "aftership-hmac-sha256"
EASYPOST_SIGNATURE_HEADER = "X-Hmac-Signature"
#: EasyPost's newer scheme: the signature also covers a timestamp and the request path (replay protection).
EASYPOST_SIGNATURE_V2_HEADER = "X-Hmac-Signature-v2"
EASYPOST_TIMESTAMP_HEADER = "X-Timestamp"
EASYPOST_PATH_HEADER = "X-Path"
#: A v2 signature is accepted this long either side of our clock (a replay within it is a duplicate anyway).
EASYPOST_TOLERANCE_SECONDS = 300
_EASYPOST_PREFIX = "hmac-sha256-hex="

AFTERSHIP_EVENTS = frozenset({"tracking_update"})
EASYPOST_EVENTS = frozenset({"tracker.created", "tracker.updated"})

AFTERSHIP_MILESTONES = {
    "InTransit": Milestone.SHIPPED,
    "OutForDelivery": Milestone.SHIPPED,
    "AttemptFail": Milestone.SHIPPED,
    "AvailableForPickup": Milestone.SHIPPED,
    "Delivered": Milestone.DELIVERED,
}
EASYPOST_MILESTONES = {
    "in_transit": Milestone.SHIPPED,
    "out_for_delivery": Milestone.SHIPPED,
    "available_for_pickup": Milestone.SHIPPED,
    "delivered": Milestone.DELIVERED,
}


@dataclass(frozen=True)
class CarrierEvent:
    """One carrier status update, normalised, with its stored bytes and content hash.

    ``source`` is the webhook provider (``aftership``, ``easypost``); ``carrier`` the normalised carrier
    slug (``ups``, ``fedex``); ``status`` the provider's raw status; ``event_time`` the unix time of the
    carrier scan behind the status. ``test_mode`` marks EasyPost test-mode events, which describe simulated
    parcels and must never move money. ``canonical`` is the RFC 8785 form of the whole webhook body,
    ``content_hash`` its SHA-256.
    """

    source: str
    event_type: str
    carrier: str
    event_id: str
    tracking_number: str
    status: str
    milestone: Milestone | None
    event_time: int
    test_mode: bool
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)
    canonical: bytes = field(repr=False)
    content_hash: bytes


def normalise_carrier(name: str) -> str:
    """Carrier slug used in ``trackingHash``: trimmed, lower case, inner blanks and underscores as ``-``."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def normalise_tracking_number(value: str) -> str:
    """Tracking number used in ``trackingHash``: upper case, without any whitespace."""
    return re.sub(r"\s+", "", value).upper()


def verify_aftership(body: bytes, header_value: str | None, secret: str) -> None:
    """Check ``aftership-hmac-sha256``: base64 of HMAC-SHA256(secret, raw body), compared in constant time.

    Raises :class:`FeedError` ``bad_signature`` when the header is missing or does not match, and
    :class:`ConfigError` for an empty secret (an HMAC anyone can compute proves nothing).
    """
    key = _key(secret, "AfterShip")
    if not header_value:
        raise FeedError("bad_signature", f"missing {AFTERSHIP_SIGNATURE_HEADER} header")
    try:
        given = base64.b64decode(header_value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FeedError("bad_signature", f"{AFTERSHIP_SIGNATURE_HEADER} is not base64") from exc
    if not hmac.compare_digest(hmac.digest(key, body, "sha256"), given):
        raise FeedError("bad_signature", f"{AFTERSHIP_SIGNATURE_HEADER} does not match the body")


def verify_easypost(body: bytes, header_value: str | None, secret: str) -> None:
    """Check EasyPost's ``X-Hmac-Signature``: ``hmac-sha256-hex=`` + hex HMAC-SHA256(secret, raw body).

    The secret is NFKD-normalised and UTF-8 encoded, as EasyPost's client libraries do. Raises
    :class:`FeedError` ``bad_signature`` when the header is missing or does not match, and
    :class:`ConfigError` for an empty secret.
    """
    key = _key(unicodedata.normalize("NFKD", secret), "EasyPost")
    if not header_value:
        raise FeedError("bad_signature", f"missing {EASYPOST_SIGNATURE_HEADER} header")
    value = header_value.strip()
    if not value.lower().startswith(_EASYPOST_PREFIX):
        raise FeedError("bad_signature", f"{EASYPOST_SIGNATURE_HEADER} must start with {_EASYPOST_PREFIX}")
    try:
        given = bytes.fromhex(value[len(_EASYPOST_PREFIX) :])
    except ValueError as exc:
        raise FeedError("bad_signature", f"{EASYPOST_SIGNATURE_HEADER} is not hex") from exc
    if not hmac.compare_digest(hmac.digest(key, body, "sha256"), given):
        raise FeedError("bad_signature", f"{EASYPOST_SIGNATURE_HEADER} does not match the body")


def verify_easypost_request(
    body: bytes, headers: Mapping[str, str], secret: str, *, now: int, method: str = "POST"
) -> None:
    """Check an EasyPost webhook by the best scheme it carries: ``X-Hmac-Signature-v2`` when present, else
    the body-only ``X-Hmac-Signature`` (:func:`verify_easypost`). ``headers`` are keyed in lower case.

    v2 (EasyPost's "Webhook HMAC Validation"): ``X-Timestamp`` is an RFC 2822 date (``Tue, 19 Aug 2025
    20:37:09 -0000``) within :data:`EASYPOST_TOLERANCE_SECONDS` of ``now`` (unix seconds), and the header is
    ``hmac-sha256-hex=`` + hex HMAC-SHA256(secret, timestamp + method + ``X-Path`` + raw body). A request
    that carries a v2 signature is judged by it alone: a bad one is never rescued by a v1 header (no
    downgrade). Raises :class:`FeedError` ``bad_signature``, or :class:`ConfigError` for an empty secret.
    """
    signature = headers.get(EASYPOST_SIGNATURE_V2_HEADER.lower())
    if signature is None:
        verify_easypost(body, headers.get(EASYPOST_SIGNATURE_HEADER.lower()), secret)
        return
    key = _key(unicodedata.normalize("NFKD", secret), "EasyPost")
    timestamp = headers.get(EASYPOST_TIMESTAMP_HEADER.lower())
    path = headers.get(EASYPOST_PATH_HEADER.lower())
    if not timestamp or not path:
        raise FeedError(
            "bad_signature",
            f"{EASYPOST_SIGNATURE_V2_HEADER} needs {EASYPOST_TIMESTAMP_HEADER} and {EASYPOST_PATH_HEADER}",
        )
    try:
        sent = email.utils.parsedate_to_datetime(timestamp)
    except (TypeError, ValueError) as exc:
        raise FeedError("bad_signature", f"{EASYPOST_TIMESTAMP_HEADER} is not an RFC 2822 date") from exc
    if sent.tzinfo is None:  # "-0000": UTC, origin unknown (RFC 2822 §3.3)
        sent = sent.replace(tzinfo=UTC)
    skew = int(sent.timestamp()) - now
    if abs(skew) > EASYPOST_TOLERANCE_SECONDS:
        raise FeedError(
            "bad_signature",
            f"{EASYPOST_TIMESTAMP_HEADER} is {abs(skew)} s from our clock (at most "
            f"{EASYPOST_TOLERANCE_SECONDS} s)",
        )
    value = signature.strip()
    if not value.lower().startswith(_EASYPOST_PREFIX):
        raise FeedError("bad_signature", f"{EASYPOST_SIGNATURE_V2_HEADER} must start with {_EASYPOST_PREFIX}")
    try:
        given = bytes.fromhex(value[len(_EASYPOST_PREFIX) :])
    except ValueError as exc:
        raise FeedError("bad_signature", f"{EASYPOST_SIGNATURE_V2_HEADER} is not hex") from exc
    signed = timestamp.encode() + method.upper().encode() + path.encode() + body
    if not hmac.compare_digest(hmac.digest(key, signed, "sha256"), given):
        raise FeedError("bad_signature", f"{EASYPOST_SIGNATURE_V2_HEADER} does not match the request")


def parse_aftership(body: bytes) -> CarrierEvent:
    """Read an AfterShip tracking webhook (``event``, ``event_id``, ``msg.tracking_number``, ``msg.slug`` …).

    ``event_time`` is the latest checkpoint carrying the current tag (else the latest checkpoint), then
    ``ts``, then ``msg.updated_at``; checkpoint times without a UTC offset are local times and are not used.
    Raises :class:`FeedError` ``malformed`` (not JSON, wrong shape, missing tracking number …) or
    ``unsupported_event`` (any event other than ``tracking_update``).
    """
    doc = _document(body)
    event_type = _required_str(doc, "event", "event")
    if event_type not in AFTERSHIP_EVENTS:
        raise FeedError(
            "unsupported_event", f"AfterShip event {event_type!r} is not a status update", event=event_type
        )
    msg = _required_obj(doc, "msg", "msg")
    tag = _required_str(msg, "tag", "msg.tag")
    checkpoints = [
        (cp.get("tag"), cp.get("checkpoint_time")) for cp in _objects(msg, "checkpoints", "msg.checkpoints")
    ]
    ts = doc.get("ts")
    fallback = ts if isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0 else None
    event_time = _latest(checkpoints, tag, fallback, msg.get("updated_at"))
    return _event(
        doc,
        source="aftership",
        event_type=event_type,
        carrier=_required_str(msg, "slug", "msg.slug"),
        event_id=_required_str(doc, "event_id", "event_id"),
        tracking_number=_required_str(msg, "tracking_number", "msg.tracking_number"),
        status=tag,
        milestone=AFTERSHIP_MILESTONES.get(tag),
        event_time=event_time,
        test_mode=False,
    )


def parse_easypost(body: bytes) -> CarrierEvent:
    """Read an EasyPost ``tracker.created`` / ``tracker.updated`` event (``id``, ``result.tracking_code`` …).

    ``event_time`` is the latest ``tracking_details[].datetime`` with the tracker's current status (else the
    latest detail), then ``result.updated_at``. Raises :class:`FeedError` ``malformed`` (not JSON, no
    ``result``, missing tracking code …) or ``unsupported_event`` (any other event, or a result that is not a
    Tracker).
    """
    doc = _document(body)
    event_type = _required_str(doc, "description", "description")
    if event_type not in EASYPOST_EVENTS:
        raise FeedError(
            "unsupported_event", f"EasyPost event {event_type!r} is not a tracker event", event=event_type
        )
    result = _required_obj(doc, "result", "result")
    if result.get("object", "Tracker") != "Tracker":
        raise FeedError("unsupported_event", f"EasyPost result is a {result.get('object')!r}, not a Tracker")
    status = _required_str(result, "status", "result.status")
    details = [
        (d.get("status"), d.get("datetime"))
        for d in _objects(result, "tracking_details", "result.tracking_details")
    ]
    return _event(
        doc,
        source="easypost",
        event_type=event_type,
        carrier=_required_str(result, "carrier", "result.carrier"),
        event_id=_required_str(doc, "id", "id"),
        tracking_number=_required_str(result, "tracking_code", "result.tracking_code"),
        status=status,
        milestone=EASYPOST_MILESTONES.get(status),
        event_time=_latest(details, status, None, result.get("updated_at")),
        test_mode=doc.get("mode") == "test" or result.get("mode") == "test",
    )


def _key(secret: str, provider: str) -> bytes:
    if not secret:
        raise ConfigError(f"the {provider} webhook secret is empty")
    return secret.encode("utf-8")


def _document(body: bytes) -> dict[str, Any]:
    doc = load_json(body, max_bytes=MAX_BODY_BYTES)
    if not isinstance(doc, dict):
        raise FeedError("malformed", "a webhook body must be a JSON object")
    return doc


def _event(
    doc: dict[str, Any],
    *,
    source: str,
    event_type: str,
    carrier: str,
    event_id: str,
    tracking_number: str,
    status: str,
    milestone: Milestone | None,
    event_time: int,
    test_mode: bool,
) -> CarrierEvent:
    slug = normalise_carrier(carrier)
    number = normalise_tracking_number(tracking_number)
    if not slug or not number:
        raise FeedError("malformed", "carrier and tracking number must not be blank")
    try:
        canonical = canonical_bytes(doc)
    except rfc8785.CanonicalizationError as exc:
        raise FeedError("malformed", f"body cannot be canonicalised: {exc}") from exc
    return CarrierEvent(
        source=source,
        event_type=event_type,
        carrier=slug,
        event_id=event_id,
        tracking_number=number,
        status=status,
        milestone=milestone,
        event_time=event_time,
        test_mode=test_mode,
        raw=doc,
        canonical=canonical,
        content_hash=hashlib.sha256(canonical).digest(),
    )


def _required_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FeedError("malformed", f"{path} must be a non-empty string", field=path)
    return value


def _required_obj(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise FeedError("malformed", f"{path} must be an object", field=path)
    return value


def _objects(obj: Mapping[str, Any], key: str, path: str) -> list[Mapping[str, Any]]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise FeedError("malformed", f"{path} must be a list of objects", field=path)
    return value


def _latest(scans: list[tuple[Any, Any]], status: str, fallback: int | None, updated_at: Any) -> int:
    """Time of the latest scan with ``status``, else of the latest scan, else ``fallback``, ``updated_at``."""
    timed: list[tuple[Any, int]] = []
    for scan_status, when in scans:
        if isinstance(when, str):
            try:
                timed.append((scan_status, parse_timestamp(when)))
            except ValueError:
                continue  # a local time without offset, or garbage: not a fact we can place
    matching = [t for s, t in timed if s == status]
    if matching or timed:
        return max(matching or [t for _, t in timed])
    if fallback is not None:
        return fallback
    if isinstance(updated_at, str):
        try:
            return parse_timestamp(updated_at)
        except ValueError:
            pass
    raise FeedError("malformed", "the webhook carries no usable event time", field="event_time")
