"""The whole escrow as a pure model: orders, the platform registry, roles, signatures' effects and the ledger.

:class:`EscrowModel` answers "what would this call do at block time ``now``" for every external function
of ``TradeGuardEscrow``: it either applies the change (all or nothing, like a transaction) or raises
:class:`~app.errors.DomainError` with the custom error the contract reverts with. Signatures are represented
by the address they recover to (the chain layer does the cryptography); token transfers by
:class:`~tests.model.lifecycle.Ledger` bookkeeping, assuming the buyer holds the amount and allowed the escrow
to pull it (the token's own errors are not modelled).

Orders are addressed by id, optionally with the ``revision`` of the order the caller holds: a stale revision
is the contract's ``OrderDataMismatch``. An order the model does not know is ``UnknownOrder`` (the contract
may name another error first for calls that check the caller against the terms passed in).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from eth_utils import keccak

from app.domain.order_state import Decision
from app.errors import DomainError
from tests.model.lifecycle import Attestation, FundingRequest, Ledger, OrderModel, open_order
from tests.model.registry import Registry

MAX_BATCH = 500


@dataclass(frozen=True)
class Skipped:
    """A batch entry that did not go through in non-strict mode, with the error the contract logged."""

    order_id: bytes
    code: str


#: ``CentralizedArbitrator.DisputeStatus``
WAITING, SOLVED = 0, 2
RULING_CHOICES = 10


@dataclass
class Court:
    """The test double ``CentralizedArbitrator`` (no appeals) as the escrow meets it: its owner rules, a
    dispute costs ``fee`` wei, and each dispute is (order id, status)."""

    owner: str
    fee: int
    disputes: list[tuple[bytes, int]] = field(default_factory=list)
    #: native currency received (every dispute's fee, all of ``msg.value``)
    balance: int = 0


@dataclass
class EscrowModel:
    """Model of one deployed escrow."""

    registry: Registry
    admins: frozenset[str]
    regulators: frozenset[str] = frozenset()
    orders: dict[bytes, OrderModel] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    used_evidence: set[tuple[bytes, str, bytes, int]] = field(default_factory=set)
    #: ERC-792 arbitrators by address (see :class:`Court`)
    courts: dict[str, Court] = field(default_factory=dict)

    # ------------------------------------------------------------------ plumbing

    def order(self, order_id: bytes, revision: int | None = None) -> OrderModel:
        """The order, checked like the contract checks the terms and state a caller passes."""
        current = self.orders.get(order_id)
        if current is None:
            raise DomainError("UnknownOrder", "no such order", orderId=order_id)
        if revision is not None and revision != current.revision:
            raise DomainError("OrderDataMismatch", "stale order state", orderId=order_id)
        return current

    def _store(self, new: OrderModel) -> OrderModel:
        old = self.orders[new.order_id]
        self.orders[new.order_id] = new
        if new.is_final and not old.is_final:
            self.ledger.settle(new, self.registry.treasury)
        return new

    def _require_role(self, caller: str, holders: frozenset[str]) -> None:
        if caller not in holders:
            raise DomainError("AccessControlUnauthorizedAccount", "missing role", account=caller)

    @staticmethod
    def _check_valid_until(valid_until: int, now: int) -> None:
        if valid_until < now:
            raise DomainError("SignatureExpired", "signature expired", validUntil=valid_until, nowTime=now)

    @staticmethod
    def _require_signer(signer: str, expected: str) -> None:
        if signer != expected:
            raise DomainError("InvalidSignature", "wrong signer", expected=expected, recovered=signer)

    @staticmethod
    def _check_batch(n: int) -> None:
        if n == 0 or n > MAX_BATCH:
            raise DomainError("InvalidBatch", "empty or oversized batch", length=n)

    # ------------------------------------------------------------------ funding

    def fund(
        self,
        items: Sequence[tuple[bytes, FundingRequest, str]],
        sender: str,
        now: int,
    ) -> list[OrderModel]:
        """Fund orders all or nothing; each item is (order id, request, address its signature recovers to)."""
        self._check_batch(len(items))
        opened: dict[bytes, OrderModel] = {}
        for order_id, req, signer in items:
            if order_id in self.orders or order_id in opened:
                raise DomainError("OrderAlreadyExists", "order exists", orderId=order_id)
            order = open_order(order_id, req, self.registry, now)
            if sender != req.buyer:
                self._require_signer(signer, req.buyer)
            opened[order_id] = order
        for order in opened.values():
            self.orders[order.order_id] = order
            self.ledger.deposit(order)
        return list(opened.values())

    # ------------------------------------------------------------------ batches

    def attest(
        self,
        items: Sequence[tuple[bytes, Sequence[Attestation], int | None]],
        strict: bool,
        now: int,
    ) -> tuple[int, list[Skipped]]:
        """Attestation batch: (order id, attestations, revision) each; returns (advanced, skipped)."""
        self._check_batch(len(items))

        def one(order_id: bytes, atts: Sequence[Attestation], revision: int | None) -> bool:
            before = self.order(order_id, revision)
            after = before.attest(atts, self.registry, now)
            self.orders[order_id] = after
            return after.status != before.status

        return self._batch([(oid, partial(one, oid, atts, rev)) for oid, atts, rev in items], strict)

    def release(
        self, items: Sequence[tuple[bytes, int | None]], strict: bool, now: int
    ) -> tuple[int, list[Skipped]]:
        """Release batch: (order id, revision) each; returns (released, skipped)."""
        self._check_batch(len(items))

        def one(order_id: bytes, revision: int | None) -> bool:
            self._store(self.order(order_id, revision).release(now))
            return True

        return self._batch([(oid, partial(one, oid, rev)) for oid, rev in items], strict)

    def _batch(
        self, entries: Sequence[tuple[bytes, Callable[[], bool]]], strict: bool
    ) -> tuple[int, list[Skipped]]:
        saved = (dict(self.orders), copy.deepcopy(self.ledger))
        done, skipped = 0, []
        try:
            for order_id, run in entries:
                try:
                    done += run()
                except DomainError as err:
                    if strict:
                        raise
                    skipped.append(Skipped(order_id, err.code))
        except DomainError:
            self.orders, self.ledger = saved
            raise
        return done, skipped

    # ------------------------------------------------------------------ buyer

    def confirm_receipt(
        self, order_id: bytes, caller: str, now: int, revision: int | None = None
    ) -> OrderModel:
        """The buyer confirms receipt directly."""
        order = self.orders.get(order_id)
        if order is not None and caller != order.terms.buyer:
            raise DomainError("Unauthorized", "only the buyer confirms", caller=caller)
        return self._store(self.order(order_id, revision).confirm_receipt(caller, now))

    def open_dispute(
        self,
        order_id: bytes,
        caller: str,
        now: int,
        revision: int | None = None,
        *,
        value: int = 0,
        extra_data: bytes = b"",
    ) -> OrderModel:
        """The buyer opens a dispute directly, sending ``value`` wei and ``extra_data`` (ERC-792 orders)."""
        order = self.orders.get(order_id)
        if order is not None and caller != order.terms.buyer:
            raise DomainError("Unauthorized", "only the buyer disputes", caller=caller)
        return self._dispute(self.order(order_id, revision), caller, now, True, value, extra_data)

    def _dispute(
        self, current: OrderModel, caller: str, now: int, checked: bool, value: int, extra_data: bytes
    ) -> OrderModel:
        """The escrow's ``_openDispute``: the order's rules, then (ERC-792) the arbitrator's ``createDispute``
        paid with all of ``value``, whose refusal reverts the whole call."""
        disputed = current.open_dispute(
            caller, now, caller_checked=checked, value=value, extra_data_hash=keccak(extra_data)
        )
        if not disputed.external:
            return self._store(disputed)
        court = self.courts[disputed.terms.arbitrator]
        if value < court.fee:
            raise DomainError("InsufficientPayment", "fee not paid", paid=value, cost=court.fee)
        dispute_id = len(court.disputes)
        court.disputes.append((current.order_id, WAITING))
        court.balance += value
        return self._store(replace(disputed, dispute_id=dispute_id))

    def give_ruling(self, court_address: str, caller: str, dispute_id: int, ruling: int) -> None:
        """``CentralizedArbitrator.giveRuling`` (no appeals: final at once, passed on to the escrow's
        ``rule``)."""
        court = self.courts[court_address]
        if caller != court.owner:
            raise DomainError("NotOwner", "only the court's owner rules", caller=caller)
        if dispute_id >= len(court.disputes):
            raise DomainError("InvalidDisputeStatus", "no such dispute", disputeID=dispute_id, status=SOLVED)
        order_id, status = court.disputes[dispute_id]
        if status != WAITING:
            raise DomainError("InvalidDisputeStatus", "not waiting", disputeID=dispute_id, status=status)
        if ruling > RULING_CHOICES:
            raise DomainError("InvalidRulingChoice", "no such choice", ruling=ruling, choices=RULING_CHOICES)
        self.rule_erc792(court_address, dispute_id, ruling, order_id)
        court.disputes[dispute_id] = (order_id, SOLVED)

    def rule_erc792(self, caller: str, dispute_id: int, ruling: int, order_id: bytes | None = None) -> None:
        """The escrow's ``IArbitrable.rule`` called by ``caller``: only disputes the escrow created with that
        arbitrator are found (``order_id`` says which order, as the escrow's own record), once."""
        if order_id is None:  # an account that created no dispute through the escrow: none is found
            raise DomainError(
                "UnknownDispute", "not a dispute of the caller", arbitrator=caller, disputeID=dispute_id
            )
        if ruling > RULING_CHOICES:
            raise DomainError("InvalidRuling", "ruling above the choices", ruling=ruling)
        current = self.orders[order_id]
        if current.ruling is not None:
            raise DomainError("AlreadyRuled", "ruled already", disputeID=dispute_id)
        self.orders[order_id] = current.record_ruling(ruling)

    def execute_ruling(self, order_id: bytes, now: int, revision: int | None = None) -> OrderModel:
        """Anyone settles an order by its ERC-792 arbitrator's recorded ruling."""
        return self._store(self.order(order_id, revision).execute_ruling(now))

    def buyer_decision(
        self,
        order_id: bytes,
        decision: int,
        signer: str,
        valid_until: int,
        now: int,
        revision: int | None = None,
        *,
        value: int = 0,
        extra_data: bytes = b"",
    ) -> OrderModel:
        """A relayed BuyerDecision signed by ``signer`` (the relayer sends ``value`` and ``extra_data``)."""
        self._check_valid_until(valid_until, now)
        self._require_signer(signer, self.order(order_id).terms.buyer)
        if decision not in (Decision.CONFIRM_RECEIPT, Decision.OPEN_DISPUTE):
            raise DomainError("InvalidDecision", "unknown decision", decision=decision)
        current = self.order(order_id, revision)
        if decision == Decision.CONFIRM_RECEIPT:
            return self._store(current.confirm_receipt(signer, now, caller_checked=True))
        return self._dispute(current, signer, now, True, value, extra_data)

    # ------------------------------------------------------------------ evidence and rulings

    def submit_evidence(
        self, order_id: bytes, party: str, evidence_hash: bytes, now: int, revision: int | None = None
    ) -> OrderModel:
        """A party anchors evidence directly."""
        return self._store(self.order(order_id, revision).submit_evidence(party, evidence_hash, now))

    def submit_evidence_signed(
        self,
        order_id: bytes,
        party: str,
        signer: str,
        evidence_hash: bytes,
        valid_until: int,
        now: int,
        revision: int | None = None,
    ) -> OrderModel:
        """A relayed EvidenceSubmission; each signature works once."""
        self._check_valid_until(valid_until, now)
        self._require_signer(signer, party)
        key = (order_id, party, evidence_hash, valid_until)
        if key in self.used_evidence:
            raise DomainError("SignatureReplayed", "evidence signature already used")
        new = self._store(self.order(order_id, revision).submit_evidence(party, evidence_hash, now))
        self.used_evidence.add(key)
        return new

    def rule(
        self,
        order_id: bytes,
        arbitrator: str,
        share_bps: int,
        now: int,
        revision: int | None = None,
        valid_until: int | None = None,
    ) -> OrderModel:
        """An arbitrator's ruling, sent directly or (``valid_until`` given) relayed with its signature."""
        if valid_until is not None:
            self._check_valid_until(valid_until, now)
        order = self.order(order_id, revision)
        return self._store(order.rule(arbitrator, share_bps, self.registry, now))

    # ------------------------------------------------------------------ refunds and freezes

    def refund_by_seller(
        self, order_id: bytes, caller: str, now: int, revision: int | None = None
    ) -> OrderModel:
        """The seller gives the order up."""
        return self._store(self.order(order_id, revision).refund_by_seller(caller, now))

    def timeout_refund(self, order_id: bytes, now: int, revision: int | None = None) -> OrderModel:
        """Anyone refunds after a missed deadline."""
        return self._store(self.order(order_id, revision).timeout_refund(now))

    def freeze(
        self,
        order_id: bytes,
        caller: str,
        duration: int,
        reason_hash: bytes,
        now: int,
        revision: int | None = None,
    ) -> OrderModel:
        """A regulator freezes an order."""
        self._require_role(caller, self.regulators)
        return self._store(self.order(order_id, revision).freeze(duration, reason_hash, now))

    def unfreeze(self, order_id: bytes, caller: str, now: int, revision: int | None = None) -> OrderModel:
        """A regulator lifts a freeze early."""
        self._require_role(caller, self.regulators)
        return self._store(self.order(order_id, revision).unfreeze(now))

    # ------------------------------------------------------------------ payouts and admin

    def withdraw(self, token: str, account: str, to: str, amount: int) -> None:
        """Pay out ``account``'s credit."""
        self.ledger.withdraw(token, account, to, amount)

    def admin(self, caller: str, change: Callable[[Registry], Registry]) -> Registry:
        """An admin call: ``change`` is a :class:`Registry` setter, e.g. ``lambda r: r.set_threshold(2)``."""
        self._require_role(caller, self.admins)
        self.registry = change(self.registry)
        return self.registry
