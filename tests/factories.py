"""Factories for escrow orders: build authorizations, fund, ship, deliver, dispute — as tests need them."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from app.chain import eip712
from app.chain.client import ChainClient
from app.chain.escrow import (
    NO_PERMIT,
    ZERO_ADDRESS,
    Attestation,
    Escrow,
    Order,
    OrderAuthorization,
    TxResult,
)
from app.domain.ids import content_hash, order_id, tracking_hash
from app.domain.order_state import Milestone, Status
from app.errors import ContractRevert

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

    # ------------------------------------------------------------------ per-operation test helpers

    def admin(self, fn_name: str, *args: Any) -> TxResult:
        """Call an admin function of the escrow as the admin."""
        fn = getattr(self.escrow.contract.functions, fn_name)(*args)
        receipt = self.chain.send(fn, self.actors.admin)
        return TxResult(receipt, self.chain.events(receipt))

    def account(self, address: str) -> LocalAccount:
        """The named actor owning ``address``."""
        for name in Actors.__dataclass_fields__:
            acct: LocalAccount = getattr(self.actors, name)
            if acct.address.lower() == address.lower():
                return acct
        raise KeyError(address)

    def prepare(self, auths: Sequence[OrderAuthorization]) -> None:
        """Mint each buyer's total and approve it to the escrow."""
        totals: dict[str, int] = {}
        for a in auths:
            totals[a.buyer] = totals.get(a.buyer, 0) + a.amount
        for buyer, total in totals.items():
            self.mint(self.account(buyer), total)
            self.approve(self.account(buyer), total)

    def fund_batch(
        self,
        auths: Sequence[OrderAuthorization],
        sender: LocalAccount | None = None,
        *,
        signatures: Sequence[bytes] | None = None,
        permit: tuple[Any, ...] = NO_PERMIT,
        prepare: bool = True,
        gas: int | None = None,
    ) -> TxResult:
        """Fund several orders in one call.

        By default each buyer's total is minted and approved and every auth is signed by its buyer.
        """
        if prepare:
            self.prepare(auths)
        if signatures is None:
            signatures = [self.escrow.sign_authorization(self.account(a.buyer).key, a) for a in auths]
        return self.escrow.fund(auths, signatures, sender or self.actors.relayer, permit, gas=gas)

    def in_status(self, status: int, **overrides: Any) -> Order:
        """A fresh order driven to ``status`` by its ordinary path (k=1, no freeze)."""
        a = self.actors
        order = self.fund(**overrides)
        if status == Status.FUNDED:
            return order
        if status == Status.SHIPPED:
            return self.ship(order)
        if status in (Status.DELIVERED, Status.RELEASED):
            order = self.deliver(order)
            if status == Status.RELEASED:
                self.escrow.confirm_receipt(order, a.buyer)
            return self.current(order)
        if status == Status.REFUNDED:
            self.escrow.refund_by_seller(order, a.seller)
            return self.current(order)
        order = self.dispute(order)
        if status == Status.RESOLVED:
            self.escrow.rule(order, a.arbitrator, 5_000, content_hash(b"ruling"))
            return self.current(order)
        assert status == Status.DISPUTED, status
        return order

    def balance(self, address: str) -> int:
        """tUSD balance of ``address``."""
        return int(self.chain.call(self.token.functions.balanceOf(address)))

    def partial(self, order: Order, milestone: int) -> int:
        """Bitmap of oracle indices recorded below threshold for ``milestone``."""
        key = self.escrow.order_key(order.order_id, order.terms.buyer)
        fn = self.escrow.contract.functions.partialAttestations(key, milestone)
        return int(self.chain.call(fn))

    def digest(self, primary_type: str, message: dict[str, Any]) -> bytes:
        """The EIP-712 digest the escrow computes for ``message``."""
        return eip712.digest(self.escrow.typed_data(primary_type, message))


#: Order of the secp256k1 group; ``n - s`` is the malleable twin of ``s``.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@contextmanager
def reverts(name: str, **args: Any) -> Iterator[pytest.ExceptionInfo[ContractRevert]]:
    """Expect a :class:`ContractRevert` with exactly this error name and all of these arguments."""
    with pytest.raises(ContractRevert) as info:
        yield info
    assert info.value.name == name, f"expected {name}, got {info.value}"
    assert info.value.args_by_name == args, f"expected {name}{args}, got {info.value}"


def malleable(signature: bytes) -> bytes:
    """The high-s twin of a 65-byte ``r || s || v`` signature (s -> n - s, v flipped)."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


def recover(digest: bytes, signature: bytes) -> str:
    """What ``ecrecover(digest, signature)`` gives (checksummed)."""
    return str(Account._recover_hash(digest, signature=signature))


def skipped(chain: ChainClient, result: TxResult) -> dict[bytes, ContractRevert]:
    """The ``OrderSkipped`` entries of a batch, by order id, with their decoded custom errors."""
    out: dict[bytes, ContractRevert] = {}
    for ev in result.named("OrderSkipped"):
        decoded = chain.abis.decode_error(bytes(ev.args["reason"]))
        assert decoded is not None, ev
        out[bytes(ev.args["orderId"])] = decoded
    return out


def ni_hash(uri: str) -> bytes:
    """The SHA-256 digest named by an RFC 6920 ``ni:///sha-256;<base64url>`` URI (no padding allowed)."""
    prefix = "ni:///sha-256;"
    assert uri.startswith(prefix), uri
    b64 = uri[len(prefix) :]
    assert "=" not in b64 and len(b64) == 43, uri
    return base64.urlsafe_b64decode(b64 + "=")
