"""Typed access to a deployed TradeGuard escrow: orders, signing, every party action, deployment.

An order on chain is one commitment slot; to act on it a caller passes the order's terms and packed state
back.
:class:`Escrow` keeps each order it has seen (:attr:`Escrow.orders`) up to date from the events of the
transactions it sends, and :meth:`Escrow.sync` rebuilds them from the chain alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_canonical_address, to_checksum_address
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from app.chain import eip712
from app.chain.abi import Event
from app.chain.client import ChainClient
from app.chain.messages import RELAY_FUNCTIONS, BuyerDecision, DeliveryAttestation, EvidenceSubmission, Ruling
from app.chain.messages import Attestation as Attestation
from app.chain.messages import OrderAuthorization as OrderAuthorization
from app.chain.messages import SignedMessage as SignedMessage
from app.domain.order_rules import OrderTerms
from app.domain.order_state import Decision, OrderState, Status

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_HASH = b"\x00" * 32
DEFAULT_HOLD_SECONDS = 259_200  # T+3
#: Escrow events that carry an order's new packed state (``OrderFunded`` also carries its terms).
STATE_EVENTS = (
    "OrderFunded",
    "OrderShipped",
    "OrderDelivered",
    "OrderReleased",
    "DisputeOpened",
    "EvidenceSubmitted",
    "DisputeResolved",
    "OrderRefunded",
    "OrderFrozen",
    "OrderUnfrozen",
)


#: The contract's ``Terms`` struct, in ABI order (SPEC §1: a party may act on chain without us);
#: the keys of an ``OrderFunded`` event's ``terms``.
TERMS_FIELDS = (
    "buyer",
    "seller",
    "token",
    "amount",
    "commissionBps",
    "taxBps",
    "taxRecipient",
    "shipBy",
    "deliverBy",
    "holdSeconds",
    "threshold",
    "responseSeconds",
    "arbitrationSeconds",
    "fundedAt",
    "arbitrator",
    "arbitratorExtraDataHash",
    "metaEvidenceId",
)


def _bytes32(value: bytes | str) -> bytes:
    """A ``bytes32`` as decoded from an event (bytes) or published as JSON (0x-hex)."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def order_key(order_id: bytes, buyer: str) -> bytes:
    """The escrow's storage key of an order: ``keccak256(abi.encode(orderId, buyer))``.

    An order id is unique per buyer, so an order id funded first by someone else cannot block the buyer's own
    order."""
    return bytes(keccak(order_id + bytes(12) + to_canonical_address(buyer)))


class Terms(OrderTerms):
    """The terms an order was funded with (:class:`OrderTerms`), with the contract's ``Terms`` ABI tuple."""

    @classmethod
    def from_event(cls, t: dict[str, Any]) -> Terms:
        """From the ``terms`` argument of an ``OrderFunded`` event."""
        return cls(
            buyer=t["buyer"],
            seller=t["seller"],
            token=t["token"],
            amount=t["amount"],
            commission_bps=t["commissionBps"],
            tax_bps=t["taxBps"],
            tax_recipient=t["taxRecipient"],
            ship_by=t["shipBy"],
            deliver_by=t["deliverBy"],
            hold_seconds=t["holdSeconds"],
            threshold=t["threshold"],
            response_seconds=t["responseSeconds"],
            arbitration_seconds=t["arbitrationSeconds"],
            funded_at=t["fundedAt"],
            arbitrator=t["arbitrator"],
            arbitrator_extra_data_hash=_bytes32(t["arbitratorExtraDataHash"]),
            meta_evidence_id=t["metaEvidenceId"],
        )

    def as_tuple(self) -> tuple[Any, ...]:
        """ABI tuple for the contract."""
        return (
            to_checksum_address(self.buyer),
            to_checksum_address(self.seller),
            to_checksum_address(self.token),
            self.amount,
            self.commission_bps,
            self.tax_bps,
            to_checksum_address(self.tax_recipient),
            self.ship_by,
            self.deliver_by,
            self.hold_seconds,
            self.threshold,
            self.response_seconds,
            self.arbitration_seconds,
            self.funded_at,
            to_checksum_address(self.arbitrator),
            bytes(self.arbitrator_extra_data_hash),
            self.meta_evidence_id,
        )


@dataclass(frozen=True)
class Order:
    """An order as the chain knows it: id, terms and the packed state word."""

    order_id: bytes
    terms: Terms
    state: int

    @property
    def decoded(self) -> OrderState:
        """The decoded state word."""
        return OrderState.unpack(self.state)

    @property
    def status(self) -> Status:
        """Current status."""
        return self.decoded.status

    def ref(self) -> tuple[Any, ...]:
        """ABI tuple ``(orderId, terms, state)``."""
        return (self.order_id, self.terms.as_tuple(), self.state)


NO_PERMIT: tuple[Any, ...] = (0, 0, 0, ZERO_HASH, ZERO_HASH)


@dataclass
class TxResult:
    """A mined transaction: receipt, decoded events, gas used."""

    receipt: TxReceipt
    events: list[Event]

    @property
    def gas_used(self) -> int:
        """Gas the transaction used."""
        return int(self.receipt["gasUsed"])

    @property
    def tx_hash(self) -> str:
        """Transaction hash, 0x-prefixed."""
        return "0x" + bytes(self.receipt["transactionHash"]).hex()

    def named(self, name: str) -> list[Event]:
        """The events called ``name``."""
        return [e for e in self.events if e.name == name]


@dataclass
class Escrow:
    """A deployed escrow and the orders this client tracks."""

    chain: ChainClient
    contract: Contract
    orders: dict[bytes, Order] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """Escrow address."""
        return str(self.contract.address)

    # ------------------------------------------------------------------ typed data and signing

    def typed_data(self, primary_type: str, message: dict[str, Any]) -> dict[str, Any]:
        """EIP-712 document for this escrow's domain (a message given as a dict; see :meth:`document`)."""
        return eip712.typed_data(primary_type, message, self.chain.chain_id, self.address)

    def document(self, msg: SignedMessage) -> dict[str, Any]:
        """The EIP-712 document of one of the SPEC §4 messages for this escrow."""
        return msg.typed_data(self.chain.chain_id, self.address)

    def signer_of(self, msg: SignedMessage, signature: bytes) -> str:
        """Who signed ``msg`` for this escrow (raises on a malformed signature)."""
        return msg.recover(signature, self.chain.chain_id, self.address)

    def sign(self, key: bytes | str, msg: SignedMessage) -> bytes:
        """``key``'s signature over ``msg`` for this escrow."""
        return msg.sign(key, self.chain.chain_id, self.address)

    def sign_authorization(self, key: bytes | str, auth: OrderAuthorization) -> bytes:
        """The buyer's OrderAuthorization signature."""
        return self.sign(key, auth)

    def sign_attestation(
        self,
        key: bytes | str,
        order_id: bytes,
        milestone: int,
        event_time: int,
        tracking_hash: bytes,
        evidence_hash: bytes,
    ) -> Attestation:
        """An oracle's signed DeliveryAttestation."""
        msg = DeliveryAttestation(order_id, milestone, event_time, tracking_hash, evidence_hash)
        return msg.attestation(self.sign(key, msg))

    def sign_buyer_decision(
        self,
        key: bytes | str,
        order_id: bytes,
        decision: int,
        evidence_hash: bytes,
        valid_until: int,
    ) -> bytes:
        """The buyer's signed BuyerDecision."""
        return self.sign(key, BuyerDecision(order_id, decision, evidence_hash, valid_until))

    def sign_evidence(
        self, key: bytes | str, order_id: bytes, party: str, evidence_hash: bytes, valid_until: int
    ) -> bytes:
        """A party's signed EvidenceSubmission."""
        return self.sign(key, EvidenceSubmission(order_id, party, evidence_hash, valid_until))

    def sign_ruling(
        self,
        key: bytes | str,
        order_id: bytes,
        share_bps: int,
        rationale_hash: bytes,
        valid_until: int,
    ) -> bytes:
        """An arbitrator's signed Ruling."""
        return self.sign(key, Ruling(order_id, share_bps, rationale_hash, valid_until))

    def sign_permit(self, owner: LocalAccount, token: Contract, value: int, deadline: int) -> tuple[Any, ...]:
        """An EIP-2612 permit from ``owner`` to this escrow, as the contract's ``Permit`` tuple."""
        doc = eip712.permit_typed_data(
            token_name=self.chain.call(token.functions.name()),
            chain_id=self.chain.chain_id,
            token=str(token.address),
            owner=owner.address,
            spender=self.address,
            value=value,
            nonce=self.chain.call(token.functions.nonces(owner.address)),
            deadline=deadline,
        )
        sig = eip712.sign_typed_data(owner.key, doc)
        return (value, deadline, sig[64], sig[:32], sig[32:64])

    # ------------------------------------------------------------------ transactions

    def _send(self, fn: Any, sender: LocalAccount, gas: int | None = None, value: int = 0) -> TxResult:
        receipt = self.chain.send(fn, sender, gas=gas, value=value)
        events = self.chain.events(receipt)
        self.apply(events)
        return TxResult(receipt, events)

    def apply(self, events: Iterable[Event]) -> None:
        """Update tracked orders from escrow events (terms from ``OrderFunded``, state from the rest)."""
        for ev in events:
            if ev.address != self.address:
                continue
            if ev.name == "OrderFunded":
                oid = bytes(ev.args["orderId"])
                self.orders[oid] = Order(oid, Terms.from_event(ev.args["terms"]), ev.args["state"])
            elif "state" in ev.args and "orderId" in ev.args:
                oid = bytes(ev.args["orderId"])
                if oid in self.orders:
                    self.orders[oid] = replace(self.orders[oid], state=ev.args["state"])

    def sync(self, from_block: int = 0) -> None:
        """Rebuild every order from the chain's events alone."""
        self.orders.clear()
        self.apply(self.chain.get_events(self.address, from_block, self.chain.block_number()))

    def load_order(self, order_id: bytes, from_block: int = 0) -> Order | None:
        """The order as the chain has it now, from its own events only (None if it was never funded).

        Terms come from ``OrderFunded``, the state from the newest state-carrying event; the node filters the
        logs by the indexed ``orderId`` topic, so this reads only the order's own events.
        """
        topics: list[bytes | Sequence[bytes] | None] = [self._state_topics(), order_id]
        order: Order | None = None
        for ev in self.chain.find_events(self.address, topics, from_block):
            if ev.name == "OrderFunded":
                order = Order(order_id, Terms.from_event(ev.args["terms"]), ev.args["state"])
            elif order is not None and "state" in ev.args:
                order = replace(order, state=ev.args["state"])
        return order

    def _state_topics(self) -> list[bytes]:
        by_name = {item["name"]: topic for topic, item in self.chain.abis.events.items()}
        return [by_name[name] for name in STATE_EVENTS]

    # ------------------------------------------------------------------ calls (built, not sent)

    def fund_call(
        self,
        auths: Sequence[OrderAuthorization],
        signatures: Sequence[bytes],
        permit: tuple[Any, ...] = NO_PERMIT,
    ) -> ContractFunction:
        """``fund(auths, signatures, permit)``."""
        return self.contract.functions.fund([a.as_tuple() for a in auths], list(signatures), permit)

    def attest_call(
        self, items: Sequence[tuple[Order, Sequence[Attestation]]], strict: bool = True
    ) -> ContractFunction:
        """``attest(items, strict)``: attestations for one milestone per order."""
        payload = [(o.ref(), [a.as_tuple() for a in atts]) for o, atts in items]
        return self.contract.functions.attest(payload, strict)

    def release_call(self, orders: Sequence[Order], strict: bool = True) -> ContractFunction:
        """``release(orders, strict)``."""
        return self.contract.functions.release([o.ref() for o in orders], strict)

    def relay_call(
        self, order: Order, msg: SignedMessage, signature: bytes, extra_data: bytes = b""
    ) -> ContractFunction:
        """The call that relays one signed BuyerDecision, EvidenceSubmission or Ruling for ``order``.

        With an empty ``signature`` the same call is the sender's own action (the escrow v2 folds the direct
        and the signed entry point of each action into one). ``extra_data`` is the ERC-792 arbitrator's
        ``createDispute`` options, taken by ``submitBuyerDecision`` only.
        """
        fn = self.contract.functions[RELAY_FUNCTIONS[type(msg)]]
        if isinstance(msg, BuyerDecision):
            return fn(*order.ref(), *msg.call_args(), signature, extra_data)
        return fn(*order.ref(), *msg.call_args(), signature)

    def buyer_decision_call(
        self,
        order: Order,
        decision: int,
        evidence_hash: bytes,
        valid_until: int,
        signature: bytes,
        extra_data: bytes = b"",
    ) -> ContractFunction:
        """``submitBuyerDecision``: the buyer's decision, signed (relayed) or sent by the buyer (empty
        signature); ``extra_data`` for an ERC-792 dispute."""
        msg = BuyerDecision(order.order_id, decision, evidence_hash, valid_until)
        return self.relay_call(order, msg, signature, extra_data)

    def evidence_call(
        self, order: Order, party: str, evidence_hash: bytes, valid_until: int, signature: bytes
    ) -> ContractFunction:
        """``submitEvidence``: a party's EvidenceSubmission, signed (relayed) or sent by the party (empty
        signature)."""
        msg = EvidenceSubmission(order.order_id, party, evidence_hash, valid_until)
        return self.relay_call(order, msg, signature)

    def ruling_call(
        self, order: Order, share_bps: int, rationale_hash: bytes, valid_until: int, signature: bytes
    ) -> ContractFunction:
        """``submitRuling``: an arbitrator's Ruling, signed (relayed) or sent by the arbitrator (empty
        signature)."""
        return self.relay_call(
            order, Ruling(order.order_id, share_bps, rationale_hash, valid_until), signature
        )

    def execute_ruling_call(self, order: Order) -> ContractFunction:
        """``executeRuling``: settle an order by the ruling its ERC-792 arbitrator recorded."""
        return self.contract.functions.executeRuling(*order.ref())

    def timeout_refund_call(self, order: Order) -> ContractFunction:
        """``timeoutRefund``: refund an order whose deadline passed."""
        return self.contract.functions.timeoutRefund(*order.ref())

    # ------------------------------------------------------------------ sending

    def fund(
        self,
        auths: Sequence[OrderAuthorization],
        signatures: Sequence[bytes],
        sender: LocalAccount,
        permit: tuple[Any, ...] = NO_PERMIT,
        gas: int | None = None,
    ) -> TxResult:
        """Fund orders (all or nothing)."""
        return self._send(self.fund_call(auths, signatures, permit), sender, gas)

    def attest(
        self,
        items: Sequence[tuple[Order, Sequence[Attestation]]],
        sender: LocalAccount,
        strict: bool = True,
        gas: int | None = None,
    ) -> TxResult:
        """Submit attestations for one or more orders."""
        return self._send(self.attest_call(items, strict), sender, gas)

    def release(
        self,
        orders: Sequence[Order],
        sender: LocalAccount,
        strict: bool = True,
        gas: int | None = None,
    ) -> TxResult:
        """Release delivered orders past their hold window."""
        return self._send(self.release_call(orders, strict), sender, gas)

    def confirm_receipt(
        self, order: Order, buyer: LocalAccount, evidence_hash: bytes = ZERO_HASH
    ) -> TxResult:
        """The buyer confirms receipt directly (``submitBuyerDecision`` without a signature)."""
        fn = self.buyer_decision_call(order, Decision.CONFIRM_RECEIPT, evidence_hash, 0, b"")
        return self._send(fn, buyer)

    def open_dispute(
        self,
        order: Order,
        buyer: LocalAccount,
        evidence_hash: bytes = ZERO_HASH,
        extra_data: bytes = b"",
        value: int = 0,
    ) -> TxResult:
        """The buyer opens a dispute directly (``submitBuyerDecision`` without a signature).

        On an order with an ERC-792 arbitrator ``value`` pays its arbitration cost and ``extra_data`` is its
        createDispute options."""
        fn = self.buyer_decision_call(order, Decision.OPEN_DISPUTE, evidence_hash, 0, b"", extra_data)
        return self._send(fn, buyer, value=value)

    def submit_buyer_decision(
        self,
        order: Order,
        decision: int,
        evidence_hash: bytes,
        valid_until: int,
        signature: bytes,
        sender: LocalAccount,
    ) -> TxResult:
        """Relay a signed BuyerDecision."""
        return self._send(
            self.buyer_decision_call(order, decision, evidence_hash, valid_until, signature), sender
        )

    def submit_evidence(self, order: Order, party: LocalAccount, evidence_hash: bytes) -> TxResult:
        """A party anchors evidence directly (``submitEvidence`` without a signature)."""
        return self._send(self.evidence_call(order, party.address, evidence_hash, 0, b""), party)

    def submit_evidence_signed(
        self,
        order: Order,
        party: str,
        evidence_hash: bytes,
        valid_until: int,
        signature: bytes,
        sender: LocalAccount,
    ) -> TxResult:
        """Relay a signed EvidenceSubmission."""
        return self._send(self.evidence_call(order, party, evidence_hash, valid_until, signature), sender)

    def rule(self, order: Order, arbitrator: LocalAccount, share_bps: int, rationale_hash: bytes) -> TxResult:
        """A platform arbitrator rules directly (``submitRuling`` without a signature)."""
        return self._send(self.ruling_call(order, share_bps, rationale_hash, 0, b""), arbitrator)

    def execute_ruling(self, order: Order, sender: LocalAccount) -> TxResult:
        """Anyone settles an order by its ERC-792 arbitrator's recorded ruling."""
        return self._send(self.execute_ruling_call(order), sender)

    def submit_ruling(
        self,
        order: Order,
        share_bps: int,
        rationale_hash: bytes,
        valid_until: int,
        signature: bytes,
        sender: LocalAccount,
    ) -> TxResult:
        """Relay an arbitrator's signed Ruling."""
        return self._send(self.ruling_call(order, share_bps, rationale_hash, valid_until, signature), sender)

    def refund_by_seller(self, order: Order, seller: LocalAccount) -> TxResult:
        """The seller gives the order up."""
        return self._send(self.contract.functions.refundBySeller(*order.ref()), seller)

    def timeout_refund(self, order: Order, sender: LocalAccount) -> TxResult:
        """Anyone refunds an order whose deadline passed."""
        return self._send(self.timeout_refund_call(order), sender)

    def freeze(self, order: Order, regulator: LocalAccount, duration: int, reason_hash: bytes) -> TxResult:
        """A regulator freezes an order."""
        fn = self.contract.functions.freeze(*order.ref(), duration, reason_hash)
        return self._send(fn, regulator)

    def unfreeze(self, order: Order, regulator: LocalAccount) -> TxResult:
        """A regulator lifts a freeze."""
        return self._send(self.contract.functions.unfreeze(*order.ref()), regulator)

    def withdraw(self, token: str, account: LocalAccount, amount: int, to: str | None = None) -> TxResult:
        """Pay out ``account``'s credit."""
        fn = self.contract.functions.withdraw(
            to_checksum_address(token), to_checksum_address(to or account.address), amount
        )
        return self._send(fn, account)

    # ------------------------------------------------------------------ views

    def credit(self, token: str, account: str) -> int:
        """Unpaid credit of ``account``."""
        return int(
            self.chain.call(
                self.contract.functions.creditOf(to_checksum_address(token), to_checksum_address(account))
            )
        )

    def commitment(self, order_id: bytes, buyer: str | None = None) -> bytes:
        """The on-chain commitment of ``buyer``'s order ``order_id`` (zero bytes when unknown); ``buyer``
        defaults to the buyer of the tracked order."""
        if buyer is None:
            buyer = self.orders[order_id].terms.buyer
        fn = self.contract.functions.commitmentOf(order_id, to_checksum_address(buyer))
        return bytes(self.chain.call(fn))

    def order_key(self, order_id: bytes, buyer: str) -> bytes:
        """The escrow's storage key of ``buyer``'s order ``order_id`` (see :func:`order_key`)."""
        return order_key(order_id, buyer)

    def config(self) -> dict[str, int]:
        """Platform settings for new orders."""
        c = self.chain.call(self.contract.functions.config())
        keys = (
            "commission_bps",
            "threshold",
            "active_oracles",
            "oracle_count",
            "response_seconds",
            "arbitration_seconds",
            "meta_evidence_id",
            "paused",
            "pending_oracles",
            "pending_until",
        )
        return dict(zip(keys, c, strict=True))


@dataclass
class Deployment:
    """What :func:`deploy_stack` deployed and configured."""

    escrow: Escrow
    token: Contract
    registry_library: str
    block: int


def deploy_stack(
    chain: ChainClient,
    *,
    admin: LocalAccount,
    treasury: str,
    oracles: Sequence[str] = (),
    arbitrators: Sequence[str] = (),
    regulators: Sequence[str] = (),
    tax_recipients: dict[str, int] | None = None,
    commission_bps: int = 200,
    threshold: int = 1,
    role_delay: int = 86_400,
    response_seconds: int = 3 * 86_400,
    arbitration_seconds: int = 14 * 86_400,
    meta_evidence_uri: str = "ipfs://tradeguard/meta-evidence/v1.json",
    wait_role_delay: bool = True,
) -> Deployment:
    """Deploy the registry library, the escrow and (dev chains only) tUSD, and configure them.

    With ``wait_role_delay`` on a dev chain the clock is moved past the role delay so that the oracles and
    arbitrators count for orders funded right after.
    """
    if not chain.is_dev_chain:
        raise ValueError("deploy_stack deploys tUSD and is for development chains only")
    start_block = chain.block_number()
    lib = chain.deploy("EscrowRegistry", sender=admin)
    contract = chain.deploy(
        "TradeGuardEscrow",
        admin.address,
        to_checksum_address(treasury),
        commission_bps,
        role_delay,
        response_seconds,
        arbitration_seconds,
        meta_evidence_uri,
        sender=admin,
        libraries={"EscrowRegistry": str(lib.address)},
    )
    escrow = Escrow(chain, contract)
    token = chain.deploy("TestUSD", sender=admin)
    fns = contract.functions
    chain.send(fns.setToken(token.address, True), admin)
    for oracle in oracles:
        chain.send(fns.addOracle(to_checksum_address(oracle)), admin)
    if threshold != 1:
        chain.send(fns.setThreshold(threshold), admin)
    for arbitrator in arbitrators:
        chain.send(fns.addArbitrator(to_checksum_address(arbitrator)), admin)
    regulator_role = chain.call(fns.REGULATOR_ROLE())
    for regulator in regulators:
        chain.send(fns.grantRole(regulator_role, to_checksum_address(regulator)), admin)
    for recipient, cap in (tax_recipients or {}).items():
        chain.send(fns.setTaxRecipient(to_checksum_address(recipient), cap), admin)
    if wait_role_delay and role_delay:
        chain.advance_time(role_delay + 1)
    return Deployment(escrow, token, str(lib.address), start_block)
