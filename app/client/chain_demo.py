"""The contract-level demo (``tradeguard chain-demo``): one order's whole life straight on a dev chain, each
step with its gas and the split read from the chain's events. The product demo (``tradeguard demo``) goes
through the HTTP API instead (:mod:`app.client.demo`)."""

from __future__ import annotations

from decimal import Decimal

from app.chain.client import ChainClient
from app.chain.escrow import Deployment, OrderAuthorization, TxResult, deploy_stack
from app.domain.ids import content_hash, order_id, tracking_hash
from app.domain.money import Split, release_split, ruling_split
from app.domain.order_state import Decision, Milestone
from app.errors import TradeGuardError

DAY = 86_400
DECIMALS = 6


def _usd(units: int) -> str:
    return f"{Decimal(units).scaleb(-DECIMALS):,.2f} tUSD"


def _legs(split: Split) -> tuple[int, int, int]:
    return split.commission, split.tax, split.seller_net


def _step(label: str, res: TxResult) -> int:
    print(f"  {label:<46} gas {res.gas_used:>9,}  tx {res.tx_hash[:18]}…")
    return res.gas_used


def demo(chain_kind: str, amount: int, hold_seconds: int) -> int:
    """Drive a happy path, a dispute with a split ruling and a timeout refund; print steps and splits."""
    chain = ChainClient.start_anvil() if chain_kind == "anvil" else ChainClient.embedded()
    try:
        return _demo(chain, amount, hold_seconds)
    finally:
        chain.close()


def _demo(chain: ChainClient, amount: int, hold: int) -> int:
    acc = chain.dev_accounts(10)
    admin, treasury, buyer, seller, oracle, arbitrator, customs, relayer = acc[:8]
    print(f"chain: {chain.backend} (chain id {chain.chain_id}); deploying escrow, registry and tUSD …")
    dep: Deployment = deploy_stack(
        chain,
        admin=admin,
        treasury=treasury.address,
        oracles=[oracle.address],
        arbitrators=[arbitrator.address],
        tax_recipients={customs.address: 2000},
    )
    esc, token = dep.escrow, dep.token
    print(f"  escrow {esc.address}   tUSD {token.address}")
    chain.send(token.functions.faucet(buyer.address, 3 * amount), admin)
    commission_bps, tax_bps = esc.config()["commission_bps"], 1300

    def authorize(ref: str) -> tuple[OrderAuthorization, bytes, tuple[object, ...]]:
        now = chain.now()
        auth = OrderAuthorization(
            order_id(seller.address, ref),
            buyer.address,
            seller.address,
            str(token.address),
            amount,
            commission_bps,
            tax_bps,
            customs.address,
            now + 5 * DAY,
            now + 30 * DAY,
            hold,
            now + DAY,
        )
        permit = esc.sign_permit(buyer, token, amount, now + DAY)
        return auth, esc.sign_authorization(buyer.key, auth), permit

    def deliver(oid: bytes) -> TxResult:
        att = esc.sign_attestation(
            oracle.key,
            oid,
            Milestone.DELIVERED,
            chain.now(),
            tracking_hash("DHL", "JD014600003828"),
            content_hash(b'{"bizStep":"receiving"}'),
        )
        return esc.attest([(esc.orders[oid], [att])], relayer)

    print(
        f"\n1) happy path: order SO-1001, {_usd(amount)}, commission {commission_bps} bps, "
        f"tax {tax_bps} bps, T+{hold // DAY}"
    )
    auth, sig, permit = authorize("SO-1001")
    total = _step("buyer's signed authorization + permit, relayed", esc.fund([auth], [sig], relayer, permit))
    total += _step("oracle attests DELIVERED (1 of 1)", deliver(auth.order_id))
    chain.advance_time(hold)
    res = esc.release([esc.orders[auth.order_id]], relayer)
    total += _step(f"keeper releases after T+{hold // DAY}", res)
    ev = res.named("OrderReleased")[0].args
    print(f"  {'total':<46} gas {total:>9,}")
    print(
        f"  split on chain: seller {_usd(ev['sellerNet'])}, commission {_usd(ev['commission'])}, "
        f"tax {_usd(ev['tax'])}"
    )
    if (ev["commission"], ev["tax"], ev["sellerNet"]) != _legs(
        release_split(amount, commission_bps, tax_bps)
    ):
        raise TradeGuardError("the chain's split differs from SPEC §3")

    print(
        "\n2) dispute: order SO-1002, buyer disputes with evidence, seller answers, arbitrator splits 40/60"
    )
    auth, sig, permit = authorize("SO-1002")
    total = _step("funded", esc.fund([auth], [sig], relayer, permit))
    total += _step("delivered", deliver(auth.order_id))
    valid = chain.now() + DAY
    evidence = content_hash(b"photo: crushed box")
    dsig = esc.sign_buyer_decision(buyer.key, auth.order_id, Decision.OPEN_DISPUTE, evidence, valid)
    o = esc.orders[auth.order_id]
    total += _step(
        "buyer's signed dispute + evidence hash",
        esc.submit_buyer_decision(o, Decision.OPEN_DISPUTE, evidence, valid, dsig, relayer),
    )
    total += _step(
        "seller's evidence (direct call)",
        esc.submit_evidence(esc.orders[auth.order_id], seller, content_hash(b"carrier POD scan")),
    )
    rsig = esc.sign_ruling(arbitrator.key, auth.order_id, 4000, content_hash(b"ruling text"), valid)
    res = esc.submit_ruling(
        esc.orders[auth.order_id], 4000, content_hash(b"ruling text"), valid, rsig, relayer
    )
    total += _step("arbitrator's signed ruling: 40% to the buyer", res)
    ev = res.named("DisputeResolved")[0].args
    print(f"  {'total':<46} gas {total:>9,}")
    print(
        f"  split on chain: buyer refund {_usd(ev['buyerRefund'])}, seller {_usd(ev['sellerNet'])}, "
        f"commission {_usd(ev['commission'])}, tax {_usd(ev['tax'])}"
    )
    rs = ruling_split(amount, 4000, commission_bps, tax_bps)
    if (ev["buyerRefund"], ev["commission"], ev["tax"], ev["sellerNet"]) != (
        rs.buyer_refund,
        *_legs(rs),
    ):
        raise TradeGuardError("the chain's ruling split differs from SPEC §3")

    print("\n3) ship-by timeout: order SO-1003 never ships; anyone refunds the buyer after shipBy")
    auth, sig, permit = authorize("SO-1003")
    total = _step("funded", esc.fund([auth], [sig], relayer, permit))
    chain.advance_time(5 * DAY + 1)
    total += _step("timeout refund", esc.timeout_refund(esc.orders[auth.order_id], relayer))
    print(f"  {'total':<46} gas {total:>9,}")

    tok = str(token.address)
    print("\ncredits held by the escrow (pull payments):")
    for name, who in (
        ("seller", seller),
        ("buyer", buyer),
        ("treasury", treasury),
        ("customs", customs),
    ):
        print(f"  {name:<10} {_usd(esc.credit(tok, who.address)):>22}")
    res = esc.withdraw(tok, seller, esc.credit(tok, seller.address) - 1)
    _step("seller withdraws (leaves 1 unit)", res)
    return 0
