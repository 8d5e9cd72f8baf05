"""The relayer: puts signed messages on chain from the one hot wallet (``runtime.relayer``) that pays gas.

Work arrives as :class:`~app.db.models.Intent` rows (the outbox), idempotent by ``intent_hash``. The database
is the record; a worker may be killed at any point and restarted:

- ``pending`` intents are built against the order's current on-chain state, estimated (a revert is a
  permanent ``failed`` with the decoded error name), then a nonce is allocated and the signed raw transaction,
  its hash and nonce are committed with status ``sent`` in one transaction, *before* the broadcast;
- ``sent`` intents are reconciled on every pass: a receipt settles them (``confirmed``, or ``failed`` with the
  decoded reason); a transaction the node does not know is re-broadcast byte for byte (same hash), never
  re-signed, unless its nonce was taken by another transaction (then it is signed again from ``pending``);
- transient trouble (node unreachable, a refusal) costs an attempt and backs off exponentially; after
  ``settings.relayer_max_attempts`` the intent is ``failed``. A sent transaction is never failed while the
  node might still mine it.

Releases and attestations are batched (``release(orders, strict=False)``, ``attest(items, strict=False)``): an
``OrderSkipped`` event fails only its own order's intents. Fundings are batched too (``settings.fund_batch``
orders a transaction); ``fund`` is all-or-nothing, so a batch whose estimate reverts is checked entry by entry
(``eth_call``), only the failing entries fail, and the rest go out together; a batch reverted on chain goes
back to ``pending`` to be checked again. One transaction per order is in flight at a time,
so that each is built against the state the previous one left. Two relayers never send the same intent:
rows are claimed with a guarded ``UPDATE … WHERE status = 'pending'`` in the transaction that allocates the
nonce, and the loser rolls back.

What an intent carries, how it is hashed and which contract call it becomes:
:mod:`app.services.outbox.intents`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session, aliased

from app.chain import eip712
from app.chain.client import Fees, PreparedTx, Receipt
from app.chain.escrow import Order
from app.db.models import Intent, utcnow
from app.db.session import insert_new, read_transaction, transaction
from app.errors import (
    ChainError,
    ChainUnavailable,
    ContractRevert,
    GasWalletEmpty,
    InvalidInput,
    NonceTooLow,
    TransactionFailed,
)
from app.services import chain_guard
from app.services.index.order_gateway import OrderGateway
from app.services.outbox import nonce_manager
from app.services.outbox.intents import (
    BATCHED,
    MAX_BATCH,
    IntentPayload,
    build_call,
    compute_intent_hash,
    fund_call,
    hex_bytes,
    parse_payload,
)
from app.services.runtime import Runtime

log = logging.getLogger(__name__)

PENDING, SENT, CONFIRMED, FAILED = "pending", "sent", "confirmed", "failed"
BACKOFF_BASE_SECONDS = 4
BACKOFF_CAP_SECONDS = 900
#: How long intents wait when the gas wallet cannot pay, before they are tried again (no attempt is used).
GAS_WAIT_SECONDS = 15
#: How long the estimate made when a funding was checked serves as its gas limit (its margin, a quarter plus
#: 20,000, covers the state moving meanwhile: a permit front-run, a first-time balance slot).
ESTIMATE_FRESH = timedelta(seconds=60)
#: How often a call is built and estimated again when the contract says the order state it was built with is
#: stale (``OrderDataMismatch``): the order moved between the gateway's read and the estimate (a transaction
#: of ours or a party's was mined in between), which a fresh read resolves.
STALE_READS = 3


# ---------------------------------------------------------------------------------------- the outbox


def preflight(rt: Runtime, kind: str, payload: Mapping[str, Any] | IntentPayload) -> int:
    """Estimate the intent from the relayer's address against the chain as it is now; writes nothing. The
    estimate is the check and, stored with the intent (:func:`submit`), the gas limit of a transaction
    that carries this intent alone (one estimate, not two).

    Raises :class:`ContractRevert` (the API answers 409/422), :class:`InvalidInput` for a bad payload, or
    :class:`~app.errors.ChainUnavailable`, or :class:`~app.errors.ChainHalted` while chain work is halted.
    """
    chain_guard.require(rt)
    for attempt in range(1, STALE_READS + 1):
        try:
            return rt.chain.estimate_from(build_call(rt, kind, payload), rt.relayer.address)
        except ContractRevert as exc:  # the order moved between our read of it and the estimate: read again
            if not _stale(exc) or attempt == STALE_READS:
                raise
    raise AssertionError("unreachable")


def preflight_funding(rt: Runtime, payloads: Sequence[Mapping[str, Any]]) -> None:
    """Simulate several fund intents as the one transaction they go out in (a cart: only the first carries
    the permit, the others rely on the allowance it gives); writes nothing. Raises as :func:`preflight`."""
    chain_guard.require(rt)
    rt.chain.simulate(fund_call(rt, payloads), rt.relayer.address)


def submit(
    session: Session,
    kind: str,
    payload: Mapping[str, Any] | IntentPayload,
    order_id: str | None = None,
    *,
    gas_limit: int | None = None,
) -> Intent:
    """Record an intent in the caller's transaction, or return the existing row for the same intent.

    Idempotent by ``intent_hash`` (:func:`compute_intent_hash`); the payload is stored normalised.
    ``order_id`` defaults to the payload's order and must match it when given. ``gas_limit``: what
    :func:`preflight` estimated for it.
    """
    parsed = parse_payload(kind, payload)
    oid = parsed.order_id
    if order_id is not None and order_id.lower() != oid:
        raise InvalidInput("order_mismatch", f"intent for order {oid} filed under {order_id}")
    digest = compute_intent_hash(kind, parsed)
    # one INSERT that a recorded twin (or a concurrent submit of the same intent) turns into nothing
    intent = insert_new(
        session,
        Intent,
        {
            "kind": kind,
            "order_id": oid,
            "intent_hash": digest,
            "payload": parsed.model_dump(mode="json"),
            "gas_limit": gas_limit,
        },
    )
    if intent is not None:
        return intent
    return session.scalars(select(Intent).where(Intent.intent_hash == digest)).one()


def revive(intent: Intent, now: datetime | None = None) -> bool:
    """Put a ``failed`` intent back to ``pending`` (its transaction, if any, is forgotten): the keeper does
    this when an order it failed for earlier (frozen, not yet due) is due again. False if not failed."""
    if intent.status != FAILED:
        return False
    intent.status, intent.attempts, intent.next_attempt_at = PENDING, 0, now or utcnow()
    intent.error = intent.error_name = intent.sender = intent.tx_hash = None
    intent.nonce = intent.raw_tx = intent.block_number = intent.gas_used = None
    intent.sent_at = intent.replaced_hashes = None
    return True


@dataclass
class RelayReport:
    """What one :func:`relay` pass did: counts of intents, except ``transactions`` (new ones broadcast) and
    ``rebroadcast``; ``mined`` counts intents settled by a receipt (the indexer has something to read)."""

    sent: int = 0
    transactions: int = 0
    rebroadcast: int = 0
    mined: int = 0
    confirmed: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    #: stuck transactions replaced with higher fees (same nonce)
    replaced: int = 0
    #: transactions of this relayer still unsettled when the pass ended (sent, no receipt read yet)
    in_flight: int = 0
    #: the node refused a transaction because the gas wallet cannot pay (``GET /readyz`` says so too)
    gas_wallet_empty: bool = False


def backoff(attempts: int) -> timedelta:
    """Delay before attempt ``attempts + 1``: exponential, bounded by :data:`BACKOFF_CAP_SECONDS`."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS))


def relay(
    rt: Runtime, limit: int = 50, *, now: datetime | None = None, wait_seconds: float | None = None
) -> RelayReport:
    """One relayer pass: reconcile ``sent`` intents, send due ``pending`` ones, wait briefly for receipts.

    Safe to run concurrently and to kill at any point. ``now`` (UTC) overrides the clock for backoff;
    ``wait_seconds`` how long to poll for receipts of what this pass sent (short on dev chains). Refuses
    (:class:`~app.errors.ChainHalted`) while the chain guard halts chain work.
    """
    chain_guard.require(rt)
    return _Pass(rt, now or utcnow()).run(limit, wait_seconds)


# ---------------------------------------------------------------------------------------- one pass


class _Claimed(Exception):
    """Another relayer claimed (some of) the intents first."""


@dataclass
class _Unit:
    """Intents that go out in one transaction."""

    kind: str
    intents: list[Intent]

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.intents]


@dataclass
class _Ready:
    """A unit built and estimated, to be signed at the next nonce: its call, gas limit and fees."""

    unit: _Unit
    fn: Any
    gas: int
    fees: Any


class _Pass:
    def __init__(self, rt: Runtime, now: datetime) -> None:
        self.rt, self.now, self.report = rt, now, RelayReport()
        #: Hashes broadcast while the pass was still checking (the parts of a split funding batch).
        self.sent_early: list[str] = []
        self.sender = rt.relayer.address
        self.max_attempts = rt.settings.relayer_max_attempts

    def run(self, limit: int, wait_seconds: float | None) -> RelayReport:
        hashes = self.reconcile()
        units = self.plan(limit)
        if units:
            # no new transaction goes to a chain that is not ours: an identity check at most
            # head_cache_seconds old (3 s: one check per 3 s however many are sent). A node replaced within
            # that window gets transactions signed for our chain id (EIP-155) with nonces beyond a fresh
            # chain's; they stay recorded and are sent again once our chain is back
            chain_guard.require(self.rt, max_age=self.rt.settings.head_cache_seconds)
        ready = [r for unit in units for r in self.check(unit)]
        hashes += self.sent_early + self.send_all(ready)
        wait = (5.0 if self.rt.chain.is_dev_chain else 20.0) if wait_seconds is None else wait_seconds
        if hashes and wait > 0:  # 0: the caller comes back for the receipts (the background relayer)
            self.await_receipts(hashes, wait)
        with read_transaction(self.rt.db) as s:
            self.report.in_flight = int(
                s.scalar(
                    select(func.count(func.distinct(Intent.tx_hash))).where(
                        Intent.status == SENT, Intent.sender == self.sender
                    )
                )
                or 0
            )
        return self.report

    # ------------------------------------------------------------------ (a) sent intents

    def reconcile(self) -> list[str]:
        """Settle mined ``sent`` transactions (the one recorded, or one it replaced); re-broadcast the due
        ones the node does not know, and replace the ones stuck in its pool (returned: hashes broadcast)."""
        with read_transaction(self.rt.db) as s:  # a snapshot: settle() re-reads what is still sent
            rows = s.execute(
                select(
                    Intent.tx_hash,
                    Intent.nonce,
                    Intent.raw_tx,
                    Intent.next_attempt_at,
                    Intent.sent_at,
                    Intent.replaced_hashes,
                )
                .where(Intent.status == SENT, Intent.sender == self.sender)
                .order_by(Intent.nonce)
            ).all()
        seen: set[str] = set()
        again: list[str] = []
        mined: list[tuple[str, Receipt]] = []
        gap_below = False
        stuck_before = self.now - timedelta(seconds=self.rt.settings.replace_after_seconds)
        for tx_hash, nonce, raw, due_at, sent_at, replaced in rows:
            if tx_hash is None or tx_hash in seen:
                continue
            seen.add(tx_hash)
            receipt = self.mined(tx_hash, replaced or [])
            if receipt is not None:
                mined.append((tx_hash, receipt))
            elif gap_below or raw is None or nonce is None or due_at > self.now:
                continue
            elif not self.rt.chain.is_known(tx_hash):
                # the crash-between-commit-and-broadcast case, or a node that dropped it: same bytes again
                # (a node that forgot it may serve another chain: checked uncached before the first one)
                chain_guard.require(self.rt, force=not again)
                gap_below = not self.broadcast(tx_hash, int(nonce), bytes(raw), again=True)
                again += [] if gap_below else [tx_hash]
            elif sent_at is not None and sent_at <= stuck_before:
                again += self.replace(tx_hash, bytes(raw))
        self.settle_many(mined)
        return again

    def mined(self, tx_hash: str, replaced: list[str]) -> Receipt | None:
        """The receipt of the recorded transaction or of one it replaced (either may be the one mined)."""
        receipt = self.rt.chain.receipt(tx_hash)
        for older in replaced:
            if receipt is not None:
                break
            receipt = self.rt.chain.receipt(older)
        return receipt

    def replace(self, tx_hash: str, raw: bytes) -> list[str]:
        """Replace-by-fee: the same nonce, call and gas limit signed again with every fee up 13 % (at least
        what the chain asks now), recorded (the old hash kept: it may still be mined) before the broadcast.
        Capped at ``settings.max_fee_gwei``; a transaction at the cap waits as it is."""
        try:
            offered = self.rt.chain.offered_fees(raw)
            fees = offered.bumped(self.rt.chain.fees())
        except ChainError as exc:  # a legacy transaction, or the node did not answer: wait
            log.info("relayer: %s is stuck and cannot be replaced now: %s", tx_hash, exc)
            return []
        cap = int(self.rt.settings.max_fee_gwei * 10**9)
        if fees.max_fee > cap:
            if offered.max_fee >= cap:
                log.warning("relayer: %s is stuck at the fee cap (TRADEGUARD_MAX_FEE_GWEI)", tx_hash)
                return []
            fees = Fees(cap, min(fees.priority or cap, cap))
        new = self.rt.chain.replacement(raw, self.rt.relayer, fees)
        with transaction(self.rt.db) as s:
            rows = list(s.scalars(select(Intent).where(Intent.tx_hash == tx_hash, Intent.status == SENT)))
            for it in rows:
                it.replaced_hashes = [*(it.replaced_hashes or []), tx_hash]
                it.tx_hash, it.raw_tx, it.sent_at = new.tx_hash, new.raw, utcnow()
        if not rows:
            return []
        log.info("relayer: %s stuck since before %s; replaced by %s", tx_hash, self.now, new.tx_hash)
        self.report.replaced += 1
        return [new.tx_hash] if self.broadcast(new.tx_hash, new.nonce, new.raw, again=True) else []

    def settle(self, tx_hash: str, receipt: Receipt) -> None:
        """Mark the intents of a mined transaction confirmed or failed (per order for a non-strict batch)."""
        self.settle_many([(tx_hash, receipt)])

    def settle_many(self, mined: list[tuple[str, Receipt]]) -> None:
        """:meth:`settle` for several mined transactions in one write transaction (one disk sync)."""
        if not mined:
            return
        outcomes = [(tx_hash, receipt, *self.outcome(tx_hash, receipt)) for tx_hash, receipt in mined]
        logged: list[tuple[list[dict[str, Any]], str, int]] = []
        with transaction(self.rt.db) as s:
            for tx_hash, receipt, failure, skipped in outcomes:
                logged.append(self.settle_in(s, tx_hash, receipt, failure, skipped))
        for settled, mined_hash, block in logged:
            _log_intents(settled, "mined", mined_hash, block_number=block)

    def outcome(self, tx_hash: str, receipt: Receipt) -> tuple[Exception | None, dict[str, Exception]]:
        """A mined transaction's failure (reverted), or the orders a non-strict batch skipped and why; read
        from the receipt (an explanation of a revert may ask the node: before any write transaction)."""
        failure: Exception | None = None
        skipped: dict[str, Exception] = {}
        if int(receipt["status"]) == 1:
            for ev in self.rt.chain.events(receipt):
                if ev.name == "OrderSkipped" and ev.address == self.rt.escrow.address:
                    reason = bytes(ev.args["reason"])
                    decoded = self.rt.chain.abis.decode_error(reason, tx_hash)
                    oid = "0x" + bytes(ev.args["orderId"]).hex()
                    skipped[oid] = decoded or ChainError(f"OrderSkipped(0x{reason.hex()})")
        else:
            failure = self.rt.chain.explain_failure(receipt)
        return failure, skipped

    def settle_in(
        self,
        s: Session,
        tx_hash: str,
        receipt: Receipt,
        failure: Exception | None,
        skipped: dict[str, Exception],
    ) -> tuple[list[dict[str, Any]], str, int]:
        """Settle one mined transaction's intents inside ``s``; what to log once it is committed."""
        stmt = select(Intent).where(Intent.tx_hash == tx_hash, Intent.status == SENT).with_for_update()
        rows = list(s.scalars(stmt))
        # reverted on chain because the state moved since the check (a fund batch, or an order whose state
        # word changed under the transaction): every intent is checked again, and the check gives the verdict
        recheck = failure is not None and (
            _stale(failure) or (len(rows) > 1 and all(it.kind == "fund" for it in rows))
        )
        mined_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        settled: list[dict[str, Any]] = []
        for it in rows:
            self.report.mined += 1
            it.block_number, it.gas_used = int(receipt["blockNumber"]), int(receipt["gasUsed"])
            it.tx_hash = mined_hash  # the replacement, or the transaction it replaced
            error = failure or (skipped.get(it.order_id or "") if it.kind in BATCHED else None)
            if error is None:
                it.status, it.error, it.error_name = CONFIRMED, None, None
                self.report.confirmed += 1
            elif recheck or _stale(error):  # (a batch entry skipped for a stale state word, too)
                it.status, it.block_number, it.gas_used = PENDING, None, None
                it.sender = it.nonce = it.tx_hash = it.raw_tx = None
                it.sent_at = it.replaced_hashes = None
                self.count_attempt(it, error)
            else:
                _set_failed(it, error)
                self.report.failed += 1
            settled.append(_logged(it))
        return settled, mined_hash, int(receipt["blockNumber"])

    # ------------------------------------------------------------------ (b) pending intents

    def plan(self, limit: int) -> list[_Unit]:
        """Due pending intents, grouped into transactions; one transaction per order at a time.

        Fundings go first (nothing else can act on an order before it exists), then by age; intents of an
        order with a transaction in flight wait for its receipt.
        """
        in_flight = aliased(Intent)
        busy = select(in_flight.order_id).where(in_flight.status == SENT, in_flight.order_id.is_not(None))
        # a snapshot: record() claims each intent only if it is still pending
        with read_transaction(self.rt.db) as s:
            due = list(
                s.scalars(
                    select(Intent)
                    .where(
                        Intent.status == PENDING,
                        Intent.next_attempt_at <= self.now,
                        Intent.order_id.not_in(busy),
                    )
                    .order_by(case((Intent.kind == "fund", 0), else_=1), Intent.created_at, Intent.id)
                    .limit(limit)
                )
            )
        claimed: dict[str, tuple[Any, ...]] = {}
        groups: dict[tuple[Any, ...], list[Intent]] = {}
        signers: dict[tuple[Any, ...], set[str]] = {}
        for it in due:
            oid = it.order_id or it.id
            if it.kind == "attest":
                key: tuple[Any, ...] = ("attest", oid, it.payload["milestone"])
                signer = self.attestation_signer(it)
                if signer is None:
                    key = (it.id,)  # unrecoverable signature: alone, so that it fails alone
                elif signer in signers.setdefault(key, set()):
                    self.report.deferred += 1  # the same oracle twice: the second waits for a later pass
                    continue
                else:
                    signers[key].add(signer)
            elif it.kind == "fund":
                key = ("fund", it.id)  # one funding per order in flight; fundings share transactions below
            else:
                key = ("release",) if it.kind == "release" else (it.id,)
            if claimed.setdefault(oid, key) != key:
                self.report.deferred += 1
                continue
            groups.setdefault(key, []).append(it)
        units: list[_Unit] = []
        batch: list[Intent] = []  # attestations: up to MAX_BATCH (order, milestone) items per transaction
        items = 0
        funds: list[Intent] = []
        for key, its in groups.items():
            if key[0] == "fund":
                funds += its
            elif key[0] == "release":
                units += [_Unit("release", its[i : i + MAX_BATCH]) for i in range(0, len(its), MAX_BATCH)]
            elif key[0] == "attest":
                if items == MAX_BATCH:
                    units.append(_Unit("attest", batch))
                    batch, items = [], 0
                batch += its
                items += 1
            else:
                units.append(_Unit(its[0].kind, its))
        if batch:
            units.append(_Unit("attest", batch))
        return self.fund_units(funds) + units

    def fund_units(self, funds: list[Intent]) -> list[_Unit]:
        """Fund intents in batches of up to ``settings.fund_batch`` orders a transaction.

        The contract pulls once per run of consecutive orders with the same buyer and token, and only the
        first run may use the permit. So an intent with a permit leads its own batch, followed by the same
        buyer's allowance-funded orders in that token (a cart: one permit, one transfer); the other intents
        go out sorted by buyer and token (one transfer per run), oldest first within a run.
        """
        size = self.rt.settings.fund_batch
        with_permit = [it for it in funds if it.payload.get("permit")]
        plain = sorted((it for it in funds if not it.payload.get("permit")), key=_run_key)
        units: list[_Unit] = []
        for lead in with_permit:
            run = [it for it in plain if _run_key(it) == _run_key(lead)][: size - 1]
            taken = {it.id for it in run}
            plain = [it for it in plain if it.id not in taken]
            units.append(_Unit("fund", [lead, *run]))
        units += [_Unit("fund", plain[i : i + size]) for i in range(0, len(plain), size)]
        return units

    def attestation_signer(self, it: Intent) -> str | None:
        p = it.payload
        msg = {k: p[k] for k in ("orderId", "milestone", "eventTime", "trackingHash", "evidenceHash")}
        msg["milestone"], msg["eventTime"] = int(msg["milestone"]), int(msg["eventTime"])
        try:
            doc = self.rt.escrow.typed_data("DeliveryAttestation", msg)
            return eip712.recover_signer(doc, hex_bytes(p["signature"]))
        except Exception:  # malformed signature or payload: the contract names the error
            return None

    def check(self, unit: _Unit) -> list[_Ready]:
        """Build and estimate one unit (the estimate is its check and its gas limit): ready to be signed, or
        failed, split, deferred or left for a retry here. No write transaction is open."""
        try:
            for attempt in range(1, STALE_READS + 1):
                try:
                    built = self.build_and_estimate(unit)
                    break
                except ContractRevert as exc:  # the order moved since it was read: read it again
                    if not _stale(exc) or attempt == STALE_READS or len(unit.intents) > 1:
                        raise
        except ContractRevert as exc:
            if _stale(exc) and len(unit.intents) == 1:  # still moving: transient, never a verdict
                self.retry(unit.ids, exc)
                return []
            return self.refused(unit, exc)
        except (TransactionFailed, InvalidInput) as exc:
            return self.refused(unit, exc)
        except GasWalletEmpty as exc:  # nothing wrong with the intents: they wait for the top-up
            self.wait_for_gas(unit.ids, exc)
            return []
        except Exception as exc:  # node unreachable, or a refusal we cannot classify: try again later
            self.retry(unit.ids, exc)
            return []
        return [] if built is None else [_Ready(unit, *built)]

    def build_and_estimate(self, unit: _Unit) -> tuple[Any, int, Fees] | None:
        """The unit's call against its orders' current state, its gas limit (the estimate is the check) and
        the fees it goes out with; None when every intent of the unit waits for its order's funding."""
        orders = self.load_orders(unit)
        if not unit.intents:
            return None
        payloads = [i.payload for i in unit.intents]
        if unit.kind == "fund":
            fn = fund_call(self.rt, payloads)
        else:
            one = payloads if len(payloads) > 1 else payloads[0]
            fn = build_call(self.rt, unit.kind, one, orders=orders)
        fees = self.rt.chain.fees(self.rt.settings.head_cache_seconds)
        gas = self.estimated(unit)
        if gas is None:
            # the batch's check and its gas limit: one estimate, at the fees it will be sent with
            gas = self.rt.chain.estimate(fn, self.rt.relayer, gas_price=fees)
        return fn, gas, fees

    def refused(self, unit: _Unit, exc: Exception) -> list[_Ready]:
        """The unit's check reverted: a batch is split (a funding entry by entry, the others one intent per
        order, strict); a single intent fails with the decoded reason."""
        if unit.kind == "fund" and len(unit.intents) > 1:
            return self.split_funding(unit)
        if len(unit.intents) > 1:
            first = {i.order_id: i for i in reversed(unit.intents)}.values()
            self.report.deferred += len(unit.intents) - len(first)
            return [r for it in first for r in self.check(_Unit(unit.kind, [it]))]
        self.fail(unit.ids, exc)
        return []

    def send_all(self, ready: list[_Ready]) -> list[str]:
        """Sign and record every ready unit in one write transaction (consecutive nonces, each unit in its
        own savepoint: one another relayer claimed first gives its nonce back), then broadcast them in nonce
        order; returns the hashes broadcast. One disk sync for the pass, not one per transaction sent."""
        if not ready:
            return []
        try:
            # the node is asked before the transaction opens (no network round trip under the write lock); a
            # count read a moment ago will do
            on_chain = nonce_manager.chain_nonce(
                self.rt.chain, self.sender, self.rt.settings.head_cache_seconds
            )
        except Exception as exc:
            for r in ready:
                self.retry(r.unit.ids, exc)
            return []
        presigned = self.presign(ready, on_chain)
        signed: list[tuple[_Unit, PreparedTx]] = []
        troubled: list[tuple[_Unit, Exception]] = []
        try:
            with transaction(self.rt.db) as s:
                for r, early in zip(ready, presigned, strict=True):
                    try:
                        with s.begin_nested():
                            nonce = nonce_manager.allocate(s, self.sender, on_chain)
                            tx = early if early is not None and early.nonce == nonce else self.sign(r, nonce)
                            self.record(s, r.unit, tx)
                    except _Claimed:
                        self.report.deferred += len(r.unit.intents)
                        continue
                    except Exception as exc:  # this unit only (its savepoint is rolled back)
                        troubled.append((r.unit, exc))
                        continue
                    signed.append((r.unit, tx))
        except Exception as failed:  # the commit itself: nothing was recorded
            for r in ready:
                self.retry(r.unit.ids, failed)
            return []
        for unit, trouble in troubled:
            self.retry(unit.ids, trouble)
        hashes: list[str] = []
        for unit, tx in signed:
            self.report.sent += len(unit.intents)
            logged = [{**_logged(it), "status": SENT} for it in unit.intents]  # recorded sent, to broadcast
            _log_intents(logged, "signed", tx.tx_hash, nonce=tx.nonce)
            if self.broadcast(tx.tx_hash, tx.nonce, tx.raw, again=False):
                hashes.append(tx.tx_hash)
        return hashes

    def sign(self, r: _Ready, nonce: int) -> PreparedTx:
        """``r`` signed at ``nonce``; no call to the node (its gas limit and fees are fixed)."""
        return self.rt.chain.prepare(r.fn, self.rt.relayer, nonce, r.gas, gas_price=r.fees)

    def presign(self, ready: list[_Ready], on_chain: int) -> list[PreparedTx | None]:
        """Each unit signed at the nonce it is expected to get, before the write transaction: encoding the
        call and signing it (a batch of orders is long calldata) then keep no writer waiting. A unit whose
        allocated nonce turns out different is signed again inside; one that cannot be signed here (None)
        is signed inside, where its error is its own."""
        try:
            with read_transaction(self.rt.db) as s:
                nonces = nonce_manager.expected(s, self.sender, on_chain, len(ready))
        except Exception:  # a read that failed: everything is signed inside, as before
            log.warning("could not read the expected nonces; signing under the write lock", exc_info=True)
            return [None] * len(ready)
        early: list[PreparedTx | None] = []
        for r, nonce in zip(ready, nonces, strict=True):
            try:
                early.append(self.sign(r, nonce))
            except Exception:
                early.append(None)
        return early

    def estimated(self, unit: _Unit) -> int | None:
        """The gas limit the funding's own check estimated, for a funding that goes out alone on its first
        attempt within :data:`ESTIMATE_FRESH` of that check (None: estimate now). A later attempt, or a
        batch, is estimated afresh: that estimate is also its check."""
        if unit.kind != "fund" or len(unit.intents) != 1:
            return None
        it = unit.intents[0]
        if it.gas_limit is None or it.attempts or self.now - it.created_at > ESTIMATE_FRESH:
            return None
        return int(it.gas_limit)

    def split_funding(self, unit: _Unit) -> list[_Ready]:
        """A fund batch the chain refuses (it is all-or-nothing): each entry is checked on its own, the
        failing ones fail with their own error, the others go out together. Entries that pass alone but not
        together (a shared allowance too small, a permit whose value does not cover its run) are split.

        The parts of a split go out at once, one after the other (:attr:`sent_early`): each part is checked
        against the chain the parts before it left (they may spend the same allowance)."""
        try:
            errors = self.screen_funding(unit.intents)
        except Exception as exc:  # node trouble while checking: the whole batch tries again later
            self.retry(unit.ids, exc)
            return []
        for it in unit.intents:
            if it.id in errors:
                self.fail([it.id], errors[it.id])
        good = [it for it in unit.intents if it.id not in errors]
        if errors or len(good) < 2:
            self.sent_early += self.send_all(self.check(_Unit("fund", good))) if good else []
            return []
        lead = good[0]
        if lead.payload.get("permit"):
            # A permit *sets* the buyer's allowance (EIP-2612): the orders that pass on the allowance the
            # buyer already gave must be pulled before it (lower nonce, mined first); the ones that need the
            # permit go after it, with it.
            own = [it for it in good[1:] if self.simulate_funding([it]) is None]
            after = [lead, *(it for it in good[1:] if it not in own)]
            parts = (own, after) if own else ([lead], good[1:])
        else:
            parts = (good[: len(good) // 2], good[len(good) // 2 :])
        for part in parts:
            self.sent_early += self.send_all(self.check(_Unit("fund", part)))
        return []

    def screen_funding(self, intents: list[Intent]) -> dict[str, Exception]:
        """The error of each entry that fails on its own (by intent id), simulated from the relayer.

        An entry in the leading permit's run that fails alone is tried after the lead as well: it may rely
        on that permit's allowance (a cart).
        """
        lead = intents[0] if intents[0].payload.get("permit") else None
        errors: dict[str, Exception] = {}
        for it in intents:
            error = self.simulate_funding([it])
            if error is not None and lead is not None and it is not lead and lead.id not in errors:
                if _run_key(it) == _run_key(lead):
                    error = self.simulate_funding([lead, it])
            if error is not None:
                errors[it.id] = error
        return errors

    def simulate_funding(self, intents: list[Intent]) -> Exception | None:
        try:
            self.rt.chain.simulate(fund_call(self.rt, [i.payload for i in intents]), self.sender)
        except (ContractRevert, TransactionFailed, InvalidInput) as exc:
            return exc
        return None

    def load_orders(self, unit: _Unit) -> dict[str, Order | None]:
        """Current on-chain orders of the unit; intents for an order whose funding is still in flight wait."""
        if unit.kind == "fund":
            return {}
        orders = OrderGateway.of(self.rt).current_many({i.order_id for i in unit.intents if i.order_id})
        missing = [oid for oid, o in orders.items() if o is None]
        if missing:
            with read_transaction(self.rt.db) as s:
                funding = set(
                    s.scalars(
                        select(Intent.order_id).where(
                            Intent.kind == "fund",
                            Intent.status.in_((PENDING, SENT)),
                            Intent.order_id.in_(missing),
                        )
                    )
                )
            waiting = [i for i in unit.intents if i.order_id in funding]
            self.report.deferred += len(waiting)
            unit.intents = [i for i in unit.intents if i.order_id not in funding]
        return orders

    def record(self, s: Session, unit: _Unit, tx: PreparedTx) -> None:
        """Claim the unit's intents (still pending) and store the signed transaction on them."""
        result = s.execute(
            update(Intent)
            .where(Intent.id.in_(unit.ids), Intent.status == PENDING)
            .values(
                status=SENT,
                sender=tx.sender,
                nonce=tx.nonce,
                tx_hash=tx.tx_hash,
                raw_tx=tx.raw,
                sent_at=utcnow(),
                replaced_hashes=None,
                error=None,
                error_name=None,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != len(unit.ids):
            raise _Claimed

    def broadcast(self, tx_hash: str, nonce: int, raw: bytes, *, again: bool) -> bool:
        """Hand a recorded transaction to the node; False if it did not get there (it stays recorded)."""
        try:
            self.rt.chain.broadcast(raw)
        except NonceTooLow as exc:
            self.rt.chain.forget_nonce(self.sender)  # the next allocation asks the node again
            receipt = self.rt.chain.receipt(tx_hash)
            if receipt is not None:
                self.settle(tx_hash, receipt)
                return True
            self.requeue(tx_hash, exc)  # another transaction took the nonce: sign again from pending
            return False
        except GasWalletEmpty as exc:  # stays sent; re-broadcast as is once the wallet can pay
            self.report.gas_wallet_empty = True
            self.sent_trouble(tx_hash, exc, count=False)
            return False
        except Exception as exc:
            self.rt.chain.forget_nonce(self.sender)
            self.sent_trouble(tx_hash, exc, count=not self.is_gap(exc, nonce))
            return False
        if again:
            self.report.rebroadcast += 1
        else:
            self.report.transactions += 1
        return True

    def is_gap(self, exc: Exception, nonce: int) -> bool:
        """Whether a refusal only means that a lower nonce has not reached the node yet (not counted)."""
        if isinstance(exc, ChainUnavailable):
            return False
        try:
            return self.rt.chain.nonce(self.sender) < nonce
        except ChainError:
            return False

    def await_receipts(self, hashes: list[str], wait: float) -> None:
        """Settle what gets mined within ``wait`` seconds. Over JSON-RPC the first look is after a pause that
        doubles each time (0.1 s on a dev chain, 1 s elsewhere): a receipt asked for at once is rarely there,
        and every look costs one call per transaction (1.7 receipt calls per order at 10,000 orders on
        chain with 0.05 s polling, measured). The in-process chain mines at once: it looks at once."""
        deadline = time.monotonic() + wait
        remaining = list(dict.fromkeys(hashes))
        embedded = self.rt.chain.backend == "embedded"
        pause = 0.05 if embedded else (0.1 if self.rt.chain.is_dev_chain else 1.0)
        if not embedded:
            time.sleep(min(pause, wait))
        while remaining:
            mined = [(h, r) for h in remaining if (r := self.rt.chain.receipt(h)) is not None]
            self.settle_many(mined)  # what one look found: one write transaction
            remaining = [h for h in remaining if h not in {m for m, _ in mined}]
            if not remaining or time.monotonic() >= deadline:
                return
            time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            if not embedded:
                pause = min(pause * 2, 1.0 if self.rt.chain.is_dev_chain else 5.0)

    # ------------------------------------------------------------------ (c) outcomes

    def fail(self, ids: list[str], exc: Exception) -> None:
        with transaction(self.rt.db) as s:
            for it in s.scalars(select(Intent).where(Intent.id.in_(ids), Intent.status == PENDING)):
                _set_failed(it, exc)
                self.report.failed += 1

    def wait_for_gas(self, ids: list[str], exc: GasWalletEmpty) -> None:
        """The gas wallet cannot pay: the intents wait :data:`GAS_WAIT_SECONDS`, their attempts untouched."""
        self.report.gas_wallet_empty = True
        with transaction(self.rt.db) as s:
            for it in s.scalars(select(Intent).where(Intent.id.in_(ids), Intent.status == PENDING)):
                it.error = str(exc)[:2000]
                it.next_attempt_at = self.now + timedelta(seconds=GAS_WAIT_SECONDS)
                self.report.deferred += 1

    def retry(self, ids: list[str], exc: Exception) -> None:
        """A transient failure before anything was recorded: back off, or give up after the last attempt."""
        with transaction(self.rt.db) as s:
            for it in s.scalars(select(Intent).where(Intent.id.in_(ids), Intent.status == PENDING)):
                self.count_attempt(it, exc)

    def requeue(self, tx_hash: str, exc: Exception) -> None:
        with transaction(self.rt.db) as s:
            for it in s.scalars(select(Intent).where(Intent.tx_hash == tx_hash, Intent.status == SENT)):
                it.status = PENDING
                it.sender = it.nonce = it.tx_hash = it.raw_tx = None
                it.sent_at = it.replaced_hashes = None
                self.count_attempt(it, exc)

    def sent_trouble(self, tx_hash: str, exc: Exception, *, count: bool) -> None:
        """A recorded transaction did not reach the node: it stays ``sent`` (the node may still have it)
        unless the node explicitly refused it ``max_attempts`` times; its nonce is then free again."""
        with transaction(self.rt.db) as s:
            for it in s.scalars(select(Intent).where(Intent.tx_hash == tx_hash, Intent.status == SENT)):
                it.error = str(exc)[:2000]
                if not count:
                    continue
                it.attempts += 1
                if it.attempts >= self.max_attempts and not isinstance(exc, ChainUnavailable):
                    _set_failed(it, exc)
                    self.report.failed += 1
                else:
                    it.next_attempt_at = self.now + backoff(it.attempts)
                    self.report.retried += 1

    def count_attempt(self, it: Intent, exc: Exception) -> None:
        it.attempts += 1
        if it.attempts >= self.max_attempts:
            _set_failed(it, exc)
            self.report.failed += 1
        else:
            it.error = str(exc)[:2000]
            it.next_attempt_at = self.now + backoff(it.attempts)
            self.report.retried += 1


def _run_key(it: Intent) -> tuple[str, str]:
    """A fund intent's (buyer, token): consecutive orders with the same pair are one transfer."""
    auth = it.payload["authorization"]
    return str(auth["buyer"]), str(auth["token"])


def _logged(it: Intent) -> dict[str, Any]:
    """What a log line says of an intent: its id, kind, order, status (and error), and the X-Request-Id of
    the request that submitted it."""
    return {
        "intent_id": it.id,
        "intent_kind": it.kind,
        "order_id": it.order_id,
        "status": it.status,
        "error_name": it.error_name,
        "request_id": it.request_id,
    }


def _log_intents(intents: list[dict[str, Any]], what: str, tx_hash: str, **fields: Any) -> None:
    """One INFO line per intent of transaction ``tx_hash``, carrying the intent's ``request_id``: whichever
    process relays it (a Celery worker on another machine), its lines trace back to the request."""
    for it in intents:
        log.info(
            "relayer: %s intent %s (order %s) %s in %s: %s",
            it["intent_kind"],
            it["intent_id"],
            it["order_id"],
            what,
            tx_hash,
            it["status"] if it["error_name"] is None else f"{it['status']} ({it['error_name']})",
            extra={**it, "tx_hash": tx_hash, **fields},
        )


def _stale(exc: Exception) -> bool:
    """The contract refused the order state a call was built with: the order moved after it was read."""
    return isinstance(exc, ContractRevert) and exc.name == "OrderDataMismatch"


def _set_failed(it: Intent, exc: Exception) -> None:
    it.status = FAILED
    it.error_name = exc.name if isinstance(exc, ContractRevert) else type(exc).__name__
    it.error = str(exc)[:2000]


__all__ = [
    "RelayReport",
    "preflight",
    "preflight_funding",
    "relay",
    "revive",
    "submit",
]
