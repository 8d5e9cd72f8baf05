"""The merchant's settlement dashboard, orders list (filters, cursor paging), CSV export and webhook
endpoints; the oracle's captures (status and errors); the admin's corridors; the Secure cookie
behind HTTPS."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import Live, Session, screenshot
from tests.web.test_journeys import UNIT, _split, capture, create_order, fund
from workers.tasks import webhooks_step


def test_dashboard_cards_calendar_and_csv_export(
    live: Live, sign_in: Callable[..., Session], tmp_path: Path
) -> None:
    merchant, buyer, oracle = (sign_in(r) for r in ("merchant", "buyer", "oracle"))
    buyer_address = live.keys["buyer"].address or ""
    delivered = create_order(merchant, buyer_address, "DASH-1", "100", 31)
    funded_only = create_order(merchant, buyer_address, "DASH-2", "30", 32)
    create_order(merchant, buyer_address, "DASH-3", "1", 33)  # awaiting funding: in no card
    fund(buyer, delivered)
    fund(buyer, funded_only)
    now = live.chain_time()
    capture(oracle, tmp_path, live, "DASH-1", 31, "shipping", now - 60)
    capture(oracle, tmp_path, live, "DASH-1", 31, "receiving", now)
    page = merchant.goto(f"/console/orders/{delivered}")
    expect(page.get_by_test_id("status")).to_have_text("delivered")

    violations: list[str] = []
    page.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    page = merchant.goto("/console/dashboard")
    page.wait_for_selector("body[data-ready=true]")

    def card(name: str) -> int:
        return int(
            str(page.locator(f'[data-card="{name}"][data-currency="tUSD"]').get_attribute("data-units"))
        )

    assert card("in_escrow") == 130 * UNIT
    assert card("due_24h") == 0  # T+3: due in three days, not in the next 24 h
    assert card("released_week") == card("disputed") == card("refunded") == 0
    # the calendar: the delivered order's seller net on day 3 (release_at = delivery + 3 days)
    calendar = json.loads(str(page.locator("canvas[data-calendar]").get_attribute("data-calendar")))
    due = [int(u) for u in calendar["units"]]
    assert len(due) == 14 and sum(due) == _split(100 * UNIT)["seller_net"]
    assert due.index(sum(due)) in (2, 3)
    assert page.evaluate("() => !!window.Chart && !!Chart.getChart(document.querySelector('canvas'))")
    screenshot(page, "merchant-dashboard-calendar")
    assert violations == []  # Chart.js draws within the page's CSP (no inline style or script)

    resp = merchant.context.request.get("/console/settlements.csv")
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = {r["order_ref"]: r for r in csv.DictReader(io.StringIO(resp.text()))}
    assert set(rows) == {"DASH-1", "DASH-2", "DASH-3"}
    assert rows["DASH-1"]["stage"] == "due" and rows["DASH-1"]["seller_net"] == str(
        _split(100 * UNIT)["seller_net"]
    )


def test_orders_list_filters_and_pages_with_a_cursor(live: Live, sign_in: Callable[..., Session]) -> None:
    merchant, buyer = sign_in("merchant"), sign_in("buyer")
    buyer_address = live.keys["buyer"].address or ""
    refs = [f"PAGE-{i}" for i in range(3)]
    oids = [create_order(merchant, buyer_address, ref, "2", 40 + i) for i, ref in enumerate(refs)]
    fund(buyer, oids[0])

    page = merchant.goto("/console/orders?limit=2")
    seen = page.locator("tr[data-order] a").all_text_contents()
    assert seen == ["PAGE-2", "PAGE-1"]  # newest first
    page.get_by_role("link", name="Next page").click()
    assert page.locator("tr[data-order] a").all_text_contents() == ["PAGE-0"]
    assert page.get_by_role("link", name="Next page").count() == 0

    page = merchant.goto("/console/orders")
    page.get_by_label("Status").select_option("funded")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("tr[data-order] a").all_text_contents() == ["PAGE-0"]
    page.get_by_label("Status").select_option("awaiting_funding")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("tr[data-order] a").all_text_contents() == ["PAGE-2", "PAGE-1"]


class _Receiver(BaseHTTPRequestHandler):
    """A merchant's webhook receiver: keeps what it got, answers 204."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append({"signature": self.headers.get("TradeGuard-Signature"), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()
    thread.join(timeout=5)


def test_webhook_endpoint_registered_and_its_delivery_log(
    live: Live, sign_in: Callable[..., Session], receiver: str
) -> None:
    merchant, buyer = sign_in("merchant"), sign_in("buyer")
    page = merchant.goto("/console/webhooks")
    page.get_by_label("URL").fill(receiver)
    page.get_by_role("button", name="Register endpoint").click()
    assert page.get_by_test_id("webhook-secret").inner_text().startswith("whsec_")
    page = merchant.goto("/console/webhooks")
    assert page.get_by_test_id("webhook-secret").count() == 0  # shown once

    oid = create_order(merchant, live.keys["buyer"].address or "", "HOOK-1", "3", 51)
    fund(buyer, oid)
    # requests never wait on a merchant's URL: delivery is the sweeper's (a background thread under
    # `tradeguard run`); here the test runs that sweep once, in the sweeper's place
    webhooks_step(live.runtime)
    page = merchant.goto("/console/webhooks")
    page.get_by_role("link", name="Delivery log").click()
    funded = page.locator('tr[data-event-type="order.funded"]')
    expect(funded).to_have_count(1)
    expect(funded.get_by_test_id("delivery-status")).to_have_text("delivered")
    assert any(b"order.funded" in r["body"] and r["signature"] for r in _Receiver.received)
    screenshot(page, "merchant-webhook-deliveries")


def test_oracle_sees_a_refused_capture_with_its_error(
    sign_in: Callable[..., Session], tmp_path: Path
) -> None:
    oracle = sign_in("oracle")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "EPCISDocument", "epcisBody": {"eventList": "not a list"}}))
    page = oracle.goto("/console/captures")
    page.get_by_label("EPCISDocument (JSON or JSON-LD)").set_input_files(str(bad))
    page.get_by_role("button", name="Capture").click()
    # refused before anything is stored: the answer names the problem, the list stays empty
    expect(page.get_by_test_id("error")).not_to_be_empty()
    page = oracle.goto("/console/captures")
    assert page.locator("tr[data-capture]").count() == 0


def test_admin_adds_a_corridor(live: Live, sign_in: Callable[..., Session]) -> None:
    admin = sign_in("admin")
    page = admin.goto("/console/corridors")
    page.get_by_label("Country (ISO 3166 alpha-2, or *)").fill("FR")
    page.get_by_label("Category (or *)").fill("books")
    page.get_by_label("Tax bps (0–5000)").fill("550")
    page.get_by_label("Recipient address").fill(live.runtime.dev_accounts["customs"].address)
    page.get_by_role("button", name="Save corridor").click()
    expect(page.locator("tr", has_text="books")).to_contain_text("550")


def test_the_session_cookie_is_secure_behind_https(live: Live, sign_in: Callable[..., Session]) -> None:
    session = sign_in("merchant")
    form_page = session.goto("/console/sign-in")
    token = form_page.locator("input[name=csrf_token]").get_attribute("value")
    resp = session.context.request.post(
        "/console/sign-in",
        form={"api_key": live.keys["merchant"].api_key, "csrf_token": str(token)},
        headers={"X-Forwarded-Proto": "https"},  # a TLS-terminating proxy on the same host
        max_redirects=0,
    )
    assert resp.status == 303
    cookie = next(
        h["value"]
        for h in resp.headers_array
        if h["name"].lower() == "set-cookie" and "tg_session" in h["value"]
    )
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
