"""The 202 answer to a capture says the input's status without reading it back when nothing can have moved
it yet: the sweep that processes it runs elsewhere (background sweepers, a Celery worker). When the sweep ran
right in the request (eager Celery), or the capture is a duplicate, the status is read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.client import demo
from app.client.demo import Wallets
from app.services import wake
from app.services.inbox import ingestion
from tests.api.conftest import auth
from workers import tasks

LD_JSON = {"Content-Type": "application/ld+json"}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The capture ids whose status was read back."""
    seen: list[str] = []
    real = ingestion.inbox_status

    def spy(rt: Any, item_id: str) -> str:
        seen.append(item_id)
        return real(rt, item_id)

    monkeypatch.setattr(ingestion, "inbox_status", spy)
    return seen


@pytest.fixture
def elsewhere() -> Iterator[list[str]]:
    """Wakes heard by a waker that runs nothing here (as the background sweepers or a broker)."""
    heard: list[str] = []

    def waker(sweep: str) -> bool:
        heard.append(sweep)
        return False

    wake.install(waker)
    try:
        yield heard
    finally:
        wake.install(tasks.kick)


def _document(d: demo.Demo, sscc: str) -> bytes:
    event = demo.object_event(
        d.chain_time(), "shipping", epcList=[f"https://id.gs1.org/00/{sscc}"], disposition="in_transit"
    )
    return demo.epcis_document(event)


def test_a_new_capture_answers_as_stored_and_a_duplicate_reads_its_status(
    client: TestClient, admin_key: str, wallets: Wallets, reads: list[str], elsewhere: list[str]
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    body = _document(d, "106141411234567897")
    first = client.post("/v1/epcis/capture", content=body, headers={**auth(d.parties.oracle), **LD_JSON})
    assert first.status_code == 202, first.text
    answer = first.json()
    assert (answer["status"], answer["duplicate"]) == ("received", False)
    assert elsewhere == ["inbox"] and reads == []
    # the database agrees: nothing processed it
    assert d.get(d.parties.oracle, f"/v1/epcis/capture/{answer['capture_id']}")["status"] == "received"
    # the same document again, under another Idempotency-Key: the inbox's own duplicate
    again = client.post("/v1/epcis/capture", content=body, headers={**auth(d.parties.oracle), **LD_JSON})
    assert again.status_code == 202, again.text
    assert again.json()["duplicate"] is True and again.json()["capture_id"] == answer["capture_id"]
    assert reads == [answer["capture_id"]] and elsewhere == ["inbox"]


def test_a_capture_the_request_processed_eagerly_answers_its_status_as_read(
    client: TestClient, admin_key: str, wallets: Wallets, reads: list[str]
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    resp = client.post(
        "/v1/epcis/capture",
        content=_document(d, "106141411234567804"),
        headers={**auth(d.parties.oracle), **LD_JSON},
    )
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert reads == [answer["capture_id"]]
    stored = d.get(d.parties.oracle, f"/v1/epcis/capture/{answer['capture_id']}")
    assert answer["status"] == stored["status"] != "received"
