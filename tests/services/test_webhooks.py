"""Merchant webhooks against a real HTTP receiver on 127.0.0.1: signatures, retries, exhaustion, claims, log.

Time is injected (``now=``): no test sleeps. The receiver records each request before it answers, so a
request is on record by the time ``deliver_due`` returns.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.models import Principal, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.db.session import transaction
from app.errors import InvalidInput
from app.feeds.outbound import verify_webhook
from app.services.index import indexer
from app.services.outbox import webhooks
from app.services.runtime import Runtime
from tests.services.test_indexer import open_shop
from tests.threads import run_threads

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SECRET = "whsec_0123456789abcdef"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A tiny webhook receiver: records every POST and answers from a plan (default 200)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.plan: deque[int] = deque()
        self.default = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    status = receiver.plan.popleft() if receiver.plan else receiver.default
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tradeguard"

    def fail(self, times: int, status: int = 500) -> None:
        """Answer the next ``times`` requests with ``status``."""
        with self._lock:
            self.plan.extend([status] * times)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@dataclass
class Merchant:
    rt: Runtime
    principal_id: str

    def endpoint(self, url: str, event_types: list[str] | None = None, enabled: bool = True) -> str:
        with transaction(self.rt.db) as s:
            ep = WebhookEndpoint(
                principal_id=self.principal_id,
                url=url,
                secret=SECRET,
                event_types=event_types or [],
                enabled=enabled,
            )
            s.add(ep)
            s.flush()
            return ep.id

    def emit(self, type_: str = "order.funded", at: datetime = T0, **data: Any) -> str:
        with transaction(self.rt.db) as s:
            payload = {
                "order_id": "0x" + "ab" * 32,
                "status": type_.split(".")[1],
                "amount": 1_500_000,
                **data,
            }
            return webhooks.emit(s, self.principal_id, type_, "0x" + "ab" * 32, payload, now=at).id

    def deliveries(self) -> list[WebhookDelivery]:
        with transaction(self.rt.db) as s:
            return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))

    def delivery(self) -> WebhookDelivery:
        [d] = self.deliveries()
        return d

    def attempts(self, delivery_id: str) -> list[WebhookAttempt]:
        with transaction(self.rt.db) as s:
            query = select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
            return list(s.scalars(query.order_by(WebhookAttempt.id)))


def _merchant(rt: Runtime, address: str = "0x" + "11" * 20) -> Merchant:
    with transaction(rt.db) as s:
        p = Principal(role="merchant", address=address, name="shop")
        s.add(p)
        s.flush()
        return Merchant(rt, p.id)


@pytest.fixture
def merchant(runtime: Runtime) -> Merchant:
    return _merchant(runtime)


def _unix(at: datetime) -> int:
    return int(at.timestamp())


# ------------------------------------------------------------------------------------------------ emit


def test_emit_queues_one_delivery_per_enabled_endpoint_that_wants_the_type(merchant: Merchant) -> None:
    everything = merchant.endpoint("https://a.example/hook")
    released_only = merchant.endpoint("https://b.example/hook", ["order.released"])
    orders = merchant.endpoint("https://c.example/hook", ["order.*"])
    merchant.endpoint("https://d.example/hook", enabled=False)
    other = _merchant(merchant.rt, "0x" + "22" * 20)
    other.endpoint("https://e.example/hook")

    event_id = merchant.emit("order.funded")
    assert sorted(d.endpoint_id for d in merchant.deliveries()) == sorted([everything, orders])
    assert released_only not in {d.endpoint_id for d in merchant.deliveries()}
    with transaction(merchant.rt.db) as s:
        event = s.get(WebhookEvent, event_id)
        assert event is not None and event.payload["amount"] == "1500000"  # amounts as decimal strings
        assert event.created_at == T0
        body = json.loads(webhooks.event_body(event))
    assert body == {
        "id": event_id,
        "type": "order.funded",
        "created": "2030-01-01T12:00:00Z",
        "data": {"order_id": "0x" + "ab" * 32, "status": "funded", "amount": "1500000"},
    }


def test_emit_with_an_event_id_is_idempotent(merchant: Merchant) -> None:
    merchant.endpoint("https://a.example/hook")
    with transaction(merchant.rt.db) as s:
        first = webhooks.emit(s, merchant.principal_id, "order.shipped", None, {"a": 1}, "evt_fixed")
    with transaction(merchant.rt.db) as s:
        again = webhooks.emit(s, merchant.principal_id, "order.shipped", None, {"a": 2}, "evt_fixed")
        assert again.id == first.id == "evt_fixed" and again.payload == {"a": 1}
    assert len(merchant.deliveries()) == 1


# -------------------------------------------------------------------------------------------- delivery


def test_delivers_a_signed_json_post(merchant: Merchant, receiver: Receiver) -> None:
    endpoint = merchant.endpoint(receiver.url)
    event_id = merchant.emit("order.released", seller_net="98000000")
    now = T0 + timedelta(seconds=1)
    report = webhooks.deliver_due(merchant.rt, now=now)
    assert (report.attempted, report.delivered, report.retrying) == (1, 1, 0)

    [req] = receiver.requests
    assert req.path == "/hooks/tradeguard"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["TradeGuard-Event-Id"] == event_id
    signature = req.headers["TradeGuard-Signature"]
    assert signature.startswith(f"t={_unix(now)},v1=")
    assert verify_webhook(SECRET, req.body, signature, now=_unix(now))
    assert not verify_webhook("another secret", req.body, signature, now=_unix(now))
    assert not verify_webhook(SECRET, req.body + b" ", signature, now=_unix(now))
    body = json.loads(req.body)
    assert (body["id"], body["type"], body["created"]) == (event_id, "order.released", "2030-01-01T12:00:00Z")
    assert body["data"]["seller_net"] == "98000000"

    delivery = merchant.delivery()
    assert (delivery.endpoint_id, delivery.status, delivery.attempts) == (endpoint, "delivered", 1)
    assert (delivery.delivered_at, delivery.last_status_code, delivery.last_error) == (now, 200, None)
    [attempt] = merchant.attempts(delivery.id)
    assert (attempt.status_code, attempt.error, attempt.at) == (200, None, now) and attempt.duration_ms >= 0

    assert webhooks.deliver_due(merchant.rt, now=now + timedelta(days=1)).attempted == 0
    assert len(receiver.requests) == 1


def test_failures_are_retried_with_backoff_until_delivered(merchant: Merchant, receiver: Receiver) -> None:
    merchant.endpoint(receiver.url)
    merchant.emit()
    receiver.fail(1, 500)
    receiver.fail(1, 503)
    receiver.fail(1, 429)
    rt = merchant.rt

    assert webhooks.deliver_due(rt, now=T0).retrying == 1
    assert merchant.delivery().next_attempt_at == T0 + timedelta(seconds=30)
    assert webhooks.deliver_due(rt, now=T0 + timedelta(seconds=29)).attempted == 0  # not yet due

    assert webhooks.deliver_due(rt, now=T0 + timedelta(seconds=30)).retrying == 1
    assert merchant.delivery().next_attempt_at == T0 + timedelta(seconds=150)
    assert webhooks.deliver_due(rt, now=T0 + timedelta(seconds=150)).retrying == 1
    assert merchant.delivery().next_attempt_at == T0 + timedelta(seconds=750)
    assert webhooks.deliver_due(rt, now=T0 + timedelta(seconds=750)).delivered == 1

    delivery = merchant.delivery()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 4, 200)
    log = merchant.attempts(delivery.id)
    assert [(a.status_code, a.error) for a in log] == [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (429, "HTTP 429"),
        (200, None),
    ]
    assert len({r.headers["TradeGuard-Event-Id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1  # the same bytes every time; only t= changes


def test_gives_up_exactly_at_the_retry_horizon(merchant: Merchant, receiver: Receiver) -> None:
    rt = merchant.rt
    assert rt.settings.webhook_retry_hours == 72
    merchant.endpoint(receiver.url)
    merchant.emit()
    receiver.default = 500
    offsets = []
    while merchant.delivery().status == "pending":
        due = merchant.delivery().next_attempt_at
        offsets.append(int((due - T0).total_seconds()))
        assert webhooks.deliver_due(rt, now=due).attempted == 1
    delivery = merchant.delivery()
    assert delivery.status == "exhausted" and delivery.last_status_code == 500
    steps = [30, 120, 600, 1800, 3600, 7200, 14400, 28800]
    expected = [0]
    while expected[-1] < 72 * 3600:
        expected.append(min(expected[-1] + steps[min(len(expected) - 1, len(steps) - 1)], 72 * 3600))
    assert offsets == expected and offsets[-1] == 72 * 3600 and len(offsets) == 17
    assert len(merchant.attempts(delivery.id)) == len(offsets) == len(receiver.requests)
    assert webhooks.deliver_due(rt, now=T0 + timedelta(days=30)).attempted == 0


def test_a_connection_error_is_logged_and_retried(merchant: Merchant) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    merchant.endpoint(f"http://127.0.0.1:{port}/hook")
    merchant.emit()
    report = webhooks.deliver_due(merchant.rt, now=T0)
    assert (report.attempted, report.retrying) == (1, 1)
    delivery = merchant.delivery()
    assert delivery.status == "pending" and delivery.next_attempt_at == T0 + timedelta(seconds=30)
    [attempt] = merchant.attempts(delivery.id)
    assert attempt.status_code is None and attempt.error is not None and "ConnectError" in attempt.error


def test_redirects_are_not_followed(merchant: Merchant, receiver: Receiver) -> None:
    merchant.endpoint(receiver.url)
    merchant.emit()
    receiver.fail(1, 302)
    assert webhooks.deliver_due(merchant.rt, now=T0).retrying == 1
    assert len(receiver.requests) == 1 and merchant.delivery().last_status_code == 302


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "file:///etc/passwd", "javascript:alert(1)", "http:///x"]
)
def test_refuses_urls_that_are_not_http(merchant: Merchant, url: str) -> None:
    merchant.endpoint(url)
    merchant.emit()
    report = webhooks.deliver_due(merchant.rt, now=T0)
    assert (report.attempted, report.failed) == (0, 1)
    delivery = merchant.delivery()
    assert (
        delivery.status == "failed" and delivery.last_error is not None and "refused" in delivery.last_error
    )
    [attempt] = merchant.attempts(delivery.id)
    assert attempt.status_code is None and attempt.error == delivery.last_error


def test_a_disabled_endpoint_gets_nothing_more(merchant: Merchant, receiver: Receiver) -> None:
    endpoint = merchant.endpoint(receiver.url)
    merchant.emit()
    with transaction(merchant.rt.db) as s:
        ep = s.get(WebhookEndpoint, endpoint)
        assert ep is not None
        ep.enabled = False
    assert webhooks.deliver_due(merchant.rt, now=T0).cancelled == 1
    assert merchant.delivery().status == "cancelled" and receiver.requests == []


def test_two_workers_never_send_the_same_delivery_twice(merchant: Merchant, receiver: Receiver) -> None:
    merchant.endpoint(receiver.url)
    ids = [merchant.emit(at=T0 + timedelta(milliseconds=i)) for i in range(12)]
    barrier = threading.Barrier(2)
    reports: list[webhooks.DeliveryReport] = []

    def worker() -> None:
        with httpx.Client() as client:
            barrier.wait(timeout=30)
            reports.append(webhooks.deliver_due(merchant.rt, client, now=T0 + timedelta(minutes=1)))

    assert run_threads([worker] * 2) == []
    assert sum(r.delivered for r in reports) == 12
    assert sorted(r.headers["TradeGuard-Event-Id"] for r in receiver.requests) == sorted(ids)


def test_a_worker_lost_mid_send_leads_to_one_resend(merchant: Merchant, receiver: Receiver) -> None:
    rt = merchant.rt
    merchant.endpoint(receiver.url)
    merchant.emit()
    lost = webhooks._claim(rt, T0, webhooks.DeliveryReport())  # a worker claims it, then dies
    assert isinstance(lost, webhooks._Claim)
    assert merchant.delivery().status == "sending"
    assert webhooks.deliver_due(rt, now=T0 + webhooks.CLAIM_LEASE - timedelta(seconds=1)).attempted == 0

    report = webhooks.deliver_due(rt, now=T0 + webhooks.CLAIM_LEASE)
    assert report.delivered == 1
    delivery = merchant.delivery()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    log = merchant.attempts(delivery.id)
    assert [a.status_code for a in log] == [None, 200]
    assert log[0].error is not None and "worker lost" in log[0].error

    # the lost worker comes back and reports a failure: logged, but the delivery stays delivered
    webhooks._record(rt, lost, T0 + timedelta(minutes=5), (500, "HTTP 500", 10), webhooks.DeliveryReport())
    assert merchant.delivery().status == "delivered"
    assert [a.status_code for a in merchant.attempts(delivery.id)] == [None, 200, 500]


def test_deliver_due_takes_at_most_limit(merchant: Merchant, receiver: Receiver) -> None:
    merchant.endpoint(receiver.url)
    for i in range(5):
        merchant.emit(at=T0 + timedelta(seconds=i))
    assert webhooks.deliver_due(merchant.rt, now=T0 + timedelta(minutes=1), limit=3).delivered == 3
    assert webhooks.deliver_due(merchant.rt, now=T0 + timedelta(minutes=1), limit=3).delivered == 2
    # oldest first
    assert [b["created"] for b in receiver.bodies()] == sorted(b["created"] for b in receiver.bodies())


def test_delivery_log_pages_newest_first_with_attempts(merchant: Merchant, receiver: Receiver) -> None:
    endpoint = merchant.endpoint(receiver.url)
    ids = [merchant.emit(at=T0 + timedelta(seconds=i)) for i in range(5)]
    receiver.fail(1, 500)
    webhooks.deliver_due(merchant.rt, now=T0 + timedelta(minutes=1))
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        with transaction(merchant.rt.db) as s:
            page = webhooks.delivery_log(s, endpoint, limit=2, cursor=cursor)
        seen.extend(page["items"])
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert pages == 3
    assert [i["event_id"] for i in seen] == list(reversed(ids))
    oldest = seen[-1]
    assert oldest["status"] == "pending" and oldest["attempts"] == 1
    assert oldest["last_status_code"] == 500 and oldest["next_attempt_at"] == "2030-01-01T12:01:30Z"
    [entry] = oldest["log"]
    assert (entry["at"], entry["status_code"], entry["error"]) == ("2030-01-01T12:01:00Z", 500, "HTTP 500")
    assert all(i["status"] == "delivered" and i["log"][0]["status_code"] == 200 for i in seen[:-1])
    with transaction(merchant.rt.db) as s, pytest.raises(InvalidInput):
        webhooks.delivery_log(s, endpoint, cursor="not-a-cursor")


def test_the_indexer_s_events_reach_the_receiver(runtime: Runtime, receiver: Receiver) -> None:
    shop = open_shop(runtime, endpoint=False)
    Merchant(runtime, shop.merchant_id).endpoint(receiver.url, ["order.funded"])
    auth = shop.api_order("SO-W1")
    shop.factory.ship(shop.fund(auth))
    assert indexer.sync(runtime).webhooks == 2
    now = datetime.now(UTC)
    assert webhooks.deliver_due(runtime, now=now + timedelta(seconds=1)).delivered == 1
    [req] = receiver.requests
    assert verify_webhook(SECRET, req.body, req.headers["TradeGuard-Signature"], now=_unix(now))
    body = json.loads(req.body)
    assert body["type"] == "order.funded" and body["data"]["amount"] == str(auth.amount)
    assert body["data"]["order_id"] == "0x" + auth.order_id.hex()
