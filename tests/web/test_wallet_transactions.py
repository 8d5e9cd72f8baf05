"""The parties' own wallets in the console, through the browser only: the page fetches the exact transaction
from the service (to, data, value, chainId, gas), the wallet sends it (``eth_sendTransaction``), and the page
shows the result once the service's index has it.

- the seller's refund, sent by the seller's own (test) wallet: the order turns ``refunded``;
- the buyer's withdrawal of the refunded credit, sent by the console's dev wallet (the dev node's own
  ``eth_sendTransaction`` for the demo account): the credit drops to 0 and the tokens are in the wallet;
- a regulator's freeze and unfreeze.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from app.db.session import transaction
from app.services import principals
from app.services.bootstrap import DemoKey
from tests.web.conftest import Live, Session
from tests.web.test_console_accessibility import serious_violations
from tests.web.test_journeys import create_order, fund

UNIT = 10**6


def _token_balance(live: Live, address: str) -> int:
    rt = live.runtime
    (token,) = rt.tokens.values()
    with rt.lock:
        return int(rt.chain.call(rt.chain.contract("TestUSD", token.address).functions.balanceOf(address)))


def _credit(session: Session) -> int:
    return int(str(session.page.locator('tr[data-credit="tUSD"] td[data-units]').get_attribute("data-units")))


def test_seller_refunds_from_its_wallet_and_the_buyer_withdraws_the_credit_with_the_dev_wallet(
    live: Live, sign_in: Callable[..., Session]
) -> None:
    merchant, buyer = sign_in("merchant"), sign_in("buyer")
    buyer_address = live.keys["buyer"].address or ""
    amount = 42 * UNIT
    oid = create_order(merchant, buyer_address, "WALLET-1", "42", 31)
    fund(buyer, oid)

    # the seller's refund: its own wallet sends the transaction the service answered
    page = merchant.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("status")).to_have_text("funded")
    page.get_by_role("button", name="Refund this order from your wallet").click()
    expect(page.get_by_test_id("status")).to_have_text("refunded")
    expect(page.get_by_test_id("notice")).to_contain_text("indexed in block")
    expect(page.get_by_test_id("notice")).to_contain_text("OrderRefunded")
    expect(page.locator('li[data-kind="OrderRefunded"]')).to_have_count(1)
    expect(page.get_by_role("button", name="Refund this order from your wallet")).to_have_count(0)
    (sent,) = merchant.sent
    assert sent["from"].lower() == (live.keys["merchant"].address or "").lower()
    assert sent["to"].lower() == live.runtime.escrow.address.lower()
    assert int(sent["chainId"], 16) == live.runtime.chain.chain_id and int(sent["value"], 16) == 0

    # the buyer's withdrawal, from the console's dev wallet (no wallet in the page)
    wallet = sign_in("buyer", inject_wallet=False)
    before = _token_balance(live, buyer_address)
    page = wallet.goto("/console/credits")
    assert _credit(wallet) == amount
    expect(page.locator("tr[data-withdrawal]")).to_have_count(0)
    page.get_by_role("button", name="Withdraw tUSD to your wallet").click()
    expect(page.get_by_test_id("notice")).to_contain_text("indexed in block")
    expect(page.get_by_test_id("notice")).to_contain_text("Withdrawn")
    expect(page.locator('tr[data-credit="tUSD"] td[data-units]')).to_have_attribute("data-units", "0")
    expect(page.locator('tr[data-credit="tUSD"]')).to_contain_text("nothing to withdraw")
    row = page.locator("tr[data-withdrawal]")
    expect(row).to_have_count(1)
    expect(row.locator("td[data-units]")).to_have_attribute("data-units", str(amount))
    assert _token_balance(live, buyer_address) == before + amount
    assert wallet.sent == []  # nothing went through a page wallet: the dev node sent it
    assert serious_violations(page) == []  # axe-core on the credits page, with a withdrawal listed


def test_a_regulator_freezes_and_unfreezes_an_order_from_its_wallet(
    live: Live, sign_in: Callable[..., Session]
) -> None:
    merchant, buyer = sign_in("merchant"), sign_in("buyer")
    oid = create_order(merchant, live.keys["buyer"].address or "", "WALLET-2", "10", 32)
    fund(buyer, oid)
    address = live.runtime.dev_accounts["regulator"].address
    with transaction(live.runtime.db) as s:
        issued = principals.create_principal(s, "regulator", address, "compliance desk")
    regulator = sign_in("regulator", key=DemoKey("regulator", address, issued.api_key))

    page = regulator.goto(f"/console/orders/{oid}")
    expect(page.get_by_test_id("frozen-until")).to_have_count(0)
    assert serious_violations(page) == []  # axe-core on the regulator's order page with the freeze form
    page.get_by_label("Freeze for (days)").fill("5")
    page.get_by_label("Reason (its SHA-256 is anchored on chain)").fill("sanctions screening hit")
    page.get_by_role("button", name="Freeze from your wallet").click()
    expect(page.get_by_test_id("frozen-until")).to_be_visible()
    expect(page.get_by_test_id("notice")).to_contain_text("OrderFrozen")
    expect(page.locator('li[data-kind="OrderFrozen"]')).to_have_count(1)

    # while frozen, the seller is not offered a refund (the escrow would refuse it)
    merchant_page = merchant.goto(f"/console/orders/{oid}")
    expect(merchant_page.get_by_test_id("frozen-until")).to_be_visible()
    expect(merchant_page.get_by_role("button", name="Refund this order from your wallet")).to_have_count(0)

    page.get_by_role("button", name="Unfreeze from your wallet").click()
    expect(page.get_by_test_id("notice")).to_contain_text("OrderUnfrozen")
    expect(page.get_by_test_id("frozen-until")).to_have_count(0)
    expect(page.get_by_test_id("status")).to_have_text("funded")
    assert [int(t["chainId"], 16) for t in regulator.sent] == [live.runtime.chain.chain_id] * 2
