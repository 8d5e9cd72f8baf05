"""The service's periodic audit (app/services/index/audit.py): silent on a consistent index, and it reports a
row changed behind the service's back (status, split) and an index that no longer matches the chain, in the
log, in ``kv['audit']`` and in ``GET /metrics``; the keeper runs it every ``audit_seconds``."""

from __future__ import annotations

import logging

import pytest

from app.db.models import ChainEvent, Order
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
    assert checks == [("conservation", None), ("split", fid), ("status", rid)], found.findings
    assert sum("AUDIT DISAGREEMENT" in r.message for r in caplog.records) == 3
    stored = audit.last(runtime)
    assert stored is not None and stored["disagreements"] == 3
    assert "tradeguard_audit_disagreements 3.0" in metrics.scrape(runtime).decode()


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
