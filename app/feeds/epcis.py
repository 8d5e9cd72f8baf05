"""EPCIS 2.0 capture and query documents (JSON / JSON-LD) read into typed, hashed events (SPEC §5).

Pure: bytes in, :class:`EpcisEvent` values out, :class:`~app.errors.FeedError` for anything malformed. Which
order an event belongs to, whether its destination is the order's, and what to do with a retraction are the
service's decisions; this module only exposes what the event says, in one normalised vocabulary:

- CBV values arrive as bare words (``shipping``), CBV 1.x URNs (``urn:epcglobal:cbv:bizstep:shipping``), GS1
  web URIs (``https://ref.gs1.org/cbv/BizStep-shipping``) or compact IRIs (``cbv:BizStep-shipping``); all
  become the bare word. Values outside the CBV (a company's own URI) are kept verbatim.
- SSCCs arrive as EPC URNs (``urn:epc:id:sscc:0614141.1234567890``) or GS1 Digital Link URIs
  (``https://id.gs1.org/00/106141412345678908``); both become the 18-digit SSCC.
- Times become unix seconds (UTC).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import rfc8785

from app.domain.order_state import Milestone
from app.errors import FeedError
from app.feeds.hashing import canonical_bytes, cbv_event_hash, load_json

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_EVENTS = 1000

EVENT_TYPES = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)
MILESTONE_EVENT_TYPES = frozenset({"ObjectEvent", "AggregationEvent", "TransactionEvent"})
_MILESTONE_BY_BIZ_STEP = {
    "shipping": Milestone.SHIPPED,
    "departing": Milestone.SHIPPED,
    "receiving": Milestone.DELIVERED,
    "accepting": Milestone.DELIVERED,
}

# The CBV vocabularies, as (CBV 1.x URN prefix, CBV 2.0 term prefix), for normalise_cbv()
BIZ_STEP = ("urn:epcglobal:cbv:bizstep:", "BizStep-")
DISPOSITION = ("urn:epcglobal:cbv:disp:", "Disp-")
BIZ_TRANSACTION_TYPE = ("urn:epcglobal:cbv:btt:", "BTT-")
SOURCE_DEST_TYPE = ("urn:epcglobal:cbv:sdt:", "SDT-")
ERROR_REASON = ("urn:epcglobal:cbv:er:", "ER-")
_CBV_WEB = "https://ref.gs1.org/cbv/"
_CBV_COMPACT = "cbv:"
_CBV_WORD = re.compile(r"[a-z][a-z0-9_]*")

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?",
)
_OFFSET = re.compile(r"[+-](\d{2}):(\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SSCC_URN = re.compile(r"urn:epc:id:sscc:(\d+)\.(\d+)")
_SSCC_DIGITAL_LINK = re.compile(r"https?://[^/?#]+(?:/[^?#]*)?/00/(\d{18})(?:[?#].*)?")


@dataclass(frozen=True)
class ErrorDeclaration:
    """An EPCIS ``errorDeclaration``: the event it sits on is retracted (SPEC §5)."""

    declaration_time: int
    reason: str | None
    corrective_event_ids: tuple[str, ...]


@dataclass(frozen=True)
class EpcisEvent:
    """One event of a capture document, normalised, with its stored bytes and hashes.

    ``canonical`` is the RFC 8785 form of ``raw`` (what is stored), ``content_hash`` its SHA-256 (the
    ``evidenceHash`` of an attestation), ``cbv_hash`` the GS1 CBV 2.0 event hash or ``None`` when the
    reference implementation cannot compute it. ``milestone`` is what the event claims even when it is
    retracted: check ``retracted`` before attesting anything.
    """

    index: int
    event_id: str | None
    event_type: str
    action: str | None
    event_time: int
    event_time_zone_offset: str | None
    biz_step: str | None
    disposition: str | None
    read_point: str | None
    biz_location: str | None
    epcs: tuple[str, ...]
    sscc: tuple[str, ...]
    biz_transactions: tuple[tuple[str | None, str], ...]
    sources: tuple[tuple[str | None, str], ...]
    destinations: tuple[tuple[str | None, str], ...]
    error_declaration: ErrorDeclaration | None
    milestone: Milestone | None
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)
    canonical: bytes = field(repr=False)
    content_hash: bytes
    cbv_hash: str | None

    @property
    def retracted(self) -> bool:
        """True when the event carries an ``errorDeclaration``."""
        return self.error_declaration is not None


#: Where each document type keeps its events: a capture document in ``epcisBody.eventList``, the result of a
#: SimpleEventQuery (the form many systems export) in ``epcisBody.queryResults.resultsBody.eventList``.
_EVENT_LIST_PATHS: dict[str, tuple[str, ...]] = {
    "EPCISDocument": ("epcisBody", "eventList"),
    "EPCISQueryDocument": ("epcisBody", "queryResults", "resultsBody", "eventList"),
}


def _event_list(document: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """The event list at ``path``; every object on the way must be there, and the last step a list."""
    node: Any = document
    for depth, key in enumerate(path):
        node = node.get(key)
        where = ".".join(path[: depth + 1])
        if depth == len(path) - 1:
            if not isinstance(node, list):
                raise FeedError("malformed", f"{where} must be a list", field=where)
        elif not isinstance(node, dict):
            raise FeedError("malformed", f"{where} must be an object", field=where)
    return list(node)


def parse_document(body: bytes, *, with_cbv_hash: bool = True) -> list[EpcisEvent]:
    """Read an EPCIS 2.0 ``EPCISDocument``, or the ``EPCISQueryDocument`` a SimpleEventQuery answers with
    (its ``queryResults.resultsBody.eventList``), into its events, in document order. Both are captures
    alike: the events are read, hashed and matched the same way, whichever document carried them.

    Raises :class:`FeedError`: ``too_large`` (body over :data:`MAX_BODY_BYTES`, more than :data:`MAX_EVENTS`
    events, nesting too deep), ``malformed`` (not JSON, wrong shape, missing or invalid ``eventTime``;
    ``details`` name the event ``index`` and ``field``), ``unsupported_document`` (neither document type)
    or ``unsupported_event`` (an event type EPCIS 2.0 does not define). ``with_cbv_hash=False`` skips the
    slow, best-effort CBV hash (about 4 ms an event).
    """
    document = load_json(body, max_bytes=MAX_BODY_BYTES)
    if not isinstance(document, dict):
        raise FeedError("malformed", "an EPCIS document must be a JSON object")
    doc_type = document.get("type")
    path = _EVENT_LIST_PATHS.get(doc_type) if isinstance(doc_type, str) else None
    if path is None:
        raise FeedError(
            "unsupported_document",
            f"expected type EPCISDocument or EPCISQueryDocument, got {doc_type!r}",
            type=doc_type,
        )
    event_list = _event_list(document, path)
    if len(event_list) > MAX_EVENTS:
        raise FeedError(
            "too_large", f"{len(event_list)} events, at most {MAX_EVENTS} per document", limit=MAX_EVENTS
        )
    context = document.get("@context")
    return [_parse_event(i, raw, context, with_cbv_hash) for i, raw in enumerate(event_list)]


def order_refs(event: EpcisEvent) -> tuple[str, ...]:
    """Candidate order references named by the event's ``bizTransactionList``, of any type.

    Each value is offered whole (``urn:epcglobal:cbv:bt:0614141073467:1152``,
    ``http://transaction.example.com/po/12345678``) and then by its last ``/`` or ``:`` segment (``1152``,
    ``12345678``); duplicates are dropped, document order is kept.
    """
    refs: dict[str, None] = {}
    for _, value in event.biz_transactions:
        refs.setdefault(value, None)
        tail = re.split(r"[/:]", re.split(r"[?#]", value, maxsplit=1)[0].rstrip("/"))[-1]
        if tail:
            refs.setdefault(tail, None)
    return tuple(refs)


def normalise_cbv(value: str, vocabulary: tuple[str, str]) -> str:
    """The bare CBV word of ``value`` in one vocabulary (e.g. ``("urn:epcglobal:cbv:bizstep:", "BizStep-")``).

    A value in none of the CBV forms (a user-defined URI) is returned unchanged.
    """
    urn_prefix, term_prefix = vocabulary
    for prefix in (urn_prefix, _CBV_WEB + term_prefix, _CBV_COMPACT + term_prefix):
        if value.startswith(prefix) and _CBV_WORD.fullmatch(value[len(prefix) :]):
            return value[len(prefix) :]
    return value


def parse_timestamp(value: str, default_offset: str | None = None) -> int:
    """Unix seconds (UTC, fractions dropped) of an RFC 3339 date-time (``2005-04-03T20:33:31.116-06:00``).

    A time without an offset is read in ``default_offset`` (``+HH:MM``); without either it is refused. Raises
    ``ValueError`` for anything else, including times before 1970.
    """
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset = match.group(8) or default_offset
    if offset is None:
        raise ValueError(f"{value!r} has no UTC offset")
    # RFC 3339 allows a leap second; unix time has none.
    moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=_timezone(offset))
    unix = (moment - _EPOCH) // timedelta(seconds=1)
    if unix < 0:
        raise ValueError(f"{value!r} is before 1970")
    return unix


def sscc_from_epc(epc: str) -> str | None:
    """The 18-digit SSCC named by an EPC URN or a GS1 Digital Link URI, or ``None`` if it names no SSCC."""
    urn = _SSCC_URN.fullmatch(epc)
    if urn is not None:
        company, serial = urn.groups()
        if len(company) + len(serial) != 17 or not 6 <= len(company) <= 12:
            return None
        body = serial[0] + company + serial[1:]
        return body + str(gs1_check_digit(body))
    link = _SSCC_DIGITAL_LINK.fullmatch(epc)
    if link is not None:
        sscc = link.group(1)
        return sscc if gs1_check_digit(sscc[:17]) == int(sscc[17]) else None
    return None


def _parse_event(index: int, raw: Any, context: Any, with_cbv_hash: bool) -> EpcisEvent:
    if not isinstance(raw, dict):
        raise FeedError("malformed", f"event {index} is not an object", index=index)
    reader = _EventReader(index, raw)
    event_type = reader.required_str("type")
    if event_type not in EVENT_TYPES:
        raise FeedError("unsupported_event", f"event {index} has unknown type {event_type!r}", index=index)
    event_time, offset = reader.event_time()
    biz_step = reader.cbv("bizStep", BIZ_STEP)
    epcs = tuple(dict.fromkeys(reader.epcs()))
    try:
        canonical = canonical_bytes(raw)
    except rfc8785.CanonicalizationError as exc:
        raise FeedError("malformed", f"event {index} cannot be canonicalised: {exc}", index=index) from exc
    milestone = _MILESTONE_BY_BIZ_STEP.get(biz_step or "") if event_type in MILESTONE_EVENT_TYPES else None
    return EpcisEvent(
        index=index,
        event_id=reader.optional_str("eventID"),
        event_type=event_type,
        action=reader.optional_str("action"),
        event_time=event_time,
        event_time_zone_offset=offset,
        biz_step=biz_step,
        disposition=reader.cbv("disposition", DISPOSITION),
        read_point=reader.location_id("readPoint"),
        biz_location=reader.location_id("bizLocation"),
        epcs=epcs,
        sscc=tuple(dict.fromkeys(s for s in map(sscc_from_epc, epcs) if s is not None)),
        biz_transactions=reader.typed_pairs("bizTransactionList", "bizTransaction", BIZ_TRANSACTION_TYPE),
        sources=reader.typed_pairs("sourceList", "source", SOURCE_DEST_TYPE),
        destinations=reader.typed_pairs("destinationList", "destination", SOURCE_DEST_TYPE),
        error_declaration=reader.error_declaration(),
        milestone=milestone,
        raw=raw,
        canonical=canonical,
        content_hash=hashlib.sha256(canonical).digest(),
        cbv_hash=cbv_event_hash(raw, context) if with_cbv_hash else None,
    )


#: Identifiers (URIs, EPCs, ids, CBV terms, times) never hold control characters: a NUL or a newline in one
#: is an attack on whoever stores, logs or compares it, not a real id.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_IDENTIFIER = 2048


class _EventReader:
    """Typed access to one raw event; every refusal names the event index and the field."""

    def __init__(self, index: int, raw: Mapping[str, Any]) -> None:
        self.index = index
        self.raw = raw

    def fail(self, name: str, problem: str) -> FeedError:
        return FeedError("malformed", f"event {self.index}: {name} {problem}", index=self.index, field=name)

    def optional_str(self, name: str, obj: Mapping[str, Any] | None = None) -> str | None:
        value = (self.raw if obj is None else obj).get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(name, "must be a non-empty string")
        return self.identifier(name, value)

    def identifier(self, name: str, value: str) -> str:
        if _CONTROL.search(value) is not None:
            raise self.fail(name, "must not contain control characters (NUL, newline, ...)")
        if len(value) > MAX_IDENTIFIER:
            raise self.fail(name, f"is longer than {MAX_IDENTIFIER} characters")
        return value

    def required_str(self, name: str, obj: Mapping[str, Any] | None = None) -> str:
        value = self.optional_str(name, obj)
        if value is None:
            raise self.fail(name, "is missing")
        return value

    def list_of(self, name: str, obj: Mapping[str, Any] | None = None) -> list[Any]:
        value = (self.raw if obj is None else obj).get(name, [])
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        return value

    def cbv(self, name: str, vocabulary: tuple[str, str]) -> str | None:
        value = self.optional_str(name)
        return None if value is None else normalise_cbv(value, vocabulary)

    def event_time(self) -> tuple[int, str | None]:
        offset = self.optional_str("eventTimeZoneOffset")
        if offset is not None and _OFFSET.fullmatch(offset) is None:
            raise self.fail("eventTimeZoneOffset", f"must be +HH:MM or -HH:MM, got {offset!r}")
        return self.timestamp("eventTime", self.raw, offset), offset

    def timestamp(self, name: str, obj: Mapping[str, Any], default_offset: str | None = None) -> int:
        value = self.required_str(name, obj)
        try:
            return parse_timestamp(value, default_offset)
        except ValueError as exc:
            raise self.fail(name, f"is invalid: {exc}") from exc

    def location_id(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object with an id")
        return self.required_str("id", value)

    def epcs(self) -> Iterator[str]:
        parent = self.optional_str("parentID")
        if parent is not None:
            yield parent
        for name in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
            for epc in self.list_of(name):
                if not isinstance(epc, str) or not epc:
                    raise self.fail(name, "must hold non-empty strings")
                yield self.identifier(name, epc)
        for name in ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"):
            for element in self.list_of(name):
                if not isinstance(element, dict):
                    raise self.fail(name, "must hold objects")
                yield self.required_str("epcClass", element)

    def typed_pairs(
        self, name: str, value_key: str, vocabulary: tuple[str, str]
    ) -> tuple[tuple[str | None, str], ...]:
        pairs: list[tuple[str | None, str]] = []
        for entry in self.list_of(name):
            if not isinstance(entry, dict):
                raise self.fail(name, "must hold objects")
            kind = self.optional_str("type", entry)
            pairs.append(
                (
                    None if kind is None else normalise_cbv(kind, vocabulary),
                    self.required_str(value_key, entry),
                )
            )
        return tuple(pairs)

    def error_declaration(self) -> ErrorDeclaration | None:
        value = self.raw.get("errorDeclaration")
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail("errorDeclaration", "must be an object")
        reason = self.optional_str("reason", value)
        corrective = self.list_of("correctiveEventIDs", value)
        if not all(isinstance(c, str) and c for c in corrective):
            raise self.fail("correctiveEventIDs", "must hold non-empty strings")
        return ErrorDeclaration(
            declaration_time=self.timestamp("declarationTime", value),
            reason=None if reason is None else normalise_cbv(reason, ERROR_REASON),
            corrective_event_ids=tuple(corrective),
        )


def _timezone(offset: str) -> timezone:
    if offset in ("Z", "z"):
        return UTC
    match = _OFFSET.fullmatch(offset)
    if match is None:
        raise ValueError(f"{offset!r} is not a UTC offset")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{offset!r} is not a UTC offset")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if offset.startswith("-") else delta)


def gs1_check_digit(digits: str) -> int:
    """GS1 mod-10 check digit: weights 3 and 1 alternate from the rightmost digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10
