"""Helpers for the relayer, nonce manager and keeper tests: orders on the runtime's own stack, intent payloads
signed by the runtime's dev accounts, a fake transport failure, and a spy on what reaches the node.

No tests here (imported by ``test_relayer*.py``, ``test_nonce_manager.py`` and ``test_keeper.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import func, select
from web3.contract import Contract
from web3.middleware import Web3Middleware

from app.chain.escrow import Order, OrderAuthorization
from app.db import session as db_session
from app.db.models import Intent, Principal
from app.db.models import Order as OrderRow
from app.db.session import transaction
from app.domain.ids import content_hash, order_id, tracking_hash
from app.domain.order_state import Milestone
from app.services.runtime import Runtime

DAY = 86_400
AMOUNT = 250_000_000  # 250 tUSD
_refs = itertools.count(1)


def hex32(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass
class Svc:
    """Orders driven on the runtime's escrow by the dev accounts, and payloads they sign."""

    rt: Runtime
    accounts: dict[str, LocalAccount] = field(init=False)
    token: Contract = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = self.rt.dev_accounts
        self.token = self.rt.chain.contract("TestUSD", next(iter(self.rt.tokens)))

    def __getitem__(self, role: str) -> LocalAccount:
        return self.accounts[role]

    # ------------------------------------------------------------------ orders on chain

    def auth(self, **overrides: Any) -> OrderAuthorization:
        now = self.rt.chain.now()
        merchant = self["merchant"]
        base = OrderAuthorization(
            order_id=order_id(merchant.address, f"SVC-{next(_refs)}"),
            buyer=self["buyer"].address,
            seller=merchant.address,
            token=str(self.token.address),
            amount=AMOUNT,
            commission_bps=int(self.rt.escrow.config()["commission_bps"]),
            tax_bps=1000,
            tax_recipient=self["customs"].address,
            ship_by=now + 5 * DAY,
            deliver_by=now + 30 * DAY,
            hold_seconds=3 * DAY,
            valid_until=now + DAY,
        )
        return replace(base, **overrides)

    def mint(self, to: str, amount: int = AMOUNT) -> None:
        self.rt.chain.send(self.token.functions.faucet(to, amount), self["deployer"])

    def fund_payload(self, auth: OrderAuthorization, *, permit: bool = True) -> dict[str, Any]:
        """The buyer's signed ``fund`` intent (with an EIP-2612 permit, or relying on an allowance)."""
        sig = self.rt.escrow.sign_authorization(self["buyer"].key, auth)
        msg = auth.message()
        authorization = {k: hex32(v) if isinstance(v, bytes) else v for k, v in msg.items()}
        authorization["amount"] = str(auth.amount)
        body: dict[str, Any] = {"authorization": authorization, "signature": hex32(sig), "permit": None}
        if permit:
            value, deadline, v, r, s = self.rt.escrow.sign_permit(
                self["buyer"], self.token, auth.amount, auth.valid_until
            )
            body["permit"] = {
                "value": str(value),
                "deadline": str(deadline),
                "v": v,
                "r": hex32(r),
                "s": hex32(s),
            }
        return body

    def fund(self, **overrides: Any) -> Order:
        """An order funded directly by its buyer (not through the relayer)."""
        auth = self.auth(**overrides)
        self.mint(self["buyer"].address, auth.amount)
        self.rt.chain.send(self.token.functions.approve(self.rt.escrow.address, auth.amount), self["buyer"])
        sig = self.rt.escrow.sign_authorization(self["buyer"].key, auth)
        self.rt.escrow.fund([auth], [sig], self["buyer"])
        return self.order(auth.order_id)

    def order(self, oid: bytes) -> Order:
        found = self.rt.escrow.load_order(oid)
        assert found is not None
        return found

    def attest_payload(self, oid: bytes, milestone: int, oracle: str = "oracle") -> dict[str, Any]:
        att = self.rt.escrow.sign_attestation(
            self[oracle].key,
            oid,
            milestone,
            self.rt.chain.now(),
            tracking_hash("ups", "1Z999AA10123456784"),
            content_hash(f"{milestone}:{oid.hex()}".encode()),
        )
        return {
            "orderId": hex32(oid),
            "milestone": milestone,
            "eventTime": att.event_time,
            "trackingHash": hex32(att.tracking_hash),
            "evidenceHash": hex32(att.evidence_hash),
            "signature": hex32(att.signature),
        }

    def ruling_payload(self, oid: bytes, share_bps: int = 5_000) -> dict[str, Any]:
        """The platform arbitrator's signed Ruling on ``oid``, as a ``ruling`` intent's payload."""
        valid = self.rt.chain.now() + DAY
        rationale = content_hash(b"half each")
        sig = self.rt.escrow.sign_ruling(self["arbitrator"].key, oid, share_bps, rationale, valid)
        return {
            "orderId": hex32(oid),
            "buyerShareBps": share_bps,
            "rationaleHash": hex32(rationale),
            "validUntil": valid,
            "signature": hex32(sig),
        }

    def attest(self, order: Order, milestone: int) -> Order:
        """The oracle attests directly (not through the relayer)."""
        p = self.attest_payload(order.order_id, milestone)
        att = self.rt.escrow.sign_attestation(
            self["oracle"].key,
            order.order_id,
            milestone,
            p["eventTime"],
            bytes.fromhex(p["trackingHash"][2:]),
            bytes.fromhex(p["evidenceHash"][2:]),
        )
        self.rt.escrow.attest([(order, [att])], self["deployer"])
        return self.order(order.order_id)

    def delivered(self, **overrides: Any) -> Order:
        return self.attest(self.attest(self.fund(**overrides), Milestone.SHIPPED), Milestone.DELIVERED)

    # ------------------------------------------------------------------ the database

    def intents(self) -> list[Intent]:
        with transaction(self.rt.db) as s:
            return list(s.scalars(select(Intent).order_by(Intent.created_at)))

    def intent(self, intent_id: str) -> Intent:
        with transaction(self.rt.db) as s:
            found = s.get(Intent, intent_id)
            assert found is not None
            return found

    def count(self, model: Any = Intent) -> int:
        with transaction(self.rt.db) as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    def project(self, order: Order, **columns: Any) -> str:
        """Write the ``orders`` row the indexer would write for ``order`` (as the chain has it now)."""
        t, st = order.terms, order.decoded
        status = st.status.name.lower()
        disputed_at = st.disputed_at
        row = {
            "id": hex32(order.order_id),
            "order_ref": f"ref-{order.order_id.hex()[:12]}",
            "buyer": t.buyer,
            "seller": t.seller,
            "token": t.token,
            "currency": "tUSD",
            "amount": t.amount,
            "commission_bps": t.commission_bps,
            "tax_bps": t.tax_bps,
            "tax_recipient": t.tax_recipient,
            "destination_country": "DE",
            "goods_category": "apparel",
            "ship_by": t.ship_by,
            "deliver_by": t.deliver_by,
            "hold_seconds": t.hold_seconds,
            "valid_until": t.funded_at,
            "status": status,
            "state_word": order.state,
            "funded_at": t.funded_at,
            "release_at": st.release_at,
            "disputed_at": disputed_at,
            "frozen_until": st.frozen_until or None,
            "response_deadline": None if disputed_at is None else disputed_at + t.response_seconds,
            "arbitration_deadline": None if disputed_at is None else disputed_at + t.arbitration_seconds,
            "seller_evidence": st.responded,
            **columns,
        }
        with transaction(self.rt.db) as s:
            merchant = s.scalar(select(Principal).where(Principal.role == "merchant"))
            if merchant is None:
                merchant = Principal(role="merchant", address=t.seller, name="merchant")
                s.add(merchant)
                s.flush()
            existing = s.get(OrderRow, row["id"])
            if existing is None:
                s.add(OrderRow(merchant_id=merchant.id, **row))
            else:
                for k, v in row.items():
                    setattr(existing, k, v)
        return str(row["id"])


# ---------------------------------------------------------------------------------------- the node


class Crash(BaseException):
    """Stands for SIGKILL: nothing in the relayer catches it."""


def spy_broadcasts(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[HexBytes]:
    """Record every raw transaction handed to the node."""
    sent: list[HexBytes] = []
    original: Callable[[Any], HexBytes] = rt.chain.w3.eth.send_raw_transaction

    def spy(raw: Any) -> HexBytes:
        sent.append(HexBytes(raw))
        return original(raw)

    monkeypatch.setattr(rt.chain.w3.eth, "send_raw_transaction", spy)
    return sent


@contextmanager
def transport_down(rt: Runtime, *methods: str, times: int = 1) -> Iterator[list[str]]:
    """The next ``times`` JSON-RPC calls of ``methods`` fail as if the connection dropped."""
    failed: list[str] = []

    class Down(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def middleware(method: str, params: Any) -> Any:
                if method in methods and len(failed) < times:
                    failed.append(method)
                    raise ConnectionError(f"{method}: connection reset (test)")
                return make_request(method, params)

            return middleware

    rt.chain.w3.middleware_onion.add(Down, name="transport_down")
    try:
        yield failed
    finally:
        rt.chain.w3.middleware_onion.remove("transport_down")


@contextmanager
def write_sites() -> Iterator[list[str]]:
    """The sites of the write transactions opened while the block runs."""
    sites: list[str] = []
    before = db_session._observer
    db_session.observe_writes(lambda site, wait, hold: sites.append(site))
    try:
        yield sites
    finally:
        db_session.observe_writes(before)
