"""The whole order lifecycle on an anvil node that ChainClient starts, stops and restarts from its state.

The tests share one node (orders are independent of each other); the last one stops it and starts a new node
from the same ``--state`` file, rebuilding every order from the chain alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.chain.client import ChainClient
from app.chain.escrow import Deployment, Escrow, Order
from app.domain.ids import content_hash
from app.domain.money import release_split, ruling_split
from app.domain.order_state import RefundReason, Status
from tests.chain.conftest import anvil_binary, deploy_test_stack
from tests.factories import DAY, HOLD, Actors, OrderFactory, reverts

pytestmark = pytest.mark.anvil


@dataclass
class Node:
    """The module's anvil node; ``chain`` changes when the test restarts it."""

    chain: ChainClient
    state_file: Path
    deployment: Deployment
    actors: Actors

    @property
    def escrow(self) -> Escrow:
        return self.deployment.escrow

    @property
    def factory(self) -> OrderFactory:
        return OrderFactory(self.chain, self.escrow, self.deployment.token, self.actors)

    @property
    def token_address(self) -> str:
        return str(self.deployment.token.address)

    def balance(self, address: str) -> int:
        return int(self.chain.call(self.deployment.token.functions.balanceOf(address)))

    def block_time(self, tx_hash: str) -> int:
        block = self.chain.w3.eth.get_transaction_receipt(tx_hash)["blockNumber"]
        return int(self.chain.w3.eth.get_block(block)["timestamp"])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    anvil_binary()
    state_file = tmp_path_factory.mktemp("anvil") / "state.json"
    chain = ChainClient.start_anvil(state_file=state_file)
    assert chain.backend == "anvil" and chain.chain_id == 31337
    actors = Actors.from_accounts(chain.dev_accounts(len(Actors.__dataclass_fields__)))
    n = Node(chain, state_file, deploy_test_stack(chain, actors), actors)
    yield n
    n.chain.close()


def test_permit_funding_delivery_time_travel_release_and_withdraw(node: Node) -> None:
    f, a, escrow, chain = node.factory, node.actors, node.escrow, node.chain
    token = node.deployment.token
    auth = f.auth(amount=250_000_000)
    f.mint(a.buyer, auth.amount)
    assert chain.call(token.functions.allowance(a.buyer.address, escrow.address)) == 0

    # funding with an EIP-2612 permit instead of an approval, relayed
    permit_nonce = chain.call(token.functions.nonces(a.buyer.address))
    permit = escrow.sign_permit(a.buyer, token, auth.amount, chain.now() + DAY)
    sig = escrow.sign_authorization(a.buyer.key, auth)
    escrow.fund([auth], [sig], a.relayer, permit=permit)
    order = escrow.orders[auth.order_id]
    assert order.status == Status.FUNDED
    assert chain.call(token.functions.nonces(a.buyer.address)) == permit_nonce + 1
    assert chain.call(token.functions.allowance(a.buyer.address, escrow.address)) == 0
    assert node.balance(a.buyer.address) == 0

    # a signed delivery attestation, relayed: the hold window starts
    result = escrow.attest([(order, [f.attestation(order, 2, a.oracle1)])], a.relayer)
    order = f.current(order)
    assert order.status == Status.DELIVERED
    release_at = order.decoded.release_at
    assert release_at == node.block_time(result.tx_hash) + HOLD
    assert result.named("OrderDelivered")[0].args["releaseAt"] == release_at
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=release_at):
        escrow.release([order], a.stranger)

    # time travel to exactly releaseAt (evm_setNextBlockTimestamp): anyone may release
    chain.set_next_block_time(release_at)
    result = escrow.release([order], a.stranger)
    assert node.block_time(result.tx_hash) == release_at
    assert f.current(order).status == Status.RELEASED

    split = release_split(auth.amount, 200, 1000)
    (released,) = result.named("OrderReleased")
    assert (released.args["commission"], released.args["tax"], released.args["sellerNet"]) == (
        split.commission,
        split.tax,
        split.seller_net,
    )
    assert escrow.credit(node.token_address, a.seller.address) == split.seller_net
    seller_before = node.balance(a.seller.address)
    escrow.withdraw(node.token_address, a.seller, split.seller_net)
    assert node.balance(a.seller.address) == seller_before + split.seller_net
    assert escrow.credit(node.token_address, a.seller.address) == 0
    with reverts(
        "InsufficientCredit", token=node.token_address, account=a.seller.address, available=0, requested=1
    ):
        escrow.withdraw(node.token_address, a.seller, 1)


def test_dispute_with_evidence_and_a_split_ruling(node: Node) -> None:
    f, a, escrow, chain = node.factory, node.actors, node.escrow, node.chain
    order = f.ship(f.fund(amount=77_777_777))
    order = f.dispute(order, b"arrived broken")
    assert order.status == Status.DISPUTED
    seller_evidence = content_hash(b"photos at dispatch")
    escrow.submit_evidence(order, a.seller, seller_evidence)
    order = f.current(order)
    assert order.decoded.responded
    until = chain.now() + DAY
    buyer_evidence = content_hash(b"courier report")
    sig = escrow.sign_evidence(a.buyer.key, order.order_id, a.buyer.address, buyer_evidence, until)
    result = escrow.submit_evidence_signed(order, a.buyer.address, buyer_evidence, until, sig, a.relayer)
    (anchored,) = result.named("EvidenceSubmitted")
    assert (anchored.args["party"], anchored.args["evidenceHash"]) == (a.buyer.address, buyer_evidence)

    chain.advance_time(2 * DAY)
    rationale = content_hash(b"both partly right")
    until = chain.now() + DAY
    sig = escrow.sign_ruling(a.arbitrator.key, order.order_id, 4_000, rationale, until)
    result = escrow.submit_ruling(f.current(order), 4_000, rationale, until, sig, a.relayer)
    assert f.current(order).status == Status.RESOLVED

    split = ruling_split(77_777_777, 4_000, 200, 1000)
    (resolved,) = result.named("DisputeResolved")
    assert resolved.args["arbitrator"] == a.arbitrator.address
    assert (resolved.args["buyerRefund"], resolved.args["sellerNet"]) == (
        split.buyer_refund,
        split.seller_net,
    )
    assert split.buyer_refund + split.commission + split.tax + split.seller_net == 77_777_777
    buyer_before = node.balance(a.buyer.address)
    escrow.withdraw(node.token_address, a.buyer, split.buyer_refund)
    assert node.balance(a.buyer.address) == buyer_before + split.buyer_refund


def test_timeout_refund_after_ship_by(node: Node) -> None:
    f, a, escrow, chain = node.factory, node.actors, node.escrow, node.chain
    order = f.fund(amount=5_000_000)
    ship_by = order.terms.ship_by
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=ship_by):
        escrow.timeout_refund(order, a.stranger)
    chain.set_next_block_time(ship_by + 1)
    result = escrow.timeout_refund(order, a.stranger)
    (refunded,) = result.named("OrderRefunded")
    assert refunded.args["reason"] == RefundReason.SHIP_TIMEOUT
    assert f.current(order).status == Status.REFUNDED
    assert escrow.credit(node.token_address, a.buyer.address) == 5_000_000


def test_orders_survive_a_restart_from_the_state_file(node: Node) -> None:
    f, a = node.factory, node.actors
    open_order = f.fund(amount=3_000_000)  # left open, to be finished on the restarted node
    expected: dict[bytes, Order] = dict(node.escrow.orders)
    block = node.chain.block_number()
    treasury_credit = node.escrow.credit(node.token_address, a.treasury.address)
    address = node.escrow.address

    node.chain.close()
    assert node.state_file.exists() and node.state_file.stat().st_size > 0
    node.chain = ChainClient.start_anvil(state_file=node.state_file)

    chain = node.chain
    assert chain.block_number() == block
    escrow = Escrow(chain, chain.contract("TradeGuardEscrow", address))
    escrow.sync(node.deployment.block)
    assert escrow.orders == expected
    assert escrow.credit(node.token_address, a.treasury.address) == treasury_credit

    # the restarted node is live: a fresh client finishes the open order (nonces re-read from the chain)
    escrow.refund_by_seller(escrow.orders[open_order.order_id], a.seller)
    assert escrow.orders[open_order.order_id].status == Status.REFUNDED
    assert chain.block_number() == block + 1
