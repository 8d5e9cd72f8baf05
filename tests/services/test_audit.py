"""The service's periodic audit (app/services/index/audit.py): silent on a consistent index, and it reports a
row changed behind the service's back (status, split) and an index that no longer matches the chain, in the
log, in ``kv['audit']`` and in ``GET /metrics``; the keeper runs it every ``audit_seconds``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from app.db.models import ChainEvent, KeyValue, Order
from app.db.session import transaction
from app.domain.order_state import Status
from app.services import metrics, principals
from app.services.index import audit, indexer
from app.services.runtime import Runtime
from tests.api.test_verify import _factory
from workers import tasks


def test_a_consistent_index_has_no_disagreement_and_each_tampering_is_reported(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    principals.register(
        runtime, "merchant", runtime.dev_accounts["merchant"].address
    )  # its orders are indexed
    factory = _factory(runtime)
    released = factory.in_status(Status.RELEASED)
    refunded = factory.in_status(Status.REFUNDED)
    factory.in_status(Status.FUNDED)
    indexer.sync(runtime)

    clean = audit.run(runtime)

    assert clean.findings == [] and clean.orders == 3 and clean.tokens == 1
    assert "tradeguard_audit_disagreements 0.0" in metrics.scrape(runtime).decode()

    rid, fid = "0x" + released.order_id.hex(), "0x" + refunded.order_id.hex()
    with transaction(runtime.db) as s:
        row = s.get(Order, rid)
        assert row is not None
        row.status = "refunded"  # changed behind the service's back
        other = s.get(Order, fid)
        assert other is not None
        other.buyer_refund = 1
        funded = (
            s.query(ChainEvent).filter(ChainEvent.order_id == fid, ChainEvent.name == "OrderFunded").one()
        )
        funded.args = {**funded.args, "terms": {**funded.args["terms"], "amount": "1"}}  # the index lies
    caplog.set_level(logging.ERROR, logger="app.services.index.audit")

    found = audit.run(runtime)

    checks = sorted((f["check"], f.get("order_id")) for f in found.findings)
    # the funding was already in the kept sums: the re-sum of the kept events finds it changed
    assert checks == [("history", None), ("split", fid), ("status", rid)], found.findings
    assert sum("AUDIT DISAGREEMENT" in r.message for r in caplog.records) == 3
    stored = audit.last(runtime)
    assert stored is not None and stored["disagreements"] == 3
    assert "tradeguard_audit_disagreements 3.0" in metrics.scrape(runtime).decode()


def test_a_pass_reads_what_was_indexed_since_plus_one_slice_of_the_rest(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost of a pass does not grow with the index: new events are added to the kept sums; old orders and
    old events are read again a slice a pass, and the re-sum, once complete, is held against the kept sums."""
    principals.register(runtime, "merchant", runtime.dev_accounts["merchant"].address)
    factory = _factory(runtime)
    monkeypatch.setattr(audit, "ORDER_SLICE", 1)
    monkeypatch.setattr(audit, "EVENT_SLICE", 1)
    first = [factory.in_status(Status.FUNDED) for _ in range(3)]
    indexer.sync(runtime)

    one = audit.run(runtime)  # every order is new to the audit: all three checked, the sums start
    assert (one.findings, one.orders, one.tokens) == ([], 3, 1)
    kept = audit_sums(runtime)
    assert kept["sums"]["funded"] == {factory.token.address: str(3 * first[0].terms.amount)}

    quiet = [audit.run(runtime) for _ in range(3)]  # nothing new: one order of the sweep a pass
    assert [(r.findings, r.orders) for r in quiet] == [([], 1), ([], 1), ([], 1)]

    new = "0x" + factory.in_status(Status.FUNDED).order_id.hex()
    indexer.sync(runtime)
    _set_status(runtime, new, "released")  # the new order's row, changed behind the service's back
    more = audit.run(runtime)  # the order its new events touched is checked now, whatever the sweep's turn
    assert [(f["check"], f["order_id"]) for f in more.findings] == [("status", new)]
    assert audit_sums(runtime)["sums"]["funded"] == {factory.token.address: str(4 * first[0].terms.amount)}
    _set_status(runtime, new, "funded")

    # an old funding changed behind the service's back: the re-sum (one event a pass) reaches it
    with transaction(runtime.db) as s:
        row = s.query(ChainEvent).filter(ChainEvent.name == "OrderFunded").order_by(ChainEvent.id).first()
        assert row is not None
        row.args = {**row.args, "terms": {**row.args["terms"], "amount": "1"}}
    # (within two rounds of the re-sum: 4 fundings, one a pass, plus the pass that compares)
    checks = [[f["check"] for f in audit.run(runtime).findings] for _ in range(10)]
    assert ["history"] in checks and all(c in ([], ["history"]) for c in checks), checks


def _set_status(rt: Runtime, order_id: str, status: str) -> None:
    with transaction(rt.db) as s:
        row = s.get(Order, order_id)
        assert row is not None
        row.status = status


def audit_sums(rt: Runtime) -> dict[str, Any]:
    with transaction(rt.db) as s:
        row = s.get(KeyValue, audit.SUMS_KEY)
        assert row is not None
        return dict(row.value)


def test_the_keeper_audits_every_audit_seconds(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    real = audit.run
    monkeypatch.setattr(audit, "run", lambda rt: runs.append(1) or real(rt))
    tasks.keeper_step(runtime)
    assert runs == []  # audit_seconds = 0 in the tests: never
    runtime.settings = runtime.settings.model_copy(update={"audit_seconds": 3600})
    tasks.keeper_step(runtime)
    tasks.keeper_step(runtime)
    assert runs == [1]  # the first pass audits, the next one is within the hour
