"""``GET /metrics`` (issue 10, item 5): Prometheus text, request histograms by route template and status, and
gauges read at scrape time from the database (one read transaction) and the node (one bounded probe)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.api.routes import logistics
from app.client import demo
from app.client.demo import Wallets
from app.db.models import KeyValue
from app.services import metrics
from app.services.outbox import nonce_manager
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth
from workers.tasks import sweep_all

UNIT = 10**6
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    resp = client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(resp.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template_never_by_raw_path(client: TestClient, keys: Keys) -> None:
    count = "tradeguard_http_request_duration_seconds_count"
    template = {"method": "GET", "route": "/v1/orders/{order_id}", "status": "404"}
    before = scrape(client)
    for oid in ("0x" + "ab" * 32, "0x" + "cd" * 32):
        assert_problem(client.get(f"/v1/orders/{oid}", headers=auth(keys.merchant)), 404)
    assert client.get("/no/such/path/12345").status_code == 404
    assert client.get("/healthz").status_code == 200
    after = scrape(client)
    assert value(after, count, **template) - value(before, count, **template) == 2
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, count, **unmatched) - value(before, count, **unmatched) == 1
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(after, count, **healthz) - value(before, count, **healthz) == 1
    # latency buckets exist for the template, and no series names a raw path
    assert value(after, "tradeguard_http_request_duration_seconds_bucket", **template, le="+Inf") >= 2
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(r and ("abab" in r or "cdcd" in r or "12345" in r) for r in routes)


def test_gauges_follow_the_orders_through_their_life(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    ref = "MX-1"
    order = d.create_and_fund(ref, 40 * UNIT)
    sscc = d.ship(order, 41)
    d.epcis(sscc, "shipping", d.chain_time() - 60, order_ref=ref)
    d.epcis(sscc, "receiving", d.chain_time(), order_ref=ref)
    sweep_all()
    delivered = d.wait_status(order["id"], "delivered")

    got = scrape(client)
    assert value(got, "tradeguard_node_up") == 1
    assert value(got, "tradeguard_orders", status="delivered") == 1
    assert value(got, "tradeguard_intents", kind="fund", status="confirmed") == 1
    assert value(got, "tradeguard_intents", kind="attest", status="confirmed") == 2
    assert value(got, "tradeguard_relayer_pending_intents") == 0
    assert value(got, "tradeguard_relayer_oldest_pending_age_seconds") == 0
    assert value(got, "tradeguard_chain_head_block") == runtime.chain.block_number()
    assert value(got, "tradeguard_indexer_lag_blocks") == 0
    balance = runtime.chain.balance(runtime.relayer.address)  # exposed as a float, like every sample
    assert value(got, "tradeguard_gas_wallet_balance_wei") == pytest.approx(balance, rel=1e-15)
    assert value(got, "tradeguard_chain_halted") == 0
    assert value(got, "tradeguard_keeper_due_orders", action="release") == 0
    assert value(got, "tradeguard_relayer_nonce_gap") == 0

    # the hold window passes on chain, and no sweep has run yet: the release is due and not done
    runtime.chain.advance_time(int(delivered["hold_seconds"]) + 1)
    got = scrape(client)
    assert value(got, "tradeguard_keeper_due_orders", action="release") == 1
    lag = value(got, "tradeguard_indexer_lag_blocks")  # the blocks the clock move mined (confirmations: 0)
    head, cursor = value(got, "tradeguard_chain_head_block"), value(got, "tradeguard_indexer_cursor_block")
    assert lag >= 1 and lag == head - cursor
    sweep_all()  # beat's next tick: the keeper submits, the relayer sends, the indexer follows
    got = scrape(client)
    assert value(got, "tradeguard_keeper_due_orders", action="release") == 0
    assert value(got, "tradeguard_orders", status="released") == 1
    assert value(got, "tradeguard_intents", kind="release", status="confirmed") == 1
    assert value(got, "tradeguard_indexer_lag_blocks") == 0


def test_a_lost_wake_up_shows_as_inbox_backlog_and_webhook_failures_are_counted(
    client: TestClient, admin_key: str, wallets: Wallets, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    # a merchant endpoint nobody listens on (the discard port): every delivery attempt fails
    d.post(d.parties.merchant, "/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, 201)
    order = d.create_and_fund("MX-2", 10 * UNIT)
    sweep_all()  # the webhook sweep tries the endpoint: connection refused
    got = scrape(client)
    assert value(got, "tradeguard_webhook_failed_attempts_total") >= 1
    assert value(got, "tradeguard_webhook_deliveries", status="pending") >= 1
    assert value(got, "tradeguard_inbox_backlog", source="epcis") == 0

    monkeypatch.setattr(logistics, "wake", lambda _name: None)  # the wake-up message is lost (Redis down)
    event = demo.object_event(d.chain_time(), "shipping", bizTransactionList=[])
    resp = client.post(
        "/v1/epcis/capture",
        content=demo.epcis_document(event),
        headers={**auth(d.parties.oracle), "Content-Type": "application/ld+json"},
    )
    assert resp.status_code == 202, resp.text
    got = scrape(client)
    assert value(got, "tradeguard_inbox_backlog", source="epcis") == 1
    assert value(got, "tradeguard_inbox_oldest_age_seconds") >= 0
    sweep_all()  # beat's next tick processes it
    assert value(scrape(client), "tradeguard_inbox_backlog", source="epcis") == 0
    assert d.order(d.parties.merchant, order["id"])["status"] == "funded"  # it named no order


def test_a_node_that_does_not_answer_in_time_leaves_out_only_the_node_series(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(_rt: Runtime) -> metrics.NodeReading:
        raise TimeoutError("the node did not answer")

    monkeypatch.setattr(metrics, "_read_node", unreachable)
    got = scrape(client)
    assert value(got, "tradeguard_node_up") == 0
    names = {name for name, _ in got}
    # the database's series are all there; the node's are left out (not reported as zero)
    assert {
        "tradeguard_relayer_pending_intents",
        "tradeguard_inbox_oldest_age_seconds",
        "tradeguard_chain_halted",
    } <= names
    assert not names & {
        "tradeguard_chain_head_block",
        "tradeguard_indexer_lag_blocks",
        "tradeguard_gas_wallet_balance_wei",
        "tradeguard_keeper_due_orders",
    }


def test_metrics_token(client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    monkeypatch.setattr(
        runtime, "settings", runtime.settings.model_copy(update={"metrics_token": SecretStr("s3cret-scrape")})
    )
    assert_problem(client.get("/metrics"), 401, "unauthorized")
    assert_problem(client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert "tradeguard_node_up" in {n for n, _ in scrape(client, {"Authorization": "Bearer s3cret-scrape"})}


def test_nonces_allocated_that_the_node_never_saw_are_a_gap(client: TestClient, runtime: Runtime) -> None:
    """As after a crash between recording a signed transaction and broadcasting it (the relayer re-sends)."""
    key = nonce_manager.nonce_key(runtime.relayer.address)
    node_nonce = runtime.chain.nonce(runtime.relayer.address)
    with runtime.db() as s, s.begin():
        row = s.get(KeyValue, key)
        if row is None:
            s.add(KeyValue(key=key, value={"next": node_nonce + 2}))
        else:
            row.value = {**row.value, "next": node_nonce + 2}
    assert value(scrape(client), "tradeguard_relayer_nonce_gap") == 2
