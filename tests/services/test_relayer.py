"""The relayer end to end on the embedded chain: funding with a permit, preflight, exactly-once under crashes
and concurrent relayers, batching with per-order outcomes, and transient chain trouble."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.chain.client import ChainClient
from app.db.session import transaction
from app.domain.ids import content_hash
from app.domain.order_state import Milestone, Status
from app.errors import ContractRevert
from app.services.outbox import nonce_manager, relayer
from app.services.outbox.relayer import CONFIRMED, FAILED, PENDING, SENT, preflight, relay, submit
from app.services.runtime import Runtime
from tests.services.test_relayer_support import DAY, Crash, Svc, hex32, spy_broadcasts, transport_down


def put(rt: Runtime, kind: str, payload: dict[str, Any]) -> str:
    with transaction(rt.db) as s:
        intent = submit(s, kind, payload)
        s.flush()
        return intent.id


def relayer_nonce(rt: Runtime) -> int:
    return rt.chain.nonce(rt.relayer.address, "latest")


def test_fund_with_a_permit_is_relayed_and_the_order_is_funded(runtime: Runtime) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    payload = svc.fund_payload(auth)
    preflight(runtime, "fund", payload)
    iid = put(runtime, "fund", payload)

    report = relay(runtime)

    intent = svc.intent(iid)
    assert (intent.status, intent.error) == (CONFIRMED, None)
    assert intent.block_number and intent.gas_used and intent.tx_hash and intent.raw_tx
    assert intent.order_id == hex32(auth.order_id) and intent.sender == runtime.relayer.address
    assert (report.sent, report.transactions, report.confirmed, report.mined) == (1, 1, 1, 1)
    order = runtime.escrow.load_order(auth.order_id)
    assert order is not None and order.status == Status.FUNDED
    assert (order.terms.amount, order.terms.buyer) == (auth.amount, auth.buyer)
    assert svc.rt.chain.call(svc.token.functions.balanceOf(runtime.escrow.address)) == auth.amount


def test_a_forged_signature_fails_preflight_and_nothing_is_written(runtime: Runtime) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    payload = svc.fund_payload(auth)
    forged = runtime.escrow.sign_authorization(svc["merchant"].key, auth)
    payload["signature"] = hex32(forged)
    block, nonce = runtime.chain.block_number(), relayer_nonce(runtime)

    with pytest.raises(ContractRevert) as info:
        preflight(runtime, "fund", payload)

    assert info.value.name == "InvalidSignature"
    assert info.value.args_by_name == {"expected": auth.buyer, "recovered": svc["merchant"].address}
    assert svc.count() == 0
    assert (runtime.chain.block_number(), relayer_nonce(runtime)) == (block, nonce)


def test_the_same_intent_twice_is_one_row_and_one_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    payload = svc.fund_payload(auth)
    # the same intent written differently: amount as a number, hex in upper case, addresses lower case
    again = {**payload, "signature": "0x" + payload["signature"][2:].upper()}
    again["authorization"] = {
        **payload["authorization"],
        "amount": auth.amount,
        "buyer": auth.buyer.lower(),
    }
    sent = spy_broadcasts(runtime, monkeypatch)

    first, second = put(runtime, "fund", payload), put(runtime, "fund", again)
    relay(runtime)
    third = put(runtime, "fund", payload)
    relay(runtime)

    assert first == second == third
    assert svc.count() == 1 and len(sent) == 1
    assert svc.intent(first).status == CONFIRMED


def test_a_crash_between_commit_and_broadcast_rebroadcasts_the_recorded_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    iid = put(runtime, "fund", svc.fund_payload(auth))
    before = relayer_nonce(runtime)

    def killed(raw: bytes) -> str:
        raise Crash("SIGKILL")

    monkeypatch.setattr(runtime.chain, "broadcast", killed)
    with pytest.raises(Crash):
        relay(runtime)
    monkeypatch.undo()

    recorded = svc.intent(iid)
    assert recorded.status == SENT and recorded.raw_tx and recorded.nonce == before
    assert relayer_nonce(runtime) == before  # it never reached the node
    sent = spy_broadcasts(runtime, monkeypatch)

    report = relay(runtime)

    assert [bytes(raw) for raw in sent] == [recorded.raw_tx]
    assert report.rebroadcast == 1 and report.transactions == 0
    settled = svc.intent(iid)
    assert (settled.status, settled.tx_hash, settled.nonce) == (CONFIRMED, recorded.tx_hash, before)
    assert relayer_nonce(runtime) == before + 1
    assert runtime.escrow.load_order(auth.order_id) is not None

    again = relay(runtime)
    assert len(sent) == 1 and (again.sent, again.rebroadcast, again.transactions) == (0, 0, 0)
    assert relayer_nonce(runtime) == before + 1


def test_a_crash_after_broadcast_settles_from_the_receipt_without_sending_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.chain.advance_time(3 * DAY + 1)
    iid = put(runtime, "release", {"orderId": hex32(order.order_id)})
    original = runtime.chain.broadcast

    def broadcast_then_die(raw: bytes) -> str:
        original(raw)
        raise Crash("SIGKILL right after the node took it")

    monkeypatch.setattr(runtime.chain, "broadcast", broadcast_then_die)
    with pytest.raises(Crash):
        relay(runtime)
    monkeypatch.undo()
    sent = spy_broadcasts(runtime, monkeypatch)

    report = relay(runtime)

    assert sent == [] and report.confirmed == 1
    assert svc.intent(iid).status == CONFIRMED
    assert svc.order(order.order_id).status == Status.RELEASED


def test_the_nonce_jumps_forward_when_the_key_was_used_outside_the_manager(runtime: Runtime) -> None:
    svc = Svc(runtime)
    orders = [svc.delivered(), svc.delivered()]
    runtime.chain.advance_time(3 * DAY + 1)
    first = put(runtime, "release", {"orderId": hex32(orders[0].order_id)})
    relay(runtime)
    start = svc.intent(first).nonce
    assert start is not None
    # someone else sends from the relayer's key (another tool, an operator by hand)
    runtime.chain.send(svc.token.functions.faucet(svc["buyer"].address, 1), runtime.relayer)
    assert relayer_nonce(runtime) == start + 2

    second = put(runtime, "release", {"orderId": hex32(orders[1].order_id)})
    relay(runtime)

    assert (svc.intent(second).status, svc.intent(second).nonce) == (CONFIRMED, start + 2)
    with transaction(runtime.db) as s:
        assert nonce_manager.peek(s, runtime.relayer.address) == start + 3


def test_a_batch_of_releases_settles_each_order_on_its_own(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    ready = [svc.delivered(), svc.delivered()]
    runtime.chain.advance_time(3 * DAY + 1)
    early = svc.delivered()  # its hold window has just begun
    ids = [put(runtime, "release", {"orderId": hex32(o.order_id)}) for o in (*ready, early)]
    sent = spy_broadcasts(runtime, monkeypatch)

    report = relay(runtime)

    assert len(sent) == 1 and report.transactions == 1
    intents = [svc.intent(i) for i in ids]
    assert [i.status for i in intents] == [CONFIRMED, CONFIRMED, FAILED]
    assert intents[2].error_name == "DeadlineNotReached"
    assert len({(i.tx_hash, i.nonce, i.block_number) for i in intents}) == 1
    assert [svc.order(o.order_id).status for o in (*ready, early)] == [
        Status.RELEASED,
        Status.RELEASED,
        Status.DELIVERED,
    ]


def test_transient_chain_trouble_backs_off_then_succeeds(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.chain.advance_time(3 * DAY + 1)
    iid = put(runtime, "release", {"orderId": hex32(order.order_id)})

    with transport_down(runtime, "eth_estimateGas") as failed:
        first = relay(runtime)
    assert failed == ["eth_estimateGas"] and first.retried == 1
    waiting = svc.intent(iid)
    assert (waiting.status, waiting.attempts) == (PENDING, 1)
    assert waiting.next_attempt_at > waiting.updated_at and "connection reset" in (waiting.error or "")

    assert relay(runtime).sent == 0  # not due yet
    assert svc.intent(iid).attempts == 1

    later = relay(runtime, now=waiting.next_attempt_at)
    assert later.confirmed == 1 and svc.intent(iid).status == CONFIRMED
    assert svc.order(order.order_id).status == Status.RELEASED


def test_backoff_is_exponential_and_bounded() -> None:
    delays = [relayer.backoff(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [4, 8, 16, 32]
    assert delays == sorted(delays) and max(delays) == relayer.BACKOFF_CAP_SECONDS


def test_an_intent_fails_after_the_last_attempt(runtime: Runtime) -> None:
    runtime.settings.relayer_max_attempts = 2
    svc = Svc(runtime)
    order = svc.delivered()
    iid = put(runtime, "release", {"orderId": hex32(order.order_id)})
    with transport_down(runtime, "eth_getLogs", times=10):
        relay(runtime)
        relay(runtime, now=svc.intent(iid).next_attempt_at)
    intent = svc.intent(iid)
    assert (intent.status, intent.attempts, intent.error_name) == (FAILED, 2, "ChainUnavailable")


def test_a_broadcast_that_does_not_reach_the_node_stays_sent_and_goes_out_again(runtime: Runtime) -> None:
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.chain.advance_time(3 * DAY + 1)
    iid = put(runtime, "release", {"orderId": hex32(order.order_id)})
    with transport_down(runtime, "eth_sendRawTransaction"):
        relay(runtime)
    stuck = svc.intent(iid)
    assert (stuck.status, stuck.attempts) == (SENT, 1)

    report = relay(runtime, now=stuck.next_attempt_at)

    assert report.rebroadcast == 1
    assert (svc.intent(iid).status, svc.intent(iid).tx_hash) == (CONFIRMED, stuck.tx_hash)


def test_a_revert_at_estimation_is_permanent_and_sends_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    order = svc.fund()  # funded, not delivered
    iid = put(runtime, "release", {"orderId": hex32(order.order_id)})
    sent = spy_broadcasts(runtime, monkeypatch)
    relay(runtime)
    intent = svc.intent(iid)
    assert (intent.status, intent.error_name, intent.tx_hash) == (FAILED, "InvalidStatus", None)
    assert sent == []


def test_a_transaction_reverted_for_a_moved_order_is_checked_again_and_fails_with_the_real_reason(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order changes between estimation and mining: a status-0 receipt, explained by replay as
    ``OrderDataMismatch``; the intent is checked again and fails with what the order now says."""
    svc = Svc(runtime)
    order = svc.delivered()
    valid = runtime.chain.now() + DAY
    sig = runtime.escrow.sign_buyer_decision(svc["buyer"].key, order.order_id, 2, bytes(32), valid)
    iid = put(
        runtime,
        "open_dispute",
        {
            "orderId": hex32(order.order_id),
            "decision": 2,
            "evidenceHash": hex32(bytes(32)),
            "validUntil": valid,
            "signature": hex32(sig),
        },
    )
    estimate = runtime.chain.estimate

    def estimate_then_buyer_confirms(fn: Any, sender: Any, **kw: Any) -> int:
        gas = estimate(fn, sender, **kw)
        runtime.escrow.confirm_receipt(order, svc["buyer"])  # the order moves on before the relayer's tx
        return gas

    monkeypatch.setattr(runtime.chain, "estimate", estimate_then_buyer_confirms)
    relay(runtime)
    monkeypatch.undo()

    # reverted for a stale state word: not a verdict on the intent, which goes back to be checked again
    moved = svc.intent(iid)
    assert (moved.status, moved.error_name, moved.tx_hash, moved.attempts) == (PENDING, None, None, 1)
    assert "OrderDataMismatch" in (moved.error or "")
    relay(runtime, now=moved.next_attempt_at)
    intent = svc.intent(iid)  # the check against the order as it is now gives the verdict
    assert (intent.status, intent.error_name) == (FAILED, "InvalidStatus")


def test_a_check_that_meets_a_moved_order_reads_it_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction mined between the relayer's read of an order and its estimate makes the estimate revert
    with ``OrderDataMismatch``: the relayer reads the order again instead of failing the intent."""
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.escrow.open_dispute(order, svc["buyer"])
    disputed = svc.order(order.order_id)
    seller = svc["merchant"]
    iid = put(runtime, "ruling", svc.ruling_payload(order.order_id))
    estimate, moved = runtime.chain.estimate, []

    def seller_answers_first(fn: Any, sender: Any, **kw: Any) -> int:
        if not moved:  # the seller's evidence lands after the relayer read the order
            moved.append(runtime.escrow.submit_evidence(disputed, seller, content_hash(b"packing list")))
        return estimate(fn, sender, **kw)

    built = []

    def seller_answers_first_and_count(fn: Any, sender: Any, **kw: Any) -> int:
        built.append(fn.args)
        return seller_answers_first(fn, sender, **kw)

    monkeypatch.setattr(runtime.chain, "estimate", seller_answers_first_and_count)
    relay(runtime)

    intent = svc.intent(iid)
    assert moved and (intent.status, intent.error_name, intent.attempts) == (CONFIRMED, None, 0)
    assert len(built) == 2 and built[0] != built[1]  # reverted once, built again against the new state
    assert svc.order(order.order_id).status == Status.RESOLVED


def test_two_relayers_never_send_the_same_intent(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second relayer runs a whole pass while the first is between planning and claiming."""
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.chain.advance_time(3 * DAY + 1)
    iid = put(runtime, "release", {"orderId": hex32(order.order_id)})
    sent = spy_broadcasts(runtime, monkeypatch)
    estimate = ChainClient.estimate
    inner: list[relayer.RelayReport] = []
    raced: list[bool] = []

    def racing_estimate(self: ChainClient, fn: Any, sender: Any, **kw: Any) -> int:
        gas = estimate(self, fn, sender, **kw)
        if not raced:  # the first relayer has estimated; the other one goes all the way now
            raced.append(True)
            inner.append(relay(runtime))
        return gas

    monkeypatch.setattr(ChainClient, "estimate", racing_estimate)
    outer = relay(runtime)

    assert inner[0].transactions == 1 and outer.transactions == 0 and outer.deferred == 1
    assert len(sent) == 1 and svc.intent(iid).status == CONFIRMED


def test_one_transaction_per_order_at_a_time(runtime: Runtime) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    fund = put(runtime, "fund", svc.fund_payload(auth))
    ship = put(runtime, "attest", svc.attest_payload(auth.order_id, Milestone.SHIPPED))
    deliver = put(runtime, "attest", svc.attest_payload(auth.order_id, Milestone.DELIVERED))

    statuses = []
    for _ in range(3):
        relay(runtime)
        statuses.append([svc.intent(i).status for i in (fund, ship, deliver)])

    assert statuses == [
        [CONFIRMED, PENDING, PENDING],
        [CONFIRMED, CONFIRMED, PENDING],
        [CONFIRMED, CONFIRMED, CONFIRMED],
    ]
    assert svc.order(auth.order_id).status == Status.DELIVERED


def test_attestations_for_several_orders_go_out_in_one_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    orders = [svc.fund(), svc.fund(), svc.attest(svc.fund(), Milestone.SHIPPED)]
    ids = [put(runtime, "attest", svc.attest_payload(o.order_id, Milestone.SHIPPED)) for o in orders]
    sent = spy_broadcasts(runtime, monkeypatch)

    relay(runtime)

    intents = [svc.intent(i) for i in ids]
    assert len(sent) == 1
    assert [(i.status, i.error_name) for i in intents] == [
        (CONFIRMED, None),
        (CONFIRMED, None),
        (FAILED, "InvalidStatus"),  # already shipped: skipped in the batch, alone
    ]
    assert [svc.order(o.order_id).status for o in orders] == [Status.SHIPPED] * 3


def test_an_intent_for_an_order_still_being_funded_waits(runtime: Runtime) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    # the attestation was queued first, the funding second
    ship = put(runtime, "attest", svc.attest_payload(auth.order_id, Milestone.SHIPPED))
    svc.mint(svc["buyer"].address, auth.amount)
    fund = put(runtime, "fund", svc.fund_payload(auth))
    first = relay(runtime)
    assert first.deferred >= 1 and svc.intent(fund).status == CONFIRMED
    assert svc.intent(ship).status == PENDING
    relay(runtime)
    assert svc.intent(ship).status == CONFIRMED


def test_an_intent_for_an_order_that_never_existed_fails(runtime: Runtime) -> None:
    svc = Svc(runtime)
    auth = svc.auth()
    iid = put(runtime, "timeout_refund", {"orderId": hex32(auth.order_id)})
    relay(runtime, now=svc.intent(iid).created_at + timedelta(seconds=1))
    assert (svc.intent(iid).status, svc.intent(iid).error_name) == (FAILED, "UnknownOrder")


def test_a_batch_entry_skipped_for_a_moved_order_is_checked_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-strict release batch: the order moved after the check (the buyer confirmed receipt itself), so
    the contract skips it with ``OrderDataMismatch``; the intent is checked again rather than failed, and
    that check gives the verdict."""
    svc = Svc(runtime)
    order = svc.delivered()
    runtime.chain.advance_time(4 * DAY)
    iid = put(runtime, "release", {"orderId": hex32(order.order_id)})
    estimate = runtime.chain.estimate

    def estimate_then_buyer_confirms(fn: Any, sender: Any, **kw: Any) -> int:
        gas = estimate(fn, sender, **kw)
        runtime.escrow.confirm_receipt(order, svc["buyer"])
        return gas

    monkeypatch.setattr(runtime.chain, "estimate", estimate_then_buyer_confirms)
    relay(runtime)
    monkeypatch.undo()

    skipped = svc.intent(iid)
    assert (skipped.status, skipped.tx_hash, skipped.attempts) == (PENDING, None, 1)
    assert "OrderDataMismatch" in (skipped.error or "")
    relay(runtime, now=skipped.next_attempt_at)
    assert (svc.intent(iid).status, svc.intent(iid).error_name) == (FAILED, "InvalidStatus")


def _relay_signing(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """One relayer pass; (nonce, inside a write transaction) of every transaction it signed."""
    from app.db import tripwire

    seen: list[tuple[int, bool]] = []
    prepare = rt.chain.prepare

    def spied(*args: Any, **kwargs: Any) -> Any:
        tx = prepare(*args, **kwargs)
        seen.append((tx.nonce, tripwire.open_write_transaction() is not None))
        return tx

    monkeypatch.setattr(rt.chain, "prepare", spied)
    armed = tripwire.armed()
    if not armed:
        tripwire.arm()
    try:
        relay(rt)
    finally:
        if not armed:
            tripwire.disarm()
    return seen


def _one_funding(rt: Runtime) -> tuple[Svc, str]:
    svc = Svc(rt)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    return svc, put(rt, "fund", svc.fund_payload(auth))


def test_transactions_are_signed_before_the_write_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoding a call and signing it keep no writer waiting: the relayer signs at the nonces it expects,
    then only allocates and records them under the write lock."""
    svc, iid = _one_funding(runtime)
    signed = _relay_signing(runtime, monkeypatch)

    intent = svc.intent(iid)
    assert intent.status == CONFIRMED
    assert signed == [(intent.nonce, False)]  # signed once, outside the write transaction


def test_a_transaction_expected_at_another_nonce_is_signed_again_inside(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the nonce allocated is not the one expected (another relayer took it meanwhile), the unit is
    signed again at the allocated one: what goes on chain always carries the nonce recorded."""
    svc, iid = _one_funding(runtime)
    expected = nonce_manager.expected
    monkeypatch.setattr(nonce_manager, "expected", lambda s, a, c, n: [x + 5 for x in expected(s, a, c, n)])
    signed = _relay_signing(runtime, monkeypatch)

    intent = svc.intent(iid)
    assert intent.status == CONFIRMED
    assert [inside for _n, inside in signed] == [False, True]  # expected at n + 5, signed again at n
    assert signed[1][0] == intent.nonce == signed[0][0] - 5
