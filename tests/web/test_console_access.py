"""What each role sees and may do in the console: the same matrix the API enforces (others' orders are 404,
another role's pages 403), navigation limited to the role's own pages, and live order pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from app.services.bootstrap import DemoKey
from app.web.common import NAV
from tests.web.conftest import Live, Session, screenshot
from tests.web.test_journeys import create_order, fund

#: Console pages → the roles that may open them (every other role gets a 403 page).
PAGES = {
    "/console/dashboard": {"merchant", "admin"},
    "/console/orders/new": {"merchant"},
    "/console/settlements.csv": {"merchant", "admin"},
    "/console/disputes": {"arbitrator", "admin"},
    "/console/captures": {"oracle", "admin"},
    "/console/principals": {"admin"},
    "/console/corridors": {"admin"},
    "/console/orders": {"merchant", "buyer", "arbitrator", "oracle", "admin"},
}
ROLES = ("merchant", "buyer", "arbitrator", "oracle", "admin")


def test_each_role_sees_its_navigation_and_only_its_pages(sign_in: Callable[..., Session]) -> None:
    for role in ROLES:
        session = sign_in(role)
        page = session.page
        links = page.locator("header nav a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert links == [href for href, _label in NAV[role]], role
        for path, allowed in PAGES.items():
            resp = session.context.request.get(path, max_redirects=0)
            assert resp.status == (200 if role in allowed else 403), (role, path, resp.status)
        screenshot(page, f"home-{role}")


def test_other_parties_orders_are_not_found(
    live: Live, sign_in: Callable[..., Session], browser: object
) -> None:
    merchant, admin = sign_in("merchant"), sign_in("admin")
    oid = create_order(merchant, live.keys["buyer"].address or "", "ACL-1", "12", 11)

    # the admin creates a second merchant and a second buyer in the console; their keys are shown once
    others: dict[str, str] = {}
    for role, account in (("merchant", "treasury"), ("buyer", "buyer2")):
        page = admin.goto("/console/principals")
        page.get_by_label("Role").select_option(role)
        page.get_by_label("Address (not for admins)").fill(live.runtime.dev_accounts[account].address)
        page.get_by_label("Name").fill(f"other {role}")
        page.get_by_role("button", name="Create and show key").click()
        others[role] = page.get_by_test_id("issued-key").inner_text()
        assert others[role].startswith(f"tg_{role}_")

    visible = {"merchant": 200, "buyer": 200, "admin": 200, "arbitrator": 404, "oracle": 404}
    for role, status in visible.items():
        session = sign_in(role)
        assert session.context.request.get(f"/console/orders/{oid}").status == status, role
    for role, key in others.items():
        session = sign_in(role, key=DemoKey(role, None, key))
        assert session.context.request.get(f"/console/orders/{oid}").status == 404, role
        page = session.goto(f"/console/orders/{oid}")
        expect(page.get_by_test_id("error")).to_contain_text("not found")
        page = session.goto("/console/orders")
        assert "ACL-1" not in page.content()


def test_a_disabled_principal_is_signed_out_everywhere(live: Live, sign_in: Callable[..., Session]) -> None:
    buyer, admin = sign_in("buyer"), sign_in("admin")
    page = admin.goto("/console/principals")
    page.get_by_role("button", name="Disable buyer demo buyer").click()
    expect(page.locator("tr", has_text="demo buyer")).to_contain_text("disabled")
    page = buyer.goto("/console/orders")
    assert page.url.endswith("/console/sign-in")


def test_the_order_page_updates_itself_when_the_order_changes(
    live: Live, sign_in: Callable[..., Session]
) -> None:
    merchant, buyer = sign_in("merchant"), sign_in("buyer")
    oid = create_order(merchant, live.keys["buyer"].address or "", "LIVE-1", "5", 12)
    page = merchant.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("status")).to_have_text("awaiting funding")
    fund(buyer, oid)
    # no reload, no navigation by the test: the page polls and redraws itself
    expect(page.get_by_test_id("status")).to_have_text("funded")
    # signed out in another tab, the open page goes to the sign-in page at its next poll
    other = merchant.context.new_page()
    other.goto("/console/orders")
    other.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/sign-in")


def test_the_dev_wallet_signs_for_the_demo_accounts_without_a_browser_wallet(
    live: Live, sign_in: Callable[..., Session]
) -> None:
    merchant = sign_in("merchant")
    buyer = sign_in("buyer", inject_wallet=False)
    oid = create_order(merchant, live.keys["buyer"].address or "", "DEVW-1", "7", 13)
    page = buyer.goto(f"/console/orders/{oid}")
    assert page.evaluate("window.ethereum === undefined")
    page.get_by_role("button", name="test tokens (dev)").click()
    page.get_by_role("button", name="Sign and fund").click()
    expect(page.get_by_test_id("status")).to_have_text("funded")


def test_the_dispute_queue_is_ordered_by_deadline(
    live: Live, sign_in: Callable[..., Session], tmp_path: Path
) -> None:
    merchant, buyer, admin, arbitrator = (sign_in(r) for r in ("merchant", "buyer", "admin", "arbitrator"))
    buyer_address = live.keys["buyer"].address or ""
    first = create_order(merchant, buyer_address, "Q-EARLY", "8", 61)
    second = create_order(merchant, buyer_address, "Q-LATE", "9", 62)
    fund(buyer, first)
    fund(buyer, second)
    queue = arbitrator.goto("/console/disputes")  # open before any dispute: it fills itself
    assert queue.locator("tr[data-order]").count() == 0
    note = tmp_path / "claim.txt"
    note.write_bytes(b"never arrived\n")
    for oid in (second, first):  # the later-created order is disputed first: its deadline comes first
        page = buyer.goto(f"/console/orders/{oid}")
        page.get_by_label("Evidence file (hashed in your browser)").set_input_files(str(note))
        page.get_by_role("button", name="Sign and open dispute").click()
        expect(page.get_by_test_id("status")).to_have_text("disputed")
        if oid == second:
            page = admin.goto("/console/principals")
            page.get_by_label("Advance the chain clock by days").fill("0")
            page.get_by_label("and seconds").fill("3600")
            page.get_by_role("button", name="Advance time").click()
            page.wait_for_url("**/console/principals")
    expect(queue.locator("tr[data-order]")).to_have_count(2)
    assert queue.locator("tr[data-order] a").all_text_contents() == ["Q-LATE", "Q-EARLY"]
    screenshot(queue, "arbitrator-queue")


def test_a_change_to_the_order_does_not_wipe_a_form_being_filled(
    live: Live, sign_in: Callable[..., Session]
) -> None:
    merchant, buyer = sign_in("merchant"), sign_in("buyer")
    oid = create_order(merchant, live.keys["buyer"].address or "", "BUSY-1", "4", 14)
    page = merchant.goto(f"/console/orders/{oid}")
    page.get_by_label("Tracking number").fill("HALF-TYPED")
    fund(buyer, oid)
    expect(page.get_by_test_id("notice")).to_contain_text("This order changed")
    assert page.get_by_label("Tracking number").input_value() == "HALF-TYPED"
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("funded")


def test_no_dev_wallet_or_faucet_when_dev_tools_are_off(live: Live, sign_in: Callable[..., Session]) -> None:
    merchant = sign_in("merchant")
    oid = create_order(merchant, live.keys["buyer"].address or "", "NODEV-1", "6", 15)
    # the same service with TRADEGUARD_DEV off (as on any chain that is not a dev chain)
    live.runtime.settings = live.runtime.settings.model_copy(update={"dev": False})
    buyer = sign_in("buyer", inject_wallet=False)
    page = buyer.goto(f"/console/orders/{oid}")
    assert page.locator("body").get_attribute("data-dev") == "false"
    assert page.get_by_role("button", name="test tokens (dev)").count() == 0
    page.get_by_role("button", name="Sign and fund").click()
    expect(page.get_by_test_id("notice")).to_contain_text("no wallet")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    resp = buyer.context.request.post(
        "/console/dev/wallet/sign",
        data={"address": live.keys["buyer"].address, "typed_data": "{}"},
        headers={"X-CSRF-Token": str(csrf)},
    )
    assert resp.status == 404
    assert page.get_by_test_id("status").text_content() == "awaiting funding"
