"""Gas per order for every TradeGuard path, measured on anvil with warm state.

Usage: ``python scripts/gas_report.py [--json] [--chain embedded|anvil]``

Every transaction any party sends is counted (a signature costs nothing). Warm state, as peers are measured:
the buyer and seller are repeat users (the buyer's permit nonce and token balance are non-zero, the seller
has been paid out before and, like the treasury and the tax recipient, already holds credits) and the escrow
already holds tokens. The buyer's own credit starts at zero, so a ruling's refund pays for a fresh slot.

``dispute_path_erc792`` is the dispute path on an order naming an ERC-792 arbitrator (SPEC §4.1; the test
double ``CentralizedArbitrator``, final rulings): the buyer opens the dispute itself paying the arbitration
cost, the arbitrator's owner rules (its transaction calls the escrow's ``rule``), and anyone executes the
ruling.

Batches: ``batched_100_all_steps`` is one buyer's cart of 100 orders over 10 sellers (orders grouped by
seller, as the keeper sorts them), funded with one permit in one transaction, then one attestation batch and
one release batch. ``batched_100_attest_release`` funds each order in its own transaction (permit each) and
batches attestation and release.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account.signers.local import LocalAccount  # noqa: E402
from eth_utils import keccak  # noqa: E402

from app.chain import compiler  # noqa: E402
from app.chain.client import ChainClient  # noqa: E402
from app.chain.escrow import Deployment, Order, OrderAuthorization, deploy_stack  # noqa: E402
from app.domain.ids import content_hash, order_id, tracking_hash  # noqa: E402
from app.domain.order_state import Decision, Milestone  # noqa: E402

DAY = 86_400
HOLD = 3 * DAY
AMOUNT = 129_990_000  # 129.99 tUSD
TARGETS = {
    "happy_path": 195_000,
    "batched_100_all_steps": 95_000,
    "batched_100_attest_release": 130_000,
    "dispute_path": 300_000,
}
ARBITRATION_FEE = 10**15
EXTRA_DATA = bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000001")
PEERS = {
    "coinbase_commerce_payments_usdc_authorization": 195_157,
    "kleros_escrow_with_fees": 588_010,
}


@dataclass
class Bench:
    chain: ChainClient
    dep: Deployment
    admin: LocalAccount
    treasury: LocalAccount
    buyer: LocalAccount
    sellers: list[LocalAccount]
    oracle: LocalAccount
    arbitrator: LocalAccount
    tax: LocalAccount
    relayer: LocalAccount
    court: Any = None
    counter: int = 0

    @property
    def esc(self) -> Any:
        return self.dep.escrow

    def auth(self, seller: LocalAccount, amount: int = AMOUNT, erc792: bool = False) -> OrderAuthorization:
        now = self.chain.now()
        self.counter += 1
        arbitration: dict[str, Any] = {}
        if erc792:
            arbitration = {
                "arbitrator": str(self.court.address),
                "arbitrator_extra_data_hash": keccak(EXTRA_DATA),
            }
        return OrderAuthorization(
            order_id=order_id(seller.address, f"GAS-{self.counter}"),
            buyer=self.buyer.address,
            seller=seller.address,
            token=str(self.dep.token.address),
            amount=amount,
            commission_bps=200,
            tax_bps=1300,
            tax_recipient=self.tax.address,
            ship_by=now + 5 * DAY,
            deliver_by=now + 30 * DAY,
            hold_seconds=HOLD,
            valid_until=now + DAY,
            **arbitration,
        )

    def fund_one(self, seller: LocalAccount | None = None, erc792: bool = False) -> tuple[Order, int]:
        auth = self.auth(seller or self.sellers[0], erc792=erc792)
        sig = self.esc.sign_authorization(self.buyer.key, auth)
        permit = self.esc.sign_permit(self.buyer, self.dep.token, auth.amount, self.chain.now() + DAY)
        res = self.esc.fund([auth], [sig], self.relayer, permit)
        return self.esc.orders[auth.order_id], res.gas_used

    def attestation(self, order: Order, milestone: int) -> Any:
        return self.esc.sign_attestation(
            self.oracle.key,
            order.order_id,
            milestone,
            self.chain.now(),
            tracking_hash("DHL", f"JD{order.order_id.hex()[:18]}"),
            content_hash(b"epcis event " + order.order_id),
        )

    def attest(self, order: Order, milestone: int = Milestone.DELIVERED) -> tuple[Order, int]:
        res = self.esc.attest([(order, [self.attestation(order, milestone)])], self.relayer)
        return self.esc.orders[order.order_id], res.gas_used


def setup(chain: ChainClient) -> Bench:
    acc = chain.dev_accounts(20)
    admin, treasury, buyer, oracle, arbitrator, tax, relayer = acc[:7]
    sellers = acc[7:17]
    court = chain.deploy("CentralizedArbitrator", arbitrator.address, ARBITRATION_FEE, 0, 0, sender=admin)
    dep = deploy_stack(
        chain,
        admin=admin,
        treasury=treasury.address,
        oracles=[oracle.address],
        arbitrators=[arbitrator.address, str(court.address)],
        tax_recipients={tax.address: 2000},
    )
    b = Bench(chain, dep, admin, treasury, buyer, sellers, oracle, arbitrator, tax, relayer, court)
    chain.send(dep.token.functions.faucet(buyer.address, 1_000_000 * 10**6), admin)
    # Warm-up: one full order per seller, so every seller, the treasury and the tax recipient hold credits
    # and the buyer has used a permit before.
    orders = []
    for s in sellers:
        o, _ = b.fund_one(s)
        o, _ = b.attest(o)
        orders.append(o)
    chain.advance_time(HOLD)
    b.esc.release(orders, relayer)
    # Repeat sellers have been paid out before: their token balances are not zero.
    token = str(dep.token.address)
    for s in sellers:
        b.esc.withdraw(token, s, b.esc.credit(token, s.address) // 2)
    return b


def measure(chain: ChainClient) -> dict[str, Any]:
    b = setup(chain)
    steps: dict[str, dict[str, int]] = {}

    # Happy path: permit funding, 1-of-1 delivery attestation, keeper release.
    o, fund_gas = b.fund_one()
    o, attest_gas = b.attest(o)
    chain.advance_time(HOLD)
    release_gas = b.esc.release([o], b.relayer).gas_used
    steps["happy_path"] = {
        "fund_permit": fund_gas,
        "attest_delivered": attest_gas,
        "release": release_gas,
    }

    # Ended by the buyer's confirm-receipt (signed BuyerDecision, relayed).
    o, fund_gas = b.fund_one()
    o, attest_gas = b.attest(o)
    valid = chain.now() + DAY
    sig = b.esc.sign_buyer_decision(b.buyer.key, o.order_id, Decision.CONFIRM_RECEIPT, b"\0" * 32, valid)
    confirm_gas = b.esc.submit_buyer_decision(
        o, Decision.CONFIRM_RECEIPT, b"\0" * 32, valid, sig, b.relayer
    ).gas_used
    steps["confirm_receipt"] = {
        "fund_permit": fund_gas,
        "attest_delivered": attest_gas,
        "confirm_receipt_signed": confirm_gas,
    }

    # Dispute: funding, delivery attestation, dispute with evidence, seller evidence, split ruling.
    o, fund_gas = b.fund_one()
    o, attest_gas = b.attest(o)
    ev = content_hash(b"photo of a damaged parcel")
    valid = chain.now() + DAY
    sig = b.esc.sign_buyer_decision(b.buyer.key, o.order_id, Decision.OPEN_DISPUTE, ev, valid)
    dispute_gas = b.esc.submit_buyer_decision(o, Decision.OPEN_DISPUTE, ev, valid, sig, b.relayer).gas_used
    o = b.esc.orders[o.order_id]
    seller_ev = content_hash(b"carrier proof of delivery")
    evidence_gas = b.esc.submit_evidence(o, b.sellers[0], seller_ev).gas_used
    o = b.esc.orders[o.order_id]
    rationale = content_hash(b"ruling: 40% refund")
    sig = b.esc.sign_ruling(b.arbitrator.key, o.order_id, 4000, rationale, valid)
    rule_gas = b.esc.submit_ruling(o, 4000, rationale, valid, sig, b.relayer).gas_used
    # The same evidence relayed from the seller's signature instead (pays for replay protection).
    o2, _ = b.fund_one()
    o2, _ = b.attest(o2)
    b.esc.open_dispute(o2, b.buyer, ev)
    o2 = b.esc.orders[o2.order_id]
    sig = b.esc.sign_evidence(b.sellers[0].key, o2.order_id, b.sellers[0].address, seller_ev, valid)
    relayed_evidence_gas = b.esc.submit_evidence_signed(
        o2, b.sellers[0].address, seller_ev, valid, sig, b.relayer
    ).gas_used
    steps["dispute_path"] = {
        "fund_permit": fund_gas,
        "attest_delivered": attest_gas,
        "open_dispute_signed": dispute_gas,
        "seller_evidence_direct": evidence_gas,
        "split_ruling_signed": rule_gas,
    }

    # The same dispute before an ERC-792 arbitrator: the buyer pays its fee; its owner's ruling (4: 3333 bps
    # back) reaches the escrow's rule() in the same transaction; anyone executes it.
    o, fund_gas = b.fund_one(erc792=True)
    o, attest_gas = b.attest(o)
    dispute_gas = b.esc.open_dispute(o, b.buyer, ev, EXTRA_DATA, value=ARBITRATION_FEE).gas_used
    o = b.esc.orders[o.order_id]
    evidence_gas = b.esc.submit_evidence(o, b.sellers[0], seller_ev).gas_used
    o = b.esc.orders[o.order_id]
    dispute_id = int(chain.call(b.court.functions.disputeCount())) - 1
    rule_gas = chain.send(b.court.functions.giveRuling(dispute_id, 4), b.arbitrator)["gasUsed"]
    execute_gas = b.esc.execute_ruling(o, b.relayer).gas_used
    steps["dispute_path_erc792"] = {
        "fund_permit": fund_gas,
        "attest_delivered": attest_gas,
        "open_dispute_direct_paying_fee": dispute_gas,
        "seller_evidence_direct": evidence_gas,
        "arbitrator_rules": int(rule_gas),
        "execute_ruling": execute_gas,
    }

    # Timeout refund: funded, never shipped, refunded after shipBy.
    o, fund_gas = b.fund_one()
    chain.advance_time(5 * DAY + 1)
    refund_gas = b.esc.timeout_refund(o, b.relayer).gas_used
    steps["timeout_refund"] = {"fund_permit": fund_gas, "timeout_refund": refund_gas}

    # A seller withdrawing its credits, leaving one unit so the slot stays warm.
    seller = b.sellers[0]
    credit = b.esc.credit(str(b.dep.token.address), seller.address)
    withdraw_gas = b.esc.withdraw(str(b.dep.token.address), seller, credit - 1).gas_used
    steps["seller_withdraw"] = {"withdraw": withdraw_gas}

    # Batched lifecycle, 100 orders a batch: one cart, 10 sellers, grouped by seller.
    auths = [b.auth(b.sellers[i // 10]) for i in range(100)]
    sigs = [b.esc.sign_authorization(b.buyer.key, a) for a in auths]
    total = sum(a.amount for a in auths)
    permit = b.esc.sign_permit(b.buyer, b.dep.token, total, chain.now() + DAY)
    fund_batch = b.esc.fund(auths, sigs, b.relayer, permit).gas_used
    orders = [b.esc.orders[a.order_id] for a in auths]
    items = [(o, [b.attestation(o, Milestone.DELIVERED)]) for o in orders]
    attest_batch = b.esc.attest(items, b.relayer, strict=False).gas_used
    chain.advance_time(HOLD)
    orders = [b.esc.orders[a.order_id] for a in auths]
    release_batch = b.esc.release(orders, b.relayer, strict=False).gas_used
    steps["batched_100_all_steps"] = {
        "fund_batch_total": fund_batch,
        "attest_batch_total": attest_batch,
        "release_batch_total": release_batch,
    }

    # Single funding each, batched attestation and release.
    singles = [b.fund_one(b.sellers[i // 10]) for i in range(100)]
    fund_total = sum(g for _, g in singles)
    orders = [o for o, _ in singles]
    items = [(o, [b.attestation(o, Milestone.DELIVERED)]) for o in orders]
    attest_batch2 = b.esc.attest(items, b.relayer, strict=False).gas_used
    chain.advance_time(HOLD)
    orders = [b.esc.orders[o.order_id] for o in orders]
    release_batch2 = b.esc.release(orders, b.relayer, strict=False).gas_used
    steps["batched_100_attest_release"] = {
        "fund_single_total": fund_total,
        "attest_batch_total": attest_batch2,
        "release_batch_total": release_batch2,
    }

    per_order = {
        "happy_path": sum(steps["happy_path"].values()),
        "confirm_receipt": sum(steps["confirm_receipt"].values()),
        "dispute_path": sum(steps["dispute_path"].values()),
        "dispute_path_erc792": sum(steps["dispute_path_erc792"].values()),
        "timeout_refund": sum(steps["timeout_refund"].values()),
        "seller_withdraw": withdraw_gas,
        "batched_100_all_steps": sum(steps["batched_100_all_steps"].values()) // 100,
        "batched_100_attest_release": sum(steps["batched_100_attest_release"].values()) // 100,
    }
    meets = {k: per_order[k] <= v for k, v in TARGETS.items()}
    art = compiler.load_artifact("TradeGuardEscrow")
    return {
        "chain": chain.backend,
        "chain_id": chain.chain_id,
        "compiler": art["compiler"]["version"],
        "optimizer_runs": art["compiler"]["settings"]["optimizer"]["runs"],
        "escrow_runtime_bytes": len(str(art["deployedBytecode"]).removeprefix("0x")) // 2,
        "per_order_gas": per_order,
        "steps": steps,
        "comparisons": {
            "happy_path_plus_seller_withdraw_div_10": per_order["happy_path"] + withdraw_gas // 10,
            "dispute_path_with_relayed_seller_evidence": per_order["dispute_path"]
            - evidence_gas
            + relayed_evidence_gas,
            **PEERS,
        },
        "targets": TARGETS,
        "meets_targets": meets,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--chain", choices=("anvil", "embedded"), default="anvil")
    args = parser.parse_args(argv)
    chain = ChainClient.start_anvil() if args.chain == "anvil" else ChainClient.embedded()
    try:
        report = measure(chain)
    finally:
        chain.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"gas per order on {report['chain']} (compiler {report['compiler']}):")
        for name, gas in report["per_order_gas"].items():
            target = TARGETS.get(name)
            mark = "" if target is None else f"  target <= {target:,} {'ok' if gas <= target else 'MISSED'}"
            print(f"  {name:<28}{gas:>10,}{mark}")
        for path, parts in report["steps"].items():
            print(f"  {path}: " + ", ".join(f"{k}={v:,}" for k, v in parts.items()))
        cmp = report["comparisons"]
        print(f"  happy_path + seller_withdraw/10 = {cmp['happy_path_plus_seller_withdraw_div_10']:,}")
    return 0 if all(report["meets_targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
