"""The console's dev wallet on anvil sends a party's transaction through the node's own
``eth_sendTransaction`` (anvil unlocks its dev accounts), exactly as the service answered it; and it sends
nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app.chain.client import ChainClient
from app.db.models import Principal
from app.db.session import transaction
from app.domain.encoding import hex32
from app.errors import InvalidInput
from app.services import console, dev_tools
from app.services.index import indexer
from app.services.runtime import Runtime, build_runtime
from app.services.trade import wallet_actions
from tests.chain.conftest import anvil_binary
from tests.service_fixtures import make_settings
from tests.services.test_indexer import Shop, open_shop
from tests.threads import run_threads

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def node() -> Iterator[ChainClient]:
    anvil_binary()
    chain = ChainClient.start_anvil()
    yield chain
    chain.close()


@pytest.fixture
def shop(node: ChainClient, db_url: str, tmp_path: Path) -> Iterator[Shop]:
    url = str(node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    rt = build_runtime(make_settings(db_url, tmp_path, chain=url, confirmations=0), chain=node)
    yield open_shop(rt)
    rt.engine.dispose()


def _merchant(shop: Shop) -> Principal:
    with transaction(shop.rt.db) as s:
        found = s.get(Principal, shop.merchant_id)
        assert found is not None
        return found


def _funded(shop: Shop, ref: str) -> str:
    auth = shop.api_order(ref)
    shop.fund(auth)
    indexer.sync(shop.rt)
    return hex32(auth.order_id)


def test_the_sellers_refund_goes_out_through_anvils_own_wallet_and_the_index_shows_it(shop: Shop) -> None:
    rt: Runtime = shop.rt
    merchant = _merchant(shop)
    oid = _funded(shop, "DEVW-1")
    answer = wallet_actions.seller_refund(rt, merchant, oid)

    tx_hash = console.dev_send_transaction(rt, merchant, answer["transaction"])
    receipt = rt.chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)  # type: ignore[arg-type]
    assert receipt["status"] == 1 and receipt["from"] == merchant.address  # the seller's own account sent it
    sent = rt.chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    assert sent["to"] == answer["transaction"]["to"] and sent["value"] == 0
    assert "0x" + bytes(sent["input"]).hex() == answer["transaction"]["data"]

    assert wallet_actions.transaction_status(rt, tx_hash)["status"] == "mined"  # not indexed yet
    indexer.sync(rt)
    status = wallet_actions.transaction_status(rt, tx_hash)
    assert status["status"] == "indexed" and status["block_number"] == receipt["blockNumber"]
    assert status["events"] == [{"name": "OrderRefunded", "order_id": oid}]
    assert shop.row(oid).status == "refunded"


def test_the_dev_wallet_sends_only_the_callers_own_escrow_transactions(shop: Shop) -> None:
    rt: Runtime = shop.rt
    merchant = _merchant(shop)
    oid = _funded(shop, "DEVW-2")
    tx: dict[str, Any] = wallet_actions.seller_refund(rt, merchant, oid)["transaction"]
    nonce = rt.chain.nonce(str(merchant.address))
    buyer = rt.dev_accounts["buyer"].address
    refusals = {
        "not_your_address": {**tx, "from": buyer},
        "not_the_escrow": {**tx, "to": next(iter(rt.tokens.values())).address},
        "value_not_allowed": {**tx, "value": "0x1"},
        "wrong_chain": {**tx, "chainId": "0x1"},
    }
    for code, bad in refusals.items():
        with pytest.raises(InvalidInput) as refused:
            console.dev_send_transaction(rt, merchant, bad)
        assert refused.value.code == code
    assert rt.chain.nonce(str(merchant.address)) == nonce  # nothing was sent
    assert shop.row(oid).status == "funded"


@pytest.mark.anvil
def test_two_api_processes_fauceting_at_once_lose_no_mint(tmp_path: Path, db_url: str) -> None:
    """Two runtimes (two API processes: each its own chain client and nonce count) share the state directory
    and mint the same amount to the same address from 8 threads at once. Without the faucet lock the
    deployer's nonces collide: a mint lost as a resend of another ("already known"), or a send stuck behind
    a nonce gap until its receipt wait ran out (both seen)."""
    anvil_binary()
    node = ChainClient.start_anvil()
    url = str(node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    try:
        first = build_runtime(make_settings(db_url, tmp_path, chain=url), chain=node)
        second = build_runtime(make_settings(db_url, tmp_path, chain=url), chain=ChainClient.rpc(url))
        currency = first.token_by_symbol("tUSD")
        assert currency is not None
        holder = first.dev_accounts["buyer"].address
        erc20 = node.contract("TestUSD", currency.address)
        before = int(erc20.functions.balanceOf(holder).call())
        nonce = node.w3.eth.get_transaction_count(first.dev_accounts["deployer"].address)

        def mint(rt: Runtime) -> None:
            for _ in range(3):
                dev_tools.faucet(rt, "tUSD", holder, 5)

        assert run_threads([partial(mint, rt) for rt in (first, second) for _ in range(4)], timeout=120) == []
        assert int(erc20.functions.balanceOf(holder).call()) == before + 24 * 5
        assert node.w3.eth.get_transaction_count(first.dev_accounts["deployer"].address) == nonce + 24
    finally:
        node.close()
