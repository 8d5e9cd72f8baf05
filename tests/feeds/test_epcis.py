"""EPCIS 2.0 capture documents read into normalised events (SPEC §5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from app.domain.order_state import Milestone
from app.errors import FeedError
from app.feeds import epcis
from app.feeds.epcis import (
    EpcisEvent,
    ErrorDeclaration,
    normalise_cbv,
    order_refs,
    parse_document,
    parse_timestamp,
    sscc_from_epc,
)

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "epcis"


def event(**fields: Any) -> dict[str, Any]:
    """A small valid ObjectEvent, overridden by ``fields`` (a value of None drops the field)."""
    base: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": "2024-03-01T10:15:30.250+01:00",
        "eventTimeZoneOffset": "+01:00",
        "action": "OBSERVE",
        "epcList": ["urn:epc:id:sgtin:9521234.012345.1001"],
        "bizStep": "shipping",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def doc(*events: dict[str, Any], **top: Any) -> bytes:
    body: dict[str, Any] = {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-03-01T10:20:00Z",
        "epcisBody": {"eventList": list(events)},
    }
    body.update(top)
    return json.dumps(body).encode()


def one(**fields: Any) -> EpcisEvent:
    [parsed] = parse_document(doc(event(**fields)), with_cbv_hash=False)
    return parsed


def refused(body: bytes) -> FeedError:
    with pytest.raises(FeedError) as err:
        parse_document(body, with_cbv_hash=False)
    return err.value


# --- milestones and CBV vocabulary ------


@pytest.mark.parametrize(
    "form", ["{}", "urn:epcglobal:cbv:bizstep:{}", "https://ref.gs1.org/cbv/BizStep-{}", "cbv:BizStep-{}"]
)
@pytest.mark.parametrize(
    "word, milestone",
    [
        ("shipping", Milestone.SHIPPED),
        ("departing", Milestone.SHIPPED),
        ("receiving", Milestone.DELIVERED),
        ("accepting", Milestone.DELIVERED),
        ("loading", None),
        ("transporting", None),
        ("inspecting", None),
    ],
)
def test_biz_step_forms_normalise_to_the_bare_word(form: str, word: str, milestone: Milestone | None) -> None:
    parsed = one(bizStep=form.format(word))
    assert parsed.biz_step == word
    assert parsed.milestone == milestone


def test_user_defined_biz_step_is_kept_verbatim_and_has_no_milestone() -> None:
    parsed = one(bizStep="https://vocab.example.org/bizstep/shipping_notice")
    assert parsed.biz_step == "https://vocab.example.org/bizstep/shipping_notice"
    assert parsed.milestone is None


def test_no_biz_step_no_milestone() -> None:
    parsed = one(bizStep=None)
    assert (parsed.biz_step, parsed.milestone) == (None, None)


@pytest.mark.parametrize("event_type", ["ObjectEvent", "AggregationEvent", "TransactionEvent"])
def test_milestone_event_types(event_type: str) -> None:
    assert one(type=event_type, bizStep="receiving").milestone == Milestone.DELIVERED


@pytest.mark.parametrize("event_type", ["TransformationEvent", "AssociationEvent"])
def test_other_event_types_are_facts_without_milestone(event_type: str) -> None:
    parsed = one(type=event_type, bizStep="shipping")
    assert parsed.event_type == event_type
    assert parsed.biz_step == "shipping"
    assert parsed.milestone is None


@pytest.mark.parametrize(
    "value",
    [
        "in_transit",
        "urn:epcglobal:cbv:disp:in_transit",
        "https://ref.gs1.org/cbv/Disp-in_transit",
        "cbv:Disp-in_transit",
    ],
)
def test_disposition_forms(value: str) -> None:
    assert one(disposition=value).disposition == "in_transit"


def test_normalise_cbv_leaves_other_vocabularies_alone() -> None:
    assert (
        normalise_cbv("urn:epcglobal:cbv:disp:in_transit", epcis.BIZ_STEP)
        == "urn:epcglobal:cbv:disp:in_transit"
    )
    assert (
        normalise_cbv("https://ref.gs1.org/cbv/BizStep-", epcis.BIZ_STEP)
        == "https://ref.gs1.org/cbv/BizStep-"
    )


# --- times ------


@pytest.mark.parametrize(
    "value, offset, expected",
    [
        ("2024-03-01T10:15:30.250+01:00", "+01:00", 1709284530),
        ("2024-03-01T09:15:30Z", "+01:00", 1709284530),
        ("2024-03-01t09:15:30.999999999z", None, 1709284530),
        ("2024-03-01T03:15:30-06:00", "-06:00", 1709284530),
        ("2024-03-01T10:15:30", "+01:00", 1709284530),  # no offset in the time: eventTimeZoneOffset applies
        ("2016-12-31T23:59:60Z", None, 1483228799),  # leap second
        ("1970-01-01T00:00:00Z", None, 0),
    ],
)
def test_event_time_to_unix_utc(value: str, offset: str | None, expected: int) -> None:
    parsed = one(eventTime=value, eventTimeZoneOffset=offset)
    assert parsed.event_time == expected
    assert parsed.event_time_zone_offset == offset


@pytest.mark.parametrize(
    "fields",
    [
        {"eventTime": None},
        {"eventTime": ""},
        {"eventTime": 1709284530},
        {"eventTime": "2024-03-01"},
        {"eventTime": "yesterday"},
        {"eventTime": "2024-02-30T10:00:00Z"},
        {"eventTime": "2024-03-01T10:00:00+25:00"},
        {"eventTime": "1969-12-31T23:59:59Z"},
        {"eventTime": "2024-03-01T10:15:30", "eventTimeZoneOffset": None},
        {"eventTimeZoneOffset": "CET"},
    ],
)
def test_bad_event_time_is_refused(fields: dict[str, Any]) -> None:
    err = refused(doc(event(), event(**fields)))
    assert err.code == "malformed"
    assert err.details["index"] == 1
    assert err.details["field"] in {"eventTime", "eventTimeZoneOffset"}


def test_parse_timestamp_requires_an_offset() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("2024-03-01T10:15:30")
    assert parse_timestamp("2024-03-01T10:15:30", "+00:00") == 1709288130


# --- identifiers ------


def test_epcs_gather_parent_children_lists_and_classes_once() -> None:
    parsed = one(
        type="AggregationEvent",
        action="ADD",
        parentID="urn:epc:id:sscc:9521234.0000000042",
        epcList=["urn:epc:id:sgtin:9521234.012345.1", "urn:epc:id:sgtin:9521234.012345.1"],
        childEPCs=["urn:epc:id:sgtin:9521234.012345.2"],
        quantityList=[{"epcClass": "urn:epc:class:lgtin:9521234.012345.LOT7", "quantity": 12}],
        childQuantityList=[{"epcClass": "urn:epc:idpat:sgtin:9521234.012346.*", "quantity": 3}],
    )
    assert parsed.epcs == (
        "urn:epc:id:sscc:9521234.0000000042",
        "urn:epc:id:sgtin:9521234.012345.1",
        "urn:epc:id:sgtin:9521234.012345.2",
        "urn:epc:class:lgtin:9521234.012345.LOT7",
        "urn:epc:idpat:sgtin:9521234.012346.*",
    )
    assert parsed.sscc == ("095212340000000426",)


@pytest.mark.parametrize(
    "epc, sscc",
    [
        ("urn:epc:id:sscc:9521234.0000000042", "095212340000000426"),
        ("urn:epc:id:sscc:952123456789.30042", "395212345678900420"),  # 12-digit company prefix
        ("https://id.gs1.org/00/095212340000000426", "095212340000000426"),
        ("https://dl.example.com/shipping/00/095212340000000426?linkType=all", "095212340000000426"),
        ("https://id.gs1.org/00/095212340000000420", None),  # wrong check digit
        ("urn:epc:id:sscc:9521234.000000042", None),  # 16 digits
        ("urn:epc:id:sgtin:9521234.012345.1", None),
        ("https://id.gs1.org/01/09521234123454/21/1", None),
    ],
)
def test_sscc_from_epc(epc: str, sscc: str | None) -> None:
    assert sscc_from_epc(epc) == sscc


def test_read_point_biz_location_sources_and_destinations() -> None:
    parsed = one(
        readPoint={"id": "urn:epc:id:sgln:9521234.00001.7"},
        bizLocation={"id": "urn:epc:id:sgln:9521234.00001.0"},
        sourceList=[
            {"type": "urn:epcglobal:cbv:sdt:owning_party", "source": "urn:epc:id:pgln:9521234.00001"}
        ],
        destinationList=[
            {"type": "location", "destination": "urn:epc:id:sgln:4012345.00022.0"},
            {
                "type": "https://ref.gs1.org/cbv/SDT-possessing_party",
                "destination": "urn:epc:id:pgln:4012345.00022",
            },
        ],
    )
    assert parsed.read_point == "urn:epc:id:sgln:9521234.00001.7"
    assert parsed.biz_location == "urn:epc:id:sgln:9521234.00001.0"
    assert parsed.sources == (("owning_party", "urn:epc:id:pgln:9521234.00001"),)
    assert parsed.destinations == (
        ("location", "urn:epc:id:sgln:4012345.00022.0"),
        ("possessing_party", "urn:epc:id:pgln:4012345.00022"),
    )


def test_biz_transactions_and_order_refs() -> None:
    parsed = one(
        bizTransactionList=[
            {"type": "po", "bizTransaction": "http://transaction.example.com/po/PO-7781/"},
            {
                "type": "urn:epcglobal:cbv:btt:desadv",
                "bizTransaction": "urn:epcglobal:cbv:bt:9521234000006:DN-55",
            },
            {"type": "cbv:BTT-inv", "bizTransaction": "INV-2024-001"},
            {"bizTransaction": "https://erp.example.com/orders/ORD-9?tab=lines"},
            {"type": "po", "bizTransaction": "PO-7781"},
        ]
    )
    assert parsed.biz_transactions == (
        ("po", "http://transaction.example.com/po/PO-7781/"),
        ("desadv", "urn:epcglobal:cbv:bt:9521234000006:DN-55"),
        ("inv", "INV-2024-001"),
        (None, "https://erp.example.com/orders/ORD-9?tab=lines"),
        ("po", "PO-7781"),
    )
    assert order_refs(parsed) == (
        "http://transaction.example.com/po/PO-7781/",
        "PO-7781",
        "urn:epcglobal:cbv:bt:9521234000006:DN-55",
        "DN-55",
        "INV-2024-001",
        "https://erp.example.com/orders/ORD-9?tab=lines",
        "ORD-9",
    )


def test_event_id_and_action() -> None:
    parsed = one(eventID="urn:uuid:6f1c2b1e-8d7a-4c55-9a51-0e0e4b9b0a01", action="ADD")
    assert parsed.event_id == "urn:uuid:6f1c2b1e-8d7a-4c55-9a51-0e0e4b9b0a01"
    assert parsed.action == "ADD"
    assert one().event_id is None


# --- retraction ------


def test_error_declaration_marks_the_event_retracted() -> None:
    parsed = one(
        errorDeclaration={
            "declarationTime": "2024-03-02T08:00:00Z",
            "reason": "urn:epcglobal:cbv:er:incorrect_data",
            "correctiveEventIDs": ["urn:uuid:6f1c2b1e-8d7a-4c55-9a51-0e0e4b9b0a02"],
        }
    )
    assert parsed.retracted
    assert parsed.error_declaration == ErrorDeclaration(
        declaration_time=1709366400,
        reason="incorrect_data",
        corrective_event_ids=("urn:uuid:6f1c2b1e-8d7a-4c55-9a51-0e0e4b9b0a02",),
    )
    assert parsed.milestone == Milestone.SHIPPED  # what it claimed; the service flags attestations for review
    assert not one().retracted


@pytest.mark.parametrize(
    "declaration",
    [
        "retracted",
        {"reason": "incorrect_data"},
        {"declarationTime": "soon"},
        {"declarationTime": "2024-03-02T08:00:00Z", "correctiveEventIDs": "urn:uuid:1"},
    ],
)
def test_malformed_error_declaration_is_refused(declaration: Any) -> None:
    assert refused(doc(event(errorDeclaration=declaration))).code == "malformed"


# --- stored bytes and hashes ------


def test_canonical_bytes_and_content_hash_ignore_key_order_and_whitespace() -> None:
    a = one(bizStep="shipping", readPoint={"id": "urn:epc:id:sgln:9521234.00001.7"})
    raw = dict(reversed(list(event(readPoint={"id": "urn:epc:id:sgln:9521234.00001.7"}).items())))
    body = json.dumps(
        {"epcisBody": {"eventList": [raw]}, "type": "EPCISDocument", "@context": [EPCIS_CONTEXT]}, indent=4
    ).encode()
    [b] = parse_document(body, with_cbv_hash=False)
    assert a.canonical == b.canonical == rfc8785.dumps(a.raw)
    assert a.content_hash == b.content_hash
    assert len(a.content_hash) == 32
    assert one(bizStep="receiving").content_hash != a.content_hash


def test_cbv_hash_is_computed_per_event_and_can_be_skipped() -> None:
    body = doc(event(), event(bizStep="receiving"))
    first, second = parse_document(body)
    assert first.cbv_hash is not None and first.cbv_hash.startswith("ni:///sha-256;")
    assert second.cbv_hash is not None and second.cbv_hash != first.cbv_hash
    # an event's CBV hash does not depend on its neighbours
    [alone] = parse_document(doc(event(bizStep="receiving")))
    assert alone.cbv_hash == second.cbv_hash
    assert all(e.cbv_hash is None for e in parse_document(body, with_cbv_hash=False))


def test_events_keep_document_order_and_index() -> None:
    parsed = parse_document(doc(event(bizStep="shipping"), event(bizStep="receiving")), with_cbv_hash=False)
    assert [(e.index, e.milestone) for e in parsed] == [(0, Milestone.SHIPPED), (1, Milestone.DELIVERED)]


def test_empty_event_list_is_an_empty_capture() -> None:
    assert parse_document(doc(), with_cbv_hash=False) == []


# --- refusals ------


@pytest.mark.parametrize(
    "body, code",
    [
        (b"not json", "malformed"),
        (b"", "malformed"),
        (b"[]", "malformed"),
        (b'"EPCISDocument"', "malformed"),
        (json.dumps({"type": "EPCISDocument"}).encode(), "malformed"),
        (json.dumps({"type": "EPCISDocument", "epcisBody": []}).encode(), "malformed"),
        (json.dumps({"type": "EPCISDocument", "epcisBody": {}}).encode(), "malformed"),
        (json.dumps({"type": "EPCISDocument", "epcisBody": {"eventList": {}}}).encode(), "malformed"),
        (json.dumps({"type": "EPCISQueryDocument", "epcisBody": {"queryResults": {}}}).encode(), "malformed"),
        (json.dumps({"type": "EPCISQueryDocument", "epcisBody": {"eventList": []}}).encode(), "malformed"),
        (
            json.dumps({"type": "EPCISMasterDataDocument", "epcisBody": {"vocabularyList": []}}).encode(),
            "unsupported_document",
        ),
        (json.dumps({"epcisBody": {"eventList": []}}).encode(), "unsupported_document"),
        (b'{"type": "EPCISDocument", "type": "EPCISDocument", "epcisBody": {"eventList": []}}', "malformed"),
    ],
)
def test_refuses_bad_documents(body: bytes, code: str) -> None:
    assert refused(body).code == code


def query_doc(*events: dict[str, Any], context: Any = None) -> bytes:
    """The EPCISQueryDocument a SimpleEventQuery answers with, carrying ``events``."""
    return json.dumps(
        {
            "@context": context or [EPCIS_CONTEXT],
            "type": "EPCISQueryDocument",
            "schemaVersion": "2.0",
            "creationDate": "2024-03-01T10:20:00Z",
            "epcisBody": {
                "queryResults": {
                    "queryName": "SimpleEventQuery",
                    "subscriptionID": "sub-1",
                    "resultsBody": {"eventList": list(events)},
                }
            },
        }
    ).encode()


def test_a_query_document_reads_like_a_capture_of_the_same_events() -> None:
    events = [event(bizStep="shipping"), event(bizStep="receiving", eventTime="2024-03-02T09:00:00Z")]
    from_query = parse_document(query_doc(*events))
    from_capture = parse_document(doc(*events))
    assert from_query == from_capture
    assert [e.milestone for e in from_query] == [Milestone.SHIPPED, Milestone.DELIVERED]
    assert parse_document(query_doc(), with_cbv_hash=False) == []  # a query that matched nothing


@pytest.mark.parametrize(
    "results, field",
    [
        ({"queryResults": []}, "epcisBody.queryResults"),
        ({"queryResults": {"queryName": "SimpleEventQuery"}}, "epcisBody.queryResults.resultsBody"),
        (
            {"queryResults": {"resultsBody": {"vocabularyList": []}}},
            "epcisBody.queryResults.resultsBody.eventList",
        ),
        (
            {"queryResults": {"resultsBody": {"eventList": {}}}},
            "epcisBody.queryResults.resultsBody.eventList",
        ),
    ],
)
def test_a_query_document_without_an_event_list_is_refused_naming_the_field(
    results: dict[str, Any], field: str
) -> None:
    err = refused(json.dumps({"type": "EPCISQueryDocument", "epcisBody": results}).encode())
    assert (err.code, err.details) == ("malformed", {"field": field})


def test_a_query_document_obeys_the_event_limit() -> None:
    assert refused(query_doc(*[event()] * (epcis.MAX_EVENTS + 1))).code == "too_large"


def test_refuses_too_many_events() -> None:
    err = refused(doc(*[event()] * (epcis.MAX_EVENTS + 1)))
    assert err.code == "too_large"
    assert err.details == {"limit": epcis.MAX_EVENTS}


def test_accepts_the_event_limit() -> None:
    assert len(parse_document(doc(*[event()] * epcis.MAX_EVENTS), with_cbv_hash=False)) == epcis.MAX_EVENTS


def test_refuses_oversized_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(epcis, "MAX_BODY_BYTES", 100)
    assert refused(doc(event())).code == "too_large"


def test_refuses_deep_nesting() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"acme:inner": deep}
    assert refused(doc(event(**{"acme:ext": deep}))).code == "too_large"


@pytest.mark.parametrize(
    "fields, code, field",
    [
        ({"type": None}, "malformed", "type"),
        ({"type": "ShipmentEvent"}, "unsupported_event", None),
        ({"bizStep": 7}, "malformed", "bizStep"),
        ({"epcList": "urn:epc:id:sgtin:9521234.012345.1001"}, "malformed", "epcList"),
        ({"epcList": [None]}, "malformed", "epcList"),
        ({"quantityList": [{"quantity": 3}]}, "malformed", "epcClass"),
        ({"readPoint": "urn:epc:id:sgln:9521234.00001.7"}, "malformed", "readPoint"),
        ({"bizTransactionList": [{"type": "po"}]}, "malformed", "bizTransaction"),
        ({"destinationList": [["location", "urn:epc:id:sgln:1"]]}, "malformed", "destinationList"),
        ({"eventID": ""}, "malformed", "eventID"),
        ({"acme:big": 2**60}, "malformed", None),
    ],
)
def test_refuses_bad_events(fields: dict[str, Any], code: str, field: str | None) -> None:
    err = refused(doc(event(), event(**fields)))
    assert err.code == code
    assert err.details["index"] == 1
    assert err.details.get("field") == field


def test_refuses_an_event_that_is_not_an_object() -> None:
    err = refused(doc(event(), "ObjectEvent"))  # type: ignore[arg-type]
    assert (err.code, err.details) == ("malformed", {"index": 1})


# --- conformance with GS1's published examples (skipped when ../shared/data is absent) ------


def sample(name: str) -> list[EpcisEvent]:
    path = SAMPLES / f"gs1-EPCIS__{name}.jsonld"
    if not path.is_file():
        pytest.skip(f"sample data not available: {path}")
    return parse_document(path.read_bytes())


def test_every_sample_document_parses_with_stable_hashes() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"sample data not available: {SAMPLES}")
    paths = sorted(SAMPLES.glob("*.jsonld"))
    assert paths
    for path in paths:
        events = parse_document(path.read_bytes())
        assert events, path.name
        again = parse_document(path.read_bytes())
        for e, e2 in zip(events, again, strict=True):
            assert e.content_hash == e2.content_hash
            assert e.cbv_hash == e2.cbv_hash
            assert e.cbv_hash is None or (
                e.cbv_hash.startswith("ni:///sha-256;") and e.cbv_hash.endswith("?ver=CBV2.0")
            )


def summary(e: EpcisEvent) -> tuple[Any, ...]:
    return (e.event_type, e.event_time, e.biz_step, e.disposition, e.milestone, e.sscc, e.retracted)


def test_sample_9_6_1_shipping_then_receiving() -> None:
    shipped, received = sample("Example_9.6.1-ObjectEvent")
    assert summary(shipped) == (
        "ObjectEvent",
        1112582011,
        "shipping",
        "in_transit",
        Milestone.SHIPPED,
        (),
        False,
    )
    assert summary(received) == (
        "ObjectEvent",
        1112668411,
        "receiving",
        "in_progress",
        Milestone.DELIVERED,
        (),
        False,
    )
    assert shipped.read_point == "urn:epc:id:sgln:0614141.07346.1234"
    assert received.biz_location == "urn:epc:id:sgln:0012345.11111.0"
    assert received.biz_transactions == (
        ("po", "http://transaction.acme.com/po/12345678"),
        ("desadv", "urn:epcglobal:cbv:bt:0614141073467:1152"),
    )
    assert order_refs(received) == (
        "http://transaction.acme.com/po/12345678",
        "12345678",
        "urn:epcglobal:cbv:bt:0614141073467:1152",
        "1152",
    )


def test_sample_9_6_2_class_level_receiving_with_destinations() -> None:
    [received] = sample("Example_9.6.2-ObjectEvent")
    assert summary(received) == (
        "ObjectEvent",
        1370703536,
        "receiving",
        "in_progress",
        Milestone.DELIVERED,
        (),
        False,
    )
    assert received.epcs == ("urn:epc:class:lgtin:4012345.012345.998877",)
    assert received.destinations == (
        ("owning_party", "urn:epc:id:sgln:0614141.00001.0"),
        ("location", "urn:epc:id:sgln:0614141.00777.0"),
    )


def test_sample_with_error_declaration_is_retracted() -> None:
    retracted, received = sample("WithErrorDeclaration__Example_9.6.1-ObjectEvent-with-error-declaration")
    assert summary(retracted) == (
        "ObjectEvent",
        1112582011,
        "shipping",
        "in_transit",
        Milestone.SHIPPED,
        (),
        True,
    )
    assert retracted.error_declaration == ErrorDeclaration(
        declaration_time=1612219591,
        reason="incorrect_data",
        corrective_event_ids=(
            "ni:///sha-256;c6407ffcac52ec159528f2b556ba4ac3844c5aa48485c1fd61643e94f0a2d678?ver=CBV2.0",
            "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        ),
    )
    assert not received.retracted
    # the retraction is the same event: same CBV hash as the original shipping event, different stored bytes
    original, _ = sample("Example_9.6.1-ObjectEvent")
    assert retracted.cbv_hash is not None and retracted.cbv_hash == original.cbv_hash
    assert retracted.content_hash != original.content_hash


def test_sample_transaction_event_with_all_fields_names_an_sscc() -> None:
    [shipped] = sample("WithFullCombinationOfFields__transaction_event_all_possible_fields")
    assert summary(shipped) == (
        "TransactionEvent",
        1112582011,
        "shipping",
        "in_transit",
        Milestone.SHIPPED,
        ("106141412345678908",),
        True,
    )
    assert order_refs(shipped)[:2] == ("urn:epc:id:gdti:0614141.00001.1618034", "0614141.00001.1618034")


def test_sample_object_event_with_all_fields() -> None:
    [received] = sample("WithFullCombinationOfFields__object_event_all_possible_fields")
    assert summary(received) == (
        "ObjectEvent",
        1112668411,
        "receiving",
        "in_progress",
        Milestone.DELIVERED,
        (),
        True,
    )
    assert received.event_id == "urn:uuid:374d95fc-9457-4a51-bd6a-0bba133845a8"
    assert received.error_declaration is not None
    assert received.error_declaration.declaration_time == 1162904400


def test_sample_sensor_data_is_a_fact_without_milestone() -> None:
    [inspected] = sample("WithSensorData__SensorDataExample1")
    assert summary(inspected) == ("ObjectEvent", 1554213600, "inspecting", None, None, (), False)


def test_sample_transaction_events_keep_user_vocabulary() -> None:
    summarised, transported = sample("Example-TransactionEvents-2020_07_03y")
    assert summary(summarised) == (
        "TransactionEvent",
        1570194720,
        "http://epcis.example.org/hc/bizstep/summarising_discharge",
        None,
        None,
        (),
        False,
    )
    assert summarised.event_id is None
    assert summarised.biz_transactions == ((None, "urn:epc:id:gdti:95252084.0001.0003555480001000"),)
    assert summary(transported) == (
        "TransactionEvent",
        1418378400,
        "transporting",
        "in_transit",
        None,
        (),
        False,
    )
    assert transported.biz_transactions == (
        ("urn:gs1:epcisapp:rail:btt:passage", "http://transaction.examplerail.com/passage/xyz12345"),
    )
    assert transported.destinations == (("location", "urn:epc:id:sgln:952005385.011.0"),)


def test_sample_events_in_a_query_document_read_as_in_their_capture_document() -> None:
    """GS1's 9.6.1 capture, its events re-wrapped as the answer to a SimpleEventQuery (same @context)."""
    path = SAMPLES / "gs1-EPCIS__Example_9.6.1-ObjectEvent.jsonld"
    if not path.is_file():
        pytest.skip(f"sample data not available: {path}")
    captured = json.loads(path.read_bytes())
    body = query_doc(*captured["epcisBody"]["eventList"], context=captured["@context"])
    from_query = parse_document(body)
    assert from_query == parse_document(path.read_bytes())
    assert [summary(e)[2:5] for e in from_query] == [
        ("shipping", "in_transit", Milestone.SHIPPED),
        ("receiving", "in_progress", Milestone.DELIVERED),
    ]
