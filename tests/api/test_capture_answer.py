"""The 202 answer to a capture says the input's status without reading it back when nothing can have moved
it yet: the sweep that processes it runs elsewhere (background sweepers, a Celery worker). When the sweep ran
right in the request (eager Celery), or the capture is a duplicate, the status is read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.client import demo
from app.client.demo import Wallets
from app.db.models import Principal
from app.db.session import write
from app.services import idempotency, wake
from app.services.inbox import ingestion
from app.services.runtime import Runtime
from tests.api.conftest import Keys, auth
from tests.api.test_idempotency_claims import grown, record, write_counts
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


def test_a_new_captures_answer_is_kept_with_it_and_replayed_under_its_key(
    client: TestClient,
    admin_key: str,
    wallets: Wallets,
    runtime: Runtime,
    elsewhere: list[str],
) -> None:
    """The 202 of a new capture is kept for its Idempotency-Key in the transaction that stores the capture:
    one write transaction for the request, and a replay gets the same bytes."""
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    key = uuid.uuid4().hex
    headers = {**auth(d.parties.oracle, key), **LD_JSON}
    body = _document(d, "106141411234567811")
    warm = client.post(
        "/v1/epcis/capture",
        content=_document(d, "106141411234567835"),
        headers=auth(d.parties.oracle, None) | LD_JSON,
    )
    assert warm.status_code == 202, warm.text  # the key's first use refreshes its last_used_at: done
    before = write_counts(client)
    first = client.post("/v1/epcis/capture", content=body, headers=headers)
    assert first.status_code == 202, first.text
    writes = grown(before, write_counts(client))
    assert writes == {"app.services.inbox.ingestion._store": 1}, writes
    kept = record(runtime, key)
    assert kept is not None
    assert (kept.status_code, kept.content_type, kept.response_body) == (
        202,
        "application/json",
        first.content,
    )
    again = client.post("/v1/epcis/capture", content=body, headers=headers)
    assert (again.status_code, again.content) == (202, first.content)
    assert again.headers["idempotent-replayed"] == "true"


def test_an_eager_captures_answer_replaces_the_one_kept_with_it(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    """Processed right in the request (eager Celery), the capture answers another status than the one kept
    with it: the answer sent is what its key keeps."""
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    key = uuid.uuid4().hex
    headers = {**auth(d.parties.oracle, key), **LD_JSON}
    body = _document(d, "106141411234567828")
    before = write_counts(client)
    first = client.post("/v1/epcis/capture", content=body, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["status"] != "received"
    assert grown(before, write_counts(client)).get("app.services.idempotency.finish") == 1
    kept = record(runtime, key)
    assert kept is not None and (kept.status_code, kept.response_body) == (202, first.content)
    again = client.post("/v1/epcis/capture", content=body, headers=headers)
    assert (again.status_code, again.content) == (202, first.content)


def test_an_answer_kept_in_a_transaction_that_rolled_back_is_not_taken_as_kept(
    keys: Keys, runtime: Runtime
) -> None:
    """The transaction that carried the claim and kept an answer rolled back; the next one carries the
    claim without an answer: the request's answer is then written by ``finish``."""
    with runtime.db() as s:
        owner = s.scalars(select(Principal.id)).first()
    assert owner is not None
    key = uuid.uuid4().hex
    claim = idempotency.DeferredClaim(runtime, owner, key, "c" * 64, "POST", "/v1/epcis/capture")
    answer = (202, "application/json", b'{"kept":1}')

    def keep_then_fail(s: Session) -> None:
        idempotency.keep_answer(s, *answer)
        raise RuntimeError("the request's own write failed")

    with claim.carried():
        with pytest.raises(RuntimeError):
            write(runtime.db, keep_then_fail)
        assert claim.kept is None or not claim.made
        write(runtime.db, lambda s: None)  # the request's next write carries the claim, keeps nothing
    assert claim.made and claim.kept is None
    stored = record(runtime, key)
    assert stored is not None and stored.status_code is None
    idempotency.finish(runtime, owner, key, *answer, claim)
    stored = record(runtime, key)
    assert stored is not None and (stored.status_code, stored.response_body) == (202, answer[2])
    # a kept answer that is the one sent: finish has nothing to write
    other = idempotency.DeferredClaim(runtime, owner, key + "b", "c" * 64, "POST", "/v1/epcis/capture")
    with other.carried():
        write(runtime.db, lambda s: idempotency.keep_answer(s, *answer))
    assert other.made and other.kept == answer
    before = record(runtime, key + "b")
    assert before is not None and before.response_body == answer[2]
