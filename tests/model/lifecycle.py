"""Reference model of one order's lifecycle (SPEC §2) and of the money it moves (SPEC §3).

Pure and independent of the chain: it keeps every timer as an explicit absolute deadline and moves the
deadlines when a regulator freezes or unfreezes the order, where the contract packs an anchor and a
frozen-seconds total into one word. Both must agree on every rule; ``tests/contracts/test_model_stateful.py``
drives the two side by side. Test-only: the service asks the chain (simulating the call) instead, and keeps
of this module only what it shares with the contract's rules (:mod:`app.domain.order_rules`).

Every action takes ``now`` (the block time it would run at) and returns the new :class:`OrderModel`, or
raises :class:`~app.errors.DomainError` whose ``code`` is the contract's custom error name and whose
``details`` carry the error's arguments under the Solidity parameter names. Checks run in the contract's
order, so when several rules are broken at once the model names the same error as the chain.

Timers:
- ship-by and deliver-by: ``shipBy``/``deliverBy`` plus every second the order was (or is committed to be)
  frozen;
- ``release_at``: set on delivery to ``max(now, frozen_until) + hold`` (the hold starts after a freeze in
  force);
- ``disputed_at``: set when a dispute opens, ``max(now, frozen_until)``; the seller's response deadline and
  the arbitration deadline count from it;
- a freeze of ``d`` seconds moves every timer ``d`` later; an early unfreeze moves them back by what was not
  used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_utils import keccak

from app.domain.money import BPS, Split, refund_split, release_split, ruling_share_bps, ruling_split
from app.domain.order_rules import (
    DAY,
    ZERO_ADDRESS,
    FundingTerms,
    OrderTerms,
    PlatformLimits,
    funding_violations,
)
from app.domain.order_state import Milestone, RefundReason, Status
from app.errors import DomainError
from tests.model.registry import Registry

MAX_FREEZE_SECONDS = 30 * DAY
ZERO_HASH = bytes(32)
KECCAK_EMPTY = keccak(b"")


@dataclass(frozen=True)
class FundingRequest(FundingTerms):
    """What the buyer signs to fund an order (SPEC §4.1 OrderAuthorization, without the order id)."""

    valid_until: int
    arbitrator: str = ZERO_ADDRESS
    arbitrator_extra_data_hash: bytes = b"\x00" * 32


@dataclass(frozen=True)
class Attestation:
    """One oracle's vote for a milestone (the signer as recovered from its signature, or the sender)."""

    signer: str
    milestone: int
    event_time: int


def _fail(code: str, message: str, **details: Any) -> DomainError:
    return DomainError(code, message, **details)


def open_order(order_id: bytes, req: FundingRequest, registry: Registry, now: int) -> OrderModel:
    """Fund an order at ``now`` under ``registry``'s current settings (signature and token pull aside)."""
    if req.valid_until < now:
        raise _fail("SignatureExpired", "authorization expired", validUntil=req.valid_until, nowTime=now)
    limits = PlatformLimits(
        token_allowed=req.token in registry.allowed_tokens,
        commission_bps=registry.commission_bps,
        tax_cap=registry.tax_caps.get(req.tax_recipient, 0),
        threshold=registry.threshold,
        usable_oracles=registry.usable_oracles(now),
        paused=registry.paused,
    )
    broken = funding_violations(req, limits, now)
    if broken:  # the first broken rule, as the escrow checks them in this order
        raise _fail(broken[0].code, broken[0].message, **broken[0].details)
    if (
        req.arbitrator_extra_data_hash != b"\x00" * 32
        if req.arbitrator == ZERO_ADDRESS
        else not registry.is_arbitrator(req.arbitrator, now)
    ):
        raise _fail(
            "InvalidArbitration",
            "no such ERC-792 arbitrator active now",
            arbitrator=req.arbitrator,
            extraDataHash=req.arbitrator_extra_data_hash,
        )
    terms = OrderTerms(
        buyer=req.buyer,
        seller=req.seller,
        token=req.token,
        amount=req.amount,
        commission_bps=req.commission_bps,
        tax_bps=req.tax_bps,
        tax_recipient=req.tax_recipient,
        ship_by=req.ship_by,
        deliver_by=req.deliver_by,
        hold_seconds=req.hold_seconds,
        threshold=registry.threshold,
        response_seconds=registry.response_seconds,
        arbitration_seconds=registry.arbitration_seconds,
        funded_at=now,
        arbitrator=req.arbitrator,
        arbitrator_extra_data_hash=req.arbitrator_extra_data_hash,
    )
    return OrderModel(
        order_id=order_id,
        terms=terms,
        status=Status.FUNDED,
        ship_deadline=req.ship_by,
        deliver_deadline=req.deliver_by,
    )


@dataclass(frozen=True)
class OrderModel:
    """One funded order: terms, status, timers, freeze, responded flag and partial attestations.

    ``revision`` counts the changes of what the contract commits to (status, timers, freeze, responded);
    partial attestations are kept beside the commitment and do not change it.
    """

    order_id: bytes
    terms: OrderTerms
    status: Status
    ship_deadline: int
    deliver_deadline: int
    release_at: int | None = None
    disputed_at: int | None = None
    responded: bool = False
    frozen_seconds: int = 0
    frozen_until: int = 0
    votes_shipped: frozenset[int] = frozenset()
    votes_delivered: frozenset[int] = frozenset()
    split: Split | None = None
    refund_reason: RefundReason | None = None
    revision: int = 0
    #: ERC-792 (SPEC §4.1): the arbitrator's id of the dispute the escrow created, and the ruling it recorded
    #: through ``rule()`` (kept beside the commitment, like the contract's ``_rulings``: no revision change)
    dispute_id: int | None = None
    ruling: int | None = None

    @property
    def external(self) -> bool:
        """Whether the order names an ERC-792 arbitrator."""
        return self.terms.arbitrator != ZERO_ADDRESS

    # ------------------------------------------------------------------ queries

    @property
    def is_final(self) -> bool:
        """Released, refunded or resolved."""
        return self.status.is_final

    def is_frozen(self, now: int) -> bool:
        """Whether a regulator freeze is in force at ``now``."""
        return now < self.frozen_until

    @property
    def response_deadline(self) -> int | None:
        """Last second the seller can answer the open dispute (None unless disputed)."""
        if self.disputed_at is None or self.status != Status.DISPUTED:
            return None
        return self.disputed_at + self.terms.response_seconds

    @property
    def arbitration_deadline(self) -> int | None:
        """Last second an arbitrator can rule (None unless disputed)."""
        if self.disputed_at is None or self.status != Status.DISPUTED:
            return None
        return self.disputed_at + self.terms.arbitration_seconds

    def votes(self, milestone: int) -> frozenset[int]:
        """Oracle indices recorded for ``milestone`` and not yet enough to move the order."""
        return self.votes_shipped if milestone == Milestone.SHIPPED else self.votes_delivered

    def deadlines(self) -> dict[str, int]:
        """The timers that matter in the current status, by name (freeze extensions included)."""
        out: dict[str, int] = {}
        if self.is_final:
            return out
        if self.status == Status.FUNDED:
            out["ship_by"] = self.ship_deadline
        elif self.status == Status.SHIPPED:
            out["deliver_by"] = self.deliver_deadline
        elif self.status == Status.DELIVERED and self.release_at is not None:
            out["release_at"] = self.release_at
        elif self.status == Status.DISPUTED:
            if not self.responded and self.response_deadline is not None:
                out["response_deadline"] = self.response_deadline
            if self.arbitration_deadline is not None:
                out["arbitration_deadline"] = self.arbitration_deadline
        if self.frozen_until:
            out["frozen_until"] = self.frozen_until
        return out

    def release_eligible_at(self) -> int | None:
        """First block time at which anyone may release (None unless delivered); a freeze still blocks."""
        return self.release_at if self.status == Status.DELIVERED else None

    def timeout_refund_eligible_at(self) -> int | None:
        """First block time at which anyone may refund for a missed deadline (None if no timer runs)."""
        deadline = self._timeout_deadline()
        return None if deadline is None else deadline[1] + 1

    # ------------------------------------------------------------------ helpers

    def _changed(self, **changes: Any) -> OrderModel:
        return replace(self, revision=self.revision + 1, **changes)

    def _require_not_frozen(self, now: int) -> None:
        if self.is_frozen(now):
            raise _fail("OrderIsFrozen", "order frozen", orderId=self.order_id, frozenUntil=self.frozen_until)

    def _invalid_status(self) -> DomainError:
        return _fail(
            "InvalidStatus",
            f"not allowed while {self.status.name.lower()}",
            orderId=self.order_id,
            status=int(self.status),
        )

    def _shift_timers(self, seconds: int) -> dict[str, Any]:
        """Every timer moved by ``seconds`` (negative: back)."""
        return {
            "ship_deadline": self.ship_deadline + seconds,
            "deliver_deadline": self.deliver_deadline + seconds,
            "release_at": None if self.release_at is None else self.release_at + seconds,
            "disputed_at": None if self.disputed_at is None else self.disputed_at + seconds,
        }

    def _timeout_deadline(self) -> tuple[RefundReason, int] | None:
        if self.status == Status.FUNDED:
            return RefundReason.SHIP_TIMEOUT, self.ship_deadline
        if self.status == Status.SHIPPED:
            return RefundReason.DELIVERY_TIMEOUT, self.deliver_deadline
        if self.status == Status.DISPUTED and self.ruling is None:  # a recorded ruling wins over timeouts
            if not self.responded and self.response_deadline is not None:
                return RefundReason.RESPONSE_TIMEOUT, self.response_deadline
            if self.arbitration_deadline is not None:
                return RefundReason.ARBITRATION_TIMEOUT, self.arbitration_deadline
        return None

    def _settled(self, status: Status, split: Split, reason: RefundReason | None = None) -> OrderModel:
        return self._changed(status=status, split=split, refund_reason=reason)

    # ------------------------------------------------------------------ oracles

    def attest(self, attestations: Sequence[Attestation], registry: Registry, now: int) -> OrderModel:
        """Count k-of-n votes for one milestone; the order ships or is delivered once ``threshold`` is met.

        Not while frozen. Delivery from funded must come by the ship-by deadline, from shipped by deliver-by.

        Votes below the threshold are kept (for k > 1) and count later, unless their oracle is removed.
        """
        if not attestations:
            raise _fail("NoAttestations", "no attestation given")
        milestone = attestations[0].milestone
        if milestone not in (Milestone.SHIPPED, Milestone.DELIVERED):
            raise _fail("InvalidMilestone", "unknown milestone", milestone=milestone)
        if self.status == Status.FUNDED:
            deadline = self.ship_deadline
        elif self.status == Status.SHIPPED and milestone == Milestone.DELIVERED:
            deadline = self.deliver_deadline
        else:
            raise self._invalid_status()
        # Frozen orders take no attestation: a freeze begun after a missed deadline must not reopen it.
        self._require_not_frozen(now)
        if now > deadline:
            raise _fail("DeadlinePassed", "milestone too late", orderId=self.order_id, deadline=deadline)

        threshold = self.terms.threshold
        votes = set(self.votes(milestone)) if threshold > 1 else set()
        count = sum(1 for i in votes if registry.index_counts_for(i, self.terms.funded_at))
        for att in attestations:
            if att.milestone != milestone:
                raise _fail("InvalidMilestone", "milestones differ", milestone=att.milestone)
            if att.event_time > now:
                raise _fail("EventInFuture", "event after block time", eventTime=att.event_time)
            if not registry.counts_for(att.signer, self.terms.funded_at):
                raise _fail("NotOracle", "signer does not count for this order", signer=att.signer)
            index = registry.oracle_index(att.signer)
            if index in votes:
                raise _fail(
                    "DuplicateAttestation", "oracle already voted", orderId=self.order_id, oracle=att.signer
                )
            votes.add(index)
            count += 1

        if count < threshold:
            if milestone == Milestone.SHIPPED:
                return replace(self, votes_shipped=frozenset(votes))
            return replace(self, votes_delivered=frozenset(votes))
        if milestone == Milestone.SHIPPED:
            return self._changed(status=Status.SHIPPED, votes_shipped=frozenset())
        hold_starts = max(now, self.frozen_until)
        return self._changed(
            status=Status.DELIVERED,
            votes_delivered=frozenset(),
            release_at=hold_starts + self.terms.hold_seconds,
        )

    # ------------------------------------------------------------------ releases

    def release(self, now: int) -> OrderModel:
        """Anyone releases a delivered order once the hold window is over and no freeze is in force."""
        if self.status != Status.DELIVERED or self.release_at is None:
            raise self._invalid_status()
        self._require_not_frozen(now)
        if now < self.release_at:
            raise _fail(
                "DeadlineNotReached", "hold window not over", orderId=self.order_id, deadline=self.release_at
            )
        return self._settled(
            Status.RELEASED,
            release_split(self.terms.amount, self.terms.commission_bps, self.terms.tax_bps),
        )

    def confirm_receipt(self, caller: str, now: int, *, caller_checked: bool = False) -> OrderModel:
        """The buyer confirms receipt of a shipped or delivered order: released at once, hold or not."""
        if not caller_checked and caller != self.terms.buyer:
            raise _fail("Unauthorized", "only the buyer confirms receipt", caller=caller)
        if self.status not in (Status.SHIPPED, Status.DELIVERED):
            raise self._invalid_status()
        self._require_not_frozen(now)
        return self._settled(
            Status.RELEASED,
            release_split(self.terms.amount, self.terms.commission_bps, self.terms.tax_bps),
        )

    # ------------------------------------------------------------------ disputes

    def _freeze_ahead(self, now: int) -> int:
        """Seconds of a running freeze still to come (already added to every timer)."""
        return max(0, self.frozen_until - now)

    def open_dispute(
        self,
        caller: str,
        now: int,
        *,
        caller_checked: bool = False,
        value: int = 0,
        extra_data_hash: bytes = KECCAK_EMPTY,
    ) -> OrderModel:
        """The buyer disputes before the current timer runs out; the dispute timers start after any freeze.

        Under platform arbitration no native currency may come with it; with an ERC-792 arbitrator the
        ``extraData`` given must hash to the signed one (the fee is the arbitrator's to check, see
        :meth:`tests.model.escrow_model.EscrowModel.open_dispute`)."""
        if not caller_checked and caller != self.terms.buyer:
            raise _fail("Unauthorized", "only the buyer opens a dispute", caller=caller)
        if self.status == Status.FUNDED:
            last_ok, deadline = self.ship_deadline, self.ship_deadline
        elif self.status == Status.SHIPPED:
            last_ok, deadline = self.deliver_deadline, self.deliver_deadline
        elif self.status == Status.DELIVERED and self.release_at is not None:
            # The dispute must come before the release becomes possible.
            last_ok, deadline = self.release_at - 1, self.release_at
        else:
            raise self._invalid_status()
        # A running freeze counts only for the time already gone by: it never reopens a closed window.
        ahead = self._freeze_ahead(now)
        last_ok, deadline = last_ok - ahead, deadline - ahead
        if now > last_ok:
            raise _fail("DeadlinePassed", "too late to dispute", orderId=self.order_id, deadline=deadline)
        if not self.external:
            if value != 0:
                raise _fail("UnexpectedValue", "platform disputes take no native currency", value=value)
        elif extra_data_hash != self.terms.arbitrator_extra_data_hash:
            raise _fail(
                "ExtraDataMismatch",
                "extraData does not hash to the signed one",
                expected=self.terms.arbitrator_extra_data_hash,
                actual=extra_data_hash,
            )
        return self._changed(status=Status.DISPUTED, disputed_at=max(now, self.frozen_until))

    def record_ruling(self, ruling: int) -> OrderModel:
        """The order's ERC-792 arbitrator ruled (``rule()``): recorded, whatever the order's status; settled
        only by :meth:`execute_ruling`. Outside the commitment: the revision stays."""
        return replace(self, ruling=ruling)

    def execute_ruling(self, now: int) -> OrderModel:
        """Anyone settles a disputed order by its ERC-792 arbitrator's recorded ruling (no deadline: a
        recorded ruling wins over a timeout refund not executed first)."""
        if not self.external or self.ruling is None:
            raise _fail("NoRuling", "no ERC-792 ruling recorded", orderId=self.order_id)
        if self.status != Status.DISPUTED:
            raise self._invalid_status()
        self._require_not_frozen(now)
        share = ruling_share_bps(self.ruling)
        split = ruling_split(self.terms.amount, share, self.terms.commission_bps, self.terms.tax_bps)
        return self._settled(Status.RESOLVED, split)

    def submit_evidence(self, party: str, evidence_hash: bytes, now: int) -> OrderModel:
        """Buyer or seller anchors evidence; the seller's first evidence in the response window answers it."""
        if party not in (self.terms.buyer, self.terms.seller):
            raise _fail("Unauthorized", "only buyer or seller submit evidence", caller=party)
        if evidence_hash == ZERO_HASH:
            raise _fail("EmptyHash", "evidence hash is zero")
        if self.is_final:
            raise self._invalid_status()
        answers = (
            party == self.terms.seller
            and self.status == Status.DISPUTED
            and not self.responded
            and self.response_deadline is not None
            and now <= self.response_deadline - self._freeze_ahead(now)
        )
        return self._changed(responded=True) if answers else self

    def rule(self, arbitrator: str, share_bps: int, registry: Registry, now: int) -> OrderModel:
        """An arbitrator splits a disputed order: ``share_bps`` of it back to the buyer, the rest released.

        Escrow v2: only an arbitrator already active when the order was funded (one appointed during the
        dispute cannot rule on it), and only on orders without an ERC-792 arbitrator."""
        funded_at = self.terms.funded_at
        if self.terms.arbitrator != ZERO_ADDRESS or not registry.is_arbitrator(arbitrator, funded_at):
            raise _fail("NotArbitrator", "not an active arbitrator", account=arbitrator)
        if self.status != Status.DISPUTED:
            raise self._invalid_status()
        self._require_not_frozen(now)
        if share_bps > BPS:
            raise _fail("InvalidBps", "share above 10000", bps=share_bps)
        deadline = self.arbitration_deadline
        assert deadline is not None  # disputed orders always have one
        if now > deadline:
            raise _fail("DeadlinePassed", "ruling too late", orderId=self.order_id, deadline=deadline)
        split = ruling_split(self.terms.amount, share_bps, self.terms.commission_bps, self.terms.tax_bps)
        return self._settled(Status.RESOLVED, split)

    # ------------------------------------------------------------------ refunds

    def refund_by_seller(self, caller: str, now: int) -> OrderModel:
        """The seller gives up any open order: full refund, no commission, no tax."""
        if caller != self.terms.seller:
            raise _fail("Unauthorized", "only the seller refunds", caller=caller)
        if self.is_final:
            raise self._invalid_status()
        self._require_not_frozen(now)
        return self._settled(Status.REFUNDED, refund_split(self.terms.amount), RefundReason.SELLER_REFUND)

    def timeout_refund(self, now: int) -> OrderModel:
        """Anyone refunds the buyer once the current timer has passed (strictly after its last second)."""
        self._require_not_frozen(now)
        timer = self._timeout_deadline()
        if timer is None:
            raise self._invalid_status()
        reason, deadline = timer
        if now <= deadline:
            raise _fail("DeadlineNotReached", "timer still running", orderId=self.order_id, deadline=deadline)
        return self._settled(Status.REFUNDED, refund_split(self.terms.amount), reason)

    # ------------------------------------------------------------------ regulator

    def freeze(self, duration: int, reason_hash: bytes, now: int) -> OrderModel:
        """Freeze for ``duration`` seconds (30 days in total at most); every timer moves that much later."""
        if self.is_final:
            raise self._invalid_status()
        self._require_not_frozen(now)
        if reason_hash == ZERO_HASH:
            raise _fail("EmptyHash", "freeze needs a reason hash")
        total = self.frozen_seconds + duration
        if duration == 0 or total > MAX_FREEZE_SECONDS:
            raise _fail("FreezeTooLong", "freeze out of bounds", orderId=self.order_id, totalSeconds=total)
        return self._changed(
            frozen_seconds=total, frozen_until=now + duration, **self._shift_timers(duration)
        )

    def unfreeze(self, now: int) -> OrderModel:
        """Lift a freeze early: the part not used is given back to every timer."""
        if not self.is_frozen(now):
            raise _fail("OrderNotFrozen", "order not frozen", orderId=self.order_id)
        unused = self.frozen_until - now
        return self._changed(
            frozen_seconds=self.frozen_seconds - unused, frozen_until=now, **self._shift_timers(-unused)
        )


@dataclass
class Ledger:
    """Where the escrowed money is: open order amounts and unpaid credits, per token.

    SPEC §3 conservation: for every token, the escrow's balance equals the open amounts plus the unpaid
    credits.
    """

    credits: dict[tuple[str, str], int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    open_amounts: dict[bytes, tuple[str, int]] = field(default_factory=dict)

    def deposit(self, order: OrderModel) -> None:
        """A funded order's amount arrives."""
        token, amount = order.terms.token, order.terms.amount
        self.open_amounts[order.order_id] = (token, amount)
        self.balances[token] = self.balances.get(token, 0) + amount

    def settle(self, order: OrderModel, treasury: str) -> dict[str, int]:
        """Credit a final order's split (commission to ``treasury``); returns the credits by account."""
        if order.split is None or order.order_id not in self.open_amounts:
            raise ValueError("only a newly final, deposited order can be settled")
        del self.open_amounts[order.order_id]
        s, t = order.split, order.terms
        given: dict[str, int] = {}
        for account, amount in (
            (t.buyer, s.buyer_refund),
            (treasury, s.commission),
            (t.tax_recipient, s.tax),
            (t.seller, s.seller_net),
        ):
            if amount:
                given[account] = given.get(account, 0) + amount
                self.credits[(t.token, account)] = self.credits.get((t.token, account), 0) + amount
        return given

    def credit(self, token: str, account: str) -> int:
        """Unpaid credit of ``account`` in ``token``."""
        return self.credits.get((token, account), 0)

    def withdraw(self, token: str, account: str, to: str, amount: int) -> None:
        """Pay ``amount`` of ``account``'s credit out to ``to``."""
        if to == ZERO_ADDRESS:
            raise _fail("ZeroAddress", "payout to the zero address")
        available = self.credit(token, account)
        if amount == 0 or amount > available:
            raise _fail(
                "InsufficientCredit",
                "not enough credit",
                token=token,
                account=account,
                available=available,
                requested=amount,
            )
        self.credits[(token, account)] = available - amount
        self.balances[token] -= amount

    def open_total(self, token: str) -> int:
        """Sum of the amounts of open orders in ``token``."""
        return sum(a for tok, a in self.open_amounts.values() if tok == token)

    def unpaid_total(self, token: str) -> int:
        """Sum of the unpaid credits in ``token``."""
        return sum(a for (tok, _), a in self.credits.items() if tok == token)

    def is_conserved(self, token: str) -> bool:
        """Balance == open amounts + unpaid credits."""
        return self.balances.get(token, 0) == self.open_total(token) + self.unpaid_total(token)

    def accounts(self) -> Iterable[tuple[str, str]]:
        """Every (token, account) ever credited."""
        return self.credits.keys()
