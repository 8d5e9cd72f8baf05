"""Whole journeys through the browser only: each party signs in, clicks, and signs with its (test) wallet.

Amounts are checked to the unit against SPEC §3: 200 bps commission, the DE corridor's 1900 bps tax.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from app.client.demo import GS1_COMPANY, epcis_document, object_event
from app.db.models import Evidence
from app.db.session import transaction
from app.feeds.epcis import gs1_check_digit
from tests.web.conftest import Live, Session, screenshot

UNIT = 10**6
COMMISSION_BPS, TAX_BPS = 200, 1900


def _split(amount: int, buyer_share_bps: int = 0) -> dict[str, int]:
    refund = amount * buyer_share_bps // 10_000
    gross = amount - refund
    commission = gross * COMMISSION_BPS // 10_000
    tax = gross * TAX_BPS // 10_000
    return {
        "buyer_refund": refund,
        "commission": commission,
        "tax": tax,
        "seller_net": gross - commission - tax,
    }


def _sscc(serial: int) -> str:
    body = "0" + GS1_COMPANY + f"{serial:09d}"
    return body + str(gs1_check_digit(body))


def create_order(merchant: Session, buyer: str, ref: str, amount: str, serial: int) -> str:
    """Merchant: the new-order form, then the shipment form on the order's page; the order id."""
    page = merchant.goto("/console/orders/new")
    page.get_by_label("Order number").fill(ref)
    page.get_by_label("Buyer address").fill(buyer)
    page.get_by_label("Amount").fill(amount)
    page.get_by_label("Destination country (ISO 3166)").fill("DE")
    page.get_by_role("button", name="Create order").click()
    expect(page.get_by_test_id("status")).to_have_text("awaiting funding")
    oid = str(page.locator("#order").get_attribute("data-order-id"))
    page.get_by_label("Tracking number").fill(f"JD{serial:012d}")
    page.get_by_label("SSCC (18 digits, optional)").fill(_sscc(serial))
    page.get_by_role("button", name="Register shipment").click()
    expect(page.get_by_text(f"SSCC {_sscc(serial)}")).to_be_visible()
    return oid


def fund(buyer: Session, oid: str) -> None:
    """Buyer: dev faucet, then the wallet signs the authorization and the permit; funded."""
    page = buyer.goto(f"/console/orders/{oid}")
    page.get_by_role("button", name="test tokens (dev)").click()
    page.get_by_role("button", name="Sign and fund").click()
    expect(page.get_by_test_id("status")).to_have_text("funded")
    assert {d["primaryType"] for d in buyer.signed} >= {"OrderAuthorization", "Permit"}


def capture(oracle: Session, tmp_path: Path, live: Live, ref: str, serial: int, step: str, when: int) -> None:
    """Oracle: upload an EPCIS document (one ObjectEvent for the shipment) on the captures page."""
    merchant = live.keys["merchant"].address or ""
    event = object_event(
        when,
        step,
        epcList=[f"https://id.gs1.org/00/{_sscc(serial)}"],
        disposition="in_transit" if step == "shipping" else "in_progress",
        readPoint={"id": f"https://id.gs1.org/414/{GS1_COMPANY}000000"},
        bizTransactionList=[
            {"type": "po", "bizTransaction": f"urn:tradeguard:order:{merchant.lower()}:{ref}"}
        ],
    )
    path = tmp_path / f"{ref}-{step}.jsonld"
    path.write_bytes(epcis_document(event))
    page = oracle.goto("/console/captures")
    before = page.locator("tr[data-capture]").count()
    page.get_by_label("EPCISDocument (JSON or JSON-LD)").set_input_files(str(path))
    page.get_by_role("button", name="Capture").click()
    expect(page.locator("tr[data-capture]")).to_have_count(before + 1)


def units_of(session: Session, selector: str) -> int:
    return int(str(session.page.locator(selector).get_attribute("data-units")))


def test_order_funded_delivered_and_released_after_t_plus_3_with_the_split_to_the_unit(
    live: Live, sign_in: Callable[..., Session], tmp_path: Path
) -> None:
    merchant, buyer, oracle, admin = (sign_in(r) for r in ("merchant", "buyer", "oracle", "admin"))
    amount = 250 * UNIT
    oid = create_order(merchant, live.keys["buyer"].address or "", "WEB-1", "250", 1)
    fund(buyer, oid)

    now = live.chain_time()
    capture(oracle, tmp_path, live, "WEB-1", 1, "shipping", now - 60)
    capture(oracle, tmp_path, live, "WEB-1", 1, "receiving", now)
    screenshot(oracle.page, "oracle-captures")
    page = merchant.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("status")).to_have_text("delivered")
    expect(page.get_by_test_id("split-kind")).to_have_text("projected")

    page = admin.goto("/console/principals")
    page.get_by_label("Advance the chain clock by days").fill("3")
    page.get_by_label("and seconds").fill("1")
    page.get_by_role("button", name="Advance time").click()

    page = merchant.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("status")).to_have_text("released")
    expect(page.get_by_test_id("split-kind")).to_have_text("final")
    want = _split(amount)
    for part, value in want.items():
        assert units_of(merchant, f'[data-split="{part}"]') == value, part
    assert page.get_by_text("197.500000 tUSD").first.is_visible()
    kinds = page.locator(".timeline li.chain").evaluate_all("els => els.map(e => e.dataset.kind)")
    for kind in ("OrderFunded", "OrderShipped", "OrderDelivered", "OrderReleased"):
        assert kind in kinds, kinds
    assert page.locator(".timeline li.chain .chainref").first.inner_text().startswith("tx 0x")
    screenshot(page, "merchant-order")

    page = merchant.goto("/console/dashboard")
    assert units_of(merchant, '[data-card="released_week"][data-currency="tUSD"]') == want["seller_net"]
    assert units_of(merchant, '[data-card="in_escrow"][data-currency="tUSD"]') == 0
    screenshot(page, "merchant-dashboard")


def test_buyer_confirms_receipt_and_the_order_releases_at_once(
    live: Live, sign_in: Callable[..., Session], tmp_path: Path
) -> None:
    merchant, buyer, oracle = (sign_in(r) for r in ("merchant", "buyer", "oracle"))
    oid = create_order(merchant, live.keys["buyer"].address or "", "WEB-2", "40.5", 2)
    fund(buyer, oid)
    capture(oracle, tmp_path, live, "WEB-2", 2, "shipping", live.chain_time() - 60)
    page = buyer.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("status")).to_have_text("shipped")
    page.get_by_role("button", name="Confirm receipt (release now)").click()
    expect(page.get_by_test_id("status")).to_have_text("released")
    assert units_of(buyer, '[data-split="seller_net"]') == _split(40_500_000)["seller_net"]
    assert any(d["primaryType"] == "BuyerDecision" and d["message"]["decision"] == 1 for d in buyer.signed)


def test_dispute_with_evidence_from_both_sides_a_33_33_percent_ruling_and_a_tampered_file(
    live: Live, sign_in: Callable[..., Session], tmp_path: Path
) -> None:
    merchant, buyer, oracle, arbitrator = (sign_in(r) for r in ("merchant", "buyer", "oracle", "arbitrator"))
    amount = 300 * UNIT
    oid = create_order(merchant, live.keys["buyer"].address or "", "WEB-3", "300", 3)
    fund(buyer, oid)
    capture(oracle, tmp_path, live, "WEB-3", 3, "shipping", live.chain_time() - 60)

    # buyer: the file is hashed in the browser and the hash shown before signing
    photo = tmp_path / "damaged.txt"
    photo.write_bytes(b"photo of the damaged parcel\n")
    page = buyer.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("status")).to_have_text("shipped")
    page.get_by_label("Evidence file (hashed in your browser)").set_input_files(str(photo))
    import hashlib

    digest = "0x" + hashlib.sha256(photo.read_bytes()).hexdigest()
    expect(page.locator('output[data-hash-of="dispute-file"]')).to_have_text(digest)
    page.get_by_role("button", name="Sign and open dispute").click()
    expect(page.get_by_test_id("status")).to_have_text("disputed")
    assert any(
        d["primaryType"] == "BuyerDecision" and d["message"]["evidenceHash"] == digest for d in buyer.signed
    )

    invoice = tmp_path / "delivery-note.txt"
    invoice.write_bytes(b"signed delivery note, parcel intact\n")
    page = merchant.goto(f"/console/orders/{oid}")
    # act on the page once it shows the buyer's evidence anchored (the last change the dispute brings)
    expect(page.locator('tr[data-verified="match"]')).to_have_count(1)
    page.get_by_label(
        "Evidence file (hashed in your browser, the hash is anchored on chain)"
    ).set_input_files(str(invoice))
    page.get_by_role("button", name="Sign and submit evidence").click()
    expect(page.locator("tr[data-evidence]")).to_have_count(2)

    # arbitrator: the queue, the case page, both files re-hashed in the browser against the chain
    page = arbitrator.goto("/console/disputes")
    page.get_by_role("link", name="WEB-3").click()
    expect(page.locator('tr[data-verified="match"]')).to_have_count(2)
    screenshot(page, "arbitrator-case")

    # someone alters a stored file: the page shows it no longer matches what was anchored
    with transaction(live.runtime.db) as s:
        row = (
            s.query(Evidence).filter(Evidence.order_id == oid, Evidence.filename == "delivery-note.txt").one()
        )
        row.data = b"signed delivery note, parcel intact (edited)\n"
    page.reload()
    expect(page.locator('tr[data-verified="mismatch"]')).to_have_count(1)
    expect(page.locator('tr[data-verified="mismatch"] [data-verdict]')).to_contain_text("✘")
    expect(page.locator('tr[data-verified="match"] [data-verdict]')).to_contain_text("✔")

    # the ruling form shows the exact split before signing
    page.get_by_label("Buyer share in basis points").fill("3333")
    expect(page.get_by_test_id("share-pct")).to_have_text("33.33 %")
    want = _split(amount, 3333)
    for part, value in want.items():
        expect(page.locator(f'[data-preview="{part}"]')).to_have_attribute("data-units", str(value))
    page.get_by_label("Rationale (its SHA-256 is signed)").fill("Parcel damaged in transit; one third back.")
    page.get_by_role("button", name="Sign and rule").click()
    expect(page.get_by_test_id("status")).to_have_text("resolved")

    page = merchant.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("split-kind")).to_have_text("final")
    for part, value in want.items():
        assert units_of(merchant, f'[data-split="{part}"]') == value, part
