"""The pure model (tests/model/escrow_model.py) and the escrow on eth-tester, driven side by side by
hypothesis.

Every call runs against both at the same block time: both succeed, or both fail with the same custom error and
arguments; settlement events must announce the model's split and refund reason. After every step every
order's status, timers, freeze, responded flag and partial attestations, every party's credit, and the
escrow's token balance (== open amounts + unpaid credits) are compared, read straight from storage.

Each example starts with k=2 (or 1) and five orders driven to an ending along different paths (ruling,
release, timeouts, regulator freezes, oracle removal, ...), so every example reaches endings whatever rules
swarm testing switches off. Timed steps run on the timer's edge: first on the side where the action must be
refused, on a throwaway snapshot of chain and model, then for real on the side where it is allowed; happy
steps first try refused variants (duplicate vote, stranger, future event, replayed signature, one unit more
than the credit). Random rules add every party action across the orders (2 buyers, 2 sellers), admin changes
(threshold, oracles removed and re-added, commission, arbitrator, pause), ERC-792 arbitration (orders naming
one of two appointed CentralizedArbitrator courts, one charging a fee: disputes paid, unpaid, one wei short,
with another extraData or relayed without either; court rulings by the owner or a stranger, out of range, on
another court's or a missing dispute, the escrow's ``rule`` called by an account that created no dispute;
``executeRuling`` before and after the ruling, frozen, twice; a timeout refund after a recorded ruling; the
courts' native balances and the escrow's, which must stay zero), time jumps to the nearest deadline
-1/0/+1 or further, boundary amounts (1, 9999, 10000, 10001, 2^64, 2^128-1, random large) and bps (0, 1,
caps). Gas is estimated with one execution instead of py-evm's binary search (see model_harness).

``test_model_agrees_with_contract`` is the CI variant (profile "ci": derandomized, 25 examples x 30 steps, no
shrink phase, about a minute); ``test_model_agrees_with_contract_long`` runs with ``make fuzz`` (profile
"fuzz": 400 examples x 40 steps, example database kept, shrinking time-boxed by hypothesis).
"""

from __future__ import annotations

import copy
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.chain.client import ChainClient
from app.chain.escrow import (
    ZERO_ADDRESS,
    ZERO_HASH,
    Attestation,
    Deployment,
    Order,
    OrderAuthorization,
    TxResult,
)
from app.domain.ids import content_hash, order_id, tracking_hash
from app.domain.order_state import Decision, Milestone, Status
from tests.contracts.model_harness import (
    COURT_FEE,
    Disagreement,
    Env,
    bits,
    commitment_of,
    compare_order,
    cross_check_views,
    fresh_model,
    run_both,
    setup_env,
)
from tests.factories import Actors
from tests.model.escrow_model import Skipped
from tests.model.lifecycle import Attestation as ModelAttestation
from tests.model.lifecycle import FundingRequest, OrderModel
from tests.model.registry import Registry

DAY = 86_400
HOUR = 3_600
HOLD = 3 * DAY
MAX_FREEZE = 30 * DAY

_ENV: Env | None = None
STATS: Counter[str] = Counter()

# First choices first: hypothesis leans towards the first element and branch, so those are amounts and rates
# large enough for every fee leg to be non-zero (small amounts floor the legs to 0 and hide their bugs).
AMOUNTS = st.one_of(
    st.integers(10_001, 2**128 - 1),
    st.sampled_from([2**128 - 1, 10_001, 10_000, 9_999, 1, 2**64]),
    st.integers(1, 10**9),
)
# (tax recipient name, bps) that a corridor allows: tax1 caps at 5000, tax2 at 1.
VALID_TAX = [("tax", 1234), ("tax", 5000), ("tax", 1), ("tax2", 1), (None, 0)]
BAD_FUNDING = [None] * 8 + [
    "amount_zero",
    "amount_over",
    "tax_over_cap",
    "tax2_over_cap",
    "tax_bps_without_recipient",
    "tax_recipient_without_bps",
    "commission",
    "ship_now",
    "deliver_at_ship",
    "too_far",
    "hold_short",
    "hold_long",
    "expired",
    "same_parties",
    "bad_signature",
    "duplicate",
    "unknown_arbitrator",
    "hash_without_arbitrator",
]
#: Who arbitrates a drawn order: the platform, or one of the two appointed ERC-792 courts (the first charges
#: a fee).
ARBITRATION = ["platform", "platform", "court1", "court2"]
#: The extraData each court's orders sign (court2's is empty: its hash is keccak256 of nothing).
EXTRA_DATA = {"court1": bytes.fromhex("00" * 31 + "01") + b"jurors=3", "court2": b""}
RULINGS = st.one_of(st.integers(0, 10), st.just(11))
SHARES = st.one_of(st.sampled_from([5_000, 1, 9_999, 0, 10_000, 10_001]), st.integers(0, 10_000))
FREEZES = st.one_of(
    st.sampled_from([DAY, HOUR, 1, MAX_FREEZE, 0, MAX_FREEZE + 1]), st.integers(1, MAX_FREEZE)
)
JUMPS = st.one_of(st.sampled_from([-1, 0, 1]), st.sampled_from([2, HOUR, DAY]), st.integers(1, 40 * DAY))

# What `advance` may do next, by status. Steps ending in "_edge" run the action on its timer's edge: first,
# on a throwaway copy of chain and model, on the side where it must be refused, then for real on the side
# where it is allowed (see EscrowMachine._edge).
ADVANCE: dict[Status, list[str]] = {
    Status.FUNDED: ["ship", "ship_edge", "deliver", "deliver_edge", "dispute", "dispute_edge", "timeout_edge"]
    + ["freeze", "partial_vote"],
    Status.SHIPPED: [
        "deliver",
        "deliver_edge",
        "confirm",
        "dispute",
        "dispute_edge",
        "timeout_edge",
        "freeze",
    ],
    Status.DELIVERED: [
        "release_edge",
        "release_batch",
        "confirm",
        "dispute",
        "dispute_edge",
        "release_frozen",
    ],
    Status.DISPUTED: [
        "respond",
        "respond_edge",
        "rule",
        "rule_edge",
        "response_timeout",
        "arbitration_timeout",
    ]
    + ["freeze", "erc792_ruling"],
}

# `drive` takes an order towards an ending along one of these paths (first choices first: hypothesis leans
# towards them).
PATHS: dict[str, dict[Status, list[str]]] = {
    "ruling": {
        Status.FUNDED: ["dispute_edge", "dispute", "ship"],
        Status.SHIPPED: ["dispute_edge", "dispute"],
        Status.DELIVERED: ["dispute_edge", "dispute"],
        Status.DISPUTED: ["rule_edge", "respond_edge", "rule", "respond"],
    },
    "release": {
        Status.FUNDED: ["ship_edge", "deliver_edge", "ship", "deliver"],
        Status.SHIPPED: ["deliver_edge", "deliver"],
        Status.DELIVERED: ["release_batch", "release_edge", "release_frozen"],
    },
    "timeouts": {
        Status.FUNDED: ["timeout_edge", "dispute"],
        Status.SHIPPED: ["timeout_edge"],
        Status.DELIVERED: ["dispute_edge"],
        Status.DISPUTED: ["response_timeout", "arbitration_timeout"],
    },
    "dispute_timeouts": {
        Status.FUNDED: ["ship", "dispute_edge"],
        Status.SHIPPED: ["deliver"],
        Status.DELIVERED: ["dispute_edge", "dispute"],
        Status.DISPUTED: [
            "respond_then_timeout",
            "freeze_after_silence",
            "respond_edge",
            "response_timeout",
            "arbitration_timeout",
        ],
    },
    "regulator": {
        Status.FUNDED: ["freeze_then_dispute", "freeze", "ship", "unfreeze", "freeze_max", "ship_edge"],
        Status.SHIPPED: ["freeze", "deliver", "unfreeze", "freeze_max", "deliver_edge"],
        Status.DELIVERED: ["release_frozen", "unfreeze", "release_edge"],
        Status.DISPUTED: ["freeze_after_silence", "freeze", "rule", "unfreeze", "rule_edge"],
    },
    "oracles": {
        Status.FUNDED: ["partial_vote", "ship", "deliver"],
        Status.SHIPPED: ["partial_vote", "deliver"],
        Status.DELIVERED: ["release_frozen", "confirm", "release_edge"],
    },
    "confirm": {
        Status.FUNDED: ["ship", "ship_edge"],
        Status.SHIPPED: ["confirm", "deliver"],
        Status.DELIVERED: ["confirm"],
    },
}
PATHS["erc792"] = {
    Status.FUNDED: ["dispute_fee_probes", "dispute_edge", "ship"],
    Status.SHIPPED: ["dispute_fee_probes", "deliver"],
    Status.DELIVERED: ["dispute_fee_probes", "dispute_edge"],
    Status.DISPUTED: ["erc792_ruling", "erc792_ruling", "freeze", "respond"],
}
PATH_ORDER = (
    "ruling",
    "erc792",
    "oracles",
    "release",
    "timeouts",
    "dispute_timeouts",
    "regulator",
    "confirm",
)

# Actions worth trying exactly at a timer's edge.
PROBES: dict[str, list[str]] = {
    "ship_by": ["ship", "deliver", "dispute", "timeout"],
    "deliver_by": ["deliver", "dispute", "timeout", "confirm"],
    "release_at": ["release", "dispute", "confirm"],
    "response_deadline": ["seller_evidence", "timeout", "rule"],
    "arbitration_deadline": ["rule", "timeout"],
    "frozen_until": ["unfreeze", "release", "timeout", "freeze", "refund", "rule"],
}


class EscrowMachine(RuleBasedStateMachine):
    """One example: a snapshot of the deployed stack, a fresh model, random calls against both."""

    def __init__(self) -> None:
        super().__init__()
        assert _ENV is not None, "run through the test functions below"
        self.env = _ENV
        self.snap = self.env.chain.snapshot()
        self.env.install_fast_estimates()
        self.tracked = dict(self.env.escrow.orders)
        self.model = fresh_model(self.env)
        self.ids: list[bytes] = []
        self.history: dict[bytes, list[tuple[Order, int]]] = {}
        self.evidence_sigs: list[tuple[bytes, LocalAccount, bytes, int, bytes]] = []
        self.extra: dict[bytes, bytes] = {}  # each ERC-792 order's extraData, as signed (its keccak)
        self.courts = {f"court{i + 1}": court for i, court in enumerate(self.env.courts)}
        self.refs = itertools.count(1)
        self.checks = 0
        a = self.env.actors
        self.accounts: dict[str, LocalAccount] = {
            name: getattr(a, name) for name in Actors.__dataclass_fields__
        } | {"tax2": self.env.tax2}
        self.by_address = {acct.address: acct for acct in self.accounts.values()}

    def teardown(self) -> None:
        self.env.remove_fast_estimates()
        self.env.chain.revert(self.snap)
        self.env.escrow.orders.clear()
        self.env.escrow.orders.update(self.tracked)

    # ------------------------------------------------------------------ plumbing

    @property
    def esc(self) -> Any:
        return self.env.escrow

    def now(self) -> int:
        return self.env.pending_time()

    def acct(self, name: str) -> LocalAccount:
        return self.accounts[name]

    def _pick_order(self, data: st.DataObject) -> bytes:
        return data.draw(st.sampled_from(self.ids), label="order")

    def _ref(self, data: st.DataObject, oid: bytes) -> tuple[Order, int]:
        """The current order, or now and then an older state of it (the contract's OrderDataMismatch)."""
        past = self.history[oid]
        if len(past) > 1 and data.draw(st.integers(0, 9), label="stale") == 0:
            return past[data.draw(st.integers(0, len(past) - 2), label="stale_index")]
        return past[-1]

    def _run(
        self,
        what: str,
        oids: Sequence[bytes],
        model_call: Callable[[int], Any],
        chain_call: Callable[[], Any],
    ) -> tuple[Any, Any]:
        now = self.now()
        result, chain_result, refused = run_both(what, now, lambda: model_call(now), chain_call)
        STATS["steps"] += 1
        if refused is not None:
            STATS[f"{what}:refused"] += 1
            STATS[f"{what}:refused:{refused}"] += 1
            return None, None
        STATS[f"{what}:ok"] += 1
        mined_at = self.env.latest_block_time()
        if mined_at != now:
            raise AssertionError(f"{what}: mined at {mined_at}, model ran at {now}")
        self._record(oids)
        if isinstance(chain_result, TxResult):
            self._check_settlements(chain_result)
        return result, chain_result

    def _check_settlements(self, res: TxResult) -> None:
        """The split and refund reason each settlement event announces are the model's."""
        for ev in res.events:
            if ev.address != self.esc.address or "orderId" not in ev.args:
                continue
            m = self.model.orders.get(bytes(ev.args["orderId"]))
            if m is None or ev.name not in ("OrderReleased", "DisputeResolved", "OrderRefunded"):
                continue
            a = ev.args
            if ev.name == "OrderRefunded":
                if m.refund_reason is None or a["reason"] != int(m.refund_reason):
                    raise Disagreement(f"refund reason: model {m.refund_reason!r}, contract {a['reason']}")
                announced = (m.terms.amount, 0, 0, 0)
            else:
                announced = (a.get("buyerRefund", 0), a["commission"], a["tax"], a["sellerNet"])
            split = m.split
            mine = (
                None if split is None else (split.buyer_refund, split.commission, split.tax, split.seller_net)
            )
            if mine != announced:
                raise Disagreement(f"{ev.name}: model split {mine}, event {announced}")

    def _record(self, oids: Sequence[bytes]) -> None:
        """Keep past states; the chain's state word must change exactly when the model revision does."""
        for oid in oids:
            if oid not in self.esc.orders or oid not in self.model.orders:
                continue
            last_order, last_rev = self.history[oid][-1]
            order, rev = self.esc.orders[oid], self.model.orders[oid].revision
            if (order.state != last_order.state) != (rev != last_rev):
                raise Disagreement(
                    f"order {oid.hex()[:12]}: state word and model revision changed differently"
                )
            if rev != last_rev:
                self.history[oid].append((order, rev))
                if self.model.orders[oid].is_final:
                    STATS[f"final:{self.model.orders[oid].status.name}"] += 1

    def _skips(self, res: TxResult) -> list[Skipped]:
        out = []
        for ev in res.named("OrderSkipped"):
            err = self.env.chain.abis.decode_error(bytes(ev.args["reason"]))
            out.append(Skipped(bytes(ev.args["orderId"]), err.name if err else "?"))
        return out

    # ------------------------------------------------------------------ funding

    def _draw_auth(
        self,
        data: st.DataObject,
        now: int,
        buyer: LocalAccount | None,
        valid: bool,
        seed: int | None = None,
        arbitration: str | None = None,
    ) -> tuple[OrderAuthorization, LocalAccount, str | None, bytes]:
        a = self.env.actors
        if seed is not None:
            # Seeds vary buyer, seller and corridor by position, so that a batch release mixes recipients.
            buyer = buyer or (a.buyer, a.buyer2)[seed // 2 % 2]
            seller = (a.seller, a.seller2)[seed % 2]
            tax_name, tax_bps = VALID_TAX[seed % len(VALID_TAX)]
        else:
            buyer = buyer or data.draw(st.sampled_from([a.buyer, a.buyer2]), label="buyer")
            seller = data.draw(st.sampled_from([a.seller, a.seller2]), label="seller")
            tax_name, tax_bps = data.draw(st.sampled_from(VALID_TAX), label="tax")
        bad = None if valid else data.draw(st.sampled_from(BAD_FUNDING), label="bad")
        if seed is not None:
            ship_by, deliver_by = now + 5 * DAY, now + 15 * DAY
        else:
            ship_by = now + data.draw(st.sampled_from([5 * DAY, 2 * DAY, HOUR, 30 * DAY, 2, 1]))
            deliver_by = ship_by + data.draw(st.sampled_from([10 * DAY, 3 * DAY, HOUR, 60 * DAY, 1]))
        hold = data.draw(st.sampled_from([HOLD, HOUR, HOUR, 90 * DAY]), label="hold")
        fields: dict[str, Any] = {
            "buyer": buyer.address,
            "seller": seller.address,
            "token": self.env.token_address,
            "amount": data.draw(AMOUNTS, label="amount"),
            "commission_bps": self.model.registry.commission_bps,
            "tax_bps": tax_bps,
            "tax_recipient": self.acct(tax_name).address if tax_name else ZERO_ADDRESS,
            "ship_by": ship_by,
            "deliver_by": deliver_by,
            "hold_seconds": hold,
            "valid_until": now + data.draw(st.sampled_from([DAY, 0]), label="valid_for"),
        }
        if arbitration is None:
            arbitration = "platform" if seed is not None else data.draw(st.sampled_from(ARBITRATION))
        extra = EXTRA_DATA.get(arbitration, b"")
        if arbitration != "platform":
            fields |= {
                "arbitrator": self.courts[arbitration].address,
                "arbitrator_extra_data_hash": keccak(extra),
            }
        signer = buyer
        oid = order_id(seller.address, f"MODEL-{next(self.refs)}")
        match bad:
            case "amount_zero":
                fields["amount"] = 0
            case "amount_over":
                fields["amount"] = 2**128
            case "tax_over_cap":
                fields |= {"tax_bps": 5_001, "tax_recipient": self.env.actors.tax.address}
            case "tax2_over_cap":
                fields |= {"tax_bps": 2, "tax_recipient": self.env.tax2.address}
            case "tax_bps_without_recipient":
                fields |= {"tax_bps": 100, "tax_recipient": ZERO_ADDRESS}
            case "tax_recipient_without_bps":
                fields |= {"tax_bps": 0, "tax_recipient": self.env.actors.tax.address}
            case "commission":
                fields["commission_bps"] = (fields["commission_bps"] + 1) % 3_001
            case "ship_now":
                fields["ship_by"] = now
            case "deliver_at_ship":
                fields["deliver_by"] = fields["ship_by"]
            case "too_far":
                fields["deliver_by"] = now + 365 * DAY + 1
            case "hold_short":
                fields["hold_seconds"] = HOUR - 1
            case "hold_long":
                fields["hold_seconds"] = 90 * DAY + 1
            case "expired":
                fields["valid_until"] = now - 1
            case "same_parties":
                fields["seller"] = buyer.address
            case "bad_signature":
                signer = a.buyer2 if buyer == a.buyer else a.buyer
            case "duplicate" if any(self.model.orders[o].terms.buyer == buyer.address for o in self.ids):
                # the same buyer's order id (escrow v2 keys orders by id and buyer: under another buyer the
                # same id is another order, which this machine, tracking orders by id, does not draw)
                mine = [o for o in self.ids if self.model.orders[o].terms.buyer == buyer.address]
                oid = data.draw(st.sampled_from(mine), label="dup_id")
            case "unknown_arbitrator":  # an address the escrow never appointed
                fields |= {"arbitrator": a.stranger.address, "arbitrator_extra_data_hash": keccak(extra)}
            case "hash_without_arbitrator":
                fields |= {"arbitrator": ZERO_ADDRESS, "arbitrator_extra_data_hash": keccak(b"x")}
        return OrderAuthorization(order_id=oid, **fields), signer, bad, extra

    @initialize(data=st.data())
    def seed_orders(self, data: st.DataObject) -> None:
        """Start every example with k=2 (or 1) and six orders driven to their endings (see below)."""
        k = data.draw(st.sampled_from([2, 1]), label="k")
        fns = self.esc.contract.functions
        admin = self.env.actors.admin
        self._run(
            "admin_threshold",
            [],
            lambda t: self.model.admin(admin.address, lambda r: r.set_threshold(k)),
            lambda: self.env.chain.send(fns.setThreshold(k), admin),
        )
        # Six orders, each funded and then driven all the way along its own path (consecutive in PATH_ORDER),
        # so that every example reaches several endings and timer edges whatever rules swarm testing switches
        # off. Each is funded just before its drive: the drives move the clock by weeks, and a fresh order's
        # timers start from where the clock stands.
        offset = data.draw(st.integers(0, len(PATH_ORDER) - 1), label="paths")
        for i in range(6):
            before = len(self.ids)
            path = PATH_ORDER[(offset + i) % len(PATH_ORDER)]
            self._fund(data, valid=True, seed=i, arbitration="court1" if path == "erc792" else None)
            if len(self.ids) > before:
                self._drive(data, self.ids[before], path)
        self._withdraw_all()
        self._threshold_probe(data)

    def _withdraw_all(self) -> None:
        """Every credited party asks for one unit more than its credit (refused), then takes it all."""
        token = self.env.token_address
        for party in self._credited():
            credit = self.model.ledger.credit(token, party.address)
            for amount in (credit + 1, credit):
                self._run(
                    "withdraw",
                    [],
                    lambda t, p=party, x=amount: self.model.withdraw(token, p.address, p.address, x),
                    lambda p=party, x=amount: self.esc.withdraw(token, p, x, p.address),
                )

    def _threshold_probe(self, data: st.DataObject) -> None:
        """Throwaway: k=3 while one of three oracles is back but inside its role delay, so no funding."""
        fns = self.esc.contract.functions
        admin = self.env.actors.admin
        oracle = self.env.actors.oracle1.address
        with self._throwaway():
            for name, change, fn in (
                ("remove_oracle", lambda r, t: r.remove_oracle(oracle, t), fns.removeOracle(oracle)),
                ("add_oracle", lambda r, t: r.add_oracle(oracle, t), fns.addOracle(oracle)),
                ("threshold", lambda r, t: r.set_threshold(3), fns.setThreshold(3)),
            ):
                self._run(
                    f"admin_{name}",
                    [],
                    lambda t, c=change: self.model.admin(admin.address, lambda r: c(r, t)),
                    lambda f=fn: self.env.chain.send(f, admin),
                )
            self._fund(data, valid=True, seed=0)

    @rule(data=st.data())
    def fund(self, data: st.DataObject) -> None:
        self._fund(data, valid=False)

    def _fund(
        self, data: st.DataObject, valid: bool, seed: int | None = None, arbitration: str | None = None
    ) -> None:
        now = self.now()
        a = self.env.actors
        n = data.draw(st.sampled_from([1, 1, 1, 2]), label="batch")
        direct = data.draw(st.booleans(), label="direct")
        auths: list[OrderAuthorization] = []
        signers: list[LocalAccount] = []
        buyer: LocalAccount | None = None
        extras: dict[bytes, bytes] = {}
        for _ in range(n):
            auth, signer, _bad, extra = self._draw_auth(data, now, buyer, valid, seed, arbitration)
            extras[auth.order_id] = extra
            buyer = self.by_address[auth.buyer]
            auths.append(auth)
            signers.append(signer)
        sender = buyer if direct and buyer is not None else a.relayer
        sigs = [
            b"" if sender.address == au.buyer else self.esc.sign_authorization(s.key, au)
            for au, s in zip(auths, signers, strict=True)
        ]
        items = [
            (
                au.order_id,
                FundingRequest(**{k: v for k, v in au.__dict__.items() if k != "order_id"}),
                sender.address if sig == b"" else s.address,
            )
            for au, s, sig in zip(auths, signers, sigs, strict=True)
        ]
        funded, _ = self._run(
            "fund",
            [],
            lambda t: self.model.fund(items, sender.address, t),
            lambda: self.esc.fund(auths, sigs, sender),
        )
        for order in funded or []:
            self.extra[order.order_id] = extras[order.order_id]
            self.ids.append(order.order_id)
            self.history[order.order_id] = [(self.esc.orders[order.order_id], order.revision)]

    # ------------------------------------------------------------------ oracles

    def _do_attest(
        self,
        oid: bytes,
        ref: tuple[Order, int],
        names: Sequence[str],
        milestone: int,
        tweak: str | None,
        strict: bool,
    ) -> None:
        now = self.now()
        order, rev = ref
        oracles = [self.acct(n) for n in names]
        times = [now] * len(oracles)
        if tweak == "stranger":
            oracles.append(self.acct("stranger"))
            times.append(now)
        elif tweak == "dup" and oracles:
            oracles.append(oracles[0])
            times.append(now)
        elif tweak == "future" and oracles:
            times[-1] = now + 1
        elif tweak == "past":
            times = [now - 7 * DAY] * len(oracles)
        milestones = [milestone] * len(oracles)
        if tweak == "mixed" and len(oracles) > 1:
            milestones[-1] = 3 - milestone if milestone in (1, 2) else 1
        if tweak == "empty":
            oracles, times, milestones = [], [], []
        direct = tweak == "direct" and len(oracles) == 1
        sender = oracles[0] if direct else self.acct("relayer")
        atts: list[Attestation] = []
        for oracle, t, m in zip(oracles, times, milestones, strict=True):
            th, eh = tracking_hash("DHL", "JD0146"), content_hash(f"{oid.hex()}:{m}:{t}".encode())
            if direct:
                atts.append(Attestation(m, t, th, eh, b""))
            else:
                atts.append(self.esc.sign_attestation(oracle.key, oid, m, t, th, eh))
        model_atts = [
            ModelAttestation(o.address, m, t) for o, m, t in zip(oracles, milestones, times, strict=True)
        ]

        def chain_call() -> TxResult:
            return self.esc.attest([(order, atts)], sender, strict=strict)

        result, res = self._run(
            "attest", [oid], lambda t: self.model.attest([(oid, model_atts, rev)], strict, t), chain_call
        )
        if res is not None:
            advanced, skipped = result
            moved = len(res.named("OrderShipped")) + len(res.named("OrderDelivered"))
            if moved != advanced or self._skips(res) != skipped:
                raise Disagreement(f"attest: model {advanced} {skipped}, contract {moved} {self._skips(res)}")

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def attest(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        milestone = data.draw(st.sampled_from([1, 2, 2, 1, 3]), label="milestone")
        names = data.draw(
            st.lists(st.sampled_from(["oracle1", "oracle2", "oracle3"]), min_size=1, max_size=3, unique=True),
            label="oracles",
        )
        tweak = data.draw(
            st.sampled_from(
                [None] * 6 + ["stranger", "dup", "future", "past", "mixed", "empty", "direct", "direct"]
            ),
            label="tweak",
        )
        strict = data.draw(st.sampled_from([True, True, False]), label="strict")
        self._do_attest(oid, self._ref(data, oid), names, milestone, tweak, strict)

    # ------------------------------------------------------------------ releases

    def _do_release(self, refs: Sequence[tuple[bytes, Order, int | None]], strict: bool) -> None:
        result, res = self._run(
            "release",
            [oid for oid, _, _ in refs],
            lambda t: self.model.release([(oid, rev) for oid, _, rev in refs], strict, t),
            lambda: self.esc.release([o for _, o, _ in refs], self.acct("stranger"), strict=strict),
        )
        if res is not None:
            released, skipped = result
            if len(res.named("OrderReleased")) != released or self._skips(res) != skipped:
                raise Disagreement(f"release: model {released} {skipped}, contract {self._skips(res)}")

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        picked = data.draw(st.lists(st.sampled_from(self.ids), min_size=1, max_size=3), label="orders")
        refs: list[tuple[bytes, Order, int | None]] = [(oid, *self._ref(data, oid)) for oid in picked]
        if data.draw(st.integers(0, 9), label="unknown") == 0:
            fake = replace(refs[0][1], order_id=order_id(self.env.actors.seller.address, "NEVER-FUNDED"))
            refs.append((fake.order_id, fake, None))
        self._do_release(refs, data.draw(st.booleans(), label="strict"))

    # ------------------------------------------------------------------ buyer decisions

    def _dispute_payment(self, oid: bytes, fee: str) -> tuple[int, bytes]:
        """What a direct dispute sends: ``paid`` the order's court fee (nothing under platform arbitration)
        and its extraData; ``unpaid`` nothing; ``overpaid`` the fee on any order (refused without a court);
        ``bad_extra`` another extraData."""
        m = self.model.orders[oid]
        court = self.model.courts.get(m.terms.arbitrator)
        owed = court.fee if court is not None else 0
        extra = self.extra.get(oid, b"")
        match fee:
            case "unpaid":
                return 0, extra
            case "overpaid":
                return COURT_FEE, extra
            case "short" if owed:
                return owed - 1, extra
            case "bad_extra":
                return owed, extra + b"!"
        return owed, extra

    def _do_buyer(
        self, oid: bytes, ref: tuple[Order, int], decision: int, how: str, evidence: bytes, fee: str = "paid"
    ) -> None:
        order, rev = ref
        m = self.model.orders[oid]
        buyer = self.by_address[m.terms.buyer]
        other = self.acct("buyer2") if buyer.address == self.acct("buyer").address else self.acct("buyer")
        what = "confirm" if decision == Decision.CONFIRM_RECEIPT else "dispute"
        if how in ("direct", "wrong_caller"):
            caller = buyer if how == "direct" else self.by_address[m.terms.seller]
            if decision == Decision.CONFIRM_RECEIPT:
                self._run(
                    what,
                    [oid],
                    lambda t: self.model.confirm_receipt(oid, caller.address, t, rev),
                    lambda: self.esc.confirm_receipt(order, caller, evidence),
                )
            else:
                value, extra = self._dispute_payment(oid, fee)
                self._run(
                    what,
                    [oid],
                    lambda t: self.model.open_dispute(
                        oid, caller.address, t, rev, value=value, extra_data=extra
                    ),
                    lambda: self.esc.open_dispute(order, caller, evidence, extra, value),
                )
            return
        now = self.now()
        valid_until = now - 1 if how == "expired" else now + DAY
        signer = other if how == "wrong_signer" else buyer
        wanted = 3 if how == "bad_decision" else decision
        sig = self.esc.sign_buyer_decision(signer.key, oid, wanted, evidence, valid_until)
        self._run(
            what + "_signed",
            [oid],
            lambda t: self.model.buyer_decision(oid, wanted, signer.address, valid_until, t, rev),
            lambda: self.esc.submit_buyer_decision(
                order, wanted, evidence, valid_until, sig, self.acct("relayer")
            ),
        )

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def confirm_receipt(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        how = data.draw(
            st.sampled_from(["direct", "direct", "signed", "wrong_caller", "wrong_signer", "expired"])
        )
        self._do_buyer(oid, self._ref(data, oid), Decision.CONFIRM_RECEIPT, how, content_hash(b"received"))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def open_dispute(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        how = data.draw(
            st.sampled_from(
                ["direct", "direct", "signed", "wrong_caller", "wrong_signer", "expired", "bad_decision"]
            )
        )
        evidence = data.draw(st.sampled_from([content_hash(b"damaged"), ZERO_HASH]), label="evidence")
        fee = data.draw(st.sampled_from(["paid", "paid", "unpaid", "short", "overpaid", "bad_extra"]))
        self._do_buyer(oid, self._ref(data, oid), Decision.OPEN_DISPUTE, how, evidence, fee)

    # ------------------------------------------------------------------ evidence and rulings

    def _do_evidence(self, oid: bytes, ref: tuple[Order, int], party_role: str, how: str, h: bytes) -> None:
        order, rev = ref
        m = self.model.orders[oid]
        party = {
            "buyer": self.by_address[m.terms.buyer],
            "seller": self.by_address[m.terms.seller],
            "stranger": self.acct("stranger"),
        }[party_role]
        if how == "direct":
            self._run(
                "evidence",
                [oid],
                lambda t: self.model.submit_evidence(oid, party.address, h, t, rev),
                lambda: self.esc.submit_evidence(order, party, h),
            )
            return
        if how == "replay" and self.evidence_sigs:
            oid, party, h, valid_until, sig = self.evidence_sigs[-1]
            order, rev = self.history[oid][-1]
            signer = party
        else:
            valid_until = self.now() + (-1 if how == "expired" else DAY)
            signer = self.acct("stranger") if how == "wrong_signer" else party
            sig = self.esc.sign_evidence(signer.key, oid, party.address, h, valid_until)
        _, res = self._run(
            "evidence_signed",
            [oid],
            lambda t: self.model.submit_evidence_signed(
                oid, party.address, signer.address, h, valid_until, t, rev
            ),
            lambda: self.esc.submit_evidence_signed(
                order, party.address, h, valid_until, sig, self.acct("relayer")
            ),
        )
        if res is not None:
            self.evidence_sigs.append((oid, party, h, valid_until, sig))
            if how != "replay":
                self._do_evidence(oid, self.history[oid][-1], party_role, "replay", h)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def submit_evidence(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        party = data.draw(st.sampled_from(["seller", "seller", "buyer", "stranger"]), label="party")
        how = data.draw(st.sampled_from(["direct", "direct", "signed", "replay", "wrong_signer", "expired"]))
        h = data.draw(st.sampled_from([content_hash(b"tracking photo"), content_hash(b"invoice"), ZERO_HASH]))
        self._do_evidence(oid, self._ref(data, oid), party, how, h)

    def _do_rule(self, oid: bytes, ref: tuple[Order, int], arbitrator: str, share: int, how: str) -> None:
        order, rev = ref
        arb = self.acct(arbitrator)
        rationale = content_hash(f"ruling {share}".encode())
        if how == "direct":
            self._run(
                "rule",
                [oid],
                lambda t: self.model.rule(oid, arb.address, share, t, rev),
                lambda: self.esc.rule(order, arb, share, rationale),
            )
            return
        valid_until = self.now() + (-1 if how == "expired" else DAY)
        sig = self.esc.sign_ruling(arb.key, oid, share, rationale, valid_until)
        self._run(
            "rule_signed",
            [oid],
            lambda t: self.model.rule(oid, arb.address, share, t, rev, valid_until=valid_until),
            lambda: self.esc.submit_ruling(order, share, rationale, valid_until, sig, self.acct("relayer")),
        )

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def rule_dispute(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        arbitrator = data.draw(st.sampled_from(["arbitrator"] * 5 + ["stranger"]), label="arbitrator")
        how = data.draw(st.sampled_from(["direct", "signed", "expired"]), label="how")
        self._do_rule(oid, self._ref(data, oid), arbitrator, data.draw(SHARES, label="share"), how)

    def _do_court_rule(self, oid: bytes, court: str, caller: str, dispute_id: int, ruling: int) -> None:
        """A court's ``giveRuling``, which passes its ruling to the escrow's ``rule`` at once."""
        c, who = self.courts[court], self.acct(caller)
        self._run(
            "court_rule",
            [oid],
            lambda t: self.model.give_ruling(c.address, who.address, dispute_id, ruling),
            lambda: self.env.chain.send(c.functions.giveRuling(dispute_id, ruling), who),
        )

    def _do_execute(self, oid: bytes, ref: tuple[Order, int]) -> None:
        order, rev = ref
        self._run(
            "execute_ruling",
            [oid],
            lambda t: self.model.execute_ruling(oid, t, rev),
            lambda: self.esc.execute_ruling(order, self.acct("stranger")),
        )

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def erc792_rule(self, data: st.DataObject) -> None:
        """A court rules on a dispute: mostly the order's own court and dispute, now and then another court,
        dispute id, a stranger in the owner's place, a ruling out of range, or an account calling the escrow's
        ``rule`` itself (only the order's own arbitrator may, once)."""
        oid = self._pick_order(data)
        m = self.model.orders[oid]
        own = next((name for name, c in self.courts.items() if c.address == m.terms.arbitrator), None)
        court = (
            own if own and data.draw(st.integers(0, 3)) else data.draw(st.sampled_from(sorted(self.courts)))
        )
        dispute_id = m.dispute_id if m.dispute_id is not None else data.draw(st.integers(0, 2))
        ruling = data.draw(RULINGS, label="ruling")
        how = data.draw(st.sampled_from(["owner"] * 4 + ["stranger", "direct"]), label="how")
        if how == "direct":
            stranger = self.acct("stranger")
            self._run(
                "rule_erc792_direct",
                [oid],
                lambda t: self.model.rule_erc792(stranger.address, dispute_id, ruling),
                lambda: self.env.chain.send(self.esc.contract.functions.rule(dispute_id, ruling), stranger),
            )
            return
        self._do_court_rule(oid, court, "arbitrator" if how == "owner" else "stranger", dispute_id, ruling)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def execute_ruling(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        self._do_execute(oid, self._ref(data, oid))

    # ------------------------------------------------------------------ refunds and freezes

    def _do_refund(
        self, oid: bytes, ref: tuple[Order, int], by_seller: bool, wrong_caller: bool = False
    ) -> None:
        order, rev = ref
        if by_seller:
            terms = self.model.orders[oid].terms
            caller = self.by_address[terms.buyer if wrong_caller else terms.seller]
            self._run(
                "refund_by_seller",
                [oid],
                lambda t: self.model.refund_by_seller(oid, caller.address, t, rev),
                lambda: self.esc.refund_by_seller(order, caller),
            )
        else:
            self._run(
                "timeout_refund",
                [oid],
                lambda t: self.model.timeout_refund(oid, t, rev),
                lambda: self.esc.timeout_refund(order, self.acct("stranger")),
            )

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        kind = data.draw(
            st.sampled_from(["timeout", "timeout", "timeout", "seller", "wrong_caller"]), label="kind"
        )
        self._do_refund(oid, self._ref(data, oid), kind != "timeout", kind == "wrong_caller")

    def _do_freeze(
        self, oid: bytes, ref: tuple[Order, int], caller: str, duration: int, reason: bytes
    ) -> None:
        order, rev = ref
        reg = self.acct(caller)
        self._run(
            "freeze",
            [oid],
            lambda t: self.model.freeze(oid, reg.address, duration, reason, t, rev),
            lambda: self.esc.freeze(order, reg, duration, reason),
        )

    def _do_unfreeze(self, oid: bytes, ref: tuple[Order, int], caller: str) -> None:
        order, rev = ref
        reg = self.acct(caller)
        self._run(
            "unfreeze",
            [oid],
            lambda t: self.model.unfreeze(oid, reg.address, t, rev),
            lambda: self.esc.unfreeze(order, reg),
        )

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def freeze(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        caller = data.draw(st.sampled_from(["regulator"] * 5 + ["stranger"]), label="caller")
        reason = data.draw(
            st.sampled_from([content_hash(b"sanctions screening")] * 5 + [ZERO_HASH]), label="reason"
        )
        self._do_freeze(oid, self._ref(data, oid), caller, data.draw(FREEZES, label="duration"), reason)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def unfreeze(self, data: st.DataObject) -> None:
        oid = self._pick_order(data)
        caller = data.draw(st.sampled_from(["regulator"] * 5 + ["stranger"]), label="caller")
        self._do_unfreeze(oid, self._ref(data, oid), caller)

    # ------------------------------------------------------------------ payouts

    def _credited(self) -> list[LocalAccount]:
        token = self.env.token_address
        return [p for p in self.env.parties() if self.model.ledger.credit(token, p.address)]

    @precondition(lambda self: self._credited())
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        token = self.env.token_address
        account = data.draw(st.sampled_from(self._credited()), label="account")
        credit = self.model.ledger.credit(token, account.address)
        amount = data.draw(st.sampled_from([credit, credit + 1, 1, credit // 2, 0]), label="amount")
        to = data.draw(
            st.sampled_from([account.address, self.acct("stranger").address, ZERO_ADDRESS]), label="to"
        )
        self._run(
            "withdraw",
            [],
            lambda t: self.model.withdraw(token, account.address, to, amount),
            lambda: self.esc.withdraw(token, account, amount, to),
        )

    # ------------------------------------------------------------------ admin

    @rule(data=st.data())
    def admin(self, data: st.DataObject) -> None:
        fns = self.esc.contract.functions
        o = self.env.actors
        op = data.draw(
            st.sampled_from(
                [
                    "commission",
                    "threshold",
                    "add_arbitrator",
                    "remove_oracle",
                    "threshold",
                    "add_oracle",
                    "remove_arbitrator",
                    "pause",
                    "unpause",
                    "threshold",
                ]
            ),
            label="op",
        )
        caller = data.draw(st.sampled_from([o.admin] * 9 + [o.stranger]), label="caller")
        change: Callable[[Registry, int], Registry]
        oracle = data.draw(st.sampled_from([o.oracle1, o.oracle2, o.oracle3]), label="oracle").address
        match op:
            case "threshold":
                k = data.draw(st.sampled_from([1, 2, 2, 3, 4, 0]), label="k")
                change, fn = (lambda r, t: r.set_threshold(k)), fns.setThreshold(k)
            case "remove_oracle":
                change, fn = (lambda r, t: r.remove_oracle(oracle, t)), fns.removeOracle(oracle)
            case "add_oracle":
                change, fn = (lambda r, t: r.add_oracle(oracle, t)), fns.addOracle(oracle)
            case "commission":
                bps = data.draw(st.sampled_from([3_000, 200, 1, 0, 3_001]), label="bps")
                change, fn = (lambda r, t: r.set_commission(bps)), fns.setCommission(bps)
            case "remove_arbitrator":
                arb = o.arbitrator.address
                change, fn = (lambda r, t: r.remove_arbitrator(arb)), fns.removeArbitrator(arb)
            case "add_arbitrator":
                arb = o.arbitrator.address
                change, fn = (lambda r, t: r.add_arbitrator(arb, t)), fns.addArbitrator(arb)
            case "pause":
                change, fn = (lambda r, t: r.set_paused(True)), fns.pause()
            case _:
                change, fn = (lambda r, t: r.set_paused(False)), fns.unpause()
        self._run(
            f"admin_{op}",
            [],
            lambda t: self.model.admin(caller.address, lambda r: change(r, t)),
            lambda: self.env.chain.send(fn, caller),
        )

    # ------------------------------------------------------------------ time

    def _targets(self) -> list[int]:
        now = self.now()
        found = {d for m in self.model.orders.values() for d in m.deadlines().values()}
        found |= set(self.model.registry.arbitrators.values())
        found |= {info.active_from for info in self.model.registry.oracles.values()}
        return sorted(t for t in found if t + 1 >= now)

    @rule(data=st.data())
    def time_jump(self, data: st.DataObject) -> None:
        targets = self._targets()
        offset = data.draw(JUMPS, label="offset")
        if targets:
            base = targets[data.draw(st.integers(0, min(3, len(targets) - 1)), label="nearest")]
        else:
            base = self.now()
        self.env.travel(base + offset)
        STATS["time_jump"] += 1

    def _ahead(self, oid: bytes) -> dict[str, int]:
        """The order's timers that the clock can still reach (-1 included)."""
        now = self.now()
        return {k: v for k, v in self.model.orders[oid].deadlines().items() if v >= now}

    @precondition(lambda self: any(self._ahead(oid) for oid in self.ids))
    @rule(data=st.data())
    def boundary_probe(self, data: st.DataObject) -> None:
        """Jump to one order's timer -1/0/+1 and try the action that timer governs."""
        oid = data.draw(st.sampled_from([oid for oid in self.ids if self._ahead(oid)]), label="order")
        deadlines = self._ahead(oid)
        name = data.draw(st.sampled_from(sorted(deadlines)), label="timer")
        self.env.travel(deadlines[name] + data.draw(st.sampled_from([-1, 0, 1]), label="edge"))
        action = data.draw(st.sampled_from(PROBES[name]), label="action")
        STATS[f"probe:{name}:{action}"] += 1
        ref = self.history[oid][-1]
        m = self.model.orders[oid]
        counting = [
            n
            for n in ("oracle1", "oracle2", "oracle3")
            if self.model.registry.counts_for(self.acct(n).address, m.terms.funded_at)
        ]
        match action:
            case "ship" | "deliver":
                milestone = Milestone.SHIPPED if action == "ship" else Milestone.DELIVERED
                self._do_attest(oid, ref, counting[: m.terms.threshold] or ["oracle1"], milestone, None, True)
            case "dispute" | "confirm":
                decision = Decision.OPEN_DISPUTE if action == "dispute" else Decision.CONFIRM_RECEIPT
                self._do_buyer(oid, ref, decision, "direct", content_hash(b"probe"))
            case "timeout" | "refund":
                self._do_refund(oid, ref, by_seller=action == "refund")
            case "release":
                self._do_release([(oid, *ref)], True)
            case "seller_evidence":
                self._do_evidence(oid, ref, "seller", "direct", content_hash(b"answer"))
            case "rule":
                self._do_rule(oid, ref, "arbitrator", data.draw(SHARES, label="share"), "direct")
            case "unfreeze":
                self._do_unfreeze(oid, ref, "regulator")
            case _:
                self._do_freeze(
                    oid, ref, "regulator", data.draw(FREEZES, label="duration"), content_hash(b"x")
                )

    def _open_orders(self) -> list[bytes]:
        return [oid for oid in self.ids if not self.model.orders[oid].is_final]

    @precondition(lambda self: self._open_orders())
    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """Move one open order a step along its likely path, so that sequences reach the deep states."""
        self._advance(data, data.draw(st.sampled_from(self._open_orders()), label="order"))

    @precondition(lambda self: self._open_orders())
    @rule(data=st.data())
    def drive(self, data: st.DataObject) -> None:
        """Up to six steps (refused ones too) of one open order towards an ending, comparing after each."""
        self._drive(data, data.draw(st.sampled_from(self._open_orders()), label="order"))

    def _drive(self, data: st.DataObject, oid: bytes, path: str | None = None) -> None:
        path = path or data.draw(st.sampled_from(PATH_ORDER), label="path")
        STATS[f"drive:{path}"] += 1
        stuck = 0
        for _ in range(6):
            m = self.model.orders[oid]
            if m.is_final or stuck == 2:
                break
            self._advance(data, oid, PATHS[path])
            self.model_and_contract_agree()
            stuck = stuck + 1 if self.model.orders[oid].revision == m.revision else 0

    @contextmanager
    def _throwaway(self) -> Iterator[None]:
        """Run a probe on a copy: chain, model and the test's own records are rolled back afterwards."""
        snap = self.env.chain.snapshot()
        saved = (
            copy.deepcopy(self.model),
            dict(self.esc.orders),
            {k: list(v) for k, v in self.history.items()},
            list(self.evidence_sigs),
        )
        try:
            yield
            self.model_and_contract_agree()
        finally:
            self.env.chain.revert(snap)
            self.model, orders, self.history, self.evidence_sigs = saved
            self.esc.orders.clear()
            self.esc.orders.update(orders)

    def _edge(
        self, oid: bytes, probe_at: int, real_at: int, act: Callable[[tuple[Order, int]], None]
    ) -> None:
        """``act`` at ``probe_at`` on a throwaway copy, then for real at ``real_at`` (each if not past)."""
        if probe_at >= self.now():
            with self._throwaway():
                self.env.travel(probe_at)
                act(self.history[oid][-1])
            STATS["edge_probes"] += 1
        if real_at >= self.now():
            self.env.travel(real_at)
            act(self.history[oid][-1])

    def _voters(self, m: OrderModel) -> list[str]:
        counting = [
            n
            for n in ("oracle1", "oracle2", "oracle3")
            if self.model.registry.counts_for(self.acct(n).address, m.terms.funded_at)
        ]
        return counting[: m.terms.threshold] or ["oracle1"]

    def _attest_with_probes(self, oid: bytes, milestone: int, voters: list[str]) -> None:
        """Refused variants first (a duplicate vote, a stranger, a future event), then the real one."""
        for tweak in ("dup", "stranger", "future"):
            self._do_attest(oid, self.history[oid][-1], voters, milestone, tweak, True)
        funded_at = self.model.orders[oid].terms.funded_at
        for name in ("oracle1", "oracle2", "oracle3"):
            info = self.model.registry.oracles.get(self.acct(name).address)
            if info is not None and info.active and info.active_from > funded_at:
                self._do_attest(oid, self.history[oid][-1], [name], milestone, None, True)
        self._do_attest(oid, self.history[oid][-1], voters, milestone, None, True)

    def _advance(self, data: st.DataObject, oid: bytes, path: dict[Status, list[str]] | None = None) -> None:
        """One step along a likely path of one order (see ADVANCE and PATHS)."""
        m = self.model.orders[oid]
        ref = self.history[oid][-1]
        if m.is_final:
            return
        step = data.draw(st.sampled_from((path or ADVANCE).get(m.status, ADVANCE[m.status])), label="step")
        STATS[f"step:{step}"] += 1
        voters = self._voters(m)

        def attest(milestone: int) -> Callable[[tuple[Order, int]], None]:
            return lambda r: self._do_attest(oid, r, voters, milestone, None, True)

        def timeout(r: tuple[Order, int]) -> None:
            self._do_refund(oid, r, by_seller=False)

        def buyer(decision: int) -> Callable[[tuple[Order, int]], None]:
            return lambda r: self._do_buyer(oid, r, decision, "direct", content_hash(b"buyer says"))

        def release(r: tuple[Order, int]) -> None:
            self._do_release([(oid, *r)], True)

        def answer(r: tuple[Order, int]) -> None:
            self._do_evidence(oid, r, "seller", "direct", content_hash(b"seller answer"))

        share = data.draw(SHARES, label="share") if "rule" in step else 0

        def ruling(r: tuple[Order, int]) -> None:
            self._do_rule(oid, r, "arbitrator", share, "direct")

        timer = m.ship_deadline if m.status == Status.FUNDED else m.deliver_deadline
        match step:
            case "ship" | "deliver":
                self._attest_with_probes(
                    oid, Milestone.SHIPPED if step == "ship" else Milestone.DELIVERED, voters
                )
            case "ship_edge" | "deliver_edge":
                milestone = Milestone.SHIPPED if step == "ship_edge" else Milestone.DELIVERED
                self._edge(oid, timer + 1, timer, attest(milestone))
            case "partial_vote":
                self._partial_vote(oid, m, voters)
            case "confirm":
                buyer(Decision.CONFIRM_RECEIPT)(ref)
            case "dispute":
                buyer(Decision.OPEN_DISPUTE)(ref)
            case "dispute_fee_probes":
                # Refused first: no fee, one wei short, another extraData, a relayed signature (which sends
                # neither fee nor extraData); then paid, from the buyer's wallet.
                for fee in ("unpaid", "short", "bad_extra"):
                    self._do_buyer(oid, ref, Decision.OPEN_DISPUTE, "direct", content_hash(b"probe"), fee)
                with self._throwaway():
                    self._do_buyer(oid, ref, Decision.OPEN_DISPUTE, "signed", content_hash(b"relayed"))
                buyer(Decision.OPEN_DISPUTE)(self.history[oid][-1])
            case "dispute_edge" if m.status == Status.DELIVERED and m.release_at is not None:
                self._edge(oid, m.release_at, m.release_at - 1, buyer(Decision.OPEN_DISPUTE))
            case "dispute_edge":
                self._edge(oid, timer + 1, timer, buyer(Decision.OPEN_DISPUTE))
            case "timeout_edge":
                self._edge(oid, timer, timer + 1, timeout)
            case "release_edge":
                assert m.release_at is not None
                if m.release_at >= self.now():
                    with self._throwaway():
                        self.env.travel(m.release_at)
                        buyer(Decision.OPEN_DISPUTE)(self.history[oid][-1])
                self._edge(oid, m.release_at - 1, m.release_at, release)
            case "release_batch":
                self._release_batch(data, oid)
            case "release_frozen":
                # Frozen an hour after the hold ended: the freeze moves release_at a day on, but a release
                # then (and up to the freeze's end) must still be refused.
                assert m.release_at is not None
                self.env.travel(m.release_at + HOUR)
                self._do_freeze(oid, self.history[oid][-1], "regulator", DAY, content_hash(b"hold"))
                # Nor may the freeze reopen the dispute window that closed at release_at.
                dispute_probe = buyer(Decision.OPEN_DISPUTE)
                with self._throwaway():
                    dispute_probe(self.history[oid][-1])
                self.env.travel(m.release_at + DAY)
                release(self.history[oid][-1])
            case "respond":
                self._do_evidence(oid, ref, "seller", "signed", content_hash(b"signed answer"))
            case "freeze_then_dispute":
                # Disputed while frozen: the dispute timers start when the freeze ends.
                self._do_freeze(
                    oid, ref, "regulator", data.draw(FREEZES, label="duration"), content_hash(b"kyc")
                )
                buyer(Decision.OPEN_DISPUTE)(self.history[oid][-1])
            case "freeze_after_silence":
                # The seller let the response window pass; a freeze then must not let it answer after all.
                assert m.response_deadline is not None
                self.env.travel(m.response_deadline + 1)
                self._do_freeze(oid, self.history[oid][-1], "regulator", DAY, content_hash(b"late freeze"))
                answer(self.history[oid][-1])
            case "respond_then_timeout":
                answer(ref)
                after = self.model.orders[oid]
                if after.response_deadline is not None:
                    self._edge(oid, after.response_deadline, after.response_deadline + 1, timeout)
            case "respond_edge":
                assert m.response_deadline is not None
                self._edge(oid, m.response_deadline + 1, m.response_deadline, answer)
            case "rule":
                ruling(ref)
            case "erc792_ruling":
                # The order's court rules; a timeout refund past every deadline must then be refused (a
                # recorded ruling wins), and anyone executes the ruling, once.
                own = next((n for n, c in self.courts.items() if c.address == m.terms.arbitrator), "court1")
                self._do_court_rule(
                    oid, own, "arbitrator", m.dispute_id or 0, data.draw(RULINGS, label="ruling")
                )
                if m.arbitration_deadline is not None:
                    with self._throwaway():
                        self.env.travel(max(self.now(), m.arbitration_deadline + 1))
                        timeout(self.history[oid][-1])
                self._do_execute(oid, self.history[oid][-1])
                self._do_execute(oid, self.history[oid][-1])
            case "rule_edge":
                assert m.arbitration_deadline is not None
                self._edge(oid, m.arbitration_deadline + 1, m.arbitration_deadline, ruling)
            case "response_timeout" | "arbitration_timeout":
                deadline = m.response_deadline if step == "response_timeout" else m.arbitration_deadline
                assert deadline is not None
                self._edge(oid, deadline, deadline + 1, timeout)
            case "freeze":
                self._do_freeze(
                    oid, ref, "regulator", data.draw(FREEZES, label="duration"), content_hash(b"aml")
                )
            case "unfreeze":
                if m.is_frozen(self.now()):
                    self.env.travel(self.now() + (m.frozen_until - self.now()) // 2)
                self._do_unfreeze(oid, self.history[oid][-1], "regulator")
            case "freeze_max":
                # A first freeze, over; then one second more than the 30-day total allows (refused); then all.
                if m.frozen_seconds == 0 and not m.is_frozen(self.now()):
                    self._do_freeze(oid, ref, "regulator", HOUR, content_hash(b"first"))
                self.env.travel(self.model.orders[oid].frozen_until)
                room = MAX_FREEZE - self.model.orders[oid].frozen_seconds
                with self._throwaway():
                    self._do_freeze(
                        oid, self.history[oid][-1], "regulator", room + 1, content_hash(b"too long")
                    )
                if room > 0:
                    self._do_freeze(oid, self.history[oid][-1], "regulator", room, content_hash(b"all of it"))

    def _partial_vote(self, oid: bytes, m: OrderModel, voters: list[str]) -> None:
        """k >= 2: one vote, its oracle removed (the vote stops counting), others vote; oracle re-added."""
        milestone = Milestone.SHIPPED if m.status == Status.FUNDED else Milestone.DELIVERED
        self._do_attest(oid, self.history[oid][-1], voters[:1], milestone, None, True)
        if m.terms.threshold < 2 or self.model.registry.active_oracles <= m.terms.threshold:
            return
        first = self.acct(voters[0]).address
        admin = self.env.actors.admin
        fns = self.esc.contract.functions
        self._run(
            "admin_remove_oracle",
            [],
            lambda t: self.model.admin(admin.address, lambda r: r.remove_oracle(first, t)),
            lambda: self.env.chain.send(fns.removeOracle(first), admin),
        )
        others = self._voters(self.model.orders[oid])
        for name in others:
            self._do_attest(oid, self.history[oid][-1], [name], milestone, None, True)
        self._run(
            "admin_add_oracle",
            [],
            lambda t: self.model.admin(admin.address, lambda r: r.add_oracle(first, t)),
            lambda: self.env.chain.send(fns.addOracle(first), admin),
        )

    def _release_batch(self, data: st.DataObject, oid: bytes) -> None:
        """Fund two partners (another seller; the same seller, another corridor), deliver them in one
        non-strict attestation batch, then release all three in one non-strict batch."""
        seller_index = (self.acct("seller").address, self.acct("seller2").address).index(
            self.model.orders[oid].terms.seller
        )
        before = set(self.ids)
        for partner in (seller_index + 1, seller_index + 2):
            self._fund(data, valid=True, seed=partner)
        partners = [o for o in self.ids if o not in before]
        if partners:
            now = self.now()
            chain_items, model_items = [], []
            for other in partners:
                order, rev = self.history[other][-1]
                voters = self._voters(self.model.orders[other])
                hashes = (ZERO_HASH, content_hash(b"bulk"))
                chain_items.append(
                    (
                        order,
                        [self.esc.sign_attestation(self.acct(v).key, other, 2, now, *hashes) for v in voters],
                    )
                )
                model_items.append(
                    (other, [ModelAttestation(self.acct(v).address, 2, now) for v in voters], rev)
                )
            self._run(
                "attest_batch",
                partners,
                lambda t: self.model.attest(model_items, False, t),
                lambda: self.esc.attest(chain_items, self.acct("relayer"), strict=False),
            )
        batch = [o for o in [oid, *partners] if self.model.orders[o].status == Status.DELIVERED]
        if not batch:
            return
        self.env.travel(max(self.model.orders[o].release_at or 0 for o in batch))
        self._do_release([(o, *self.history[o][-1]) for o in batch], False)

    # ------------------------------------------------------------------ the comparison

    @invariant()
    def model_and_contract_agree(self) -> None:
        env, token = self.env, self.env.token_address
        view = env.snapshot_views({oid: self.esc.orders[oid].terms.buyer for oid in self.ids})
        open_sum = 0
        for oid in self.ids:
            m, order = self.model.orders[oid], self.esc.orders[oid]
            compare_order(m, order)
            if view.commitments[oid] != commitment_of(order):
                raise Disagreement(f"order {oid.hex()[:12]}: tracked terms/state do not open the commitment")
            for milestone in Milestone:
                if view.partial[(oid, milestone)] != bits(m.votes(milestone)):
                    raise Disagreement(
                        f"order {oid.hex()[:12]} partial {milestone.name}: "
                        f"model {sorted(m.votes(milestone))}, "
                        f"contract {bin(view.partial[(oid, milestone)])}"
                    )
            if not order.status.is_final:
                open_sum += order.terms.amount
        ledger = self.model.ledger
        for account, credit in view.credits.items():
            if credit != ledger.credit(token, account):
                raise Disagreement(
                    f"credit of {account}: model {ledger.credit(token, account)}, contract {credit}"
                )
        strays = {acct for (tok, acct), amt in ledger.credits.items() if amt and acct not in view.credits}
        assert not strays, f"model credits accounts the test does not watch: {strays}"
        if view.balance != ledger.balances[token]:
            raise Disagreement(f"escrow balance: model {ledger.balances[token]}, contract {view.balance}")
        if view.balance != open_sum + sum(view.credits.values()):
            raise Disagreement(
                f"conservation: balance {view.balance} != open {open_sum} "
                f"+ credits {sum(view.credits.values())}"
            )
        assert ledger.is_conserved(token)
        for court in env.courts:
            if env.chain.balance(court.address) != self.model.courts[court.address].balance:
                raise Disagreement(
                    f"court {court.address} holds {env.chain.balance(court.address)} wei, model "
                    f"{self.model.courts[court.address].balance}"
                )
        if env.chain.balance(self.esc.address) != 0:
            raise Disagreement("the escrow kept native currency")
        self.checks += 1
        if self.checks % 25 == 1:
            cross_check_views(env, view)


# ---------------------------------------------------------------------- tests


@pytest.fixture
def model_env(chain: ChainClient, deployment: Deployment, actors: Actors) -> Iterator[Env]:
    """The session stack plus the model test's extras; the conftest snapshot undoes them after the test."""
    global _ENV
    _ENV = setup_env(chain, deployment, actors)
    try:
        yield _ENV
    finally:
        _ENV = None


NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)


def _run(profile: str, run_settings: settings) -> None:
    STATS.clear()
    started = time.perf_counter()
    run_state_machine_as_test(EscrowMachine, settings=run_settings)
    seconds = time.perf_counter() - started
    calls = STATS["steps"] + STATS["time_jump"]
    print(f"\nmodel test ({profile}): {calls} steps in {seconds:.1f}s = {calls / seconds:.1f} steps/s")
    for key, count in sorted(STATS.items()):
        print(f"  {key:40} {count}")
    # Progress, not just agreement: the sequences must reach every ending and every kind of success.
    for needed in (
        "final:RELEASED",
        "final:REFUNDED",
        "final:RESOLVED",
        "fund:ok",
        "attest:ok",
        "freeze:ok",
        "court_rule:ok",
        "execute_ruling:ok",
        "dispute:refused:InsufficientPayment",
    ):
        assert STATS[needed] > 0, f"no {needed} in the whole run"


def test_model_agrees_with_contract(model_env: Env) -> None:
    _run("ci", settings(settings.get_profile("ci"), phases=NO_SHRINK, stateful_step_count=30))


@pytest.mark.fuzz
@pytest.mark.skipif(os.environ.get("HYPOTHESIS_PROFILE") != "fuzz", reason="long run: make fuzz")
def test_model_agrees_with_contract_long(model_env: Env) -> None:
    _run("fuzz", settings(settings.get_profile("fuzz"), stateful_step_count=40))
