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
from dataclasses import dataclass, field
from functools import partial

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


@dataclass
class EscrowModel:
    """Model of one deployed escrow."""

    registry: Registry
    admins: frozenset[str]
    regulators: frozenset[str] = frozenset()
    orders: dict[bytes, OrderModel] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    used_evidence: set[tuple[bytes, str, bytes, int]] = field(default_factory=set)

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

    def open_dispute(self, order_id: bytes, caller: str, now: int, revision: int | None = None) -> OrderModel:
        """The buyer opens a dispute directly."""
        order = self.orders.get(order_id)
        if order is not None and caller != order.terms.buyer:
            raise DomainError("Unauthorized", "only the buyer disputes", caller=caller)
        return self._store(self.order(order_id, revision).open_dispute(caller, now))

    def buyer_decision(
        self,
        order_id: bytes,
        decision: int,
        signer: str,
        valid_until: int,
        now: int,
        revision: int | None = None,
    ) -> OrderModel:
        """A relayed BuyerDecision signed by ``signer``."""
        self._check_valid_until(valid_until, now)
        self._require_signer(signer, self.order(order_id).terms.buyer)
        if decision not in (Decision.CONFIRM_RECEIPT, Decision.OPEN_DISPUTE):
            raise DomainError("InvalidDecision", "unknown decision", decision=decision)
        current = self.order(order_id, revision)
        if decision == Decision.CONFIRM_RECEIPT:
            return self._store(current.confirm_receipt(signer, now, caller_checked=True))
        return self._store(current.open_dispute(signer, now, caller_checked=True))

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
