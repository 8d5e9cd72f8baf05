"""Factories for escrow orders: build authorizations, fund, ship, deliver, dispute — as tests need them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from app.chain.client import ChainClient
from app.chain.escrow import (
    ZERO_ADDRESS,
    Attestation,
    Escrow,
    Order,
    OrderAuthorization,
    TxResult,
)
from app.domain.ids import content_hash, order_id, tracking_hash
from app.domain.order_state import Milestone

DAY = 86_400
HOLD = 3 * DAY
_refs = itertools.count(1)


@dataclass
class Actors:
    """Named dev accounts."""

    admin: LocalAccount
    treasury: LocalAccount
    buyer: LocalAccount
    seller: LocalAccount
    oracle1: LocalAccount
    oracle2: LocalAccount
    oracle3: LocalAccount
    arbitrator: LocalAccount
    regulator: LocalAccount
    tax: LocalAccount
    relayer: LocalAccount
    stranger: LocalAccount
    buyer2: LocalAccount
    seller2: LocalAccount

    @classmethod
    def from_accounts(cls, accounts: list[LocalAccount]) -> Actors:
        names = list(cls.__dataclass_fields__)
        return cls(**dict(zip(names, accounts[: len(names)], strict=True)))


@dataclass
class OrderFactory:
    """Builds and drives orders on a deployed stack."""

    chain: ChainClient
    escrow: Escrow
    token: Contract
    actors: Actors
    commission_bps: int = 200

    def auth(self, **overrides: Any) -> OrderAuthorization:
        """An OrderAuthorization with sensible defaults (10% tax, T+3) and a fresh order ref."""
        now = self.chain.now()
        buyer = overrides.pop("buyer", self.actors.buyer)
        seller = overrides.pop("seller", self.actors.seller)
        ref = overrides.pop("order_ref", f"SO-{next(_refs)}")
        base = OrderAuthorization(
            order_id=order_id(seller.address, ref),
            buyer=buyer.address,
            seller=seller.address,
            token=str(self.token.address),
            amount=1_000_000_000,
            commission_bps=self.commission_bps,
            tax_bps=1000,
            tax_recipient=self.actors.tax.address,
            ship_by=now + 5 * DAY,
            deliver_by=now + 30 * DAY,
            hold_seconds=HOLD,
            valid_until=now + DAY,
        )
        auth = replace(base, **overrides)
        if auth.tax_bps == 0 and "tax_recipient" not in overrides:
            auth = replace(auth, tax_recipient=ZERO_ADDRESS)
        return auth

    def mint(self, account: LocalAccount, amount: int) -> None:
        """Faucet tUSD to an account (the faucet caps one call at 1,000,000 tUSD)."""
        limit = 1_000_000 * 10**6
        while amount > 0:
            step = min(amount, limit)
            self.chain.send(self.token.functions.faucet(account.address, step), self.actors.admin)
            amount -= step

    def approve(self, owner: LocalAccount, amount: int) -> None:
        """Give the escrow an allowance."""
        self.chain.send(self.token.functions.approve(self.escrow.address, amount), owner)

    def fund(self, buyer: LocalAccount | None = None, **overrides: Any) -> Order:
        """Mint, approve and fund one order through the buyer's signature, relayed."""
        buyer = buyer or self.actors.buyer
        auth = self.auth(buyer=buyer, **overrides)
        self.mint(buyer, auth.amount)
        self.approve(buyer, auth.amount)
        sig = self.escrow.sign_authorization(buyer.key, auth)
        self.escrow.fund([auth], [sig], self.actors.relayer)
        return self.escrow.orders[auth.order_id]

    def attestation(
        self, order: Order, milestone: int, oracle: LocalAccount | None = None, event_time: int | None = None
    ) -> Attestation:
        """A signed attestation from ``oracle`` (oracle1 by default)."""
        oracle = oracle or self.actors.oracle1
        return self.escrow.sign_attestation(
            oracle.key,
            order.order_id,
            milestone,
            self.chain.now() if event_time is None else event_time,
            tracking_hash("UPS", "1Z999AA10123456784"),
            content_hash(f"event {milestone} {order.order_id.hex()}".encode()),
        )

    def ship(self, order: Order, *oracles: LocalAccount) -> Order:
        """Attest SHIPPED with the given oracles (oracle1 by default)."""
        atts = [self.attestation(order, Milestone.SHIPPED, o) for o in (oracles or (self.actors.oracle1,))]
        self.escrow.attest([(order, atts)], self.actors.relayer)
        return self.escrow.orders[order.order_id]

    def deliver(self, order: Order, *oracles: LocalAccount) -> Order:
        """Attest DELIVERED with the given oracles (oracle1 by default)."""
        atts = [self.attestation(order, Milestone.DELIVERED, o) for o in (oracles or (self.actors.oracle1,))]
        self.escrow.attest([(order, atts)], self.actors.relayer)
        return self.escrow.orders[order.order_id]

    def dispute(self, order: Order, evidence: bytes = b"buyer evidence") -> Order:
        """The buyer opens a dispute with an evidence hash."""
        self.escrow.open_dispute(order, self.actors.buyer, content_hash(evidence))
        return self.escrow.orders[order.order_id]

    def current(self, order: Order) -> Order:
        """The tracked, up-to-date version of ``order``."""
        return self.escrow.orders[order.order_id]

    def send(self, result: TxResult) -> TxResult:
        return result
