"""Carrier webhooks (SPEC §5): AfterShip and EasyPost signatures, statuses mapped onto milestones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from app.domain.order_state import Milestone
from app.errors import ConfigError, FeedError
from app.feeds import carriers
from app.feeds.carriers import (
    normalise_carrier,
    normalise_tracking_number,
    parse_aftership,
    parse_easypost,
    verify_aftership,
    verify_easypost,
)

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "carrier-webhooks"
SECRET = "whsec-7f3a9c"


def aftership_body(tag: str = "InTransit", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ts": 1709290000,
        "event": "tracking_update",
        "event_id": "2b0e1c8f-4a1d-4b7e-9f0a-5d6c7e8f9a01",
        "is_tracking_first_tag": True,
        "msg": {
            "id": "as7k2m9q",
            "tracking_number": "1Z999AA10123456784",
            "slug": "ups",
            "tag": tag,
            "updated_at": "2024-03-01T11:00:00+00:00",
            "checkpoints": [
                {"checkpoint_time": "2024-03-01T08:00:00+01:00", "tag": "InfoReceived", "message": "Label"},
                {
                    "checkpoint_time": "2024-03-01T10:30:00+01:00",
                    "tag": "InTransit",
                    "message": "Origin scan",
                },
                {"checkpoint_time": "2024-03-01T09:00:00+01:00", "tag": "InTransit", "message": "Picked up"},
            ],
        },
    }
    body.update(overrides)
    return body


def easypost_body(status: str = "in_transit", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "evt_0a1b2c3d4e5f",
        "object": "Event",
        "mode": "production",
        "description": "tracker.updated",
        "created_at": "2024-03-01T12:00:00Z",
        "result": {
            "id": "trk_9f8e7d6c",
            "object": "Tracker",
            "mode": "production",
            "tracking_code": "9400 1000 0000 0000 0000 00",
            "carrier": "USPS",
            "status": status,
            "updated_at": "2024-03-01T11:59:00Z",
            "tracking_details": [
                {"status": "pre_transit", "datetime": "2024-02-29T18:00:00Z"},
                {"status": "in_transit", "datetime": "2024-03-01T07:00:00Z"},
                {"status": "out_for_delivery", "datetime": "2024-03-01T08:00:00Z"},
                {"status": "delivered", "datetime": "2024-03-01T10:05:00Z"},
                {"status": "in_transit", "datetime": "2024-03-01T06:00:00Z"},
            ],
        },
    }
    body.update(overrides)
    return body


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def aftership_signature(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def easypost_signature(body: bytes, secret: str = SECRET) -> str:
    key = unicodedata.normalize("NFKD", secret).encode()
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def refused(parse: Any, body: bytes) -> FeedError:
    with pytest.raises(FeedError) as err:
        parse(body)
    return err.value


# --- AfterShip signature ------


def test_aftership_signature_accepted() -> None:
    body = raw(aftership_body())
    verify_aftership(body, aftership_signature(body), SECRET)
    verify_aftership(body, f"  {aftership_signature(body)}\t", SECRET)


def test_aftership_signature_known_vector() -> None:
    # base64(HMAC-SHA256("as_secret", b"{}")), computed independently
    verify_aftership(b"{}", "C3CGrHSz63e03xIX1zT21syhIeK74nFdV8qH7hbU5+E=", "as_secret")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "not base64!",
        base64.b64encode(b"\x00" * 32).decode(),
        aftership_signature(raw(aftership_body()), "other-secret"),
        aftership_signature(raw(aftership_body()) + b" "),
        easypost_signature(raw(aftership_body())),
    ],
)
def test_aftership_bad_signature(header: str | None) -> None:
    with pytest.raises(FeedError) as err:
        verify_aftership(raw(aftership_body()), header, SECRET)
    assert err.value.code == "bad_signature"


def test_empty_secret_is_a_configuration_error() -> None:
    body = raw(aftership_body())
    with pytest.raises(ConfigError):
        verify_aftership(body, base64.b64encode(hmac.new(b"", body, hashlib.sha256).digest()).decode(), "")
    with pytest.raises(ConfigError):
        verify_easypost(body, "hmac-sha256-hex=00", "")


# --- AfterShip parsing ------


@pytest.mark.parametrize(
    "tag, milestone",
    [
        ("InfoReceived", None),
        ("Pending", None),
        ("InTransit", Milestone.SHIPPED),
        ("OutForDelivery", Milestone.SHIPPED),
        ("AttemptFail", Milestone.SHIPPED),
        ("AvailableForPickup", Milestone.SHIPPED),
        ("Delivered", Milestone.DELIVERED),
        ("Exception", None),
        ("Expired", None),
        ("SomethingNew", None),
    ],
)
def test_aftership_tags_map_to_milestones(tag: str, milestone: Milestone | None) -> None:
    event = parse_aftership(raw(aftership_body(tag)))
    assert (event.status, event.milestone) == (tag, milestone)


def test_aftership_event_fields() -> None:
    body = raw(aftership_body())
    event = parse_aftership(body)
    assert event.source == "aftership"
    assert event.event_type == "tracking_update"
    assert event.event_id == "2b0e1c8f-4a1d-4b7e-9f0a-5d6c7e8f9a01"
    assert event.carrier == "ups"
    assert event.tracking_number == "1Z999AA10123456784"
    assert event.event_time == 1709285400  # latest InTransit checkpoint, 2024-03-01T09:30:00Z
    assert event.test_mode is False
    assert event.raw == json.loads(body)
    assert event.content_hash == hashlib.sha256(event.canonical).digest()


def test_aftership_time_falls_back_to_latest_checkpoint_then_ts_then_updated_at() -> None:
    assert parse_aftership(raw(aftership_body("Delivered"))).event_time == 1709285400
    naive = aftership_body()
    naive["msg"]["checkpoints"] = [{"checkpoint_time": "2024-03-01T10:30:00", "tag": "InTransit"}]
    assert parse_aftership(raw(naive)).event_time == 1709290000  # local time without offset: use ts
    no_ts = aftership_body(ts=None)
    no_ts["msg"]["checkpoints"] = []
    assert parse_aftership(raw(no_ts)).event_time == 1709290800  # msg.updated_at
    nothing = aftership_body(ts=None)
    nothing["msg"].pop("checkpoints")
    nothing["msg"].pop("updated_at")
    assert refused(parse_aftership, raw(nothing)).code == "malformed"


def test_aftership_normalises_carrier_and_tracking_number() -> None:
    body = aftership_body()
    body["msg"].update(slug=" DHL_Global Mail ", tracking_number=" gm 6050 2781 ")
    event = parse_aftership(raw(body))
    assert (event.carrier, event.tracking_number) == ("dhl-global-mail", "GM60502781")


@pytest.mark.parametrize(
    "mutate, code, field",
    [
        (lambda b: b["msg"].pop("tracking_number"), "malformed", "msg.tracking_number"),
        (lambda b: b["msg"].update(tracking_number="   "), "malformed", "msg.tracking_number"),
        (lambda b: b["msg"].update(tracking_number=123), "malformed", "msg.tracking_number"),
        (lambda b: b["msg"].pop("slug"), "malformed", "msg.slug"),
        (lambda b: b["msg"].pop("tag"), "malformed", "msg.tag"),
        (lambda b: b["msg"].update(checkpoints={}), "malformed", "msg.checkpoints"),
        (lambda b: b.pop("event_id"), "malformed", "event_id"),
        (lambda b: b.update(msg="1Z999"), "malformed", "msg"),
        (lambda b: b.pop("event"), "malformed", "event"),
        (lambda b: b.update(event="edd_revise"), "unsupported_event", None),
    ],
)
def test_aftership_refuses_bad_shapes(mutate: Any, code: str, field: str | None) -> None:
    body = aftership_body()
    mutate(body)
    err = refused(parse_aftership, raw(body))
    assert (err.code, err.details.get("field")) == (code, field)


@pytest.mark.parametrize(
    "body", [b"", b"<xml/>", b"[]", b'"tracking_update"', b'{"event": "tracking_update",']
)
def test_aftership_refuses_non_objects(body: bytes) -> None:
    assert refused(parse_aftership, body).code == "malformed"


def test_content_hash_ignores_formatting() -> None:
    compact = json.dumps(aftership_body(), separators=(",", ":")).encode()
    pretty = json.dumps(aftership_body(), indent=2, sort_keys=True).encode()
    assert parse_aftership(compact).content_hash == parse_aftership(pretty).content_hash


def test_refuses_oversized_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(carriers, "MAX_BODY_BYTES", 100)
    assert refused(parse_easypost, raw(easypost_body())).code == "too_large"


# --- EasyPost signature ------


def test_easypost_signature_accepted() -> None:
    body = raw(easypost_body())
    verify_easypost(body, easypost_signature(body), SECRET)
    verify_easypost(
        body, easypost_signature(body).upper().replace("HMAC-SHA256-HEX=", "hmac-sha256-hex="), SECRET
    )


def test_easypost_secret_is_nfkd_normalised() -> None:
    body = raw(easypost_body())
    composed = "s\u00e9cret-\ufb01"  # é as one code point, and the "fi" ligature
    decomposed_key = unicodedata.normalize("NFKD", composed).encode()
    header = "hmac-sha256-hex=" + hmac.new(decomposed_key, body, hashlib.sha256).hexdigest()
    verify_easypost(body, header, composed)
    verify_easypost(body, header, unicodedata.normalize("NFKD", composed))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "deadbeef",
        "hmac-sha256-hex=not-hex",
        "hmac-sha256-hex=",
        "sha256=" + "0" * 64,
        aftership_signature(raw(easypost_body())),
        easypost_signature(raw(easypost_body()), "other-secret"),
        easypost_signature(raw(easypost_body()) + b"\n"),
    ],
)
def test_easypost_bad_signature(header: str | None) -> None:
    with pytest.raises(FeedError) as err:
        verify_easypost(raw(easypost_body()), header, SECRET)
    assert err.value.code == "bad_signature"


# --- EasyPost parsing ------


@pytest.mark.parametrize(
    "status, milestone, event_time",
    [
        ("pre_transit", None, 1709229600),
        ("in_transit", Milestone.SHIPPED, 1709276400),
        ("out_for_delivery", Milestone.SHIPPED, 1709280000),
        ("available_for_pickup", Milestone.SHIPPED, 1709287500),  # no such detail: latest detail
        ("delivered", Milestone.DELIVERED, 1709287500),
        ("return_to_sender", None, 1709287500),
        ("failure", None, 1709287500),
        ("cancelled", None, 1709287500),
        ("error", None, 1709287500),
        ("unknown", None, 1709287500),
    ],
)
def test_easypost_statuses(status: str, milestone: Milestone | None, event_time: int) -> None:
    event = parse_easypost(raw(easypost_body(status)))
    assert (event.status, event.milestone, event.event_time) == (status, milestone, event_time)


def test_easypost_event_fields() -> None:
    event = parse_easypost(raw(easypost_body()))
    assert event.source == "easypost"
    assert event.event_type == "tracker.updated"
    assert event.event_id == "evt_0a1b2c3d4e5f"
    assert event.carrier == "usps"
    assert event.tracking_number == "9400100000000000000000"
    assert event.test_mode is False
    assert parse_easypost(raw(easypost_body(description="tracker.created"))).event_type == "tracker.created"


def test_easypost_time_falls_back_to_updated_at() -> None:
    body = easypost_body()
    body["result"]["tracking_details"] = []
    assert parse_easypost(raw(body)).event_time == 1709294340


def test_easypost_test_mode_is_exposed() -> None:
    assert parse_easypost(raw(easypost_body(mode="test"))).test_mode is True


@pytest.mark.parametrize(
    "mutate, code, field",
    [
        (lambda b: b.pop("result"), "malformed", "result"),
        (lambda b: b["result"].pop("tracking_code"), "malformed", "result.tracking_code"),
        (lambda b: b["result"].update(tracking_code=""), "malformed", "result.tracking_code"),
        (lambda b: b["result"].pop("carrier"), "malformed", "result.carrier"),
        (lambda b: b["result"].pop("status"), "malformed", "result.status"),
        (lambda b: b["result"].update(tracking_details=[None]), "malformed", "result.tracking_details"),
        (lambda b: b.pop("id"), "malformed", "id"),
        (lambda b: b.update(description="batch.created"), "unsupported_event", None),
        (lambda b: b["result"].update(object="Refund"), "unsupported_event", None),
    ],
)
def test_easypost_refuses_bad_shapes(mutate: Any, code: str, field: str | None) -> None:
    body = easypost_body()
    mutate(body)
    err = refused(parse_easypost, raw(body))
    assert (err.code, err.details.get("field")) == (code, field)


@pytest.mark.parametrize("body", [b"not json", b"[]", b"null", b'{"id": NaN}'])
def test_easypost_refuses_non_objects(body: bytes) -> None:
    assert refused(parse_easypost, body).code == "malformed"


def test_helpers() -> None:
    assert normalise_carrier("FedEx") == "fedex"
    assert normalise_carrier("Canada  Post") == "canada-post"
    assert normalise_tracking_number(" 1z 999 aa1 ") == "1Z999AA1"


# --- conformance with EasyPost's published examples (skipped when ../shared/data is absent) ------


def sample(name: str) -> bytes:
    path = SAMPLES / f"easypost-examples__official__{name}.json"
    if not path.is_file():
        pytest.skip(f"sample data not available: {path}")
    return path.read_bytes()


def test_every_sample_verifies_with_its_raw_bytes() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"sample data not available: {SAMPLES}")
    paths = sorted(SAMPLES.glob("*.json"))
    assert paths
    for path in paths:
        body = path.read_bytes()
        verify_easypost(body, easypost_signature(body), SECRET)
        with pytest.raises(FeedError):
            verify_easypost(body.replace(b"tracker", b"Tracker", 1), easypost_signature(body), SECRET)


def test_sample_fixture_event_in_transit() -> None:
    event = parse_easypost(sample("fixtures__event-body"))
    assert (event.carrier, event.tracking_number, event.event_id) == ("fedex", "1", "evt_1")
    assert (event.status, event.milestone) == ("in_transit", Milestone.SHIPPED)
    assert event.event_time == 1722624600  # 2024-08-02T18:50:00Z, the latest in_transit detail
    assert event.test_mode is False


def test_sample_tracking_guide_delivered() -> None:
    event = parse_easypost(sample("guides__tracking-guide__json__tracking-webhook"))
    assert (event.carrier, event.tracking_number, event.event_id) == ("ups", "EZ4000000004", "evt_...")
    assert (event.status, event.milestone) == ("delivered", Milestone.DELIVERED)
    # the delivered detail, although an earlier-dated out_for_delivery detail follows it in time
    assert event.event_time == 1416394314  # 2014-11-19T10:51:54Z
    assert event.test_mode is True


def test_sample_webhooks_guide_event_without_result_is_refused() -> None:
    err = refused(parse_easypost, sample("guides__webhooks-guide__event__event_example"))
    assert (err.code, err.details) == ("malformed", {"field": "result"})


# --- EasyPost X-Hmac-Signature-v2 (timestamp and path signed too) ------

NOW = 1_755_635_829  # Tue, 19 Aug 2025 20:37:09 GMT
STAMP = "Tue, 19 Aug 2025 20:37:09 -0000"
HOOK_PATH = "/v1/carriers/easypost/webhooks"


def easypost_v2_headers(
    body: bytes, *, stamp: str = STAMP, path: str = HOOK_PATH, method: str = "POST", secret: str = SECRET
) -> dict[str, str]:
    key = unicodedata.normalize("NFKD", secret).encode()
    digest = hmac.new(
        key, stamp.encode() + method.encode() + path.encode() + body, hashlib.sha256
    ).hexdigest()
    return {"x-timestamp": stamp, "x-path": path, "x-hmac-signature-v2": "hmac-sha256-hex=" + digest}


def test_easypost_v2_signature_accepted_within_the_tolerance() -> None:
    body = raw(easypost_body())
    headers = easypost_v2_headers(body)
    for now in (NOW, NOW - carriers.EASYPOST_TOLERANCE_SECONDS, NOW + carriers.EASYPOST_TOLERANCE_SECONDS):
        carriers.verify_easypost_request(body, headers, SECRET, now=now)
    # the same instant written with an offset signs (and parses) the same way
    offset = easypost_v2_headers(body, stamp="Tue, 19 Aug 2025 22:37:09 +0200")
    carriers.verify_easypost_request(body, offset, SECRET, now=NOW)


def test_without_a_v2_header_the_body_signature_is_checked() -> None:
    body = raw(easypost_body())
    carriers.verify_easypost_request(body, {"x-hmac-signature": easypost_signature(body)}, SECRET, now=NOW)
    with pytest.raises(FeedError):
        carriers.verify_easypost_request(body, {}, SECRET, now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"secret": "other-secret"},
        {"path": "/v1/carriers/aftership/webhooks"},
        {"method": "PUT"},
        {"stamp": "Tue, 19 Aug 2025 20:27:08 -0000"},  # 601 s old: outside the window
        {"stamp": "Tue, 19 Aug 2025 20:47:10 -0000"},  # from the future
    ],
)
def test_easypost_v2_refuses_another_secret_path_method_or_time(change: dict[str, str]) -> None:
    body = raw(easypost_body())
    headers = easypost_v2_headers(body, **change)
    if "stamp" not in change:  # signed over something else than what is sent
        headers.update({"x-timestamp": STAMP, "x-path": HOOK_PATH})
    with pytest.raises(FeedError) as err:
        carriers.verify_easypost_request(body, headers, SECRET, now=NOW)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-hmac-signature-v2": "hmac-sha256-hex=00"},  # no timestamp, no path
        {"x-hmac-signature-v2": "hmac-sha256-hex=00", "x-timestamp": "yesterday", "x-path": HOOK_PATH},
        {"x-hmac-signature-v2": "sha256=00", "x-timestamp": STAMP, "x-path": HOOK_PATH},
        {"x-hmac-signature-v2": "hmac-sha256-hex=zz", "x-timestamp": STAMP, "x-path": HOOK_PATH},
    ],
)
def test_easypost_v2_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(FeedError) as err:
        carriers.verify_easypost_request(raw(easypost_body()), headers, SECRET, now=NOW)
    assert err.value.code == "bad_signature"


def test_a_bad_v2_signature_is_not_rescued_by_a_good_v1_one() -> None:
    body = raw(easypost_body())
    headers = {
        **easypost_v2_headers(body, secret="other-secret"),
        "x-hmac-signature": easypost_signature(body),
    }
    with pytest.raises(FeedError):
        carriers.verify_easypost_request(body, headers, SECRET, now=NOW)
