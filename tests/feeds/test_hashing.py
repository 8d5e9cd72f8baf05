"""Canonical JSON, content hashes and the tamed CBV 2.0 event hash (SPEC §4)."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from app.errors import FeedError
from app.feeds import hashing
from app.feeds.hashing import canonical_bytes, cbv_event_hash, content_sha256, load_json

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
REPO = Path(__file__).resolve().parents[2]

SHIPPING: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2024-03-01T10:00:00.000+01:00",
    "eventTimeZoneOffset": "+01:00",
    "action": "OBSERVE",
    "epcList": ["urn:epc:id:sgtin:9521234.012345.1001"],
    "bizStep": "shipping",
    "disposition": "in_transit",
    "readPoint": {"id": "urn:epc:id:sgln:9521234.00001.0"},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


# --- canonical JSON and content hashes ------


def test_canonical_bytes_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_bytes({"b": 1, "a": [True, None, "x"], "c": {"z": 1.0, "y": "é"}}) == (
        '{"a":[true,null,"x"],"b":1,"c":{"y":"é","z":1}}'.encode()
    )


def test_content_hash_is_sha256_of_canonical_bytes() -> None:
    obj = {"tracking": "1Z999", "n": 3}
    digest = content_sha256(obj)
    assert len(digest) == 32
    assert digest == hashlib.sha256(b'{"n":3,"tracking":"1Z999"}').digest()


def test_key_order_and_whitespace_do_not_change_the_hash() -> None:
    a = load_json(b'{"a": 1, "b": {"c": [1, 2], "d": "x"}}', max_bytes=1000)
    b = load_json(b'{\n  "b": {"d":"x","c":[1,2]},\n  "a":1\n}\n', max_bytes=1000)
    assert content_sha256(a) == content_sha256(b)
    assert content_sha256(a) != content_sha256({"a": 2, "b": {"c": [1, 2], "d": "x"}})


@given(json_values)
def test_any_serialisation_of_a_value_hashes_the_same(value: Any) -> None:
    compact = json.dumps(value, separators=(",", ":")).encode()
    pretty = json.dumps(value, indent=3, sort_keys=True, ensure_ascii=False).encode()
    assert content_sha256(load_json(compact, max_bytes=10**6)) == content_sha256(
        load_json(pretty, max_bytes=10**6)
    )


def test_integers_outside_the_json_safe_range_cannot_be_canonicalised() -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_bytes({"n": 2**53})


# --- strict JSON reading ------


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"a": 1', b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1, "a": 2}', b"\xff\xfe{}"],
)
def test_load_json_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(FeedError) as err:
        load_json(body, max_bytes=1000)
    assert err.value.code == "malformed"


def test_load_json_refuses_oversized_bodies() -> None:
    with pytest.raises(FeedError) as err:
        load_json(b'{"a": "' + b"x" * 100 + b'"}', max_bytes=50)
    assert err.value.code == "too_large"
    assert err.value.details == {"limit": 50}


@pytest.mark.parametrize("depth", [hashing.MAX_DEPTH + 1, 100_000])
def test_load_json_refuses_deep_nesting(depth: int) -> None:
    with pytest.raises(FeedError) as err:
        load_json(b"[" * depth + b"]" * depth, max_bytes=10**6)
    assert err.value.code == "too_large"


@pytest.mark.parametrize("body", [b"[" * 100_000, b"[}" * 10, b"[[]", b'{"a": [1, 2}'])
def test_load_json_refuses_unbalanced_brackets_without_recursing(body: bytes) -> None:
    with pytest.raises(FeedError) as err:
        load_json(body, max_bytes=10**6)
    assert err.value.code == "malformed"


def test_brackets_inside_strings_do_not_count() -> None:
    value = {"a": "[" * 40 + '\\"' + "{" * 40 + "\\", "b": ["]", "}"]}
    assert load_json(json.dumps(value).encode(), max_bytes=1000, max_depth=2) == value


def test_load_json_accepts_the_depth_limit() -> None:
    depth = hashing.MAX_DEPTH
    assert load_json(b"[" * depth + b"]" * depth, max_bytes=10**6) is not None


# --- CBV 2.0 event hash ------


def test_cbv_hash_has_the_ni_form_and_is_deterministic() -> None:
    first = cbv_event_hash(SHIPPING, [EPCIS_CONTEXT])
    assert first is not None
    assert first.startswith("ni:///sha-256;") and first.endswith("?ver=CBV2.0")
    assert len(first.split(";")[1].split("?")[0]) == 64
    reordered = dict(reversed(list(SHIPPING.items())))
    assert cbv_event_hash(reordered, [EPCIS_CONTEXT]) == first


def test_cbv_hash_changes_with_content_but_not_with_event_id_or_error_declaration() -> None:
    base = cbv_event_hash(SHIPPING, [EPCIS_CONTEXT])
    assert cbv_event_hash({**SHIPPING, "bizStep": "receiving"}, [EPCIS_CONTEXT]) != base
    retracted = {
        **SHIPPING,
        "eventID": "urn:uuid:5a8b7c1e-0000-4000-8000-000000000001",
        "errorDeclaration": {"declarationTime": "2024-03-02T00:00:00Z", "reason": "incorrect_data"},
    }
    # a retraction names the same event, so the CBV algorithm leaves eventID and errorDeclaration out
    assert cbv_event_hash(retracted, [EPCIS_CONTEXT]) == base


def test_cbv_hash_does_not_mutate_its_input() -> None:
    event = json.loads(json.dumps(SHIPPING))
    cbv_event_hash(event, [EPCIS_CONTEXT])
    assert event == SHIPPING


def test_cbv_hash_of_an_event_does_not_depend_on_earlier_documents() -> None:
    # The generator's namespace table is module state; a prefix from one document must not leak into the next.
    plain = {**SHIPPING, "acme:note": "acme:thing"}
    before = cbv_event_hash(plain, [EPCIS_CONTEXT])
    cbv_event_hash(
        {**SHIPPING, "bizStep": "receiving"}, [EPCIS_CONTEXT, {"acme": "https://acme.example/voc/"}]
    )
    assert cbv_event_hash(plain, [EPCIS_CONTEXT]) == before


def test_unknown_contexts_are_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    jsonld = importlib.import_module("pyld.jsonld")

    def no_network(**kwargs: Any) -> Any:
        raise AssertionError("the network document loader was used")

    monkeypatch.setattr(jsonld, "requests_document_loader", no_network)
    previous = jsonld.get_document_loader()
    assert cbv_event_hash(SHIPPING, [EPCIS_CONTEXT, "https://contexts.example/acme.jsonld"]) is None
    assert jsonld.get_document_loader() is previous
    with pytest.raises(LookupError):
        hashing._offline_document_loader("https://contexts.example/acme.jsonld")


@pytest.mark.parametrize(
    "event, context",
    [
        ({"type": "ObjectEvent"}, {"broken": {"@type": "@id"}}),  # generator needs string-valued prefixes
        ({"eventTime": object()}, None),
        ({"type": "ObjectEvent", "eventTime": "2024-03-01T10:00:00Z"}, 42),
    ],
)
def test_cbv_hash_failures_are_none(event: dict[str, Any], context: Any) -> None:
    assert cbv_event_hash(event, context) is None


def test_cbv_hash_logs_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    assert cbv_event_hash({"type": "ObjectEvent"}, [EPCIS_CONTEXT, {"rail": {"@type": "@id"}}]) is None
    assert caplog.records, "the failure should be visible at debug level"
    assert all(record.levelname == "DEBUG" for record in caplog.records)


def test_cbv_hash_has_no_process_wide_side_effects() -> None:
    # In a fresh interpreter: importing and running the generator must not move sys.path, configure root
    # logging or print anything, even when the generator fails and "logs an error".
    script = f"""
import logging, sys
path = list(sys.path)
from app.feeds.hashing import cbv_event_hash
ok = cbv_event_hash({SHIPPING!r}, [{EPCIS_CONTEXT!r}])
failed = cbv_event_hash({{"type": "ObjectEvent"}}, [{EPCIS_CONTEXT!r}, {{"rail": {{"@type": "@id"}}}}])
assert ok is not None and failed is None, (ok, failed)
assert sys.path == path, sys.path[:3]
assert logging.getLogger().handlers == [], logging.getLogger().handlers
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""
