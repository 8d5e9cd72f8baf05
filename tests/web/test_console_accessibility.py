"""Accessibility: axe-core (npm) on every console page with no serious or critical violation, and a journey
done with the keyboard alone (Tab to reach, Enter or Space to act)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import Live, Session, screenshot
from tests.web.test_journeys import create_order, fund

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (axe is evaluated through the
    DevTools protocol, which the page's CSP does not govern; the page itself loads nothing extra)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result: dict[str, Any] = page.evaluate(
        """async () => {
          const result = await axe.run(document);
          return {
            passes: result.passes.length,
            serious: result.violations
              .filter(v => v.impact === "serious" || v.impact === "critical")
              .map(v => `${v.id} (${v.impact}): ${v.nodes.map(n => n.target.join(" ")).join(", ")}`),
          };
        }"""
    )
    assert result["passes"] > 10, result  # axe ran its rules on this page
    found: list[str] = result["serious"]
    return found


def test_every_page_has_no_serious_or_critical_axe_violation(
    browser: Any, live: Live, sign_in: Callable[..., Session], tmp_path: Path
) -> None:
    merchant, buyer, arbitrator, oracle, admin = (
        sign_in(r) for r in ("merchant", "buyer", "arbitrator", "oracle", "admin")
    )
    oid = create_order(merchant, live.keys["buyer"].address or "", "A11Y-1", "20", 21)
    fund(buyer, oid)
    note = tmp_path / "note.txt"
    note.write_bytes(b"not as described\n")
    page = buyer.goto(f"/console/orders/{oid}")
    page.get_by_label("Evidence file (hashed in your browser)").set_input_files(str(note))
    page.get_by_role("button", name="Sign and open dispute").click()
    expect(page.get_by_test_id("status")).to_have_text("disputed")

    visits = [
        (
            merchant,
            [
                "/console/dashboard",
                "/console/orders",
                "/console/orders/new",
                f"/console/orders/{oid}",
                "/console/webhooks",
            ],
        ),
        (buyer, ["/console/orders", f"/console/orders/{oid}"]),
        (arbitrator, ["/console/disputes", f"/console/orders/{oid}"]),
        (oracle, ["/console/captures", "/console/orders"]),
        (admin, ["/console/principals", "/console/corridors", "/console/orders/new"]),  # the last: a 403 page
    ]
    report: dict[str, list[str]] = {}
    for session, paths in visits:
        for path in paths:
            page = session.goto(path)
            page.wait_for_selector("body[data-ready=true]")
            if session is arbitrator and path.endswith(oid):
                expect(page.locator('tr[data-verified="match"]')).to_have_count(1)
            report[f"{session.role} {path}"] = serious_violations(page)
            name = path.strip("/").replace("/", "-").replace(oid, "order")
            screenshot(page, f"{session.role}-{name}")
    anonymous = browser.new_context(base_url=live.url)
    page = anonymous.new_page()
    page.goto("/console/sign-in")
    report["signed out /console/sign-in"] = serious_violations(page)
    anonymous.close()
    assert {where: found for where, found in report.items() if found} == {}
    assert len(report) == 15


def tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus (it must be reachable by keyboard)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def test_sign_in_create_and_fund_by_keyboard_alone(
    browser: Any, live: Live, sign_in: Callable[..., Session]
) -> None:
    context = browser.new_context(base_url=live.url)
    page = context.new_page()
    page.goto("/console/sign-in")
    tab_to(page, "#api_key")
    page.keyboard.type(live.keys["merchant"].api_key)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/dashboard")
    tab_to(page, 'a[href="/console/orders/new"]')
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/orders/new")
    for selector, text in (("#order_ref", "KEY-1"), ("#buyer", live.keys["buyer"].address), ("#amount", "3")):
        tab_to(page, selector)
        page.keyboard.type(text or "")
    tab_to(page, "form.stack button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("status")).to_have_text("awaiting funding")
    oid = page.locator("#order").get_attribute("data-order-id")
    context.close()

    buyer = sign_in("buyer")
    page = buyer.goto(f"/console/orders/{oid}")
    tab_to(page, "form[action='/console/dev/faucet'] button")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-ready=true]")
    tab_to(page, "button[data-action=fund]")
    page.keyboard.press("Space")
    expect(page.get_by_test_id("status")).to_have_text("funded")


def test_a_ruling_by_keyboard_alone(live: Live, sign_in: Callable[..., Session], tmp_path: Path) -> None:
    merchant, buyer, arbitrator = (sign_in(r) for r in ("merchant", "buyer", "arbitrator"))
    oid = create_order(merchant, live.keys["buyer"].address or "", "KEY-2", "10", 22)
    fund(buyer, oid)
    note = tmp_path / "claim.txt"
    note.write_bytes(b"wrong size\n")
    page = buyer.goto(f"/console/orders/{oid}")
    page.get_by_label("Evidence file (hashed in your browser)").set_input_files(str(note))
    page.get_by_role("button", name="Sign and open dispute").click()
    expect(page.get_by_test_id("status")).to_have_text("disputed")

    page = arbitrator.goto(f"/console/orders/{oid}")
    page.wait_for_selector("body[data-ready=true]")
    tab_to(page, "#share")
    for _ in range(2):
        page.keyboard.press("PageDown")  # the slider moves by keyboard too (10 % a step, from 50 %)
    expect(page.get_by_test_id("share-pct")).to_have_text("30.00 %")
    tab_to(page, "#rationale")
    page.keyboard.type("Item smaller than listed.")
    tab_to(page, "form[data-action=ruling] button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("status")).to_have_text("resolved")
    assert int(str(page.locator('[data-split="buyer_refund"]').get_attribute("data-units"))) == 3 * 10**6
