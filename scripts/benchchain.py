"""The benchmark's chain-side pieces (scripts/bench_service.py): orders funded directly on chain in batches,
so that the chain (and, once indexed, the database) holds thousands of orders without driving each through the
API; and JSON-RPC calls per funded order over a window of orders driven through the API.

The bulk orders use the contract's own batch ``fund`` (200 orders a transaction) sent straight to anvil (not
through the counting proxy), from a pre-funded dev account that is also their buyer (one ``approve`` instead
of permits). Their terms are those the API gave a template order of the same merchant (seller = the
benchmark's merchant), so the service's indexer projects each one into an order row it owns.
"""

from __future__ import annotations

import time
from typing import Any

from benchload import ORDER_AMOUNT, Bench, dev_account
from eth_utils import to_checksum_address

from app.chain.client import ChainClient
from app.chain.eip712 import sign_typed_data
from app.chain.escrow import NO_PERMIT, OrderAuthorization
from app.domain.encoding import hex32
from app.domain.ids import order_id

BATCH = 200
#: A pre-funded anvil account no role of the service uses (DEV_ROLES takes 0..9).
BULK_BUYER = 11
INDEX_WAIT_S = 900.0


def _authorization(message: dict[str, Any], oid: bytes, buyer: str) -> OrderAuthorization:
    return OrderAuthorization(
        order_id=oid,
        buyer=buyer,
        seller=message["seller"],
        token=message["token"],
        amount=int(message["amount"]),
        commission_bps=int(message["commissionBps"]),
        tax_bps=int(message["taxBps"]),
        tax_recipient=message["taxRecipient"],
        ship_by=int(message["shipBy"]),
        deliver_by=int(message["deliverBy"]),
        hold_seconds=int(message["holdSeconds"]),
        valid_until=int(message["validUntil"]),
    )


def bulk_fund(bench: Bench, target: int) -> dict[str, Any]:
    """Fund orders directly on chain until it holds ``target`` orders, then wait until the service has
    indexed the last of them (its order row shows funded). Returns the new ids and the timings."""
    need = target - bench.on_chain
    if need <= 0:
        return {"funded": 0, "ids": []}
    buyer = dev_account(BULK_BUYER)
    api = bench.api()
    tmpl = bench.create(api, "bulk", f"{bench.tag}-template-{target}", buyer)
    if tmpl.status != 201:
        raise RuntimeError(f"template order refused: {tmpl.status} {tmpl.body}")
    bench.faucet(api, buyer.address, need * ORDER_AMOUNT)
    doc = tmpl.body["sign"]["authorization"]
    chain = ChainClient.rpc(bench.stack.anvil_url, timeout=120)
    t0 = time.perf_counter()
    try:
        escrow = chain.contract("TradeGuardEscrow", bench.chain["escrow"])
        token = chain.contract("TestUSD", doc["message"]["token"])
        chain.send(token.functions.approve(escrow.address, 2**256 - 1), buyer)
        ids: list[str] = []
        for start in range(0, need, BATCH):
            auths, sigs = [], []
            for i in range(start, min(start + BATCH, need)):
                oid = order_id(bench.merchant.address, f"{bench.tag}-bulk-{target}-{i}")
                message = {
                    **doc["message"],
                    "orderId": hex32(oid),
                    "buyer": to_checksum_address(buyer.address),
                }
                sigs.append(sign_typed_data(buyer.key, {**doc, "message": message}))
                auths.append(_authorization(message, oid, buyer.address))
                ids.append(hex32(oid))
            receipt = chain.send(
                escrow.functions.fund([a.as_tuple() for a in auths], sigs, NO_PERMIT),
                buyer,
            )
            if receipt["status"] != 1:
                raise RuntimeError(f"bulk fund reverted: {receipt['transactionHash'].hex()}")
    finally:
        chain.close()
    sent_s = time.perf_counter() - t0
    bench.on_chain += need
    indexed = bench.wait_status(api, "bulk", ids[-1], "funded", timeout=INDEX_WAIT_S)
    api.close()
    return {
        "funded": need,
        "sent_s": round(sent_s, 2),
        "indexed_after_s": None if indexed is None else round(indexed - t0 - sent_s, 2),
        "ids": ids,
    }


def rpc_window(bench: Bench, orders: int) -> dict[str, Any]:
    """Orders created and funded one after another by one client (a buyer of its own), each waited for until
    it shows funded; JSON-RPC calls the server (and its workers) made meanwhile, per order and by method.
    Background sweeps that run meanwhile count too: they are part of the cost of running."""
    api = bench.api()
    buyer, key = bench.buyers[-1]
    bench.stack.rpc.reset()
    funded = 0
    t0 = time.perf_counter()
    for i in range(orders):
        made = bench.create(api, "rpc", f"{bench.tag}-rpc-{bench.on_chain}-{i}", buyer)
        if made.status != 201:
            continue
        sent = bench.fund(api, "rpc", made.body, buyer, key)
        if sent.status == 202 and bench.wait_status(api, "rpc", made.body["order"]["id"], "funded"):
            funded += 1
    seconds = time.perf_counter() - t0
    counts = bench.stack.rpc.snapshot()
    api.close()
    bench.on_chain += funded
    per = max(funded, 1)
    return {
        "orders": funded,
        "window_s": round(seconds, 2),
        "calls_per_order": round(sum(counts.values()) / per, 2),
        "methods_per_order": {m: round(c / per, 2) for m, c in sorted(counts.items(), key=lambda kv: -kv[1])},
    }
